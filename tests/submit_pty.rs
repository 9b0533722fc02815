//! `submit --wait` on a terminal: one live progress line, rewritten in place and cleared at the
//! end, above it a line per finished node.

mod support;

use support::pty::PtyApp;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_on_a_terminal_rewrites_one_progress_line_and_clears_it() {
    let server = TestServer::start().await;
    let url = server.url();
    let path = workflow_path("slow_steps_full.json");
    let (code, output, screen) = tokio::task::spawn_blocking(move || {
        let mut app = PtyApp::spawn(&["submit", "--wait", &path, &url], 120, 30);
        let code = app.wait_exit(PATIENCE);
        (code, app.output(), app.screen())
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{output}");
    // The status line was drawn, then rewritten in place (carriage return, clear line).
    assert!(output.contains(" │ "), "{output:?}");
    assert!(output.matches("\r\x1b[2K").count() >= 2, "{output:?}");
    // At the end it is gone: the screen keeps the node lines and the outcome only.
    assert!(!screen.contains(" │ "), "{screen}");
    assert!(screen.contains("✓ [1] Slow Steps  6 steps"), "{screen}");
    assert!(screen.contains("done after "), "{screen}");
}
