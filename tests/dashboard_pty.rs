//! The dashboard binary in a pseudo-terminal: what a user sees, and the terminal handed back.

mod support;

use std::time::Duration;

use support::pty::PtyApp;

const LIMIT: Duration = Duration::from_secs(20);

/// A loopback address nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn unreachable_server_is_explained_and_q_restores_the_terminal() {
    let url = closed_port_url();
    let mut app = PtyApp::spawn(&[&url], 100, 30);
    let screen = app.wait_for("the connection error", LIMIT, |s| {
        s.contains("Not connected.") && s.contains("cannot reach")
    });
    assert!(screen.contains("reconnecting in"), "{screen}");
    assert!(app.alternate_screen());
    assert!(app.cursor_hidden());
    assert!(app.mouse_captured());
    app.send(b"q");
    assert_eq!(app.wait_exit(LIMIT), 0);
    assert!(!app.alternate_screen(), "left the alternate screen");
    assert!(!app.cursor_hidden(), "cursor shown again");
    assert!(!app.mouse_captured(), "mouse released");
}

/// Sends `signal` to the app and checks that it leaves, handing the terminal back.
fn signal_restores_the_terminal(signal: &str) {
    let url = closed_port_url();
    let mut app = PtyApp::spawn(&[&url, "--no-mouse"], 80, 24);
    app.wait_for("the dashboard", LIMIT, |s| s.contains("Queue"));
    assert!(!app.mouse_captured(), "--no-mouse leaves the mouse alone");
    let pid = app.process_id().unwrap();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    app.wait_exit(LIMIT);
    assert!(!app.alternate_screen(), "{signal}: {}", app.output());
    assert!(!app.cursor_hidden(), "{signal}");
}

#[test]
fn sigterm_restores_the_terminal() {
    signal_restores_the_terminal("TERM");
}

#[test]
fn sighup_ends_the_dashboard_and_restores_the_terminal() {
    signal_restores_the_terminal("HUP");
}
