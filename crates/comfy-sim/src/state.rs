//! The simulator's shared state and the operations HTTP, WebSocket, worker and demo share:
//! queueing a prompt (validation included), queue changes with their `status` broadcasts,
//! interrupts, files, and the simulated GPU.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, watch};

use super::hub::{Hub, Target};
use super::logbook::LogBook;
use super::ordered::Ordered;
use super::pyfmt;
use super::queue::{Deleted, KeyOrder, Pending, PromptQueue, SharedGraph, SimHistoryEntry};
use super::validate::{Validation, error_repr, validate_prompt};
use comfy_client::api::{PromptRejected, QueueItem, ValidationError};
use comfy_client::protocol::{ExecInfo, ServerMessage, Status, StatusBody};

/// `extra_data` keys ComfyUI never lists back.
const SENSITIVE_KEYS: [&str; 2] = ["auth_token_comfy_org", "api_key_comfy_org"];

/// The nominal length of one sampler step, against which `SimConfig::step` scales all work.
pub(crate) const NOMINAL_STEP: Duration = Duration::from_millis(100);

/// How long simulated work takes on the wall clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub step: Duration,
}

impl Pace {
    /// A duration given in nominal seconds (a node's `delay`, a model load), scaled.
    pub(crate) fn seconds(&self, nominal: f64) -> Duration {
        let scale = self.step.as_secs_f64() / NOMINAL_STEP.as_secs_f64();
        let secs = nominal * scale;
        if secs.is_finite() && secs > 0.0 {
            Duration::from_secs_f64(secs.min(86_400.0))
        } else {
            Duration::ZERO
        }
    }
}

/// What `POST /prompt` answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Submitted {
    /// 200 with `{prompt_id, number, node_errors}`.
    Accepted(Value),
    /// 400 with `{error, node_errors}`.
    Rejected(PromptRejected),
    /// Python would have raised outside any handler: a plain-text 500.
    Crashed,
}

/// The running prompt as the WebSocket side needs it for the reconnect `executing` resend.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExecView {
    /// ComfyUI's `server.client_id`: the client of the prompt running (or that ran last).
    pub client_id: Option<String>,
    /// The node that last sent `executing`, while a prompt runs.
    pub last_node: Option<String>,
}

/// Interrupt requests: a counter; a prompt is interrupted once it moved past the value it saw
/// when it started (so an interrupt while idle is forgotten, as in ComfyUI).
pub(crate) struct Interrupts {
    tx: watch::Sender<u64>,
}

impl Interrupts {
    fn new() -> Self {
        Self {
            tx: watch::channel(0).0,
        }
    }

    pub(crate) fn raise(&self) {
        self.tx.send_modify(|n| *n += 1);
    }

    /// Starts watching for interrupts from now on.
    pub(crate) fn watch(&self) -> InterruptWatch {
        let rx = self.tx.subscribe();
        let baseline = *rx.borrow();
        InterruptWatch { rx, baseline }
    }
}

pub(crate) struct InterruptWatch {
    rx: watch::Receiver<u64>,
    baseline: u64,
}

impl InterruptWatch {
    pub(crate) fn is_set(&self) -> bool {
        *self.rx.borrow() > self.baseline
    }

