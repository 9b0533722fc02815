//! Names the build for `--version`: the commit and its date when built from a git checkout,
//! else says it was not.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_string())
            .filter(|text| !text.is_empty())
    };
    let build = match (
        git(&["rev-parse", "--short=9", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => format!("{commit} {date}"),
        _ => "not built from a git checkout".to_string(),
    };
    println!("cargo:rustc-env=COMFYTOP_BUILD={build}");
    // A new commit or another branch names a new build.
    // (A path that does not exist would make cargo run this on every build.)
    for path in [".git/HEAD", ".git/refs", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
