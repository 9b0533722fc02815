//! The dashboard binary in a pseudo-terminal: what a user sees, and the terminal handed back.

mod support;

use std::time::Duration;

use comfytop::comfy::server_url::ServerUrl;
use support::pty::{Answers, PtyApp};

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

/// A simulated server on its own runtime (its worker threads keep it going while the test thread
/// blocks on the pseudo-terminal).
fn simulator() -> (tokio::runtime::Runtime, comfy_sim::SimHandle) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = runtime
        .block_on(comfy_sim::SimServer::start(comfy_sim::SimConfig {
            step: Duration::from_millis(20),
            ..Default::default()
        }))
        .unwrap();
    (runtime, sim)
}

/// Queues the reference slow-steps workflow without a client id (as a script would): its
/// progress is then broadcast to every client, so the dashboard shows it node by node.
fn queue_slow_steps(runtime: &tokio::runtime::Runtime, url: &str, steps: u64) {
    let path = format!("{}/workflows/slow_steps_full.json", comfytop::FIXTURES);
    let mut prompt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    prompt["1"]["inputs"]["steps"] = steps.into();
    let client = comfytop::comfy::http::ComfyClient::new(ServerUrl::parse(url).unwrap()).unwrap();
    let request = comfytop::comfy::api::PromptRequest {
        prompt,
        ..Default::default()
    };
    runtime.block_on(client.submit(&request)).unwrap();
}

/// The key hints are the dashboard's last line: on the screen's last row once it drew for the
/// screen's size.
fn hints_on_last_row(screen: &str, rows: usize) -> bool {
    screen
        .lines()
        .nth(rows - 1)
        .is_some_and(|line| line.contains("q quit"))
}

#[test]
fn the_dashboard_redraws_for_the_terminal_resized_smaller_and_larger() {
    let (_runtime, sim) = simulator();
    let mut app = PtyApp::spawn(&[&sim.url()], 120, 40);
    app.wait_for("the connection", LIMIT, |s| {
        s.contains("● connected") && hints_on_last_row(s, 40)
    });
    app.resize(80, 24);
    let screen = app.wait_for("a frame at 80x24", LIMIT, |s| hints_on_last_row(s, 24));
    assert!(screen.contains("● connected"), "{screen}");
    app.resize(130, 45);
    let screen = app.wait_for("a frame at 130x45", LIMIT, |s| hints_on_last_row(s, 45));
    assert!(
        screen
            .lines()
            .next()
            .is_some_and(|l| l.contains("● connected")),
        "{screen}"
    );
    app.send(b"q");
    assert_eq!(app.wait_exit(LIMIT), 0, "{}", app.screen());
}

#[test]
fn a_running_prompt_shows_its_nodes_and_progress_then_q_quits() {
    let (runtime, sim) = simulator();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.jsonl");
    let mut app = PtyApp::spawn(&[&sim.url(), "--record", record.to_str().unwrap()], 120, 40);
    app.wait_for("the connection", LIMIT, |s| s.contains("● connected"));
    queue_slow_steps(&runtime, &sim.url(), 400);
    let screen = app.wait_for("the running prompt's nodes and progress", LIMIT, |s| {
        s.contains("Running ")
            && s.contains("Slow Steps #1")
            && s.contains("Upscale Image #2")
            && s.contains("/400")
            && s.contains("it/s")
    });
    assert!(screen.contains("queued by"), "{screen}");

    // Row 3 is the queue's first row (status bar, frame, header above it). Tab moves the focus
    // away, so the selected row is no longer in reverse video; a click on it brings it back.
    app.send(b"\t");
    app.wait_for("the focus to leave the queue", LIMIT, |_| {
        !app.inverse_at(3, 4)
    });
    app.send(b"\x1b[<0;5;4M\x1b[<0;5;4m");
    app.wait_for("the click to focus the queue", LIMIT, |_| {
        app.inverse_at(3, 4)
    });

    app.send(b"q");
    assert_eq!(app.wait_exit(LIMIT), 0, "{}", app.screen());
    assert!(!app.alternate_screen(), "left the alternate screen");
    assert!(!app.cursor_hidden(), "cursor shown again");
    assert!(!app.mouse_captured(), "mouse released");

    // --record kept every frame in the transcript format.
    let transcript = std::fs::read_to_string(&record).unwrap();
    let first: serde_json::Value =
        serde_json::from_str(transcript.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "text");
    assert_eq!(first["data"]["type"], "status");
    assert!(transcript.lines().count() > 10, "{transcript}");
    // The answers the tracker used, but none that changed nothing: no `/queue` answer is the
    // one before it again.
    let queues: Vec<serde_json::Value> = transcript
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["kind"] == "http" && entry["request"] == "GET /queue")
        .map(|entry| entry["body"].clone())
        .collect();
    assert!(!queues.is_empty(), "{transcript}");
    assert!(queues.windows(2).all(|w| w[0] != w[1]), "{queues:?}");
    drop(sim);
}

