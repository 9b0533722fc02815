//! Live `watch` against an in-test ComfyUI on loopback: the socket drops once, a prompt of
//! another client runs and finishes meanwhile, and watch says all of it, records every frame and
//! closes its socket on shutdown.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use comfytop::comfy::server_url::ServerUrl;
use comfytop::comfy::transcript::{Recorder, TranscriptReader};
use comfytop::comfy::{Decoded, RawFrame};
use comfytop::watch::LineFormat;
use comfytop::watch::live::{WatchOptions, watch};

const REFERENCE: &str = comfytop::FIXTURES;
const PROMPT: &str = "647d7248-af64-42c7-a02f-e276bf58c802";

/// The recorded `/history/{id}` entry of a finished run (queued by another client).
fn history_entry() -> Value {
    let path = format!("{REFERENCE}/http/get_history_id_success.json");
    let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    file["body"][PROMPT].clone()
}

#[derive(Default)]
struct Fake {
    connections: AtomicUsize,
    /// The prompt left the queue (set when the second socket opens).
    finished: AtomicBool,
    /// The last socket received a Close frame from the client.
    closed_cleanly: AtomicBool,
    /// `/queue` was asked while the prompt ran.
    queue_seen_running: tokio::sync::Notify,
}

async fn ws(upgrade: WebSocketUpgrade, State(fake): State<Arc<Fake>>) -> Response {
    upgrade.on_upgrade(move |socket| session(socket, fake))
}

async fn session(mut socket: WebSocket, fake: Arc<Fake>) {
    let n = fake.connections.fetch_add(1, Ordering::SeqCst) + 1;
    // The client's feature flags come first.
    let _ = socket.recv().await;
    let status = |queue: u64, sid: bool| {
        let mut data = json!({"status": {"exec_info": {"queue_remaining": queue}}});
        if sid {
            data["sid"] = "the-sid".into();
        }
        Message::Text(json!({"type": "status", "data": data}).to_string().into())
    };
    let flags = json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}});
    let _ = socket.send(status(1, true)).await;
    let _ = socket.send(Message::Text(flags.to_string().into())).await;
    if n == 1 {
        let mut text = BytesMut::new();
        text.put_u32(3);
        text.put_u32(1);
        text.put_slice(b"1step 1/6 (seed 1)");
        let _ = socket.send(Message::Binary(text.freeze())).await;
        let _ = socket.send(Message::Text("not json".into())).await;
        // The prompt ends only once the client has seen it running.
        fake.queue_seen_running.notified().await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    fake.finished.store(true, Ordering::SeqCst);
    let _ = socket.send(status(0, false)).await;
    while let Some(Ok(message)) = socket.recv().await {
        if let Message::Close(_) = message {
            fake.closed_cleanly.store(true, Ordering::SeqCst);
            break;
        }
    }
}

async fn queue(State(fake): State<Arc<Fake>>) -> impl IntoResponse {
    let running = if fake.finished.load(Ordering::SeqCst) {
        json!([])
    } else {
        fake.queue_seen_running.notify_one();
        json!([history_entry()["prompt"]])
    };
    axum::Json(json!({"queue_running": running, "queue_pending": []}))
}

async fn history() -> impl IntoResponse {
    axum::Json(json!({}))
}

async fn history_item(Path(id): Path<String>, State(fake): State<Arc<Fake>>) -> impl IntoResponse {
    if id == PROMPT && fake.finished.load(Ordering::SeqCst) {
        axum::Json(json!({ PROMPT: history_entry() }))
    } else {
        axum::Json(json!({}))
    }
}

async fn start_fake() -> (Arc<Fake>, ServerUrl) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route("/ws", get(ws))
        .route("/queue", get(queue))
        .route("/history", get(history))
        .route("/history/{id}", get(history_item))
        .with_state(fake.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, ServerUrl::parse(&format!("http://{addr}")).unwrap())
}

/// Output shared between the watch task and the test.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits until the output satisfies `done`; fails after a generous deadline.
    async fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        self.wait_for_within(what, Duration::from_secs(10), done)
            .await;
    }

    async fn wait_for_within(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if done(&self.text()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saw {what}; output:\n{}", self.text());
    }
}

fn options(server: ServerUrl, format: LineFormat) -> WatchOptions {
    let mut options = WatchOptions::new(server, format);
    options.connection.backoff_initial = Duration::from_millis(50);
    options.connection.backoff_max = Duration::from_millis(100);
    options.connection.handshake_wait = Duration::from_millis(200);
    options
}

