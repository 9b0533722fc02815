//! `--header` and `$COMFYUI_HEADERS` reach the server on every HTTP request and on the WebSocket
//! upgrade, for the dashboard and every command, and the value is never printed. The stand-in
//! is the simulator demanding a token, as a reverse proxy in front of ComfyUI would.

mod support;

use std::time::{Duration, Instant};

use comfy_sim::{SimConfig, SimHandle, SimServer};
use support::pty::PtyApp;
use support::{comfytop, run, text, workflow_path};

const TOKEN: &str = "s3cret-7f1c";
const HEADER: &str = "X-Comfy-Token: s3cret-7f1c";

async fn guarded_server() -> SimHandle {
    SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        require_header: Some(("X-Comfy-Token".into(), TOKEN.into())),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn assert_never_printed(out: &std::process::Output) {
    for stream in [&out.stdout, &out.stderr] {
        assert!(!text(stream).contains(TOKEN), "{}", text(stream));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_sends_the_header_and_fails_plainly_without_it() {
    let sim = guarded_server().await;
    let url = sim.url();

    let refused = run(&["queue", &url]).await;
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("401"),
        "{}",
        text(&refused.stderr)
    );

    let queue = run(&["queue", &url, "--header", HEADER]).await;
    assert_eq!(queue.status.code(), Some(0), "{}", text(&queue.stderr));
    assert_never_printed(&queue);

    let workflow = workflow_path("small_save.json");
    let submit = run(&["submit", &workflow, &url, "--header", HEADER, "--wait"]).await;
    assert_eq!(submit.status.code(), Some(0), "{}", text(&submit.stderr));
    assert_never_printed(&submit);

    // Nothing runs: cancel reaches the server and says so (1), instead of a refusal (5).
    let cancel = run(&["cancel", &url, "--header", HEADER]).await;
    assert_eq!(cancel.status.code(), Some(1), "{}", text(&cancel.stderr));
    assert_never_printed(&cancel);
    let cancel_refused = run(&["cancel", &url]).await;
    assert_eq!(cancel_refused.status.code(), Some(5));

    // From the environment, one per line.
    let mut from_env = comfytop(&["queue", &url]);
    from_env.env("COMFYUI_HEADERS", format!("X-Other: 1\n{HEADER}\n"));
    let from_env = tokio::task::spawn_blocking(move || from_env.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        from_env.status.code(),
        Some(0),
        "{}",
        text(&from_env.stderr)
    );

    // A malformed header is a usage error that does not repeat the value.
    let bad = run(&["queue", &url, "--header", "X-Comfy-Token s3cret-7f1c"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("'Name: value'"),
        "{}",
        text(&bad.stderr)
    );
    assert_never_printed(&bad);
}

/// Runs `comfytop watch` with `args` until it prints a line that `wanted` accepts (at most
/// 20 s), and returns the lines printed so far.
async fn watch_until(args: &[&str], wanted: fn(&str) -> bool) -> Vec<String> {
    let mut child = comfytop(args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = wanted(&line);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    lines.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sends_the_header_on_the_websocket_upgrade_too() {
    let sim = guarded_server().await;
    let url = sim.url();
    let lines = watch_until(&["watch", &url, "--header", HEADER], |line| {
        line.contains("-- connected to")
    })
    .await;
    let all = lines.join("\n");
    assert!(all.contains("-- connected to"), "{all}");
    assert!(!all.contains(TOKEN), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_websocket_says_what_was_sent() {
    let sim = guarded_server().await;
    let url = sim.url();
    let args = ["watch", &url, "--header", "X-Comfy-Token: wrong-value"];
    let lines = watch_until(&args, |line| line.contains("refused the WebSocket")).await;
    let line = lines.last().cloned().unwrap_or_default();
    assert!(line.contains("HTTP 401"), "{line}");
    assert!(
        line.contains("comfytop sent the header x-comfy-token"),
        "{line}"
    );
    assert!(!line.contains("wrong-value"), "{line}");
}

#[test]
fn the_dashboard_sends_the_header_and_connects() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(guarded_server());
    let url = sim.url();
    let mut app = PtyApp::spawn(&[&url, "--header", HEADER], 100, 30);
    let screen = app.wait_for("connected", Duration::from_secs(20), |s| {
        s.contains("● connected") && s.contains("queue 0")
    });
    assert!(!screen.contains(TOKEN), "{screen}");
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