    /// Resolves once an interrupt is requested.
    pub(crate) async fn requested(&mut self) {
        while !self.is_set() {
            if self.rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A file the server can serve through `/view`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    pub folder: String,
    pub subfolder: String,
    pub filename: String,
}

/// Produced files, in memory; the oldest go once the total passes a budget (they then 404, as
/// files deleted from disk would).
#[derive(Default)]
pub(crate) struct FileStore {
    files: HashMap<FileKey, Bytes>,
    order: VecDeque<FileKey>,
    bytes: usize,
    counters: HashMap<(String, String, String), u32>,
    /// `PreviewImage`'s random file prefix, one per node id.
    preview_prefixes: HashMap<String, String>,
}

const FILE_BUDGET: usize = 96 << 20;

impl FileStore {
    /// The next `_00001_` counter for files named `prefix` in a folder.
    pub(crate) fn next_counter(&mut self, folder: &str, subfolder: &str, prefix: &str) -> u32 {
        let counter = self
            .counters
            .entry((folder.into(), subfolder.into(), prefix.into()))
            .or_insert(0);
        *counter += 1;
        *counter
    }

    pub(crate) fn put(&mut self, key: FileKey, data: Bytes) {
        self.bytes += data.len();
        if let Some(old) = self.files.insert(key.clone(), data) {
            self.bytes -= old.len();
            self.order.retain(|k| *k != key);
        }
        self.order.push_back(key);
        while self.bytes > FILE_BUDGET && self.order.len() > 1 {
            if let Some(old) = self.order.pop_front()
                && let Some(data) = self.files.remove(&old)
            {
                self.bytes -= data.len();
            }
        }
    }

    pub(crate) fn get(&self, key: &FileKey) -> Option<Bytes> {
        self.files.get(key).cloned()
    }

    pub(crate) fn preview_prefix(&mut self, node_id: &str) -> String {
        self.preview_prefixes
            .entry(node_id.to_string())
            .or_insert_with(|| {
                let letters: String = (0..5)
                    .map(|_| char::from(b'a' + rand::random_range(0..26u8)))
                    .collect();
                format!("ComfyUI_temp_{letters}")
            })
            .clone()
    }
}

/// The simulated GPU: models loaded, memory in use while sampling.
pub(crate) struct Machine {
    pub vram_total: u64,
    pub ram_total: u64,
    /// Checkpoints in VRAM: name and size.
    pub loaded: Vec<(String, u64)>,
    /// Working memory of the sampler or decoder running now.
    pub active: u64,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            vram_total: 24 << 30,
            ram_total: 64 << 30,
            loaded: Vec::new(),
            active: 0,
        }
    }
}

impl Machine {
    /// Memory the driver and CUDA context hold even when idle.
    const BASE: u64 = 420 << 20;

    pub(crate) fn used(&self) -> u64 {
        Self::BASE + self.loaded.iter().map(|(_, b)| b).sum::<u64>() + self.active
    }

    pub(crate) fn free(&self) -> u64 {
        self.vram_total.saturating_sub(self.used())
    }
}

pub(crate) struct Sim {
    pub pace: Pace,
    pub hub: Hub,
    pub logs: LogBook,
    pub interrupts: Interrupts,
    pub work_ready: Notify,
    pub started: Instant,
    pub listen: std::net::SocketAddr,
    /// Set once when the simulator shuts down; sockets close on it.
    pub shutdown: watch::Sender<bool>,
    /// Bumped to cut every WebSocket, as a network drop would.
    pub disconnect: watch::Sender<u64>,
    /// False while a flaky server's port is closed (an outage): the demo's clients, which
    /// stand for browsers and scripts reaching it over the network, wait until it is back.
    pub listening: AtomicBool,
    queue: Mutex<PromptQueue>,
    exec: Mutex<ExecView>,
    files: Mutex<FileStore>,
    machine: Mutex<Machine>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a task panicked while holding it; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub(crate) fn new(step: Duration, listen: std::net::SocketAddr, bridge: bool) -> Self {
        Self {
            pace: Pace { step },
            hub: if bridge {
                Hub::with_bridge()
            } else {
                Hub::default()
            },
            logs: LogBook::default(),
            interrupts: Interrupts::new(),
            work_ready: Notify::new(),
            started: Instant::now(),
            listen,
            shutdown: watch::channel(false).0,
            disconnect: watch::channel(0).0,
            listening: AtomicBool::new(true),
            queue: Mutex::new(PromptQueue::default()),
            exec: Mutex::new(ExecView::default()),
            files: Mutex::new(FileStore::default()),
            machine: Mutex::new(Machine::default()),
        }
    }

    pub(crate) fn log(&self, line: &str) {
        self.logs.log(&self.hub, line);
    }

