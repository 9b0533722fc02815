//! The tracker fed a script of inputs, shared by the `tracker_sequence` fuzz target (which
//! builds scripts from fuzz bytes with `arbitrary`), `tests/protocol_props.rs` (which generates
//! them) and `tests/fuzz_regressions.rs` (scripts that once found a bug).
//!
//! A script is WebSocket messages (raw text frames and typed execution events about a few prompt
//! and node ids, some relayed by the bridge), progress text, `/queue` and `/history` replies,
//! failed fetches, submissions, connects and disconnects. The tracker must never panic (its own
//! debug assertions included), and after every step what it shows must hang together (see
//! `check`). With `answers_only`, HTTP replies come only for fetches the tracker asked for, each
//! once, as a session delivers them; then it must also never have more fetches in flight than it
//! allows itself.

// Each includer uses part of it.
#![allow(dead_code)]

// The script types derive `arbitrary::Arbitrary` in the fuzz target; the tests, built with
// `cfg(test)`, build scripts with proptest instead and do without the `arbitrary` crate.

use std::collections::{HashMap, HashSet};

use comfytop::comfy::api::{History, HistoryEntry, PromptRequest, QueueItem, QueueSnapshot};
use comfytop::comfy::binary::BinaryFrame;
use comfytop::comfy::protocol::{FeatureFlags, ServerMessage};
use comfytop::tracker::{Outcome, Phase, Tracker, TrackerCommand, TrackerInput};
use serde_json::{Value, json};

const OURS: &str = "me";
const OTHER: &str = "someone-else";
const PROMPTS: [&str; 8] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];
const NODES: [&str; 6] = ["1", "2", "3", "4", "10", "10:1"];
/// Server clock, ms since the epoch.
const SERVER_MS: f64 = 1_795_000_000_000.0;
/// `/history/{id}` fetches the tracker keeps in flight at most.
const ITEMS_IN_FLIGHT: usize = 8;
/// Deleted prompts the tracker remembers at most.
const REMOVED_KEPT: usize = 100;
const LOG_LINES_KEPT: usize = 500;
const TEXT_LINES_KEPT: usize = 100;
const MAX_STEPS: usize = 96;