/// `watch` running as a task, printing into a buffer the test reads.
struct RunningWatch {
    out: Shared,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<color_eyre::Result<()>>,
}

impl RunningWatch {
    fn start(options: WatchOptions, recorder: Option<Recorder>) -> Self {
        let out = Shared::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(watch(options, recorder, out.clone(), async {
            let _ = stopped.await;
        }));
        Self { out, stop, task }
    }

    /// Stops it as Ctrl-C does, and waits for its end.
    async fn stop(self) -> Shared {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        self.out
    }
}

/// The simulated ComfyUI with sampler steps of `step`.
async fn simulator(step: Duration) -> (comfy_sim::SimHandle, ServerUrl) {
    let sim = comfy_sim::SimServer::start(comfy_sim::SimConfig {
        step,
        ..comfy_sim::SimConfig::default()
    })
    .await
    .unwrap();
    let url = ServerUrl::parse(&sim.url()).unwrap();
    (sim, url)
}

#[tokio::test]
async fn watch_follows_a_drop_and_another_clients_prompt_records_and_closes_cleanly() {
    let (fake, server) = start_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("run.jsonl");
    let running = RunningWatch::start(
        options(server.clone(), LineFormat::Human),
        Some(Recorder::append(&record).unwrap()),
    );
    running
        .out
        .wait_for("the prompt's end", |o| {
            o.contains("-- prompt 647d7248 succeeded")
        })
        .await;
    let out = running.stop().await;
    assert!(
        fake.closed_cleanly.load(Ordering::SeqCst),
        "no Close frame on shutdown"
    );

    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
    };
    let connected = position(&format!(
        "-- connected to {server}, sid the-sid, previews with metadata"
    ));
    let first_status = position("status            queue 1, sid the-sid");
    let progress_text = position("progress_text     node 1: step 1/6 (seed 1)");
    let malformed = position("malformed         text frame: text frame is not JSON");
    let dropped = position(&format!("-- disconnected: {server} closed the connection"));
    // The dropped socket was healthy: the schedule starts over at attempt 1.
    let retry = position(" ms (attempt 1); Ctrl-C to stop");
    assert!(
        lines[retry].contains("-- reconnecting in "),
        "{}",
        lines[retry]
    );
    let again = retry
        + 1
        + lines[retry + 1..]
            .iter()
            .position(|l| l.contains(&format!("-- connecting to {server}")))
            .unwrap_or_else(|| panic!("no reconnect in:\n{text}"));
    let finished = position("-- prompt 647d7248 succeeded");
    assert!(position(&format!("-- connecting to {server}")) < connected);
    assert!(connected < first_status && first_status < progress_text);
    assert!(progress_text < malformed && malformed < dropped);
    assert!(dropped < retry && retry < again && again < finished);

    // Every received frame is in the recording, in order, the garbage one included.
    let frames: Vec<RawFrame> = TranscriptReader::open(&record)
        .unwrap()
        .map(|f| f.unwrap().raw)
        .collect();
    assert_eq!(frames.len(), 7, "{frames:?}");
    assert_eq!(frames[3], RawFrame::Text("not json".into()));
    assert!(matches!(frames[2].decode(), Decoded::Binary(_)));
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| match f.decode() {
            Decoded::Message(m) => m.kind().to_string(),
            Decoded::Binary(_) => "binary".into(),
            Decoded::Malformed { .. } => "malformed".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "status",
            "feature_flags",
            "binary",
            "malformed",
            "status",
            "feature_flags",
            "status"
        ]
    );
}

