//! Fidelity of the simulated server against traffic recorded from a real ComfyUI.
//!
//! For every scenario in the shared reference (`transcripts/*.meta.json`), a fresh simulator
//! gets the recorded client actions (connects with the recorded client ids, feature flags, HTTP
//! calls with their bodies, interrupts, deletes, closes) at a tenth of the recorded pace, with a
//! plain WebSocket + HTTP client, and what each socket receives is compared with the recorded
//! transcript, ignoring ids, timestamps and repeated `status` messages. Every message type that
//! both sides received must also carry the same keys, and the HTTP answers along the way (status
//! codes, validation errors, queue listings) must match the recorded ones.
//!
//! Actions wait for their scaled time and also until every open socket has received as many
//! frames (other than `status`) as it had at that moment of the recording, so a slow machine
//! shifts the schedule instead of changing the story.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use comfy_client::api::{FullHistoryEntry, History};
use comfy_sim::{SimConfig, SimServer};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const REFERENCE: &str = comfy_client::FIXTURES;

/// Test seconds per recorded second.
const SCALE: f64 = 0.1;
/// The simulator's step at that scale (nominally 100 ms).
const STEP: Duration = Duration::from_millis(10);
/// How long one action may wait for the frames that preceded it in the recording.
const GATE_TIMEOUT: Duration = Duration::from_secs(5);

