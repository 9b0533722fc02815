//! The server log panel (`L`) against the simulator's log stream: the backlog, new lines as
//! they come, and the search (`/`).

mod support;

use std::time::Duration;

use support::pty::PtyApp;
use support::{fast_simulator, run_prompt_from_elsewhere};

#[test]
fn the_server_log_shows_the_backlog_and_new_lines_and_filters_them() {
    let (runtime, sim) = fast_simulator();
    let url = sim.url();
    let run_prompt = || run_prompt_from_elsewhere(&runtime, &url);
    // Before the dashboard: in the backlog.
    run_prompt();
    let mut app = PtyApp::connected_dashboard(&url);
    app.send(b"L");
    app.wait_for("the backlog", Duration::from_secs(10), |s| {
        s.contains("Server log") && s.contains("got prompt") && s.contains("Prompt executed in")
    });
    // While it is shown: from the stream.
    run_prompt();
    app.wait_for("a streamed line", Duration::from_secs(10), |s| {
        s.matches("got prompt").count() >= 2
    });
    app.send(b"/execut");
    app.wait_for("typing the search", Duration::from_secs(10), |s| {
        s.contains("/execut▏") && s.contains("Enter keep the search")
    });
    app.send(b"\r");
    let screen = app.wait_for("the search kept", Duration::from_secs(10), |s| {
        s.contains("/execut ·") && !s.contains("got prompt")
    });
    assert!(screen.contains("2 of"), "{screen}");
    assert_eq!(screen.matches("Prompt executed in").count(), 2, "{screen}");
    // `l` shows comfytop's own events in its place; `L` hides it.
    app.send(b"l");
    app.wait_for("the events", Duration::from_secs(10), |s| {
        s.contains("Events")
    });
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
