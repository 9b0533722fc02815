//! The comfytop bridge (`assets/bridge/comfytop_bridge.py`, a ComfyUI custom node) has its own
//! tests in Python, against stand-ins for ComfyUI and aiohttp; this runs them with `cargo test`.
//!
//! Needs `python3` 3.9 or newer (standard library only); without it the test says so and passes
//! without running.

use std::path::Path;
use std::process::Command;

/// Why the Python tests cannot run here, if they cannot.
fn no_python() -> Option<String> {
    let version = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output();
    let Ok(output) = version else {
        return Some("python3 is not installed".to_string());
    };
    if !output.status.success() {
        return Some(format!("python3 does not run ({})", output.status));
    }
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let parts: Vec<u32> = version.split('.').filter_map(|n| n.parse().ok()).collect();
    match parts[..] {
        [major, minor] if (major, minor) >= (3, 9) => None,
        _ => Some(format!("python3 is {version:?}, older than 3.9")),
    }
}

#[test]
fn the_bridges_python_tests_pass() {
    if let Some(reason) = no_python() {
        eprintln!("skipped: {reason}; the bridge's Python tests did not run");
        return;
    }
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/bridge/test_comfytop_bridge.py");
    let output = Command::new("python3")
        .arg(&tests)
        .arg("-v")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the bridge's Python tests failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
