//! What the command tests share: a small ComfyUI stand-in on loopback (queue, worker, history,
//! targeted interrupts, WebSocket routing by clientId, the recorded validation answers), a TCP
//! proxy that can cut connections, and helpers to run the real binary.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use comfytop::comfy::api::QueueSnapshot;
use comfytop::comfy::http::ComfyClient;
use comfytop::comfy::server_url::ServerUrl;

pub const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/comfyui-reference");

pub fn workflow_path(name: &str) -> String {
    format!("{REFERENCE}/workflows/{name}")
}

pub fn workflow(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(workflow_path(name)).unwrap()).unwrap()
}

/// Time allowed for anything a test waits on; generous, since machines are noisy.
pub const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Item {
    number: f64,
    id: String,
    prompt: Value,
    extra: Map<String, Value>,
    outputs: Vec<String>,
}

impl Item {
    fn to_json(&self) -> Value {
        json!([self.number, self.id, self.prompt, self.extra, self.outputs])
    }
}

#[derive(Default)]
struct Inner {
    counter: u64,
    pending: Vec<Item>,
    running: Option<Item>,
    /// Set by a targeted interrupt of the running prompt (or a bare one).
    interrupt: Option<String>,
    history: Vec<(String, Value)>,
    sockets: HashMap<String, (u64, mpsc::UnboundedSender<Message>)>,
    next_socket: u64,
    images: u64,
    /// Every `POST /interrupt` body, as received.
    interrupts: Vec<Value>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    work: Arc<Notify>,
    /// How long a Lab node's `delay` of 1 s takes.
    second: Duration,
}

/// A ComfyUI stand-in with a running worker.
pub struct StandIn {
    url: String,
    shared: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl StandIn {
    /// Starts one on an ephemeral loopback port; Lab node delays are scaled by `speed_up`.
    pub async fn start(speed_up: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            inner: Arc::default(),
            work: Arc::default(),
            second: Duration::from_secs_f64(1.0 / speed_up),
        };
        let app = Router::new()
            .route("/prompt", post(post_prompt))
            .route("/queue", get(get_queue).post(post_queue))
            .route("/interrupt", post(post_interrupt))
            .route("/history/{id}", get(get_history_item))
            .route("/view", get(get_view))
            .route("/ws", get(ws_upgrade))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let worker = tokio::spawn(run_worker(shared.clone()));
        Self {
            url: format!("http://{addr}"),
            shared,
            tasks: vec![server, worker],
        }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every `POST /interrupt` body received so far.
    pub fn interrupts(&self) -> Vec<Value> {
        self.shared.inner.lock().unwrap().interrupts.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn status_message(inner: &Inner) -> Message {
    let remaining = inner.pending.len() + usize::from(inner.running.is_some());
    Message::Text(
        json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}}})
            .to_string()
            .into(),
    )
}

fn broadcast_status(inner: &Inner) {
    let message = status_message(inner);
    for (_, tx) in inner.sockets.values() {
        let _ = tx.send(message.clone());
    }
}

fn send_to(shared: &Shared, client_id: Option<&str>, kind: &str, data: Value) {
    let inner = shared.inner.lock().unwrap();
    if let Some(id) = client_id
        && let Some((_, tx)) = inner.sockets.get(id)
    {
        let text = json!({"type": kind, "data": data}).to_string();
        let _ = tx.send(Message::Text(text.into()));
    }
}

/// The recorded answer for a workflow the real server refused, if `prompt` is one of them.
fn recorded_refusal(prompt: &Value) -> Option<(u16, Value)> {
    for entry in std::fs::read_dir(format!("{REFERENCE}/http")).ok()? {
        let path = entry.ok()?.path();
        let name = path.file_name()?.to_str()?.to_string();
        if !name.starts_with("post_prompt_invalid_") && name != "post_prompt_partially_valid.json" {
            continue;
        }
        let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        if recorded["request_body"]["prompt"] == *prompt {
            return Some((
                recorded["status"].as_u64()? as u16,
                recorded["body"].clone(),
            ));
        }
    }
    None
}