    pub(crate) fn queue(&self) -> MutexGuard<'_, PromptQueue> {
        lock(&self.queue)
    }

    pub(crate) fn files(&self) -> MutexGuard<'_, FileStore> {
        lock(&self.files)
    }

    pub(crate) fn machine(&self) -> MutexGuard<'_, Machine> {
        lock(&self.machine)
    }

    pub(crate) fn exec_view(&self) -> ExecView {
        lock(&self.exec).clone()
    }

    pub(crate) fn set_exec_view(&self, view: ExecView) {
        *lock(&self.exec) = view;
    }

    pub(crate) fn set_last_node(&self, node: Option<String>) {
        lock(&self.exec).last_node = node;
    }

    pub(crate) fn status_message(remaining: u64, sid: Option<String>) -> ServerMessage {
        ServerMessage::Status(Status {
            status: StatusBody {
                exec_info: ExecInfo {
                    queue_remaining: remaining,
                },
            },
            sid,
        })
    }

    /// `status` to every socket; called with the queue locked so broadcasts keep queue order.
    fn broadcast_status(&self, queue: &PromptQueue) {
        self.hub
            .send_message(Target::All, &Self::status_message(queue.remaining(), None));
    }

    pub(crate) fn queue_remaining(&self) -> u64 {
        self.queue().remaining()
    }

    /// `POST /prompt` with a parsed body: numbering, validation, queueing, as `server.py` does.
    pub(crate) fn submit(&self, body: &Ordered) -> Submitted {
        let Ordered::Object(_) = body else {
            // A list or a string has no "prompt" key; anything else makes Python raise.
            return match body {
                Ordered::Array(_) | Ordered::Leaf(Value::String(_)) => {
                    self.queue().take_number(false);
                    Submitted::Rejected(no_prompt())
                }
                _ => Submitted::Crashed,
            };
        };
        let number = match body.get("number") {
            Some(n) => match py_float(&n.to_value()) {
                Some(n) => n,
                None => return Submitted::Crashed,
            },
            None => {
                let front = body
                    .get("front")
                    .is_some_and(|f| pyfmt::truthy(&f.to_value()));
                self.queue().take_number(front)
            }
        };
        let Some(prompt) = body.get("prompt") else {
            return Submitted::Rejected(no_prompt());
        };
        let prompt_id = match body.get("prompt_id") {
            Some(id) => pyfmt::str(&id.to_value()),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let partial: Option<Vec<String>> =
            match body.get("partial_execution_targets").map(Ordered::to_value) {
                None | Some(Value::Null) => None,
                Some(Value::Array(ids)) => Some(ids.iter().map(pyfmt::str).collect()),
                Some(_) => return Submitted::Crashed,
            };
        let Ordered::Object(nodes) = prompt else {
            return Submitted::Crashed;
        };
        let order = KeyOrder {
            nodes: prompt.keys(),
            inputs: nodes
                .iter()
                .map(|(id, node)| {
                    let inputs = node.get("inputs").map(Ordered::keys).unwrap_or_default();
                    (id.clone(), inputs)
                })
                .collect(),
        };
        let Value::Object(mut workflow) = prompt.to_value() else {
            return Submitted::Crashed;
        };

        let mut log = Vec::new();
        let validation = validate_prompt(&mut workflow, &order.nodes, partial.as_deref(), &mut log);
        for line in &log {
            self.log(line);
        }
        let mut extra_data = match body.get("extra_data").map(Ordered::to_value) {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Submitted::Crashed,
        };
        if let Some(client_id) = body.get("client_id") {
            extra_data.insert("client_id".into(), client_id.to_value());
        }
        match validation {
            Validation::Rejected(rejected) => {
                self.log(&format!("invalid prompt: {}", error_repr(&rejected.error)));
                Submitted::Rejected(rejected)
            }
            Validation::Accepted {
                outputs,
                node_errors,
            } => {
                // No node here needs the secrets, so they are dropped rather than kept aside.
                for key in SENSITIVE_KEYS {
                    extra_data.remove(key);
                }
                let pending = Pending {
                    item: QueueItem {
                        number,
                        prompt_id: prompt_id.clone(),
                        prompt: SharedGraph(std::sync::Arc::new(Value::Object(workflow))),
                        extra_data,
                        outputs_to_execute: outputs,
                    },
                    order,
                };
                {
                    let mut queue = self.queue();
                    queue.push(pending);
                    self.broadcast_status(&queue);
                }
                self.work_ready.notify_one();
                let number = if number.fract() == 0.0 && number.abs() < 9.0e15 {
                    Value::from(number as i64)
                } else {
                    Value::from(number)
                };
                Submitted::Accepted(json!({
                    "prompt_id": prompt_id,
                    "number": number,
                    "node_errors": node_errors,
                }))
            }
        }
    }

    /// The worker takes the next prompt, with the second `status` ComfyUI sends then.
    pub(crate) fn start_next(&self) -> Option<std::sync::Arc<Pending>> {
        let mut queue = self.queue();
        let next = queue.start_next()?;
        self.broadcast_status(&queue);
        Some(next)
    }

    /// The running prompt is over: into the history, then `status`.
    pub(crate) fn finish(&self, entry: SimHistoryEntry) {
        let mut queue = self.queue();
        queue.finish(entry);
        self.broadcast_status(&queue);
    }

    pub(crate) fn delete_pending(&self, prompt_id: &str) {
        let mut queue = self.queue();
        match queue.delete(prompt_id) {
            Deleted::Nothing => {}
            Deleted::One => self.broadcast_status(&queue),
            Deleted::Last => {
                self.broadcast_status(&queue);
                self.broadcast_status(&queue);
            }
        }
    }

    pub(crate) fn clear_pending(&self) {
        let mut queue = self.queue();
        queue.wipe();
        self.broadcast_status(&queue);
    }

    /// `POST /interrupt`: with a prompt id only if that prompt runs, else whatever runs.
    pub(crate) fn interrupt(&self, prompt_id: Option<&str>) {
        match prompt_id {
            Some(id) => {
                if self.queue().is_running(id) {
                    self.log(&format!("Interrupting prompt {id}"));
                    self.interrupts.raise();
                } else {
                    self.log(&format!(
                        "Prompt {id} is not currently running, skipping interrupt"
                    ));
                }
            }
            None => {
                self.log("Global interrupt (no prompt_id specified)");
                self.interrupts.raise();
            }
        }
    }
}