#[test]
fn half_block_previews_appear_while_comfytops_own_prompt_samples_and_p_hides_them() {
    // The demo queues prompts of its own (the server sends previews only to the client that
    // queued the prompt).
    let mut app = PtyApp::spawn(&["--demo", "--image-protocol", "halfblocks"], 120, 40);
    app.wait_for("the connection", LIMIT, |s| s.contains("● connected"));
    // The preview pane is in the right half of the screen.
    let right_half = 60;
    // The pane's frame (other panels may name a "Preview Image" node) and its status line,
    // read from the same screen as the cells.
    let pane_title = "╭ Preview";
    app.wait_for("coloured half blocks in the preview pane", LIMIT, |s| {
        s.contains(pane_title) && s.contains("JPEG") && app.coloured_half_blocks(right_half) > 50
    });

    app.send(b"p");
    app.wait_for("p to hide the pane", LIMIT, |s| {
        !s.contains(pane_title) && app.coloured_half_blocks(right_half) == 0
    });
    app.send(b"p");
    app.wait_for("p to show it again", LIMIT, |s| s.contains(pane_title));

    app.send(b"q");
    assert_eq!(app.wait_exit(LIMIT), 0, "{}", app.screen());
    assert!(!app.alternate_screen(), "left the alternate screen");
}

/// Moments of startup to interrupt, in ms after the start: before the signal handlers, during
/// the graphics query, the first fetches, and once the dashboard is up.
const STARTUP_POINTS_MS: [u64; 8] = [0, 20, 50, 100, 200, 400, 800, 2500];

#[test]
fn closing_the_terminal_at_any_point_of_startup_ends_the_dashboard() {
    let url = closed_port_url();
    for delay in STARTUP_POINTS_MS {
        // A terminal that never answers keeps the graphics query out; one that does lets the
        // dashboard read its input with crossterm.
        for answers in [Answers::Silent, Answers::Status] {
            let mut app = PtyApp::spawn_answering(&[&url], 100, 30, answers);
            std::thread::sleep(Duration::from_millis(delay));
            app.hang_up();
            assert!(
                app.gone_within(Duration::from_secs(3)),
                "still running after its terminal ({answers:?}) closed {delay} ms after the start"
            );
        }
    }
}

#[test]
fn signals_end_the_dashboard_in_every_phase_of_startup() {
    let url = closed_port_url();
    for (i, delay) in STARTUP_POINTS_MS.into_iter().enumerate() {
        let signal = ["TERM", "INT", "HUP"][i % 3];
        // The graphics query is out until the end: this terminal never answers.
        let mut app = PtyApp::spawn_answering(&[&url], 100, 30, Answers::Silent);
        std::thread::sleep(Duration::from_millis(delay));
        let pid = app.process_id().unwrap();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            app.gone_within(Duration::from_millis(1500)),
            "SIG{signal} {delay} ms after the start did not end the dashboard: {}",
            app.screen()
        );
        // Let the reader take in the last bytes (the terminal restore).
        std::thread::sleep(Duration::from_millis(200));
        assert!(!app.alternate_screen(), "SIG{signal} at {delay} ms");
        assert!(!app.cursor_hidden(), "SIG{signal} at {delay} ms");
    }
}

#[test]
fn the_dashboard_draws_and_takes_keys_before_the_terminal_answers_the_graphics_query() {
    let url = closed_port_url();
    let mut app = PtyApp::spawn_answering(&[&url], 100, 30, Answers::Silent);
    app.wait_for("the dashboard", LIMIT, |s| s.contains("Queue"));
    // The first frame went out before the question (kitty's probe is part of it).
    let output = app.output();
    let frame_at = output.find("Queue");
    let query_at = output.find("\x1b_Gi=31");
    assert!(
        matches!((frame_at, query_at), (Some(frame), Some(query)) if frame < query),
        "frame at {frame_at:?}, query at {query_at:?}"
    );
    // A key typed while the question is out reaches the dashboard.
    app.send(b"?");
    app.wait_for("the help", LIMIT, |s| s.contains("Esc closes ─"));
    app.send(b"\x1b");
    app.wait_for("the help to close", LIMIT, |s| !s.contains("Esc closes ─"));
    app.send(b"q");
    assert_eq!(app.wait_exit(LIMIT), 0, "{}", app.screen());
    assert!(!app.alternate_screen(), "left the alternate screen");
}