async fn post_prompt(State(shared): State<Shared>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad json").into_response();
    };
    let prompt = request["prompt"].clone();
    let recorded = recorded_refusal(&prompt);
    if let Some((400, body)) = &recorded {
        shared.inner.lock().unwrap().counter += 1;
        return (StatusCode::BAD_REQUEST, axum::Json(body.clone())).into_response();
    }
    let node_errors = recorded
        .map(|(_, body)| body["node_errors"].clone())
        .unwrap_or_else(|| json!({}));
    let broken: Vec<String> = node_errors
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|e| {
                    e["dependent_outputs"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let outputs: Vec<String> = prompt
        .as_object()
        .map(|nodes| {
            nodes
                .iter()
                .filter(|(_, n)| is_output(n["class_type"].as_str().unwrap_or_default()))
                .map(|(id, _)| id.clone())
                .filter(|id| !broken.contains(id))
                .collect()
        })
        .unwrap_or_default();
    let id = request["prompt_id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut extra: Map<String, Value> = request["extra_data"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(client_id) = request["client_id"].as_str() {
        extra.insert("client_id".into(), client_id.into());
    }
    let mut inner = shared.inner.lock().unwrap();
    let counter = inner.counter as f64;
    inner.counter += 1;
    let number = if request["front"] == true {
        -counter
    } else {
        counter
    };
    inner.pending.push(Item {
        number,
        id: id.clone(),
        prompt,
        extra,
        outputs,
    });
    broadcast_status(&inner);
    drop(inner);
    shared.work.notify_one();
    axum::Json(json!({"prompt_id": id, "number": number, "node_errors": node_errors}))
        .into_response()
}

fn is_output(class: &str) -> bool {
    matches!(
        class,
        "SaveImage" | "PreviewImage" | "SaveImageWebsocket" | "LabRaiseError"
    )
}

async fn get_queue(State(shared): State<Shared>) -> axum::Json<Value> {
    let inner = shared.inner.lock().unwrap();
    let running: Vec<Value> = inner.running.iter().map(Item::to_json).collect();
    // Heap order on the wire is not run order; reversed insertion order shows that.
    let pending: Vec<Value> = inner.pending.iter().rev().map(Item::to_json).collect();
    axum::Json(json!({"queue_running": running, "queue_pending": pending}))
}

async fn post_queue(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap();
    if request["clear"] == true {
        inner.pending.clear();
    }
    if let Some(ids) = request["delete"].as_array() {
        inner
            .pending
            .retain(|item| !ids.iter().any(|id| id.as_str() == Some(item.id.as_str())));
    }
    broadcast_status(&inner);
    StatusCode::OK
}

async fn post_interrupt(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut inner = shared.inner.lock().unwrap();
    inner.interrupts.push(request.clone());
    let running = inner.running.as_ref().map(|r| r.id.clone());
    match (request["prompt_id"].as_str(), running) {
        (Some(target), Some(running)) if target == running => inner.interrupt = Some(running),
        (None, Some(running)) => inner.interrupt = Some(running),
        _ => {}
    }
    StatusCode::OK
}

async fn get_history_item(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> axum::Json<Value> {
    let inner = shared.inner.lock().unwrap();
    let mut body = Map::new();
    if let Some((_, entry)) = inner.history.iter().find(|(h, _)| *h == id) {
        body.insert(id, entry.clone());
    }
    axum::Json(Value::Object(body))
}

async fn get_view(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let inner = shared.inner.lock().unwrap();
    let filename = query.get("filename").cloned().unwrap_or_default();
    let known = inner.history.iter().any(|(_, entry)| {
        entry["outputs"]
            .to_string()
            .contains(&format!("\"{filename}\""))
    });
    if !known {
        return StatusCode::NOT_FOUND.into_response();
    }
    let png = std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap_or_default();
    ([("content-type", "image/png")], png).into_response()
}

async fn ws_upgrade(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let client_id = query
        .get("clientId")
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    upgrade.on_upgrade(move |socket| serve_socket(shared, client_id, socket))
}

async fn serve_socket(shared: Shared, client_id: String, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let socket_id = {
        let mut inner = shared.inner.lock().unwrap();
        inner.next_socket += 1;
        let socket_id = inner.next_socket;
        let remaining = inner.pending.len() + usize::from(inner.running.is_some());
        let hello = json!({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": client_id}});
        let _ = tx.send(Message::Text(hello.to_string().into()));
        inner
            .sockets
            .insert(client_id.clone(), (socket_id, tx.clone()));
        socket_id
    };
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut first = true;
    while let Some(Ok(message)) = stream.next().await {
        if let Message::Text(text) = &message
            && std::mem::take(&mut first)
            && text.contains("feature_flags")
        {
            let flags =
                json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}});
            let _ = tx.send(Message::Text(flags.to_string().into()));
        }
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
    let mut inner = shared.inner.lock().unwrap();
    if inner
        .sockets
        .get(&client_id)
        .is_some_and(|(id, _)| *id == socket_id)
    {
        inner.sockets.remove(&client_id);
    }
    drop(inner);
    writer.abort();
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or_default()
}

/// Nodes the outputs need, upstream first.
fn execution_order(item: &Item) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    fn visit(prompt: &Value, id: &str, order: &mut Vec<String>) {
        if order.iter().any(|o| o == id) {
            return;
        }
        if let Some(inputs) = prompt[id]["inputs"].as_object() {
            for value in inputs.values() {
                if let Some([Value::String(up), _]) = value.as_array().map(Vec::as_slice) {
                    visit(prompt, up, order);
                }
            }
        }
        order.push(id.to_string());
    }
    for output in &item.outputs {
        visit(&item.prompt, output, &mut order);
    }
    order
}

async fn run_worker(shared: Shared) {
    loop {
        let item = loop {
            let next = {
                let mut inner = shared.inner.lock().unwrap();
                let best = inner
                    .pending
                    .iter()
                    .enumerate()
                    .min_by(|a, b| a.1.number.total_cmp(&b.1.number))
                    .map(|(i, _)| i);
                best.map(|i| {
                    let item = inner.pending.remove(i);
                    inner.running = Some(item.clone());
                    inner.interrupt = None;
                    broadcast_status(&inner);
                    item
                })
            };
            match next {
                Some(item) => break item,
                None => shared.work.notified().await,
            }
        };
        run_prompt(&shared, item).await;
    }
}

enum End {
    Success,
    Error(Value),
    Interrupted(Value),
}

async fn run_prompt(shared: &Shared, item: Item) {
    let owner = item
        .extra
        .get("client_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let owner = owner.as_deref();
    let id = item.id.clone();
    let start = json!({"prompt_id": id, "timestamp": now_ms()});
    send_to(shared, owner, "execution_start", start.clone());
    let cached = json!({"nodes": [], "prompt_id": id, "timestamp": now_ms()});
    send_to(shared, owner, "execution_cached", cached.clone());
    let mut outputs = Map::new();
    let mut end = End::Success;
    'nodes: for node in execution_order(&item) {
        let class = item.prompt[&node]["class_type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let inputs = item.prompt[&node]["inputs"].clone();
        send_to(
            shared,
            owner,
            "executing",
            json!({"node": node, "display_node": node, "prompt_id": id}),
        );
        match class.as_str() {
            "LabSlowSteps" | "LabLongRun" => {
                let steps = inputs["steps"].as_u64().unwrap_or(1);
                let delay = shared
                    .second
                    .mul_f64(inputs["delay"].as_f64().unwrap_or(0.1));
                for step in 1..=steps {
                    tokio::time::sleep(delay).await;
                    if shared.inner.lock().unwrap().interrupt.as_deref() == Some(id.as_str()) {
                        end = End::Interrupted(json!({
                            "prompt_id": id, "node_id": node, "node_type": class,
                            "executed": [], "timestamp": now_ms()
                        }));
                        break 'nodes;
                    }
                    send_to(
                        shared,
                        owner,
                        "progress",
                        json!({"value": step, "max": steps, "prompt_id": id, "node": node}),
                    );
                }
            }
            "LabRaiseError" => {
                end = End::Error(json!({
                    "prompt_id": id, "node_id": node, "node_type": class, "executed": [],
                    "exception_message": inputs["message"].as_str().unwrap_or("error"),
                    "exception_type": "RuntimeError",
                    "traceback": ["Traceback (most recent call last):\n", "RuntimeError\n"],
                    "current_inputs": {}, "current_outputs": [], "timestamp": now_ms()
                }));
                break 'nodes;
            }
            "SaveImage" | "PreviewImage" => {
                let folder = if class == "SaveImage" {
                    "output"
                } else {
                    "temp"
                };
                let n = {
                    let mut inner = shared.inner.lock().unwrap();
                    inner.images += 1;
                    inner.images
                };
                let output = json!({"images": [{"filename": format!("ComfyUI_{n:05}_.png"), "subfolder": "", "type": folder}]});
                outputs.insert(node.clone(), output.clone());
                send_to(
                    shared,
                    owner,
                    "executed",
                    json!({"node": node, "display_node": node, "output": output, "prompt_id": id}),
                );
            }
            _ => {}
        }
    }
    let (kind, data, status_str) = match end {
        End::Success => (
            "execution_success",
            json!({"prompt_id": id, "timestamp": now_ms()}),
            "success",
        ),
        End::Error(data) => ("execution_error", data, "error"),
        End::Interrupted(data) => ("execution_interrupted", data, "error"),
    };
    send_to(shared, owner, kind, data.clone());
    let entry = json!({
        "prompt": item.to_json(),
        "outputs": outputs,
        "status": {"status_str": status_str, "completed": status_str == "success",
                   "messages": [["execution_start", start], ["execution_cached", cached], [kind, data]]},
        "meta": {}
    });
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.history.push((id.clone(), entry));
        inner.running = None;
        broadcast_status(&inner);
    }
    send_to(
        shared,
        owner,
        "executing",
        json!({"node": null, "prompt_id": id}),
    );
}

/// A loopback TCP proxy in front of a server: `cut` drops every open connection, `block`
/// refuses new ones until `unblock`.
pub struct CuttingProxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    blocked: bool,
    connections: Vec<JoinHandle<()>>,
}