/// A tracker's settings and the inputs fed to it, each after `dt` sixteenths of a second.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Script {
    /// HTTP replies come only for fetches asked for (`Step::Unasked` is skipped).
    pub answers_only: bool,
    /// `Tracker::with_finished_kept`, else the default.
    pub finished_kept: Option<u8>,
    pub steps: Vec<(u8, Step)>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub enum Step {
    Connected {
        sid: bool,
        features: bool,
    },
    Disconnected,
    /// A text frame as it came; fed when it decodes.
    Text(String),
    Event(Event),
    /// An event relayed by the bridge, of our own client or another.
    Relayed {
        ours: bool,
        event: Event,
    },
    ProgressText {
        node: u8,
        text: u8,
        relayed: Option<bool>,
    },
    /// Answers the fetch in flight `which` (modulo their number).
    Answer {
        which: u8,
        reply: Reply,
    },
    /// The fetch in flight `which` failed.
    Fail {
        which: u8,
    },
    /// An HTTP reply nobody asked for (ignored with `answers_only`).
    Unasked(Unasked),
    Submitted {
        prompt: u8,
        number: i8,
        ours: Option<bool>,
        graph: Graph,
    },
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub enum Event {
    Status {
        remaining: u8,
        sid: bool,
    },
    FeatureFlags {
        previews: bool,
    },
    Start {
        prompt: u8,
        ts: Option<u16>,
    },
    Cached {
        prompt: u8,
        nodes: Vec<u8>,
    },
    Executing {
        prompt: Option<u8>,
        node: Option<u8>,
    },
    Progress {
        prompt: Option<u8>,
        node: Option<u8>,
        value: u8,
        max: u8,
    },
    ProgressState {
        prompt: u8,
        nodes: Vec<(u8, u8, u8, u8)>,
    },
    Executed {
        prompt: Option<u8>,
        node: u8,
        images: u8,
    },
    Success {
        prompt: u8,
        ts: Option<u16>,
    },
    Error {
        prompt: u8,
        node: Option<u8>,
        ts: Option<u16>,
        runaway: bool,
    },
    Interrupted {
        prompt: u8,
        node: Option<u8>,
        ts: Option<u16>,
    },
    Logs {
        lines: u8,
    },
    Custom {
        value: u8,
    },
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Reply {
    pub queue: Queue,
    pub history: Vec<Entry>,
    pub entry: Option<Entry>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub enum Unasked {
    Queue(Queue),
    History(Vec<Entry>),
    Item { prompt: u8, entry: Option<Entry> },
    Failed(Fetch),
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub enum Fetch {
    Queue,
    History { max_items: u8 },
    Item { prompt: u8 },
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Queue {
    pub running: Vec<Item>,
    pub pending: Vec<Item>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Item {
    pub prompt: u8,
    pub number: i8,
    pub client: Option<bool>,
    pub graph: Graph,
    pub outputs: Vec<u8>,
    pub create_time: Option<u16>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Graph {
    /// (node, class, upstream nodes, titled)
    pub nodes: Vec<(u8, u8, Vec<u8>, bool)>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub struct Entry {
    pub item: Item,
    pub end: End,
    pub node: Option<u8>,
    pub executed: Vec<u8>,
    pub cached: Vec<u8>,
    pub ts: Option<u16>,
    pub images: Vec<u8>,
}

#[derive(Debug, Clone)]
#[cfg_attr(not(test), derive(arbitrary::Arbitrary))]
pub enum End {
    Success,
    Error,
    Interrupted,
    /// `status_str` only, no end message.
    StatusOnly {
        success: bool,
    },
    NoStatus,
}

fn prompt(i: u8) -> &'static str {
    PROMPTS[usize::from(i) % PROMPTS.len()]
}

fn node(i: u8) -> &'static str {
    NODES[usize::from(i) % NODES.len()]
}

fn ms(ts: Option<u16>) -> Value {
    ts.map_or(Value::Null, |ts| json!(SERVER_MS + f64::from(ts) * 10.0))
}

fn message(kind: &str, data: Value) -> ServerMessage {
    let text = json!({ "type": kind, "data": data }).to_string();
    ServerMessage::from_json(&text).unwrap_or_else(|e| panic!("{text} does not decode: {e}"))
}

impl Event {
    fn kind_and_data(&self) -> (&'static str, Value) {
        match self {
            Self::Status { remaining, sid } => {
                let mut data = json!({"status": {"exec_info": {"queue_remaining": remaining}}});
                if *sid {
                    data["sid"] = json!(OURS);
                }
                ("status", data)
            }
            Self::FeatureFlags { previews } => (
                "feature_flags",
                json!({"supports_preview_metadata": previews, "max_upload_size": 1024}),
            ),
            Self::Start { prompt: p, ts } => (
                "execution_start",
                json!({"prompt_id": prompt(*p), "timestamp": ms(*ts)}),
            ),
            Self::Cached { prompt: p, nodes } => (
                "execution_cached",
                json!({
                    "prompt_id": prompt(*p),
                    "nodes": nodes.iter().map(|n| node(*n)).collect::<Vec<_>>(),
                }),
            ),
            Self::Executing { prompt: p, node: n } => {
                let mut data = json!({"node": n.map(node)});
                if let Some(p) = p {
                    data["prompt_id"] = json!(prompt(*p));
                    data["display_node"] = json!(n.map(node));
                }
                ("executing", data)
            }
            Self::Progress {
                prompt: p,
                node: n,
                value,
                max,
            } => (
                "progress",
                json!({
                    "value": value,
                    "max": f64::from(*max) / 2.0,
                    "prompt_id": p.map(prompt),
                    "node": n.map(node),
                }),
            ),
            Self::ProgressState { prompt: p, nodes } => {
                let states = ["pending", "running", "finished", "error", "later"];
                let nodes: serde_json::Map<String, Value> = nodes
                    .iter()
                    .map(|(n, state, value, max)| {
                        let state = states[usize::from(*state) % states.len()];
                        let data = json!({
                            "value": value, "max": max, "state": state,
                            "node_id": node(*n), "prompt_id": prompt(*p),
                            "display_node_id": node(*n), "parent_node_id": null,
                            "real_node_id": node(*n),
                        });
                        (node(*n).to_string(), data)
                    })
                    .collect();
                (
                    "progress_state",
                    json!({"prompt_id": prompt(*p), "nodes": nodes}),
                )
            }
            Self::Executed {
                prompt: p,
                node: n,
                images,
            } => {
                let images: Vec<Value> = (0..images % 4)
                    .map(|i| json!({"filename": format!("out_{i}.png"), "subfolder": "", "type": "output"}))
                    .collect();
                let mut data =
                    json!({"node": node(*n), "output": {"images": images, "text": ["hi"]}});
                if let Some(p) = p {
                    data["prompt_id"] = json!(prompt(*p));
                }
                ("executed", data)
            }
            Self::Success { prompt: p, ts } => (
                "execution_success",
                json!({"prompt_id": prompt(*p), "timestamp": ms(*ts)}),
            ),
            Self::Error {
                prompt: p,
                node: n,
                ts,
                runaway,
            } => {
                let text = if *runaway {
                    "x".repeat(comfytop::comfy::api::ERROR_TEXT_KEPT + 3)
                } else {
                    "boom".to_string()
                };
                (
                    "execution_error",
                    json!({
                        "prompt_id": prompt(*p), "node_id": n.map(node), "node_type": "Boom",
                        "executed": [], "exception_message": text, "exception_type": "RuntimeError",
                        "traceback": ["line 1"], "current_inputs": {"a": ["1"]},
                        "current_outputs": {}, "timestamp": ms(*ts),
                    }),
                )
            }
            Self::Interrupted {
                prompt: p,
                node: n,
                ts,
            } => (
                "execution_interrupted",
                json!({
                    "prompt_id": prompt(*p), "node_id": n.map(node), "node_type": "Slow",
                    "executed": [], "timestamp": ms(*ts),
                }),
            ),
            Self::Logs { lines } => {
                let entries: Vec<Value> = (0..*lines)
                    .map(|i| json!({"t": "2026-01-01T00:00:00", "m": format!("line {i}\n")}))
                    .collect();
                (
                    "logs",
                    json!({"entries": entries, "size": {"cols": 80, "rows": 24}}),
                )
            }
            Self::Custom { value } => ("crystools.monitor", json!({"cpu": value})),
        }
    }

    fn message(&self) -> ServerMessage {
        let (kind, data) = self.kind_and_data();
        message(kind, data)
    }
}

impl Graph {
    fn to_json(&self) -> Value {
        let mut nodes = serde_json::Map::new();
        for (n, class, links, titled) in &self.nodes {
            let inputs: serde_json::Map<String, Value> = links
                .iter()
                .enumerate()
                .map(|(i, up)| (format!("in{i}"), json!([node(*up), 0])))
                .chain([("seed".to_string(), json!(5))])
                .collect();
            let mut body = json!({"class_type": format!("Class{}", class % 4), "inputs": inputs});
            if *titled {
                body["_meta"] = json!({"title": format!("Title {n}")});
            }
            nodes.insert(node(*n).to_string(), body);
        }
        Value::Object(nodes)
    }
}

impl Item {
    fn to_json(&self, id: &str) -> Value {
        let mut extra = json!({});
        match self.client {
            Some(true) => extra["client_id"] = json!(OURS),
            Some(false) => extra["client_id"] = json!(OTHER),
            None => {}
        }
        if let Some(ct) = self.create_time {
            extra["create_time"] = json!(SERVER_MS + f64::from(ct));
        }
        let outputs: Vec<&str> = self.outputs.iter().map(|n| node(*n)).collect();
        json!([self.number, id, self.graph.to_json(), extra, outputs])
    }

    fn decode(&self) -> QueueItem {
        let value = self.to_json(prompt(self.prompt));
        serde_json::from_value(value).expect("a queue item decodes")
    }
}

impl Queue {
    /// The server lists each prompt once.
    fn snapshot(&self) -> QueueSnapshot {
        let mut seen = HashSet::new();
        let mut once = |items: &[Item]| -> Vec<QueueItem> {
            items
                .iter()
                .filter(|item| seen.insert(prompt(item.prompt)))
                .map(Item::decode)
                .collect()
        };
        let queue_running = once(&self.running);
        let queue_pending = once(&self.pending);
        QueueSnapshot {
            queue_running,
            queue_pending,
        }
    }
}

impl Entry {
    fn decode(&self, id: &str) -> HistoryEntry {
        let start = json!(["execution_start", {"prompt_id": id, "timestamp": ms(self.ts)}]);
        let cached: Vec<&str> = self.cached.iter().map(|n| node(*n)).collect();
        let cached = json!(["execution_cached", {"nodes": cached, "prompt_id": id}]);
        let executed: Vec<&str> = self.executed.iter().map(|n| node(*n)).collect();
        let end = |kind: &str| {
            json!([kind, {
                "prompt_id": id, "node_id": self.node.map(node), "node_type": "Boom",
                "executed": executed, "exception_message": "boom", "exception_type": "E",
                "traceback": [], "current_inputs": {}, "current_outputs": {},
                "timestamp": ms(self.ts.map(|t| t.saturating_add(100))),
            }])
        };
        let status = match self.end {
            End::Success => json!({"status_str": "success", "completed": true,
                "messages": [start, cached, end("execution_success")]}),
            End::Error => json!({"status_str": "error", "completed": false,
                "messages": [start, cached, end("execution_error")]}),
            End::Interrupted => json!({"status_str": "error", "completed": false,
                "messages": [start, cached, end("execution_interrupted")]}),
            End::StatusOnly { success } => json!({
                "status_str": if success { "success" } else { "error" },
                "completed": success, "messages": [],
            }),
            End::NoStatus => Value::Null,
        };
        let outputs: serde_json::Map<String, Value> = self
            .images
            .iter()
            .map(|n| {
                let image = json!({"filename": format!("{id}_{n}.png"), "type": "output"});
                (node(*n).to_string(), json!({"images": [image]}))
            })
            .collect();
        let value = json!({
            "prompt": self.item.to_json(id),
            "outputs": outputs,
            "status": status,
            "meta": {},
        });
        serde_json::from_value(value).expect("a history entry decodes")
    }
}

fn history(entries: &[Entry], max_items: usize) -> History {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in entries {
        let id = prompt(entry.item.prompt);
        if out.len() < max_items && seen.insert(id) {
            out.push((id.to_string(), entry.decode(id)));
        }
    }
    History(out)
}

fn phase_rank(phase: &Phase) -> u8 {
    match phase {
        Phase::Queued => 0,
        Phase::Running => 1,
        Phase::Finished(_) => 2,
    }
}

/// The tracker before a step.
struct Before {
    change: u64,
    phases: HashMap<String, Phase>,
}

/// What is checked after every step.
fn check(tracker: &mut Tracker, now: f64, before: &Before) {
    let kept = tracker.finished_kept();

    if let Some(running) = tracker.running() {
        assert_eq!(running.phase, Phase::Running, "{running:?}");
    }
    let pending: Vec<&str> = tracker.pending().map(|p| p.id.as_str()).collect();
    assert!(
        pending.iter().collect::<HashSet<_>>().len() == pending.len(),
        "a prompt pending twice: {pending:?}"
    );

    let finished: Vec<&str> = tracker.finished().map(|p| p.id.as_str()).collect();
    let removed: Vec<&str> = tracker.removed().map(|p| p.id.as_str()).collect();
    assert!(
        finished.len() <= kept,
        "{} finished kept, cap {kept}",
        finished.len()
    );
    assert!(removed.len() <= REMOVED_KEPT);
    let finished_set: HashSet<&str> = finished.iter().copied().collect();
    let removed_set: HashSet<&str> = removed.iter().copied().collect();
    assert_eq!(
        finished_set.len(),
        finished.len(),
        "listed twice: {finished:?}"
    );
    assert_eq!(
        removed_set.len(),
        removed.len(),
        "listed twice: {removed:?}"
    );
    assert!(finished_set.is_disjoint(&removed_set));
    for p in tracker.finished() {
        assert!(
            p.is_finished() && p.outcome() != Some(&Outcome::Removed),
            "{p:?}"
        );
    }
    for p in tracker.removed() {
        assert_eq!(p.outcome(), Some(&Outcome::Removed));
    }
    // Every prompt that ended is in one of the two lists.
    let ended: HashSet<&str> = tracker
        .prompts()
        .filter(|p| p.is_finished())
        .map(|p| p.id.as_str())
        .collect();
    let listed: HashSet<&str> = finished_set.union(&removed_set).copied().collect();
    assert_eq!(ended, listed, "finished prompts and the lists disagree");
    assert!(tracker.logs().count() <= LOG_LINES_KEPT);

    for p in tracker.prompts() {
        // Phases only move forward; an unknown outcome may be revised once known. (A prompt
        // forgotten and learned again in one step is a new record.)
        if let Some(old) = before.phases.get(&p.id)
            && !p.new_since(before.change)
        {
            assert!(
                phase_rank(&p.phase) >= phase_rank(old),
                "{}: {old:?} moved back to {:?}",
                p.id,
                p.phase
            );
            if let (Phase::Finished(was), Phase::Finished(is)) = (old, &p.phase) {
                assert!(
                    was == is || *was == Outcome::Unknown,
                    "{}: outcome {was:?} became {is:?}",
                    p.id
                );
            }
        }
        match p.phase {
            Phase::Queued => {}
            Phase::Running => assert!(p.started_at.is_some(), "{p:?}"),
            Phase::Finished(_) => assert!(p.finished_at.is_some(), "{p:?}"),
        }
        assert!(p.text.len() <= TEXT_LINES_KEPT);
        if let Some(d) = p.duration() {
            assert!(d >= 0.0, "duration {d}");
        }
        let overall = p.overall_fraction();
        assert!((0.0..=1.0).contains(&overall), "overall {overall}");
        let (complete, total) = p.node_counts();
        assert!(complete <= total);
        for record in p.nodes.values() {
            if let Some(f) = record.fraction() {
                assert!((0.0..=1.0).contains(&f), "fraction {f}");
            }
            if let Some(rate) = record.rate() {
                assert!(rate > 0.0 && rate.is_finite(), "rate {rate}");
            }
            if let Some(eta) = record.eta() {
                assert!(eta >= 0.0, "eta {eta}");
            }
        }
        // Display order: every node to run (and every node seen) once.
        let order = p.nodes_in_order();
        let unique: HashSet<&String> = order.iter().collect();
        assert_eq!(unique.len(), order.len(), "a node listed twice: {order:?}");
        let mut expected = p.nodes_to_run();
        expected.extend(p.execution_order.iter().cloned());
        assert_eq!(
            unique,
            expected.iter().collect::<HashSet<_>>(),
            "display order and nodes to run disagree"
        );
        // Per-node times: non-negative, each node once, shares adding up.
        let timings = p.node_timings_at(now);
        let ids: HashSet<&str> = timings.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(ids.len(), timings.len(), "{timings:?}");
        let total: f64 = timings.iter().map(|t| t.seconds).sum();
        let shares: f64 = timings.iter().map(|t| t.share_of_total).sum();
        for t in &timings {
            assert!(t.seconds >= 0.0 && t.seconds.is_finite(), "{t:?}");
            assert!((0.0..=1.0).contains(&t.share_of_total), "{t:?}");
        }
        if total > 0.0 {
            assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");
        } else {
            assert_eq!(shares, 0.0);
        }
        if let Some(slowest) = p.slowest_node() {
            assert!(!slowest.cached && slowest.seconds > 0.0);
        }
    }

    let news = tracker.take_finished_news();
    assert!(news.len() <= kept, "{} news, cap {kept}", news.len());
    for item in &news {
        if item.revised {
            assert_ne!(item.outcome, Outcome::Unknown);
        }
    }
}

/// The fetches in flight, as a session would see them.
fn check_in_flight(in_flight: &[TrackerCommand]) {
    let queue = in_flight
        .iter()
        .filter(|c| **c == TrackerCommand::FetchQueue)
        .count();
    let pages = in_flight
        .iter()
        .filter(|c| matches!(c, TrackerCommand::FetchHistory { .. }))
        .count();
    let items: Vec<&str> = in_flight
        .iter()
        .filter_map(|c| match c {
            TrackerCommand::FetchHistoryItem(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert!(queue <= 1, "{queue} /queue fetches at once: {in_flight:?}");
    // (A `/history` answer nobody asked for can make it ask for none.)
    assert!(
        !in_flight.contains(&TrackerCommand::FetchHistory { max_items: 0 }),
        "{in_flight:?}"
    );
    assert!(
        pages <= 1,
        "{pages} /history fetches at once: {in_flight:?}"
    );
    assert!(items.len() <= ITEMS_IN_FLIGHT, "{in_flight:?}");
    let unique: HashSet<&str> = items.iter().copied().collect();
    assert_eq!(
        unique.len(),
        items.len(),
        "one prompt fetched twice: {in_flight:?}"
    );
}

/// Feeds one input to the tracker and checks that what it shows still hangs together; returns
/// the fetches it asked for.
pub fn step(tracker: &mut Tracker, now: f64, input: TrackerInput) -> Vec<TrackerCommand> {
    let before = Before {
        change: tracker.changes(),
        phases: tracker
            .prompts()
            .map(|p| (p.id.clone(), p.phase.clone()))
            .collect(),
    };
    let commands = tracker.handle(now, input);
    check(tracker, now, &before);
    commands
}

/// Runs a script, checking after every step.
pub fn run(script: &Script) {
    let mut tracker = match script.finished_kept {
        Some(kept) => Tracker::with_finished_kept(OURS, usize::from(kept)),
        None => Tracker::new(OURS),
    };
    let mut in_flight: Vec<TrackerCommand> = Vec::new();
    let mut now = 0.0;
    for (dt, next) in script.steps.iter().take(MAX_STEPS) {
        now += f64::from(*dt) / 16.0;
        let input = match next {
            Step::Connected { sid, features } => TrackerInput::Connected {
                sid: sid.then(|| OURS.to_string()),
                features: features.then(FeatureFlags::default),
            },
            Step::Disconnected => TrackerInput::Disconnected,
            Step::Text(text) => match ServerMessage::from_json(text) {
                Ok(m) => TrackerInput::Message(m),
                Err(_) => continue,
            },
            Step::Event(event) => TrackerInput::Message(event.message()),
            Step::Relayed { ours, event } => {
                let (kind, data) = event.kind_and_data();
                let owner = if *ours { OURS } else { OTHER };
                TrackerInput::Message(message(
                    "comfytop_bridge",
                    json!({"owner": owner, "type": kind, "data": data}),
                ))
            }
            Step::ProgressText {
                node: n,
                text,
                relayed,
            } => {
                let frame = BinaryFrame::ProgressText {
                    node_id: node(*n).to_string(),
                    text: format!("step {text}"),
                };
                TrackerInput::Binary(match relayed {
                    None => frame,
                    Some(ours) => BinaryFrame::Relayed {
                        owner: if *ours { OURS } else { OTHER }.to_string(),
                        frame: Box::new(frame),
                    },
                })
            }
            Step::Answer { which, reply } => {
                if in_flight.is_empty() {
                    continue;
                }
                let command = in_flight.remove(usize::from(*which) % in_flight.len());
                match command {
                    TrackerCommand::FetchQueue => TrackerInput::Queue(reply.queue.snapshot()),
                    TrackerCommand::FetchHistory { max_items } => {
                        TrackerInput::History(history(&reply.history, max_items as usize))
                    }
                    TrackerCommand::FetchHistoryItem(id) => TrackerInput::HistoryItem {
                        entry: reply.entry.as_ref().map(|e| e.decode(&id)),
                        prompt_id: id,
                    },
                }
            }
            Step::Fail { which } => {
                if in_flight.is_empty() {
                    continue;
                }
                let command = in_flight.remove(usize::from(*which) % in_flight.len());
                TrackerInput::FetchFailed(command)
            }
            Step::Unasked(_) if script.answers_only => continue,
            Step::Unasked(Unasked::Queue(queue)) => TrackerInput::Queue(queue.snapshot()),
            Step::Unasked(Unasked::History(entries)) => {
                TrackerInput::History(history(entries, usize::MAX))
            }
            Step::Unasked(Unasked::Item { prompt: p, entry }) => TrackerInput::HistoryItem {
                prompt_id: prompt(*p).to_string(),
                entry: entry.as_ref().map(|e| e.decode(prompt(*p))),
            },
            Step::Unasked(Unasked::Failed(fetch)) => TrackerInput::FetchFailed(match fetch {
                Fetch::Queue => TrackerCommand::FetchQueue,
                Fetch::History { max_items } => TrackerCommand::FetchHistory {
                    max_items: u32::from(*max_items),
                },
                Fetch::Item { prompt: p } => TrackerCommand::FetchHistoryItem(prompt(*p).into()),
            }),
            Step::Submitted {
                prompt: p,
                number,
                ours,
                graph,
            } => TrackerInput::Submitted {
                prompt_id: prompt(*p).to_string(),
                number: f64::from(*number),
                request: PromptRequest {
                    prompt: graph.to_json(),
                    client_id: ours.map(|o| if o { OURS } else { OTHER }.to_string()),
                    ..PromptRequest::default()
                },
            },
        };
        let commands = step(&mut tracker, now, input);
        in_flight.extend(commands);
        if script.answers_only {
            check_in_flight(&in_flight);
        }
    }
}