#[tokio::test]
async fn json_watch_gives_one_object_per_line_with_an_event() {
    let (_fake, server) = start_fake().await;
    let running = RunningWatch::start(options(server, LineFormat::Json), None);
    running
        .out
        .wait_for("the prompt's end", |o| o.contains(r#""outcome":"success""#))
        .await;
    let out = running.stop().await;

    let events: Vec<Value> = out
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for expected in [
        "connecting",
        "connected",
        "status",
        "feature_flags",
        "progress_text",
        "malformed",
        "disconnected",
        "reconnecting",
        "prompt",
    ] {
        assert!(names.contains(&expected), "no {expected} in {names:?}");
    }
    // Frames carry their time; connection notices do not pretend to.
    for event in &events {
        let is_frame = ![
            "connecting",
            "connected",
            "disconnected",
            "reconnecting",
            "prompt",
            "history",
            "fetch_failed",
            "bridge",
        ]
        .contains(&event["event"].as_str().unwrap());
        assert_eq!(event["t"].is_number(), is_frame, "{event}");
    }
    let done = events
        .iter()
        .find(|e| e["event"] == "prompt" && e["outcome"] == "success")
        .unwrap();
    assert_eq!(done["prompt_id"], PROMPT);
    assert_eq!(done["ours"], false);
}

#[cfg(unix)]
#[test]
fn the_binary_keeps_retrying_an_unreachable_server_and_stops_cleanly_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfytop"))
        .env(
            "COMFYTOP_STATE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/comfytop-state"),
        )
        .env(
            "XDG_CONFIG_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/no-config"),
        )
        .args(["watch", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kept open to the end: a closed pipe would end watch too, and hide what SIGINT does.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let retrying = line.contains("(attempt 2)");
        seen.push(line);
        if retrying {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?} after {seen:#?}");
    seen.extend(lines.map(Result::unwrap));
    let text = seen.join("\n");
    assert!(
        text.contains(&format!("-- connecting to http://127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("cannot reach"), "{text}");
    assert!(text.contains("-- reconnecting in "), "{text}");
}

/// Watches the simulator (recording to `record` when given) while a slow-steps prompt queued
/// under watch's own client id runs to its end; the watch output and the prompt's id.
async fn follow_own_run(steps: Option<u64>, record: Option<&std::path::Path>) -> (Shared, String) {
    use comfytop::comfy::api::PromptRequest;
    use comfytop::comfy::http::ComfyClient;

    let (sim, server) = simulator(Duration::from_millis(5)).await;
    let options = options(server.clone(), LineFormat::Human);
    let client_id = options.connection.client_id.clone();
    let recorder = record.map(|path| Recorder::append(path).unwrap());
    let running = RunningWatch::start(options, recorder);
    running
        .out
        .wait_for("the connection", |o| o.contains("-- connected to "))
        .await;

    let path = format!("{REFERENCE}/workflows/slow_steps_full.json");
    let mut prompt: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    if let Some(steps) = steps {
        prompt["1"]["inputs"]["steps"] = json!(steps);
    }
    let accepted = ComfyClient::new(server)
        .unwrap()
        .submit(&PromptRequest {
            prompt,
            client_id: Some(client_id),
            ..PromptRequest::default()
        })
        .await
        .unwrap();
    let short: String = accepted.prompt_id.chars().take(8).collect();
    running
        .out
        .wait_for("the end of the run", |o| {
            o.contains(&format!("executing         prompt {short} done"))
        })
        .await;
    let out = running.stop().await;
    sim.shutdown().await;
    (out, accepted.prompt_id)
}

#[tokio::test]
async fn watch_follows_its_own_prompt_on_the_simulator_to_success() {
    let (out, prompt_id) = follow_own_run(None, None).await;
    let short: String = prompt_id.chars().take(8).collect();
    let text = out.text();
    for expected in [
        format!("execution_start   prompt {short}"),
        format!("progress          prompt {short} node 1"),
        format!("execution_success prompt {short} succeeded"),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }
    assert!(!text.contains("malformed"), "{text}");
}

#[tokio::test]
async fn a_recording_of_its_own_prompt_replays_where_the_time_went() {
    use comfytop::comfy::transcript::TranscriptReader;
    use comfytop::watch::replay::{Pace, replay};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("own.jsonl");
    // Twenty slow steps against image nodes that take next to nothing.
    let (_, prompt_id) = follow_own_run(Some(20), Some(&path)).await;
    let short: String = prompt_id.chars().take(8).collect();

    let mut replayed = Vec::new();
    let mut diagnostics = Vec::new();
    let report = replay(
        TranscriptReader::open(&path).unwrap(),
        "own.jsonl",
        LineFormat::Human,
        Pace::Max,
        &mut replayed,
        &mut diagnostics,
    )
    .unwrap();
    assert!(report.is_clean());
    // The times come from the frames' `t`; the titles from the recorded `/queue` answer.
    let summary = report.summary();
    assert!(
        summary.contains(&format!(
            "where the time went (slowest nodes):\n  {short} node 1 \"Slow Steps\" "
        )),
        "{summary}"
    );
    let p = report.tracker.prompt(&prompt_id).unwrap();
    let slowest = p.slowest_node().unwrap();
    assert_eq!(slowest.node_id, "1");
    let ran = p.node_timings().iter().filter(|t| !t.cached).count();
    assert!(ran >= 4, "{:#?}", p.node_timings());
}

#[cfg(unix)]
#[test]
fn the_sim_subcommand_serves_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_comfytop"))
        .env(
            "COMFYTOP_STATE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/comfytop-state"),
        )
        .env(
            "XDG_CONFIG_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/no-config"),
        )
        .args(["sim", "--listen", "127.0.0.1:0", "--step-ms", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("simulated ComfyUI listening on ")
        .unwrap_or_else(|| panic!("{first}"));
    let addr = url.strip_prefix("http://").unwrap();
    assert!(std::net::TcpStream::connect(addr).is_ok(), "{addr}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn a_recording_replays_what_watch_showed_of_another_clients_prompt() {
    use comfytop::comfy::api::PromptRequest;
    use comfytop::comfy::http::ComfyClient;
    use comfytop::comfy::transcript::{TranscriptEntry, TranscriptReader};
    use comfytop::watch::replay::{Pace, replay};

    let (sim, server) = simulator(Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let running = RunningWatch::start(
        options(server.clone(), LineFormat::Human),
        Some(Recorder::append(&path).unwrap()),
    );
    running
        .out
        .wait_for("the connection", |o| o.contains("-- connected to "))
        .await;

    // Another client's prompt, failing in a node with a title: watch learns all of it over
    // HTTP, since that client's execution events do not come to watch's socket.
    let workflow = format!("{REFERENCE}/workflows/error_after_progress.json");
    let mut prompt: Value = serde_json::from_slice(&std::fs::read(workflow).unwrap()).unwrap();
    prompt["2"]["_meta"] = json!({"title": "Deliberate Failure"});
    let accepted = ComfyClient::new(server)
        .unwrap()
        .submit(&PromptRequest {
            prompt,
            client_id: Some("someone-else".into()),
            ..PromptRequest::default()
        })
        .await
        .unwrap();
    let short: String = accepted.prompt_id.chars().take(8).collect();
    let failed =
        format!("-- prompt {short} failed in node 2 \"Deliberate Failure\" (LabRaiseError)");
    running
        .out
        .wait_for("the failure", |o| o.contains(&failed))
        .await;
    let out = running.stop().await;
    sim.shutdown().await;

    let answers = TranscriptReader::open(&path)
        .unwrap()
        .entries()
        .filter(|e| matches!(e, Ok(TranscriptEntry::Http(_))))
        .count();
    assert!(answers >= 2, "the queue and the history are recorded");

    let mut replayed = Vec::new();
    let mut diagnostics = Vec::new();
    let report = replay(
        TranscriptReader::open(&path).unwrap(),
        "run.jsonl",
        LineFormat::Human,
        Pace::Max,
        &mut replayed,
        &mut diagnostics,
    )
    .unwrap();
    let replayed = String::from_utf8(replayed).unwrap();
    assert!(
        report.is_clean(),
        "{}",
        String::from_utf8_lossy(&diagnostics)
    );
    // Every line watch printed about prompts, the replay prints too.
    let live = out.text();
    let prompt_lines: Vec<&str> = live.lines().filter(|l| l.contains("-- prompt ")).collect();
    assert!(prompt_lines.len() >= 2, "{live}");
    for line in prompt_lines {
        assert!(
            replayed.contains(line),
            "{line:?} not replayed:\n{replayed}"
        );
    }
    let summary = report.summary();
    assert!(summary.contains("prompts: 1\n"), "{summary}");
    assert!(
        summary.contains(&format!(
            "{} failed in node 2 \"Deliberate Failure\"",
            accepted.prompt_id
        )),
        "{summary}"
    );
}

#[test]
fn a_paced_replay_of_a_far_future_time_ends_and_names_the_line() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("far.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"t":0.001,"kind":"text","data":{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"me"}}}"#,
            "\n",
            r#"{"t":1e308,"kind":"text","data":{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}}"#,
            "\n",
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfytop"))
        .env(
            "COMFYTOP_STATE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/comfytop-state"),
        )
        .env(
            "XDG_CONFIG_HOME",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/no-config"),
        )
        .args(["replay", path.to_str().unwrap(), "--speed", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It used to wait an hour on that line.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("replay --speed 1 did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("far.jsonl: line 2: \"t\" is 1e308,"),
        "{stderr}"
    );
}

/// ComfyUI forgets a client id when any socket under it closes, so an earlier socket whose
/// close it notices late silences the one open now, whose pongs still come. Here a second
/// socket under watch's id closes: watch's own hears nothing more. A look at the queue finds a
/// prompt running that no status told of; watch tells its end, and opens a socket that hears.
#[tokio::test]
async fn a_socket_silenced_by_a_late_close_under_its_id_is_found_deaf_and_reopened() {
    use comfytop::comfy::api::PromptRequest;
    use comfytop::comfy::http::ComfyClient;
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite;

    let (sim, server) = simulator(Duration::from_millis(20)).await;
    let options = options(server.clone(), LineFormat::Human);
    let client_id = options.connection.client_id.clone();
    let running = RunningWatch::start(options, None);
    let out = &running.out;
    out.wait_for("the connection", |o| o.contains("-- connected to "))
        .await;

    let (mut other, _) = tokio_tungstenite::connect_async(server.websocket(&client_id).as_str())
        .await
        .unwrap();
    other.close(None).await.unwrap();
    while let Some(Ok(frame)) = other.next().await {
        if matches!(frame, tungstenite::Message::Close(_)) {
            break;
        }
    }
    drop(other);

    // A prompt runs for about 2 s (100 steps) from a client with no id, whose events go to
    // every socket that the server still knows.
    let path = format!("{REFERENCE}/workflows/slow_steps_full.json");
    let mut prompt: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    prompt["1"]["inputs"]["steps"] = json!(100);
    let client = ComfyClient::new(server.clone()).unwrap();
    let mut request = PromptRequest {
        prompt,
        client_id: None,
        ..PromptRequest::default()
    };
    let unheard = client.submit(&request).await.unwrap().prompt_id;
    let unheard_short: String = unheard.chars().take(8).collect();
    let started = tokio::time::Instant::now();
    out.wait_for_within("the deaf socket reopened", Duration::from_secs(60), |o| {
        o.contains("stopped sending to this client")
    })
    .await;
    let found_after = started.elapsed();
    out.wait_for_within("the unheard prompt's end", Duration::from_secs(30), |o| {
        o.contains(&format!("prompt {unheard_short} succeeded"))
    })
    .await;
    let text = out.text();
    assert!(
        !text.contains(&format!("progress          prompt {unheard_short}")),
        "the silenced socket heard it:\n{text}"
    );

    // The new socket hears: the next run's progress comes live (a run of its own, not the
    // cache's).
    request.prompt["1"]["inputs"]["steps"] = json!(50);
    let heard = client.submit(&request).await.unwrap().prompt_id;
    let heard_short: String = heard.chars().take(8).collect();
    out.wait_for_within("the next run, live", Duration::from_secs(30), |o| {
        o.contains(&format!("progress          prompt {heard_short}"))
    })
    .await;
    running.stop().await;
    sim.shutdown().await;
    eprintln!(
        "found deaf {:.1} s after the prompt was queued",
        found_after.as_secs_f64()
    );
}

/// An answer that changed nothing is not written: on connecting, the `status` that comes after
/// the first look at the queue and history asks again, and finds the same.
#[tokio::test]
async fn a_recording_keeps_only_the_answers_that_taught_something() {
    use comfytop::comfy::transcript::TranscriptEntry;

    let (sim, server) = simulator(Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idle.jsonl");
    let running = RunningWatch::start(
        options(server, LineFormat::Json),
        Some(Recorder::append(&path).unwrap()),
    );
    running
        .out
        .wait_for("the connection", |o| o.contains("\"connected\""))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.stop().await;
    sim.shutdown().await;

    let requests: Vec<String> = TranscriptReader::open(&path)
        .unwrap()
        .entries()
        .filter_map(|e| match e {
            Ok(TranscriptEntry::Http(answer)) => Some(answer.request),
            _ => None,
        })
        .collect();
    let count = |prefix: &str| requests.iter().filter(|r| r.starts_with(prefix)).count();
    assert_eq!(count("GET /queue"), 1, "{requests:?}");
    assert_eq!(count("GET /history"), 1, "{requests:?}");
}