impl CuttingProxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = accept_state.lock().unwrap();
                if state.blocked {
                    continue;
                }
                let upstream = upstream.clone();
                state.connections.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { url, state, task }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Drops every connection and refuses new ones.
    pub fn cut_and_block(&self) {
        let mut state = self.state.lock().unwrap();
        state.blocked = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    pub fn unblock(&self) {
        self.state.lock().unwrap().blocked = false;
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.state.lock().unwrap().connections.drain(..) {
            connection.abort();
        }
    }
}

pub fn client(url: &str) -> ComfyClient {
    ComfyClient::new(ServerUrl::parse(url).unwrap()).unwrap()
}

/// Polls `check` until it gives a value; panics after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn queue(client: &ComfyClient) -> QueueSnapshot {
    client.queue().await.unwrap()
}

/// Waits until `prompt_id` runs.
pub async fn until_running(client: &ComfyClient, prompt_id: &str) {
    eventually(&format!("{prompt_id} to run"), || async {
        let q = client.queue().await.ok()?;
        q.queue_running
            .iter()
            .any(|i| i.prompt_id == prompt_id)
            .then_some(())
    })
    .await
}

/// Waits for the history entry of `prompt_id`; returns its `status_str` and the entry.
pub async fn until_finished(
    client: &ComfyClient,
    prompt_id: &str,
) -> comfytop::comfy::api::HistoryEntry {
    eventually(&format!("{prompt_id} to finish"), || async {
        client.history_item(prompt_id).await.ok().flatten()
    })
    .await
}

/// The binary, with no server in the environment.
pub fn comfytop(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comfytop"));
    command
        .args(args)
        .env_remove("COMFYUI_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary to its end without blocking the runtime the server runs on.
pub async fn run(args: &[&str]) -> Output {
    let mut command = comfytop(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