fn reference(path: &str) -> PathBuf {
    PathBuf::from(REFERENCE).join(path)
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A frame reduced to what is compared: its type, with `executing` split into its three forms
/// and binary frames by event type.
fn text_label(message: &Value) -> String {
    let kind = message["type"].as_str().unwrap_or("?");
    if kind == "executing" {
        let data = &message["data"];
        return match (data["node"].is_null(), data.get("prompt_id").is_some()) {
            (true, _) => "executing(null)".into(),
            (false, true) => "executing(node)".into(),
            (false, false) => "executing(reconnect)".into(),
        };
    }
    kind.to_string()
}

/// The keys a frame carries, to compare message shapes: the `data` keys (and those of the
/// nested records of `progress_state`, `logs` and `executed`), a binary frame's image format or
/// metadata keys.
type Shapes = BTreeMap<String, BTreeSet<String>>;

fn keys(v: &Value) -> String {
    v.as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn text_shape(message: &Value) -> String {
    let data = &message["data"];
    let nested = match message["type"].as_str() {
        Some("progress_state") => data["nodes"]
            .as_object()
            .and_then(|n| n.values().next())
            .map(keys),
        Some("logs") => Some(keys(&data["entries"][0])),
        Some("executed") => Some(keys(&data["output"]["images"][0])),
        _ => None,
    };
    format!("{} {}", keys(data), nested.unwrap_or_default())
}

fn binary_shape(frame: &[u8]) -> String {
    let word = |at: usize| {
        frame
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match word(0) {
        Some(1) => format!("format {}", word(4).unwrap_or(0)),
        Some(4) => {
            let len = word(4).unwrap_or(0) as usize;
            let meta: Value = frame
                .get(8..8 + len)
                .and_then(|m| serde_json::from_slice(m).ok())
                .unwrap_or(Value::Null);
            format!("{} {}", keys(&meta), meta["image_type"])
        }
        _ => String::new(),
    }
}

fn binary_label(frame: &[u8]) -> String {
    match frame.get(..4) {
        Some(b) => format!("binary:{}", u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => "binary:short".into(),
    }
}

struct RecordedFrame {
    /// Seconds on the scenario clock.
    at: f64,
    label: String,
    shape: String,
}

struct Scenario {
    meta: Value,
    /// Per transcript file.
    frames: BTreeMap<String, Vec<RecordedFrame>>,
}

fn load(name: &str) -> Scenario {
    let meta = read_json(reference(&format!("transcripts/{name}.meta.json")));
    let mut frames = BTreeMap::new();
    for conn in meta["connections"].as_array().expect("connections") {
        let file = conn["file"].as_str().expect("file").to_string();
        let connected_at = conn["connected_at"].as_f64().unwrap_or(0.0);
        let text =
            std::fs::read_to_string(reference(&format!("transcripts/{file}"))).expect("transcript");
        let list = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("transcript line");
                let (label, shape) = match v["kind"].as_str() {
                    Some("text") => (text_label(&v["data"]), text_shape(&v["data"])),
                    _ => {
                        let frame = BASE64
                            .decode(v["b64"].as_str().unwrap_or_default())
                            .expect("base64 frame");
                        (binary_label(&frame), binary_shape(&frame))
                    }
                };
                RecordedFrame {
                    at: connected_at + v["t"].as_f64().unwrap_or(0.0),
                    label,
                    shape,
                }
            })
            .collect();
        frames.insert(file, list);
    }
    Scenario { meta, frames }
}

fn scenario_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(reference("transcripts"))
        .expect("transcripts folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".meta.json").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// The recorded state of the output cache matters (a node cached in the recording must be
/// cached here too): when the real server's history shows this scenario's prompt found cached
/// nodes, the simulator first runs the prompt the real server completed just before it.
fn warm_up_body(scenario: &Scenario) -> Option<Value> {
    // Parsed straight from the text: the typed history keeps the file's order (completion
    // order), which a JSON value would sort away.
    #[derive(serde::Deserialize)]
    struct HistoryFile {
        // Whole graphs: the warm-up queues the previous prompt again as it was.
        body: History<FullHistoryEntry>,
    }
    let text = std::fs::read_to_string(reference("http/get_history.json")).expect("history file");
    let history = serde_json::from_str::<HistoryFile>(&text)
        .expect("history body")
        .body;
    let run_id = scenario.meta["prompt_ids"]["run"].as_str()?;
    let index = history.0.iter().position(|(id, _)| id == run_id)?;
    let found_cached = history.0[index]
        .1
        .status
        .as_ref()?
        .messages
        .iter()
        .find(|(kind, _)| kind == "execution_cached")
        .and_then(|(_, data)| data["nodes"].as_array())
        .is_some_and(|nodes| !nodes.is_empty());
    if !found_cached {
        return None;
    }
    let (_, previous) = &history.0[index.checked_sub(1)?];
    Some(serde_json::json!({ "prompt": previous.prompt.prompt }))
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

struct Connection {
    file: String,
    labels: Arc<Mutex<Vec<String>>>,
    shapes: Arc<Mutex<Shapes>>,
    open: Arc<AtomicBool>,
    sink: Sink,
}

async fn connect(url: &str, file: &str) -> Connection {
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect {url}: {e}"));
    let (sink, mut stream) = socket.split();
    let labels = Arc::new(Mutex::new(Vec::new()));
    let shapes = Arc::new(Mutex::new(Shapes::new()));
    let open = Arc::new(AtomicBool::new(true));
    let (l, sh, o) = (labels.clone(), shapes.clone(), open.clone());
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if !o.load(Ordering::SeqCst) {
                break;
            }
            let (label, shape) = match message {
                Message::Text(text) => {
                    let v: Value = serde_json::from_str(text.as_str()).expect("server sent JSON");
                    (text_label(&v), text_shape(&v))
                }
                Message::Binary(bytes) => (binary_label(&bytes), binary_shape(&bytes)),
                _ => continue,
            };
            sh.lock()
                .unwrap()
                .entry(label.clone())
                .or_default()
                .insert(shape);
            l.lock().unwrap().push(label);
        }
    });
    // The server registers a socket after the handshake and then sends `status`: once that
    // arrives, messages for this client id reach this socket.
    let registered = Instant::now();
    while labels.lock().unwrap().is_empty() && registered.elapsed() < GATE_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Connection {
        file: file.to_string(),
        labels,
        shapes,
        open,
        sink,
    }
}

fn substitute(text: &str, ids: &HashMap<String, String>) -> String {
    ids.iter().fold(text.to_string(), |t, (recorded, ours)| {
        t.replace(recorded, ours)
    })
}

/// What a replay produced: labels per transcript file, and HTTP mismatches found on the way.
struct Replay {
    labels: BTreeMap<String, Vec<String>>,
    shapes: BTreeMap<String, Shapes>,
    http_problems: Vec<String>,
}

async fn replay(scenario: &Scenario) -> Replay {
    let sim = SimServer::start(SimConfig {
        step: STEP,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let base = sim.url();
    let ws_base = base.replacen("http://", "ws://", 1);
    let http = reqwest::Client::new();

    let warm = warm_up_body(scenario);
    if let Some(body) = warm {
        let r = http
            .post(format!("{base}/prompt"))
            .json(&body)
            .send()
            .await
            .expect("warm-up");
        assert_eq!(r.status(), 200, "warm-up prompt accepted");
        wait_idle(&http, &base).await;
    }

    let mut ids: HashMap<String, String> = HashMap::new();
    let mut connections: Vec<Connection> = Vec::new();
    let mut http_problems = Vec::new();
    let start = Instant::now();
    for action in scenario.meta["actions"].as_array().expect("actions") {
        let t = action["t"].as_f64().unwrap_or(0.0);
        let due = start + Duration::from_secs_f64(t * SCALE);
        tokio::time::sleep_until(due.into()).await;
        // Wait until each open socket has what it had received by then in the recording
        // (as many frames of each type, `status` aside).
        for conn in connections.iter().filter(|c| c.open.load(Ordering::SeqCst)) {
            let mut expected: BTreeMap<String, usize> = BTreeMap::new();
            for f in scenario.frames[&conn.file].iter().filter(|f| f.at < t) {
                *expected.entry(f.label.clone()).or_default() += 1;
            }
            expected.remove("status");
            let gate = Instant::now();
            while gate.elapsed() < GATE_TIMEOUT {
                let received = counts(&conn.labels.lock().unwrap());
                if expected
                    .iter()
                    .all(|(l, n)| received.get(l).copied().unwrap_or(0) >= *n)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let file = action["file"].as_str().unwrap_or_default();
        match action["action"].as_str().unwrap_or_default() {
            "ws_connect" => {
                let path = action["path"].as_str().expect("path");
                connections.push(connect(&format!("{ws_base}{path}"), file).await);
            }
            "ws_send" => {
                let conn = connections
                    .iter_mut()
                    .find(|c| c.file == file)
                    .expect("socket");
                let text = action["data"].to_string();
                conn.sink
                    .send(Message::Text(text.into()))
                    .await
                    .expect("ws send");
            }
            "ws_close" => {
                let conn = connections
                    .iter_mut()
                    .find(|c| c.file == file)
                    .expect("socket");
                conn.open.store(false, Ordering::SeqCst);
                let _ = conn.sink.send(Message::Close(None)).await;
            }
            "http" => {
                let method = action["method"].as_str().unwrap_or("GET");
                let path = substitute(action["path"].as_str().unwrap_or("/"), &ids);
                let url = format!("{base}{path}");
                let request = match method {
                    "POST" => http.post(&url),
                    "PATCH" => http.patch(&url),
                    _ => http.get(&url),
                };
                let request = match action.get("body") {
                    Some(body) => request
                        .header("Content-Type", "application/json")
                        .body(substitute(&body.to_string(), &ids)),
                    None => request,
                };
                let response = request.send().await.expect("http request");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let ours: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let recorded = &action["response"];
                if let Some(expected) = action["status"].as_u64()
                    && u64::from(status) != expected
                {
                    http_problems.push(format!(
                        "{method} {path}: status {status}, recorded {expected}"
                    ));
                }
                if method == "POST" && path == "/prompt" {
                    if let (Some(r), Some(o)) =
                        (recorded["prompt_id"].as_str(), ours["prompt_id"].as_str())
                    {
                        ids.insert(r.to_string(), o.to_string());
                    }
                    compare_errors(recorded, &ours, &mut http_problems);
                }
                if method == "GET" && path == "/queue" {
                    compare_queue(recorded, &ours, &ids, &mut http_problems);
                }
            }
            other => panic!("unknown action {other}"),
        }
    }
    let labels = connections
        .iter()
        .map(|c| (c.file.clone(), c.labels.lock().unwrap().clone()))
        .collect();
    let shapes = connections
        .iter()
        .map(|c| (c.file.clone(), c.shapes.lock().unwrap().clone()))
        .collect();
    sim.shutdown().await;
    Replay {
        labels,
        shapes,
        http_problems,
    }
}

async fn wait_idle(http: &reqwest::Client, base: &str) {
    let started = Instant::now();
    loop {
        let info: Value = http
            .get(format!("{base}/prompt"))
            .send()
            .await
            .expect("GET /prompt")
            .json()
            .await
            .expect("JSON");
        if info["exec_info"]["queue_remaining"] == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "warm-up never finished"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Error types of a 400 body, per node, as a comparable value.
fn error_types(body: &Value) -> (Value, BTreeMap<String, BTreeSet<String>>) {
    let nodes = body["node_errors"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(id, e)| {
                    let kinds = e["errors"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x["type"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    (id.clone(), kinds)
                })
                .collect()
        })
        .unwrap_or_default();
    (body["error"]["type"].clone(), nodes)
}

fn compare_errors(recorded: &Value, ours: &Value, problems: &mut Vec<String>) {
    let (r, o) = (error_types(recorded), error_types(ours));
    if r != o {
        problems.push(format!("POST /prompt errors {o:?}, recorded {r:?}"));
    }
}

fn compare_queue(
    recorded: &Value,
    ours: &Value,
    ids: &HashMap<String, String>,
    problems: &mut Vec<String>,
) {
    let ids_of = |v: &Value, key: &str, map: bool| -> Vec<String> {
        v[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i[1].as_str())
                    .map(|id| {
                        if map {
                            ids.get(id).cloned().unwrap_or_default()
                        } else {
                            id.to_string()
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    for key in ["queue_running", "queue_pending"] {
        let (r, o) = (ids_of(recorded, key, true), ids_of(ours, key, false));
        if r != o {
            problems.push(format!("GET /queue {key}: {o:?}, recorded (mapped) {r:?}"));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    /// The same message types with the same counts (and the same order).
    Counts,
    /// The same set of message types (timing decides how many).
    Types,
}

fn counts(labels: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in labels.iter().filter(|l| *l != "status") {
        *out.entry(l.clone()).or_default() += 1;
    }
    out
}

async fn check(name: &str, check: Check) {
    let scenario = load(name);
    let replay = replay(&scenario).await;
    let mut problems = replay.http_problems;
    for (file, recorded) in &scenario.frames {
        let recorded: Vec<String> = recorded.iter().map(|f| f.label.clone()).collect();
        let ours = replay.labels.get(file).cloned().unwrap_or_default();
        if recorded.first() != ours.first() || recorded.last() != ours.last() {
            problems.push(format!(
                "{file}: first/last {:?}/{:?}, recorded {:?}/{:?}",
                ours.first(),
                ours.last(),
                recorded.first(),
                recorded.last()
            ));
        }
        // Every message type both sides have carries the same keys.
        let mut recorded_shapes = Shapes::new();
        for f in &scenario.frames[file] {
            recorded_shapes
                .entry(f.label.clone())
                .or_default()
                .insert(f.shape.clone());
        }
        let our_shapes = replay.shapes.get(file).cloned().unwrap_or_default();
        for (label, shapes) in &our_shapes {
            if let Some(expected) = recorded_shapes.get(label)
                && expected != shapes
            {
                problems.push(format!(
                    "{file}: {label} shapes {shapes:?}, recorded {expected:?}"
                ));
            }
        }
        match check {
            Check::Counts => {
                if counts(&recorded) != counts(&ours) {
                    problems.push(format!(
                        "{file}: counts {:?}, recorded {:?}",
                        counts(&ours),
                        counts(&recorded)
                    ));
                }
                let order = |l: &[String]| {
                    l.iter()
                        .filter(|x| *x != "status")
                        .cloned()
                        .collect::<Vec<_>>()
                };
                if order(&recorded) != order(&ours) {
                    problems.push(format!(
                        "{file}: order\n  ours     {:?}\n  recorded {:?}",
                        order(&ours),
                        order(&recorded)
                    ));
                }
            }
            Check::Types => {
                let set = |l: &[String]| l.iter().cloned().collect::<BTreeSet<_>>();
                if set(&recorded) != set(&ours) {
                    problems.push(format!(
                        "{file}: types {:?}, recorded {:?}",
                        set(&ours),
                        set(&recorded)
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
}

/// Which comparison each recorded scenario gets.
const SCENARIOS: &[(&str, Check)] = &[
    ("a2_connect_without_client_id", Check::Counts),
    ("a_connect_with_client_id", Check::Counts),
    ("b_feature_flags_metadata_previews", Check::Counts),
    ("c_full_run_legacy_previews", Check::Counts),
    ("d_same_prompt_cached", Check::Counts),
    ("e_execution_error", Check::Counts),
    ("f_interrupt", Check::Types),
    ("g_queue_and_delete", Check::Types),
    ("h2_duplicate_client_id_overlap", Check::Types),
    ("h_reconnect_same_client_id", Check::Types),
    ("i2_prompt_without_client_id_watched", Check::Counts),
    ("i_second_client_watching", Check::Counts),
    ("j_invalid_prompts", Check::Counts),
    ("k_logs_subscription", Check::Counts),
    ("m_requeue_from_history", Check::Counts),
];

#[test]
fn every_recorded_scenario_is_replayed() {
    let listed: Vec<String> = SCENARIOS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(listed, scenario_names());
}

macro_rules! scenario_tests {
    ($($test:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let name = stringify!($test);
            let (name, kind) = SCENARIOS
                .iter()
                .find(|(n, _)| *n == name)
                .copied()
                .unwrap_or_else(|| panic!("no scenario for {name}"));
            check(name, kind).await;
        }
    )*};
}

scenario_tests!(
    a2_connect_without_client_id,
    a_connect_with_client_id,
    b_feature_flags_metadata_previews,
    c_full_run_legacy_previews,
    d_same_prompt_cached,
    e_execution_error,
    f_interrupt,
    g_queue_and_delete,
    h2_duplicate_client_id_overlap,
    h_reconnect_same_client_id,
    i2_prompt_without_client_id_watched,
    i_second_client_watching,
    j_invalid_prompts,
    k_logs_subscription,
    m_requeue_from_history,
);