fn no_prompt() -> PromptRejected {
    PromptRejected {
        error: ValidationError {
            kind: "no_prompt".into(),
            message: "No prompt provided".into(),
            details: "No prompt provided".into(),
            extra_info: json!({}),
        },
        node_errors: Default::default(),
    }
}

/// Python's `float()` of a JSON value, `None` where it raises.
fn py_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> Sim {
        Sim::new(
            Duration::from_millis(1),
            "127.0.0.1:0".parse().unwrap(),
            false,
        )
    }

    fn submit(sim: &Sim, body: Value) -> Submitted {
        sim.submit(&Ordered::from_value(&body))
    }

    #[test]
    fn numbers_count_every_post_and_front_is_negative() {
        let sim = sim();
        let ok = json!({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                                   "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}});
        let Submitted::Accepted(first) = submit(&sim, ok.clone()) else {
            panic!()
        };
        assert_eq!(first["number"], json!(0));
        assert!(matches!(submit(&sim, json!({})), Submitted::Rejected(_)));
        assert!(matches!(
            submit(&sim, json!({"prompt": {}})),
            Submitted::Rejected(_)
        ));
        let mut front = ok.clone();
        front["front"] = json!(true);
        let Submitted::Accepted(third) = submit(&sim, front) else {
            panic!()
        };
        assert_eq!(third["number"], json!(-3));
        let mut chosen = ok;
        chosen["prompt_id"] = json!("mine");
        chosen["number"] = json!("7.5");
        let Submitted::Accepted(fourth) = submit(&sim, chosen) else {
            panic!()
        };
        assert_eq!(fourth["prompt_id"], json!("mine"));
        assert_eq!(fourth["number"], json!(7.5));
        assert_eq!(sim.queue_remaining(), 3);
    }

    #[test]
    fn odd_bodies_do_not_panic() {
        let sim = sim();
        assert_eq!(submit(&sim, json!(5)), Submitted::Crashed);
        assert!(matches!(submit(&sim, json!([1])), Submitted::Rejected(_)));
        assert_eq!(submit(&sim, json!({"prompt": [1]})), Submitted::Crashed);
        assert_eq!(
            submit(&sim, json!({"prompt": {}, "number": "x"})),
            Submitted::Crashed
        );
        assert!(matches!(
            submit(&sim, json!({"prompt": {"1": 5}})),
            Submitted::Rejected(_)
        ));
    }

    #[test]
    fn pace_scales_nominal_seconds() {
        let pace = Pace {
            step: Duration::from_millis(10),
        };
        assert_eq!(pace.seconds(0.3), Duration::from_millis(30));
        assert_eq!(pace.seconds(-1.0), Duration::ZERO);
        assert_eq!(pace.seconds(f64::NAN), Duration::ZERO);
    }
}
