//! Strings from the server reach the terminal without anything a terminal would act on or that
//! would make text read other than it is: the real binary against the simulated server.

mod support;

use support::*;

/// The characters a hostile value carries: bidi overrides and isolates, directional marks, a
/// zero-width space, and a colour escape.
const HOSTILE: [char; 10] = [
    '\u{202e}', '\u{202c}', '\u{2066}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}', '\u{200b}',
    '\u{1b}', '\u{9b}',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_echoes_a_refused_input_without_bidi_controls_or_escapes() {
    let server = TestServer::start().await;
    let mut workflow = workflow("invalid_bad_combo.json");
    // ComfyUI echoes a value that is not in the list in its validation error.
    let value = "evil\u{202e}gnp.exe\u{202c} \u{2066}x\u{2069}\u{200e}\u{200f}\u{61c}\u{200b}\u{1b}[31mred\u{9b}0m";
    workflow["2"]["inputs"]["upscale_method"] = value.into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.json");
    std::fs::write(&path, workflow.to_string()).unwrap();
    let path = path.to_string_lossy().into_owned();
    let url = server.url();

    for args in [
        vec!["submit", path.as_str(), url.as_str()],
        vec!["submit", "--wait", path.as_str(), url.as_str()],
    ] {
        let out = run(&args).await;
        let stderr = text(&out.stderr);
        // Refused by the server: "not done".
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        // The echo arrived, so the test sees what the server sent.
        assert!(stderr.contains("Value not in list"), "{stderr}");
        assert!(stderr.contains("evilgnp.exe x"), "{stderr:?}");
        let output = format!("{}{stderr}", text(&out.stdout));
        for c in HOSTILE {
            assert!(!output.contains(c), "{args:?}: {c:?} in {output:?}");
        }
    }
}
