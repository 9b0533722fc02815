//! `--header` and `$COMFYUI_HEADERS` reach the server on every HTTP request and on the WebSocket
//! upgrade, for the dashboard and every command, and the value is never printed. The stand-in
//! is the simulator demanding a token, as a reverse proxy in front of ComfyUI would.

mod support;

use std::time::Duration;

use comfy_sim::{SimConfig, SimHandle, SimServer};
use support::pty::PtyApp;
use support::{comfytop, run, text, watch_until, workflow_path};

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

#[test]
fn credentials_reach_neither_the_screen_nor_the_log_nor_the_recording() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(guarded_server());
    // Basic auth in the URL too: the simulator ignores it, a proxy would check it.
    let url = sim.url().replace("http://", "http://alice:pw-9d2e@");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dashboard.log");
    let recording = dir.path().join("dashboard.jsonl");
    let (log_arg, recording_arg) = (log.to_str().unwrap(), recording.to_str().unwrap());
    let secrets = [TOKEN, "pw-9d2e", "alice"];

    let mut app = PtyApp::spawn(
        &[
            &url,
            "--header",
            HEADER,
            "--log",
            log_arg,
            "--record",
            recording_arg,
        ],
        120,
        30,
    );
    let screen = app.wait_for("connected", Duration::from_secs(20), |s| {
        s.contains("● connected")
    });
    assert!(screen.contains("http://***:***@127.0.0.1"), "{screen}");
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
    let watch_recording = dir.path().join("watch.jsonl");
    let watched = runtime.block_on(watch_until(
        &[
            "watch",
            &url,
            "--header",
            HEADER,
            "--record",
            watch_recording.to_str().unwrap(),
        ],
        |line| line.contains("-- connected to"),
    ));
    // Refused: the message says what was sent, by name only.
    let refused = runtime.block_on(run(&["queue", &url, "--header", "X-Comfy-Token: pw-9d2e"]));
    let refusal = text(&refused.stderr);
    assert!(
        refusal.contains("basic auth from the URL and the header x-comfy-token"),
        "{refusal}"
    );

    let printed = [
        ("the screen", app.output()),
        ("the log", std::fs::read_to_string(&log).unwrap()),
        (
            "the recording",
            std::fs::read_to_string(&recording).unwrap(),
        ),
        ("watch", watched.join("\n")),
        (
            "watch's recording",
            std::fs::read_to_string(&watch_recording).unwrap(),
        ),
        ("the refusal", refusal),
    ];
    for (what, printed) in printed {
        assert!(!printed.is_empty(), "{what} is empty");
        for secret in secrets {
            assert!(
                !printed.contains(secret),
                "{what} shows {secret}: {printed}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_url_reaches_http_and_the_websocket_upgrade() {
    // "alice:pw 9d/2e" percent-encoded in the URL, as a user must write it.
    let basic = "Basic YWxpY2U6cHcgOWQvMmU=";
    let sim = SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        require_header: Some(("Authorization".into(), basic.into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let url = sim.url().replace("http://", "http://alice:pw%209d%2F2e@");
    let queue = run(&["queue", &url]).await;
    assert_eq!(queue.status.code(), Some(0), "{}", text(&queue.stderr));
    let workflow = workflow_path("small_save.json");
    let submit = run(&["submit", &workflow, &url, "--wait"]).await;
    assert_eq!(submit.status.code(), Some(0), "{}", text(&submit.stderr));
    let cancel = run(&["cancel", &url]).await;
    assert_eq!(cancel.status.code(), Some(1), "{}", text(&cancel.stderr));
    let lines = watch_until(&["watch", &url], |line| line.contains("-- connected to")).await;
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("-- connected to http://***:***@")),
        "{lines:?}"
    );
    let wrong = sim.url().replace("http://", "http://alice:nope@");
    let refused = run(&["queue", &wrong]).await;
    assert_eq!(refused.status.code(), Some(5));
    assert!(
        text(&refused.stderr).contains("comfytop sent basic auth from the URL"),
        "{}",
        text(&refused.stderr)
    );
}

/// A proxy that sends whoever has no session to its sign-in page, as oauth2-proxy or Authelia
/// do: every path answers 302.
async fn sign_in_proxy() -> String {
    use axum::http::{StatusCode, header};
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::FOUND,
            [(
                header::LOCATION,
                "/oauth2/sign_in?rd=%2Fqueue&state=s3cret-7f1c",
            )],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_sign_in_page_is_named_on_http_and_the_websocket() {
    let url = sign_in_proxy().await;
    let out = run(&["queue", &url]).await;
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{said}");
    assert!(
        said.contains(&format!("redirected to {url}/oauth2/sign_in (HTTP 302)")),
        "{said}"
    );
    assert!(said.contains("sign-in page of a proxy"), "{said}");
    assert!(!said.contains(TOKEN), "the query stays out: {said}");
    let lines = watch_until(&["watch", &url], |line| line.contains("redirected")).await;
    let line = lines.last().cloned().unwrap_or_default();
    assert!(
        line.contains("redirected the WebSocket to") && line.contains("/oauth2/sign_in"),
        "{line}"
    );
    assert!(!line.contains(TOKEN), "{line}");
}
