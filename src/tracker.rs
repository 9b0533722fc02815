//! What is known about the prompts of one server, built from everything it says.
//!
//! The tracker is a pure state machine: it takes [`TrackerInput`]s (WebSocket messages, HTTP
//! replies, connection changes) with the time they happened, updates its view of every prompt,
//! and returns the [`TrackerCommand`]s (HTTP fetches) it needs run. It does no I/O and knows
//! nothing of terminals, so live sessions, transcript replays and tests all drive it the same way.
//!
//! Execution events reach only the socket that queued a prompt; a prompt queued by another client
//! is seen through `status` broadcasts, which trigger `/queue` fetches, and its end through
//! `/history/{id}` once it leaves the queue. The tracker accepts execution events for any prompt,
//! so a server-side bridge that forwards other clients' events works unchanged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash as _, Hasher as _};

use serde_json::{Map, Value};

use crate::comfy::api::{
    History, HistoryEntry, PromptGraph, PromptRequest, QueueItem, QueueSnapshot, fits_or_was_cut,
};
use crate::comfy::binary::BinaryFrame;
use crate::comfy::protocol::{
    Executed, ExecutionCached, FeatureFlags, LogEntry, NodeId, NodeOutput, NodeRunState, Progress,
    ProgressState, PromptId, ServerMessage, Status,
};

/// How many finished prompts are kept by default; older ones are forgotten
/// ([`Tracker::with_finished_kept`] sets another cap).
pub const FINISHED_KEPT: usize = 500;
/// How many history entries are asked for after each (re)connect.
pub const HISTORY_FETCH: u32 = 64;
/// How many of the newest history entries are asked for when the queue count changes: enough for
/// the prompts that came and went between two fetches; the window grows while a reply does not
/// reach back to the last listing.
pub const HISTORY_POLL: u32 = 8;
/// Per-node times are taken as the events arrive: below this, the time is the network's, not
/// the node's (a prompt's events that come in one burst, after a stall, are microseconds apart),
/// so no node is named the slowest.
pub const MEASURABLE_NODE_SECONDS: f64 = 0.05;
/// Prompts deleted from the queue, remembered apart from the server's history.
const REMOVED_KEPT: usize = 100;
/// Seconds after a fetch failed for good (the session's own retries spent) that it is asked
/// again, unless a `status` or a reconnect asks sooner: a server gone idle sends neither, and
/// the prompts that ended during the failure would stay out of History until its next prompt.
pub const RETRY_FAILED_AFTER: f64 = 5.0;
/// Seconds between two looks at `/queue` and the newest `/history` that no `status` asked for,
/// while connected: what shows that the socket went deaf (see [`Tracker::take_reopen`]), and
/// keeps the queue and History right meanwhile.
pub const QUEUE_POLL_EVERY: f64 = 30.0;
/// Seconds a `status` may come after a `/queue` or `/history` reply that shows the change it
/// tells of.
pub const DEAF_AFTER: f64 = 5.0;
/// `/history/{id}` fetches in flight at once; more wait their turn.
const HISTORY_ITEMS_IN_FLIGHT: usize = 8;
const TEXT_LINES_KEPT: usize = 100;
const LOG_LINES_KEPT: usize = 500;
/// Longest exception message or traceback entry kept; a runaway message is cut with a note.
use crate::comfy::api::ERROR_TEXT_KEPT;

/// Something that happened, fed to [`Tracker::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerInput {
    Connected {
        sid: Option<String>,
        features: Option<FeatureFlags>,
    },
    Disconnected,
    Message(ServerMessage),
    Binary(BinaryFrame),
    Queue(QueueSnapshot),
    History(History),
    HistoryItem {
        prompt_id: PromptId,
        entry: Option<HistoryEntry>,
    },
    /// A command's HTTP call failed; the tracker may ask again later.
    FetchFailed(TrackerCommand),
    /// The server accepted a prompt this client posted.
    Submitted {
        prompt_id: PromptId,
        number: f64,
        request: PromptRequest,
    },
}

/// An HTTP fetch the tracker needs; its reply comes back as a [`TrackerInput`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackerCommand {
    FetchQueue,
    FetchHistory { max_items: u32 },
    FetchHistoryItem(PromptId),
}

/// Where a prompt is in its life. Phases only move forward: a late HTTP reply never moves a
/// prompt back.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Queued,
    Running,
    Finished(Outcome),
}

impl Phase {
    fn rank(&self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Running => 1,
            Self::Finished(_) => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Success,
    Error(ErrorInfo),
    Interrupted {
        node_id: Option<NodeId>,
        node_type: Option<String>,
    },
    /// Deleted from the queue before it ran.
    Removed,
    /// Left the queue, and the server has no history of it (history cleared or lost).
    Unknown,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error(_) => "error",
            Self::Interrupted { .. } => "interrupted",
            Self::Removed => "removed",
            Self::Unknown => "unknown",
        }
    }
}

/// Cuts `text` to [`ERROR_TEXT_KEPT`] characters, saying how much was left out.
fn capped(text: String) -> String {
    // Text read over HTTP was cut (and noted) while it was parsed.
    if fits_or_was_cut(&text, ERROR_TEXT_KEPT) {
        return text;
    }
    crate::comfy::api::cut_text(&text, ERROR_TEXT_KEPT)
}

#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    pub node_id: Option<NodeId>,
    pub node_type: Option<String>,
    pub exception_type: String,
    pub exception_message: String,
    pub traceback: Vec<String>,
    pub current_inputs: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Pending,
    Running,
    Cached,
    Done,
    Error,
    Interrupted,
    /// Nothing the server said tells what became of the node (a prompt seen only through
    /// `/queue` and `/history`).
    Unknown,
}

impl NodeState {
    pub fn is_complete(self) -> bool {
        matches!(self, Self::Cached | Self::Done)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub state: NodeState,
    pub value: f64,
    pub max: f64,
    /// The node reports step progress (a gauge makes sense).
    pub has_progress: bool,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// Seconds the node ran: from each `executing` that named it to the next transition, summed
    /// (a node can run more than once, for lazy inputs or expansion). None until one such
    /// stretch ended.
    pub run_seconds: Option<f64>,
    /// First and latest (time, value) of the current progress run, for speed and ETA.
    rate_start: Option<(f64, f64)>,
    rate_last: Option<(f64, f64)>,
}

impl Default for NodeRecord {
    fn default() -> Self {
        Self {
            state: NodeState::Pending,
            value: 0.0,
            max: 0.0,
            has_progress: false,
            started_at: None,
            finished_at: None,
            run_seconds: None,
            rate_start: None,
            rate_last: None,
        }
    }
}

impl NodeRecord {
    /// Steps per second over the current progress run.
    pub fn rate(&self) -> Option<f64> {
        let ((t0, v0), (t1, v1)) = (self.rate_start?, self.rate_last?);
        (t1 > t0 && v1 > v0).then(|| (v1 - v0) / (t1 - t0))
    }

    /// Seconds left at the current rate, as of the last progress update.
    pub fn eta(&self) -> Option<f64> {
        let rate = self.rate()?;
        Some(((self.max - self.value).max(0.0)) / rate)
    }

    /// Time of the last progress update (the ETA counts down from there).
    pub fn last_progress_at(&self) -> Option<f64> {
        self.rate_last.map(|(t, _)| t)
    }

    /// Done fraction in 0..=1 when the node reports progress.
    pub fn fraction(&self) -> Option<f64> {
        (self.has_progress && self.max > 0.0).then(|| (self.value / self.max).clamp(0.0, 1.0))
    }

    fn record_progress(&mut self, now: f64, value: f64, max: f64) {
        // A value going back down means a new run of steps in the same node (a second pass).
        if self.rate_last.is_none_or(|(_, last)| value < last) {
            self.rate_start = Some((now, value));
        }
        self.rate_last = Some((now, value));
        self.value = value;
        self.max = max;
        self.has_progress = true;
    }
}

/// Where a prompt's time went, from its `executing` transitions: a node runs from the
/// `executing` that names it until the next one (another node, or none) or the prompt's end.
/// `executing` carries no timestamp, so the tracker's `now` is the clock.
#[derive(Debug, Clone, Default, PartialEq)]
struct NodeClock {
    /// `execution_start` came before any node ran: no node ran unseen before it.
    from_start: bool,
    /// A transition may have been missed (the connection dropped while the prompt ran, or it
    /// ended without a live end message): per-node times would be guesses, so there are none.
    gap: bool,
    /// The node `executing` named last, and since when: its stretch is still running.
    open: Option<(NodeId, f64)>,
}

impl NodeClock {
    /// Every transition of the run was seen.
    fn whole(&self) -> bool {
        self.from_start && !self.gap
    }
}

/// How long one node of a prompt ran, as [`PromptRecord::node_timings`] lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTiming {
    pub node_id: NodeId,
    /// `_meta.title` or class type; `node {id}` where the graph does not say. As the server
    /// sent it: sanitize before printing.
    pub title: String,
    pub seconds: f64,
    /// `seconds` over the sum of every node's seconds, 0..=1 (0 when nothing took time).
    pub share_of_total: f64,
    /// Taken from the server's cache: it did not run and took no time.
    pub cached: bool,
}

/// Everything known about one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRecord {
    pub id: PromptId,
    /// The tracker's [`Tracker::changes`] count when this record was made, and when its phase
    /// last moved: what changed in one step is found without a copy of every prompt.
    first_change: u64,
    phase_change: u64,
    /// Queue number (run order key), once known.
    pub number: Option<f64>,
    /// `extra_data.client_id` of whoever queued it, once known.
    pub client_id: Option<String>,
    /// Queued by this client (we get its live execution events).
    pub ours: bool,
    /// What the view needs of the graph (a bounded summary), once known. A requeue fetches the
    /// graph itself from the server.
    pub graph: PromptGraph,
    pub outputs_to_execute: Vec<NodeId>,
    pub phase: Phase,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// Nodes in the order they were cached or started.
    pub execution_order: Vec<NodeId>,
    pub cached: Vec<NodeId>,
    pub outputs: BTreeMap<NodeId, NodeOutput>,
    pub current_node: Option<NodeId>,
    /// Latest progress-text lines (node, text), oldest first.
    pub text: VecDeque<(NodeId, String)>,
    /// Execution events were seen for it (full per-node detail).
    pub live: bool,
    /// Some of them came through the comfytop bridge: queued by another client, seen live.
    pub relayed: bool,
    node_clock: NodeClock,
    /// Local clock (the `now` given to the tracker).
    pub first_seen: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// Server clock, ms since the epoch.
    pub server_started_ms: Option<f64>,
    pub server_finished_ms: Option<f64>,
    /// When the server accepted it (`extra_data.create_time`, server clock, ms since the epoch),
    /// where the server says; without it, a waiting time can only count from `first_seen`.
    pub server_queued_ms: Option<f64>,
}

impl PromptRecord {
    fn new(id: PromptId, now: f64, change: u64) -> Self {
        Self {
            id,
            first_change: change,
            phase_change: change,
            number: None,
            client_id: None,
            ours: false,
            graph: PromptGraph::default(),
            outputs_to_execute: Vec::new(),
            phase: Phase::Queued,
            nodes: BTreeMap::new(),
            execution_order: Vec::new(),
            cached: Vec::new(),
            outputs: BTreeMap::new(),
            current_node: None,
            text: VecDeque::new(),
            live: false,
            relayed: false,
            node_clock: NodeClock::default(),
            first_seen: now,
            started_at: None,
            finished_at: None,
            server_started_ms: None,
            server_finished_ms: None,
            server_queued_ms: None,
        }
    }

    /// What became of a node as far as anyone knows: pending for a prompt whose events we get,
    /// unknown for one seen only through `/queue` (no event says which of its nodes ran).
    pub fn node_state(&self, node: &str) -> NodeState {
        match self.nodes.get(node) {
            Some(record) => record.state,
            None if self.live || self.phase == Phase::Queued => NodeState::Pending,
            None => NodeState::Unknown,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Finished(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    /// `_meta.title` or class type of a node, when the graph is known.
    pub fn node_title(&self, node: &str) -> Option<&str> {
        self.graph.get(node).map(|n| n.title())
    }

    /// Run time: server timestamps when known (exact), else the local clock.
    pub fn duration(&self) -> Option<f64> {
        if let (Some(a), Some(b)) = (self.server_started_ms, self.server_finished_ms) {
            return Some(((b - a) / 1000.0).max(0.0));
        }
        Some((self.finished_at? - self.started_at?).max(0.0))
    }

    /// Where the time went: every node that ran with the seconds it took, slowest first, then
    /// the cached nodes (no time), each group in the order the nodes ran. Empty unless every
    /// `executing` transition of the run was seen live: a prompt known only through `/queue`
    /// and `/history`, or one that ran while the connection was down, has no per-node times
    /// rather than made-up ones. The node still running is left out
    /// ([`PromptRecord::node_timings_at`] counts it).
    pub fn node_timings(&self) -> Vec<NodeTiming> {
        self.timings(None)
    }

    /// [`PromptRecord::node_timings`] as of `now`, the node still running counted until then.
    pub fn node_timings_at(&self, now: f64) -> Vec<NodeTiming> {
        self.timings(Some(now))
    }

    /// The node of a finished prompt that took longest, when per-node times are known and it
    /// took a measurable time ([`MEASURABLE_NODE_SECONDS`]).
    pub fn slowest_node(&self) -> Option<NodeTiming> {
        if !self.is_finished() {
            return None;
        }
        let slowest = self.node_timings().into_iter().next()?;
        (!slowest.cached && slowest.seconds >= MEASURABLE_NODE_SECONDS).then_some(slowest)
    }

    /// Per-node times are known and at least one node ran: a cheap test for lists, without
    /// building them.
    pub fn has_node_timings(&self) -> bool {
        self.node_clock.whole()
            && (self.node_clock.open.is_some()
                || self.nodes.values().any(|n| n.run_seconds.is_some()))
    }

    /// Execution events were seen, but not every transition of the run (joined during it, or
    /// the connection dropped): why a live prompt has no per-node times.
    pub fn node_timings_missed(&self) -> bool {
        self.live && self.phase != Phase::Queued && !self.node_clock.whole()
    }

    fn timings(&self, now: Option<f64>) -> Vec<NodeTiming> {
        if !self.node_clock.whole() {
            return Vec::new();
        }
        let running = match (&self.node_clock.open, now) {
            (Some((node, since)), Some(now)) => Some((node.as_str(), (now - since).max(0.0))),
            _ => None,
        };
        let mut timings: Vec<NodeTiming> = Vec::new();
        // Each node once, in the order it ran or was cached: ties keep that order.
        for id in &self.execution_order {
            let Some(record) = self.nodes.get(id) else {
                continue;
            };
            let running_for = running.and_then(|(node, secs)| (node == id).then_some(secs));
            let cached = record.state == NodeState::Cached;
            let seconds = match (record.run_seconds, running_for) {
                (None, None) if cached => 0.0,
                (None, None) => continue,
                (ran, now_running) => ran.unwrap_or(0.0) + now_running.unwrap_or(0.0),
            };
            timings.push(NodeTiming {
                node_id: id.clone(),
                title: self
                    .node_title(id)
                    .map_or_else(|| format!("node {id}"), str::to_string),
                seconds,
                share_of_total: 0.0,
                cached,
            });
        }
        let total: f64 = timings.iter().map(|t| t.seconds).sum();
        if total > 0.0 {
            for timing in &mut timings {
                timing.share_of_total = timing.seconds / total;
            }
        }
        // Stable: equal times stay in the order they ran.
        timings.sort_by(|a, b| (a.cached.cmp(&b.cached)).then(b.seconds.total_cmp(&a.seconds)));
        timings
    }

    /// An `executing` transition at `now`: the node running until now stops, `next` (if any)
    /// starts.
    fn node_transition(&mut self, now: f64, next: Option<&str>) {
        if let Some((node, since)) = self.node_clock.open.take() {
            let record = self.node_mut(&node);
            record.run_seconds = Some(record.run_seconds.unwrap_or(0.0) + (now - since).max(0.0));
        }
        self.node_clock.open = next.map(|node| (node.to_string(), now));
    }

    /// Every output image, in node order.
    pub fn images(&self) -> impl Iterator<Item = (&NodeId, &crate::comfy::protocol::ImageRef)> {
        self.outputs
            .iter()
            .flat_map(|(node, out)| out.images.iter().map(move |img| (node, img)))
    }

    /// The nodes the server will execute: the outputs to execute and everything they depend on.
    /// Without that list (a prompt known only from its graph), every node of the graph.
    pub fn nodes_to_run(&self) -> BTreeSet<NodeId> {
        let mut wanted: BTreeSet<NodeId> = BTreeSet::new();
        let mut stack: Vec<NodeId> = if self.outputs_to_execute.is_empty() {
            self.graph.nodes.keys().cloned().collect()
        } else {
            self.outputs_to_execute.clone()
        };
        while let Some(id) = stack.pop() {
            if !wanted.insert(id.clone()) {
                continue;
            }
            if let Some(node) = self.graph.get(&id) {
                stack.extend(
                    node.links
                        .iter()
                        // In a summary that left nodes out, a link may lead to one of those.
                        .filter(|up| {
                            self.graph.nodes.contains_key(*up) || self.graph.is_truncated()
                        })
                        .cloned(),
                );
            }
        }
        // Nodes seen executing count even when the graph is unknown or partial.
        wanted.extend(self.nodes.keys().cloned());
        wanted
    }

    /// Nodes in display order: those that ran or were cached, in that order, then the rest in an
    /// order that respects the graph's links.
    pub fn nodes_in_order(&self) -> Vec<NodeId> {
        let to_run = self.nodes_to_run();
        let mut order: Vec<NodeId> = Vec::with_capacity(to_run.len());
        let mut placed: HashSet<&str> = HashSet::new();
        for id in &self.execution_order {
            if placed.insert(id) {
                order.push(id.clone());
            }
        }
        let rest: Vec<&NodeId> = to_run
            .iter()
            .filter(|id| !placed.contains(id.as_str()))
            .collect();
        // Kahn's algorithm over the remaining nodes, lowest numeric id first among the ready.
        let mut remaining: Vec<&NodeId> = rest;
        remaining.sort_by(|a, b| node_id_order(a, b));
        while !remaining.is_empty() {
            let ready = remaining.iter().position(|id| {
                self.graph.get(id).is_none_or(|node| {
                    (node.links.iter())
                        .all(|up| placed.contains(up.as_str()) || !to_run.contains(up))
                })
            });
            // A cycle (invalid graph) would stall; take the first node then.
            let idx = ready.unwrap_or(0);
            let id = remaining.remove(idx);
            placed.insert(id);
            order.push(id.clone());
        }
        order
    }

    /// (complete, total) nodes, cached counted as complete.
    pub fn node_counts(&self) -> (usize, usize) {
        let total = self.nodes_to_run().len();
        let complete = self
            .nodes
            .values()
            .filter(|n| n.state.is_complete())
            .count();
        (complete.min(total), total)
    }

    /// Overall progress in 0..=1, counting the running node's partial progress.
    pub fn overall_fraction(&self) -> f64 {
        let (complete, total) = self.node_counts();
        if total == 0 {
            return if self.is_finished() { 1.0 } else { 0.0 };
        }
        if matches!(self.phase, Phase::Finished(Outcome::Success)) {
            return 1.0;
        }
        let partial = self
            .current_node
            .as_ref()
            .and_then(|id| self.nodes.get(id))
            .filter(|n| n.state == NodeState::Running)
            .and_then(NodeRecord::fraction)
            .unwrap_or(0.0);
        ((complete as f64 + partial) / total as f64).clamp(0.0, 1.0)
    }

    fn node_mut(&mut self, id: &str) -> &mut NodeRecord {
        self.nodes.entry(id.to_string()).or_default()
    }

    fn note_started(&mut self, id: &str) {
        if !self.execution_order.iter().any(|n| n == id) {
            self.execution_order.push(id.to_string());
        }
    }

    fn fill_from_item(&mut self, item: &QueueItem, our_client_id: &str) {
        self.number = Some(item.number);
        self.client_id = item.client_id().map(str::to_string);
        self.ours = self.client_id.as_deref() == Some(our_client_id);
        if self.graph.is_empty() {
            self.graph = item.prompt.clone();
        }
        if self.outputs_to_execute.is_empty() {
            self.outputs_to_execute = item.outputs_to_execute.clone();
        }
        if self.server_queued_ms.is_none() {
            self.server_queued_ms = create_time_ms(&item.extra_data);
        }
    }

    /// Node states from a history entry, for the nodes no live event settled: a success ran
    /// every node it was to run; an error or interrupt lists what ran before it; of the rest
    /// nothing is known.
    fn settle_nodes(&mut self, outcome: &Outcome, executed: Option<&[NodeId]>) {
        let ran = |node: &str| match outcome {
            Outcome::Success => true,
            _ => executed.is_some_and(|list| list.iter().any(|n| n == node)),
        };
        for node in self.nodes_to_run() {
            let record = self.node_mut(&node);
            record.state = match record.state {
                NodeState::Pending | NodeState::Running | NodeState::Unknown if ran(&node) => {
                    NodeState::Done
                }
                NodeState::Pending | NodeState::Running => NodeState::Unknown,
                settled => settled,
            };
        }
    }

    /// Who queued it is not known: no queue or history answer listed it (they carry the queue
    /// number and the client id together).
    pub fn owner_unknown(&self) -> bool {
        !self.ours && self.number.is_none()
    }

    /// Appeared in the tracker's step after it had counted `change` steps.
    pub fn new_since(&self, change: u64) -> bool {
        self.first_change > change
    }

    /// Its phase moved (or it appeared) in a step after `change`.
    pub fn moved_since(&self, change: u64) -> bool {
        self.phase_change > change
    }

    /// Moves to `phase` unless that would go backwards; `change` is the tracker's step.
    fn advance(&mut self, phase: Phase, change: u64) -> bool {
        if phase.rank() > self.phase.rank() {
            self.phase = phase;
            self.phase_change = change;
            true
        } else {
            false
        }
    }
}

/// `extra_data.create_time`: set by ComfyUI's `POST /prompt` (ms since the epoch) in newer
/// versions; absent in older ones.
fn create_time_ms(extra_data: &Map<String, Value>) -> Option<f64> {
    extra_data.get("create_time").and_then(Value::as_f64)
}

/// Node ids are usually numbers ("3", "10", "12:4"); sort them as such where they are.
pub fn node_id_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> (u64, String) {
        let head: String = s.chars().take_while(char::is_ascii_digit).collect();
        (head.parse().unwrap_or(u64::MAX), s.to_string())
    };
    key(a).cmp(&key(b))
}

/// Whether the socket still hears the server. ComfyUI forgets a client id when any socket under
/// it closes, so an earlier socket whose close it noticed only late (a cut connection, a dead
/// tunnel) silences the one open now, whose pongs still come. Every change to the queue, a
/// prompt's end included, is broadcast as a `status`: a `/queue` or `/history` reply that
/// differs from the one before it, with no `status` heard since that one was asked for, nor for
/// a while after, means the socket is deaf.
#[derive(Debug, Default)]
struct Hearing {
    /// `status` messages heard.
    statuses: u64,
    /// The prompts `/queue` lists (running, then pending).
    queue: Fingerprint,
    /// The newest entry `/history` lists.
    history: Fingerprint,
    /// The next look at the queue and history of our own.
    poll_at: Option<f64>,
    /// A change no `status` told of: the socket is deaf unless one comes by this time.
    unheard_change: Option<f64>,
    /// Found deaf; the socket should be reopened (see [`Tracker::take_reopen`]).
    deaf: bool,
}

/// What one kind of reply showed last on this socket.
#[derive(Debug, Default)]
struct Fingerprint {
    /// [`Hearing::statuses`] when the fetch in flight was asked for.
    statuses_at_ask: u64,
    /// The last reply's hash, and `statuses` when it was asked for.
    last: Option<(u64, u64)>,
}

impl Fingerprint {
    /// A reply that hashes to `hash`, with `statuses` heard by now; says whether it differs
    /// from the one before with no `status` heard since that one was asked for.
    fn reply(&mut self, hash: u64, statuses: u64) -> bool {
        let unheard = self
            .last
            .is_some_and(|(before, heard_then)| before != hash && statuses == heard_then);
        self.last = Some((hash, self.statuses_at_ask));
        unheard
    }

    fn same_as_last(&self, hash: u64) -> bool {
        self.last.is_some_and(|(before, _)| before == hash)
    }
}

impl Hearing {
    /// A new socket: nothing to compare with yet.
    fn connected(&mut self, now: f64) {
        self.queue.last = None;
        self.history.last = None;
        self.unheard_change = None;
        self.poll_at = Some(now + QUEUE_POLL_EVERY);
    }

    /// A `/queue` reply at `now` whose prompts hash to `listed`.
    fn queue_reply(&mut self, now: f64, listed: u64) {
        if self.queue.reply(listed, self.statuses) {
            self.unheard_change.get_or_insert(now + DEAF_AFTER);
        }
        self.poll_at = Some(now + QUEUE_POLL_EVERY);
    }

    /// A `/history` reply at `now` whose newest entry hashes to `newest`; `added` if that
    /// entry was not known before (else entries were deleted, which no `status` tells).
    fn history_reply(&mut self, now: f64, newest: u64, added: bool) {
        if self.history.reply(newest, self.statuses) && added {
            self.unheard_change.get_or_insert(now + DEAF_AFTER);
        }
    }

    fn status(&mut self) {
        self.statuses += 1;
        self.unheard_change = None;
    }

    fn due_at(&self) -> Option<f64> {
        self.poll_at
            .into_iter()
            .chain(self.unheard_change)
            .min_by(f64::total_cmp)
    }
}

/// A hash of what `items` lists, in order.
fn hash_of<'a>(items: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for item in items {
        item.hash(&mut hasher);
    }
    hasher.finish()
}

#[derive(Debug, Default)]
struct QueueFetch {
    in_flight: bool,
    again: bool,
    /// How many `/queue` fetches were asked for; a reply answers the latest (one at a time).
    issued: u64,
}

/// `/history` fetches of the newest entries: one in flight at a time, the newest answer wins.
#[derive(Debug)]
struct HistoryFetch {
    in_flight: bool,
    /// Asked for while one was in flight: fetch again once it returns.
    again: bool,
    /// `max_items` of the fetch in flight.
    asked: u32,
    /// `max_items` of the next fetch: grows while a fetch finds nothing known (more prompts came
    /// and went than it asked for), shrinks back once they overlap.
    window: u32,
    /// How many fetches were asked for; a reply answers the latest (one at a time).
    issued: u64,
    /// The last fetch failed (after the session's retries): the next status asks again, or
    /// the tracker's timer ([`Tracker::timer_due_at`]).
    failed: bool,
    /// A fetch has been answered since the tracker started: from then on, a fetch must reach
    /// back to an entry of [`HistoryFetch::listed`], or it missed some and asks for more.
    synced: bool,
    /// The entries of the last listing that reached back to the one before it (empty: the
    /// server's history was). The server appends entries as prompts end, so a listing that
    /// holds one of them holds every entry since; any one will do, as another client may
    /// delete the newest. A prompt already known from elsewhere (followed live, or looked up
    /// on its own) proves nothing: other clients' prompts that ended before it may never have
    /// been seen.
    listed: HashSet<PromptId>,
}

impl Default for HistoryFetch {
    fn default() -> Self {
        Self {
            in_flight: false,
            again: false,
            asked: 0,
            window: HISTORY_POLL,
            issued: 0,
            failed: false,
            synced: false,
            listed: HashSet::new(),
        }
    }
}

impl HistoryFetch {
    /// Prompts may have ended unseen (the socket was down, or a fetch failed): the next fetch
    /// asks for a resync's worth at once, rather than paging back up from a poll's.
    fn after_a_gap(&mut self) {
        self.window = self.window.max(HISTORY_FETCH);
    }
}

/// A prompt that reached its end, as [`Tracker::take_finished_news`] reports it, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedNews {
    pub id: PromptId,
    pub outcome: Outcome,
    /// When it ended, server clock (ms since the epoch), when the server said.
    pub server_finished_ms: Option<f64>,
    /// First learned from `/history`, already over: it came and went unseen (another client's
    /// fast prompt, or one that ended while the connection was down).
    pub recovered: bool,
    /// An earlier piece of news gave it an unknown outcome (its history could not be fetched);
    /// this one is what the server says.
    pub revised: bool,
}

/// The view of one server's prompts.
#[derive(Debug)]
pub struct Tracker {
    our_client_id: String,
    connected: bool,
    sid: Option<String>,
    features: Option<FeatureFlags>,
    queue_remaining: Option<u64>,
    prompts: HashMap<PromptId, PromptRecord>,
    /// Pending prompts in run order, as of the last `/queue` plus what we submitted since.
    pending: Vec<PromptId>,
    /// The prompts in the running phase (one, or two while one's end is still unseen), so that
    /// finding the running prompt does not walk every prompt known.
    running: Vec<PromptId>,
    /// Steps taken (see [`Tracker::changes`]).
    changes: u64,
    /// Finished prompts, oldest first.
    finished: VecDeque<PromptId>,
    queue_fetch: QueueFetch,
    /// Prompts we submitted that no `/queue` reply listed yet, with the first fetch that was
    /// asked for after the submission: an older reply cannot know them, so its silence about
    /// them does not mean they left the queue.
    unconfirmed: HashMap<PromptId, u64>,
    history_requested: HashSet<PromptId>,
    logs: VecDeque<LogEntry>,
    /// Most finished prompts kept.
    finished_kept: usize,
    history_fetch: HistoryFetch,
    /// Prompts that left the queue and whose outcome is being looked up, with the number of
    /// history fetches asked for by then (a later one answers for them). They are neither
    /// running nor pending: the server said so.
    awaiting: HashMap<PromptId, u64>,
    /// `/history/{id}` fetches waiting for a slot, in order, and the same ids for lookups.
    item_backlog: VecDeque<PromptId>,
    item_waiting: HashSet<PromptId>,
    /// Prompts deleted from the queue before they ran, oldest first: kept apart from
    /// `finished`, so that list is the server's history.
    removed: VecDeque<PromptId>,
    /// The connection dropped since the last `/queue` reply taken while connected: the queue
    /// may have changed unseen, by a server restart as much as by a delete.
    queue_unseen: bool,
    /// Pending prompts found gone by the first `/queue` after an outage: with no history
    /// entry, their end is unknown (lost in a restart, or deleted), not "removed".
    left_unseen: HashSet<PromptId>,
    /// Finished prompts whose owner lookup failed (see `learn_owner`): asked again on the next
    /// connect.
    owner_lookups_failed: HashSet<PromptId>,
    /// When what failed is asked again if nothing asks sooner (see [`RETRY_FAILED_AFTER`]).
    retry_at: Option<f64>,
    hearing: Hearing,
    /// The last step was a `/queue` or `/history` reply that changed nothing.
    unchanged: bool,
    /// Prompts that ended since the last [`Tracker::take_finished_news`], oldest first.
    news: VecDeque<FinishedNews>,
}

impl Tracker {
    pub fn new(our_client_id: impl Into<String>) -> Self {
        Self {
            our_client_id: our_client_id.into(),
            connected: false,
            sid: None,
            features: None,
            queue_remaining: None,
            prompts: HashMap::new(),
            pending: Vec::new(),
            running: Vec::new(),
            changes: 0,
            finished: VecDeque::new(),
            queue_fetch: QueueFetch::default(),
            unconfirmed: HashMap::new(),
            history_requested: HashSet::new(),
            logs: VecDeque::new(),
            finished_kept: FINISHED_KEPT,
            history_fetch: HistoryFetch::default(),
            awaiting: HashMap::new(),
            item_backlog: VecDeque::new(),
            item_waiting: HashSet::new(),
            removed: VecDeque::new(),
            queue_unseen: false,
            left_unseen: HashSet::new(),
            owner_lookups_failed: HashSet::new(),
            retry_at: None,
            hearing: Hearing::default(),
            unchanged: false,
            news: VecDeque::new(),
        }
    }

    /// A tracker that keeps at most `kept` finished prompts (at least one).
    pub fn with_finished_kept(our_client_id: impl Into<String>, kept: usize) -> Self {
        let mut tracker = Self::new(our_client_id);
        tracker.finished_kept = kept.max(1);
        tracker
    }

    /// Most finished prompts kept.
    pub fn finished_kept(&self) -> usize {
        self.finished_kept
    }

    /// When [`Tracker::on_timer`] is next due, if it is (only while connected: a reconnect
    /// asks anyway): a fetch that failed for good is asked again, the queue is looked at, or
    /// the socket is found deaf.
    pub fn timer_due_at(&self) -> Option<f64> {
        if !self.connected {
            return None;
        }
        self.retry_at
            .into_iter()
            .chain(self.hearing.due_at())
            .min_by(f64::total_cmp)
    }

    /// Does what is due at `now` (see [`Tracker::timer_due_at`]) and returns the fetches it
    /// calls for; [`Tracker::take_reopen`] then says whether the socket should be reopened.
    pub fn on_timer(&mut self, now: f64) -> Vec<TrackerCommand> {
        let mut commands = Vec::new();
        if !self.connected {
            return commands;
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_failed(&mut commands);
        }
        if self.hearing.poll_at.is_some_and(|at| at <= now) {
            // The history too: a prompt may have come and gone since the last look.
            self.hearing.poll_at = Some(now + QUEUE_POLL_EVERY);
            self.request_queue(&mut commands);
            self.request_history(&mut commands);
        }
        if self.hearing.unheard_change.is_some_and(|at| at <= now) {
            tracing::debug!("the queue changed and no status told of it: the socket is deaf");
            self.hearing.unheard_change = None;
            self.hearing.deaf = true;
        }
        commands
    }

    /// Whether the socket was found deaf (the server no longer sends to it) since the last
    /// call: it should be closed and opened again.
    pub fn take_reopen(&mut self) -> bool {
        std::mem::take(&mut self.hearing.deaf)
    }

    /// Whether the last input changed nothing shown: a `/queue` or `/history` reply that listed
    /// what the one before it did.
    pub fn last_input_changed_nothing(&self) -> bool {
        self.unchanged
    }

    /// Prompts that ended since the last call, oldest first, with their outcome: live ones, and
    /// those recovered from `/history` (see [`FinishedNews::recovered`]). Bounded: when nobody
    /// asks, only the newest [`Tracker::finished_kept`] are kept.
    pub fn take_finished_news(&mut self) -> Vec<FinishedNews> {
        self.news.drain(..).collect()
    }

    /// Prompts deleted from the queue before they ran, newest first. They are not part of
    /// [`Tracker::finished`], which holds what the server's history holds.
    pub fn removed(&self) -> impl Iterator<Item = &PromptRecord> {
        self.removed
            .iter()
            .rev()
            .filter_map(|id| self.prompts.get(id))
    }

    pub fn our_client_id(&self) -> &str {
        &self.our_client_id
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn features(&self) -> Option<&FeatureFlags> {
        self.features.as_ref()
    }

    /// Pending + running, as the server last said.
    pub fn queue_remaining(&self) -> Option<u64> {
        self.queue_remaining
    }

    pub fn prompt(&self, id: &str) -> Option<&PromptRecord> {
        self.prompts.get(id)
    }

    /// Every known prompt, in no particular order.
    pub fn prompts(&self) -> impl Iterator<Item = &PromptRecord> {
        self.prompts.values()
    }

    /// The prompt running now, if any (the latest to start, should two claim it). A prompt the
    /// server no longer lists is not running, even while its outcome is still being fetched.
    pub fn running(&self) -> Option<&PromptRecord> {
        self.running
            .iter()
            .filter_map(|id| self.prompts.get(id))
            .filter(|p| p.phase == Phase::Running && !self.awaiting.contains_key(&p.id))
            .max_by(|a, b| {
                let key = |p: &PromptRecord| p.started_at.unwrap_or(p.first_seen);
                key(a).total_cmp(&key(b))
            })
    }

    /// Pending prompts in the order the server will run them.
    pub fn pending(&self) -> impl Iterator<Item = &PromptRecord> {
        self.pending
            .iter()
            .filter_map(|id| self.prompts.get(id))
            .filter(|p| p.phase == Phase::Queued && !self.awaiting.contains_key(&p.id))
    }

    /// Finished prompts, newest first (deleted ones are apart: [`Tracker::removed`]).
    pub fn finished(&self) -> impl Iterator<Item = &PromptRecord> {
        self.finished_from(0)
    }

    /// Finished prompts, newest first, from the `skip`th on: the skipped ones are not looked
    /// up, so a page deep in a long history costs only its own rows.
    pub fn finished_from(&self, skip: usize) -> impl Iterator<Item = &PromptRecord> {
        self.finished
            .iter()
            .rev()
            .skip(skip)
            .filter_map(|id| self.prompts.get(id))
    }

    /// The ids of the finished prompts, newest first, without looking any up.
    pub fn finished_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.finished.iter().rev().map(String::as_str)
    }

    pub fn finished_count(&self) -> usize {
        self.finished.len()
    }

    pub fn removed_count(&self) -> usize {
        self.removed.len()
    }

    pub fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str> {
        self.prompts.get(prompt_id)?.node_title(node_id)
    }

    /// Server log lines received through a `logs` subscription, oldest first.
    pub fn logs(&self) -> impl Iterator<Item = &LogEntry> {
        self.logs.iter()
    }

    /// Applies one input that happened at `now` (seconds, any monotonic clock) and returns the
    /// fetches it calls for.
    pub fn handle(&mut self, now: f64, input: TrackerInput) -> Vec<TrackerCommand> {
        self.changes += 1;
        self.unchanged = false;
        let mut commands = Vec::new();
        match input {
            TrackerInput::Connected { sid, features } => {
                self.connected = true;
                self.hearing.connected(now);
                if sid.is_some() {
                    self.sid = sid;
                }
                if features.is_some() {
                    self.features = features;
                }
                // Whatever finished while we were away shows up in these two.
                self.request_queue(&mut commands);
                self.history_fetch.after_a_gap();
                self.request_history(&mut commands);
                self.retry_failed(&mut commands);
            }
            TrackerInput::Disconnected => {
                self.connected = false;
                self.hearing.deaf = false;
                self.queue_unseen = true;
                // What ran while the socket was down is never told: the running prompts'
                // per-node times would be guesses from here on.
                for id in &self.running {
                    if let Some(record) = self.prompts.get_mut(id) {
                        record.node_clock.gap = true;
                        record.node_clock.open = None;
                    }
                }
            }
            TrackerInput::Message(message) => self.on_message(now, message, &mut commands),
            TrackerInput::Binary(frame) => self.on_binary(frame),
            TrackerInput::Queue(snapshot) => self.on_queue(now, snapshot, &mut commands),
            TrackerInput::History(history) => self.on_history(now, history, &mut commands),
            TrackerInput::HistoryItem { prompt_id, entry } => {
                tracing::debug!(%prompt_id, found = entry.is_some(), "history item fetched");
                self.history_requested.remove(&prompt_id);
                match entry {
                    Some(entry) => self.apply_history_entry(now, prompt_id, &entry),
                    None => self.vanished(now, &prompt_id),
                }
                self.next_history_items(&mut commands);
            }
            TrackerInput::FetchFailed(command) => match command {
                TrackerCommand::FetchQueue => {
                    self.queue_fetch.in_flight = false;
                    if std::mem::take(&mut self.queue_fetch.again) {
                        self.request_queue(&mut commands);
                    }
                }
                TrackerCommand::FetchHistoryItem(id) => {
                    self.history_requested.remove(&id);
                    self.retry_at.get_or_insert(now + RETRY_FAILED_AFTER);
                    // The server no longer lists it, so it is not running; what became of it
                    // is unknown until a later fetch says (the next status asks again, or the
                    // retry timer).
                    if self.awaiting.contains_key(&id) {
                        self.finish(now, &id, Outcome::Unknown, None);
                    } else if self
                        .prompts
                        .get(&id)
                        .is_some_and(PromptRecord::owner_unknown)
                    {
                        self.owner_lookups_failed.insert(id);
                    }
                    self.next_history_items(&mut commands);
                }
                TrackerCommand::FetchHistory { .. } => {
                    self.history_fetch.in_flight = false;
                    self.history_fetch.again = false;
                    self.history_fetch.failed = true;
                    self.history_fetch.after_a_gap();
                    self.retry_at.get_or_insert(now + RETRY_FAILED_AFTER);
                    // Prompts that left the queue are then looked up one by one.
                    let waiting: Vec<PromptId> = self
                        .awaiting
                        .iter()
                        .filter(|(_, by)| **by < self.history_fetch.issued)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in waiting {
                        self.request_history_item(&id, &mut commands);
                    }
                }
            },
            TrackerInput::Submitted {
                prompt_id,
                number,
                request,
            } => {
                let ours = request.client_id.as_deref() == Some(self.our_client_id.as_str());
                let record = self.record_mut(now, &prompt_id);
                record.number = Some(number);
                record.ours = ours;
                record.client_id = request.client_id.clone();
                if record.graph.is_empty() {
                    record.graph = PromptGraph::from_value(&request.prompt);
                }
                if record.phase == Phase::Queued && !self.pending.contains(&prompt_id) {
                    self.insert_pending_by_number(prompt_id.clone());
                }
                let fresh_from = self.queue_fetch.issued + 1;
                self.unconfirmed.insert(prompt_id, fresh_from);
                // A fetch in flight was asked for before the prompt existed; ask again after it.
                if self.queue_fetch.in_flight {
                    self.queue_fetch.again = true;
                }
            }
        }
        #[cfg(debug_assertions)]
        self.check_running_index();
        commands
    }

    /// The running prompts' index agrees with a walk over every prompt.
    #[cfg(debug_assertions)]
    fn check_running_index(&self) {
        let walked: HashSet<&str> = self
            .prompts
            .values()
            .filter(|p| p.phase == Phase::Running)
            .map(|p| p.id.as_str())
            .collect();
        let indexed: HashSet<&str> = self
            .running
            .iter()
            .map(String::as_str)
            .filter(|id| {
                self.prompts
                    .get(*id)
                    .is_some_and(|p| p.phase == Phase::Running)
            })
            .collect();
        debug_assert_eq!(
            walked, indexed,
            "the running index missed a change of phase"
        );
    }

    fn record_mut(&mut self, now: f64, id: &str) -> &mut PromptRecord {
        let change = self.changes;
        self.prompts
            .entry(id.to_string())
            .or_insert_with(|| PromptRecord::new(id.to_string(), now, change))
    }

    /// How many steps ([`Tracker::handle`] calls) the tracker has taken: with
    /// [`PromptRecord::moved_since`], what one step changed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn insert_pending_by_number(&mut self, id: PromptId) {
        let number = self.prompts.get(&id).and_then(|p| p.number);
        let pos = self
            .pending
            .iter()
            .position(|other| {
                let other = self.prompts.get(other).and_then(|p| p.number);
                matches!((number, other), (Some(a), Some(b)) if a < b)
            })
            .unwrap_or(self.pending.len());
        self.pending.insert(pos, id);
    }

    /// One `/queue` fetch at a time; a status that arrives meanwhile asks for one more after it,
    /// since the status that says "the worker took a prompt" repeats the same count as the one
    /// before it but changes what runs.
    fn request_queue(&mut self, commands: &mut Vec<TrackerCommand>) {
        if self.queue_fetch.in_flight {
            self.queue_fetch.again = true;
        } else {
            self.queue_fetch.in_flight = true;
            self.queue_fetch.issued += 1;
            self.hearing.queue.statuses_at_ask = self.hearing.statuses;
            commands.push(TrackerCommand::FetchQueue);
        }
    }

    /// Asks for one prompt's history entry; past [`HISTORY_ITEMS_IN_FLIGHT`] it waits its turn.
    fn request_history_item(&mut self, id: &str, commands: &mut Vec<TrackerCommand>) {
        if self.history_requested.contains(id) || self.item_waiting.contains(id) {
            return;
        }
        if self.history_requested.len() < HISTORY_ITEMS_IN_FLIGHT {
            self.history_requested.insert(id.to_string());
            commands.push(TrackerCommand::FetchHistoryItem(id.to_string()));
        } else {
            self.item_waiting.insert(id.to_string());
            self.item_backlog.push_back(id.to_string());
        }
    }

    /// A prompt that ran and ended between two looks at the queue was seen only through its
    /// live events, which do not say who queued it (ours, or one without a client id, whose
    /// events go to everyone): its history entry does.
    fn learn_owner(&mut self, id: &str, commands: &mut Vec<TrackerCommand>) {
        if self
            .prompts
            .get(id)
            .is_some_and(PromptRecord::owner_unknown)
        {
            self.request_history_item(id, commands);
        }
    }

    /// A `/history/{id}` slot came free: the next waiting lookup still needed takes it.
    fn next_history_items(&mut self, commands: &mut Vec<TrackerCommand>) {
        while self.history_requested.len() < HISTORY_ITEMS_IN_FLIGHT {
            let Some(id) = self.item_backlog.pop_front() else {
                return;
            };
            self.item_waiting.remove(&id);
            let needed = self.prompts.get(&id).is_some_and(|p| {
                !p.is_finished() || self.awaiting.contains_key(&id) || p.owner_unknown()
            });
            if needed {
                self.request_history_item(&id, commands);
            }
        }
    }

    /// One `/history?max_items=` fetch of the newest entries at a time; asked for meanwhile,
    /// it runs again once the one in flight returns.
    fn request_history(&mut self, commands: &mut Vec<TrackerCommand>) {
        if self.history_fetch.in_flight {
            self.history_fetch.again = true;
            return;
        }
        let fetch = &mut self.history_fetch;
        fetch.in_flight = true;
        fetch.failed = false;
        fetch.issued += 1;
        fetch.asked = fetch.window;
        self.hearing.history.statuses_at_ask = self.hearing.statuses;
        commands.push(TrackerCommand::FetchHistory {
            max_items: fetch.asked,
        });
    }

    /// Asks again for what failed before (each call already went through the session's
    /// retries): the newest history, and the outcome of prompts that left the queue unresolved.
    fn retry_failed(&mut self, commands: &mut Vec<TrackerCommand>) {
        self.retry_at = None;
        if self.history_fetch.failed {
            self.request_history(commands);
        }
        let unresolved: Vec<PromptId> = self
            .awaiting
            .keys()
            .filter(|id| self.prompts.get(*id).is_some_and(PromptRecord::is_finished))
            .cloned()
            .collect();
        let owners: Vec<PromptId> = self.owner_lookups_failed.drain().collect();
        for id in unresolved.into_iter().chain(owners) {
            self.request_history_item(&id, commands);
        }
    }

    /// The prompt a message without a prompt id is about: the one running.
    fn running_id(&self) -> Option<PromptId> {
        self.running().map(|p| p.id.clone())
    }

    fn on_message(&mut self, now: f64, message: ServerMessage, commands: &mut Vec<TrackerCommand>) {
        match message {
            ServerMessage::Status(status) => self.on_status(&status, commands),
            ServerMessage::FeatureFlags(flags) => self.features = Some(flags),
            ServerMessage::ExecutionStart(m) => {
                self.start_prompt(now, &m.prompt_id);
                let record = self.record_mut(now, &m.prompt_id);
                record.server_started_ms = m.timestamp.or(record.server_started_ms);
                // No node ran unseen before this: per-node times can cover the whole run.
                if record.node_clock == NodeClock::default()
                    && record.nodes.values().all(|n| n.run_seconds.is_none())
                {
                    record.node_clock.from_start = true;
                }
            }
            ServerMessage::ExecutionCached(m) => self.on_cached(now, &m),
            ServerMessage::Executing(m) => {
                let Some(prompt_id) = m.prompt_id.clone().or_else(|| self.running_id()) else {
                    return;
                };
                match m.node {
                    Some(node) => self.on_node_started(now, &prompt_id, node),
                    None => self.on_prompt_done(now, &prompt_id, commands),
                }
            }
            ServerMessage::Progress(m) => self.on_progress(now, &m),
            ServerMessage::ProgressState(m) => self.on_progress_state(now, &m),
            ServerMessage::Executed(m) => self.on_executed(now, m),
            ServerMessage::ExecutionSuccess(m) => {
                self.record_mut(now, &m.prompt_id)
                    .node_transition(now, None);
                self.finish(now, &m.prompt_id, Outcome::Success, m.timestamp);
                self.learn_owner(&m.prompt_id, commands);
            }
            ServerMessage::ExecutionError(m) => {
                let outcome = Outcome::Error(ErrorInfo {
                    node_id: m.node_id.clone(),
                    node_type: m.node_type.clone(),
                    exception_type: m.exception_type,
                    exception_message: capped(m.exception_message),
                    traceback: m.traceback.into_iter().map(capped).collect(),
                    current_inputs: m.current_inputs,
                });
                self.mark_failed_node(now, &m.prompt_id, m.node_id.as_deref(), NodeState::Error);
                self.record_mut(now, &m.prompt_id)
                    .node_transition(now, None);
                self.finish(now, &m.prompt_id, outcome, m.timestamp);
                self.learn_owner(&m.prompt_id, commands);
            }
            ServerMessage::ExecutionInterrupted(m) => {
                let outcome = Outcome::Interrupted {
                    node_id: m.node_id.clone(),
                    node_type: m.node_type.clone(),
                };
                self.mark_failed_node(
                    now,
                    &m.prompt_id,
                    m.node_id.as_deref(),
                    NodeState::Interrupted,
                );
                self.record_mut(now, &m.prompt_id)
                    .node_transition(now, None);
                self.finish(now, &m.prompt_id, outcome, m.timestamp);
                self.learn_owner(&m.prompt_id, commands);
            }
            ServerMessage::Logs(logs) => {
                self.logs.extend(logs.entries);
                while self.logs.len() > LOG_LINES_KEPT {
                    self.logs.pop_front();
                }
            }
            ServerMessage::Relayed(relayed) => {
                // The owner gets its own copy straight from the server.
                if relayed.owner == self.our_client_id {
                    return;
                }
                if let Some(id) = relayed.message.prompt_id() {
                    let record = self.record_mut(now, id);
                    record.relayed = true;
                    if record.client_id.is_none() {
                        record.client_id = Some(relayed.owner.clone());
                    }
                }
                self.on_message(now, *relayed.message, commands);
            }
            ServerMessage::Unknown { .. } => {}
        }
    }

    /// The queue count changed (or was repeated): what runs and what waits is read again.
    fn on_status(&mut self, status: &Status, commands: &mut Vec<TrackerCommand>) {
        self.hearing.status();
        if status.sid.is_some() {
            self.sid = status.sid.clone();
        }
        let remaining = status.queue_remaining();
        // A prompt can come and go between two `/queue` fetches (an instant failure, a fully
        // cached rerun): only the history shows it.
        if self.queue_remaining != Some(remaining) {
            self.request_history(commands);
        }
        self.queue_remaining = Some(remaining);
        self.request_queue(commands);
        self.retry_failed(commands);
    }

    fn on_cached(&mut self, now: f64, m: &ExecutionCached) {
        self.start_prompt(now, &m.prompt_id);
        let record = self.record_mut(now, &m.prompt_id);
        for node in &m.nodes {
            record.note_started(node);
            let n = record.node_mut(node);
            n.state = NodeState::Cached;
            n.finished_at = Some(now);
            if !record.cached.contains(node) {
                record.cached.push(node.clone());
            }
        }
    }

    /// `executing` with a node: it runs now, and the one before it is done.
    fn on_node_started(&mut self, now: f64, prompt_id: &str, node: NodeId) {
        self.start_prompt(now, prompt_id);
        let record = self.record_mut(now, prompt_id);
        if let Some(previous) = record.current_node.take()
            && previous != node
        {
            let prev = record.node_mut(&previous);
            if prev.state == NodeState::Running {
                prev.state = NodeState::Done;
                prev.finished_at = Some(now);
            }
        }
        record.note_started(&node);
        record.node_transition(now, Some(&node));
        let n = record.node_mut(&node);
        if n.state == NodeState::Pending {
            n.state = NodeState::Running;
            n.started_at = Some(now);
        }
        record.current_node = Some(node);
    }

    /// `executing` with no node: the prompt is over. Its outcome came just before; if that was
    /// missed (joined late), the history knows.
    fn on_prompt_done(&mut self, now: f64, prompt_id: &str, commands: &mut Vec<TrackerCommand>) {
        let record = self.record_mut(now, prompt_id);
        record.current_node = None;
        record.node_transition(now, None);
        if !record.is_finished() {
            self.request_history_item(prompt_id, commands);
        }
    }

    fn on_progress(&mut self, now: f64, m: &Progress) {
        let Some(prompt_id) = m.prompt_id.clone().or_else(|| self.running_id()) else {
            return;
        };
        self.start_prompt(now, &prompt_id);
        let record = self.record_mut(now, &prompt_id);
        let node_id = m.node.clone().or_else(|| record.current_node.clone());
        if let Some(node_id) = node_id {
            record.note_started(&node_id);
            let n = record.node_mut(&node_id);
            if n.state == NodeState::Pending {
                n.state = NodeState::Running;
                n.started_at = Some(now);
            }
            n.record_progress(now, m.value, m.max);
            // Without `executing` (a prompt queued with no client id) this is how the running
            // node is known.
            record.current_node = Some(node_id);
        }
    }

    fn on_progress_state(&mut self, now: f64, m: &ProgressState) {
        self.start_prompt(now, &m.prompt_id);
        let record = self.record_mut(now, &m.prompt_id);
        for (id, p) in &m.nodes {
            record.note_started(id);
            if p.state == NodeRunState::Running {
                record.current_node = Some(id.clone());
            }
            let n = record.node_mut(id);
            match p.state {
                NodeRunState::Running if n.state == NodeState::Pending => {
                    n.state = NodeState::Running;
                    n.started_at = Some(now);
                }
                NodeRunState::Finished if !n.state.is_complete() => {
                    n.state = NodeState::Done;
                    n.finished_at = Some(now);
                }
                NodeRunState::Error => n.state = NodeState::Error,
                _ => {}
            }
            // The start snapshot (0 of 1) says nothing about steps; real steps do.
            let mid_run = p.value > 0.0 && p.value < p.max;
            if mid_run || n.has_progress {
                if p.value != n.value || !n.has_progress {
                    n.record_progress(now, p.value, p.max);
                }
            } else if !n.has_progress {
                n.value = p.value;
                n.max = p.max;
            }
        }
    }

    fn on_executed(&mut self, now: f64, m: Executed) {
        let Some(prompt_id) = m.prompt_id.clone().or_else(|| self.running_id()) else {
            return;
        };
        let record = self.record_mut(now, &prompt_id);
        record.note_started(&m.node);
        let n = record.node_mut(&m.node);
        if !n.state.is_complete() {
            n.state = NodeState::Done;
            n.finished_at = Some(now);
        }
        if let Some(output) = m.output {
            record.outputs.insert(m.node, output);
        }
    }

    fn on_binary(&mut self, frame: BinaryFrame) {
        let frame = match frame {
            BinaryFrame::Relayed { owner, .. } if owner == self.our_client_id => return,
            BinaryFrame::Relayed { frame, .. } => *frame,
            frame => frame,
        };
        // Progress text carries no prompt id: it belongs to whatever runs.
        if let BinaryFrame::ProgressText { node_id, text } = frame
            && let Some(id) = self.running_id()
            && let Some(record) = self.prompts.get_mut(&id)
        {
            record.text.push_back((node_id, text));
            while record.text.len() > TEXT_LINES_KEPT {
                record.text.pop_front();
            }
        }
    }

    fn start_prompt(&mut self, now: f64, id: &str) {
        let change = self.changes;
        let record = self.record_mut(now, id);
        record.live = true;
        if record.advance(Phase::Running, change) {
            record.started_at = Some(now);
            // Once, not on every progress event: the pending list can be long.
            self.pending.retain(|p| p != id);
            self.running.push(id.to_string());
            // A `/queue` reply on its way was asked for before this prompt showed up: it may
            // not list it, which must not count as the prompt having ended. The next one will.
            if self.queue_fetch.in_flight {
                self.unconfirmed
                    .insert(id.to_string(), self.queue_fetch.issued + 1);
                self.queue_fetch.again = true;
            }
        }
    }

    fn mark_failed_node(
        &mut self,
        now: f64,
        prompt_id: &str,
        node: Option<&str>,
        state: NodeState,
    ) {
        let record = self.record_mut(now, prompt_id);
        let node = node
            .map(str::to_string)
            .or_else(|| record.current_node.clone());
        if let Some(node) = node {
            record.note_started(&node);
            let n = record.node_mut(&node);
            n.state = state;
            n.finished_at = Some(now);
        }
    }

    fn finish(&mut self, now: f64, id: &str, outcome: Outcome, server_ms: Option<f64>) {
        self.finish_with(now, id, outcome, server_ms, false);
    }

    /// Ends a prompt; `recovered` when it was first learned of already over (from history).
    fn finish_with(
        &mut self,
        now: f64,
        id: &str,
        outcome: Outcome,
        server_ms: Option<f64>,
        recovered: bool,
    ) {
        let change = self.changes;
        let record = self.record_mut(now, id);
        if !record.advance(Phase::Finished(outcome), change) {
            return;
        }
        self.running.retain(|r| r != id);
        let Some(record) = self.prompts.get_mut(id) else {
            return;
        };
        record.finished_at = Some(now);
        record.server_finished_ms = server_ms.or(record.server_finished_ms);
        record.current_node = None;
        // Ended without a live end message (learned from history): when the node running
        // stopped is not known.
        if record.node_clock.open.take().is_some() {
            record.node_clock.gap = true;
        }
        let success = matches!(record.phase, Phase::Finished(Outcome::Success));
        for node in record.nodes.values_mut() {
            if node.state == NodeState::Running && success {
                node.state = NodeState::Done;
                node.finished_at = Some(now);
            }
        }
        let outcome = record.outcome().cloned().unwrap_or(Outcome::Unknown);
        let server_finished_ms = record.server_finished_ms;
        // No longer in `pending()`, which lists queued prompts only; the next `/queue` reply
        // rebuilds the list (removing each one here would cost the whole list per prompt).
        self.unconfirmed.remove(id);
        // An unknown outcome stays open: a later history fetch may still say what it was.
        if outcome != Outcome::Unknown {
            self.awaiting.remove(id);
        }
        if outcome == Outcome::Removed {
            self.removed.push_back(id.to_string());
        } else {
            // In the server's completion order: a page of older history lands behind newer
            // prompts already known.
            let position = match server_finished_ms {
                Some(ms) => self
                    .finished
                    .iter()
                    .rposition(|other| {
                        self.prompts
                            .get(other)
                            .and_then(|p| p.server_finished_ms)
                            .is_none_or(|other_ms| other_ms <= ms)
                    })
                    .map_or(0, |i| i + 1),
                None => self.finished.len(),
            };
            self.finished.insert(position, id.to_string());
        }
        self.news.push_back(FinishedNews {
            id: id.to_string(),
            outcome,
            server_finished_ms,
            recovered,
            revised: false,
        });
        self.forget_old();
    }

    /// A prompt given an unknown outcome (its history could not be fetched) gets the one the
    /// server's history says.
    fn revise_unknown(&mut self, id: &str, outcome: Outcome, server_ms: Option<f64>) {
        self.awaiting.remove(id);
        let Some(record) = self.prompts.get_mut(id) else {
            return;
        };
        if record.phase != Phase::Finished(Outcome::Unknown) || outcome == Outcome::Unknown {
            return;
        }
        record.phase = Phase::Finished(outcome.clone());
        record.phase_change = self.changes;
        record.server_finished_ms = server_ms.or(record.server_finished_ms);
        self.news.push_back(FinishedNews {
            id: id.to_string(),
            outcome,
            server_finished_ms: record.server_finished_ms,
            recovered: false,
            revised: true,
        });
        self.forget_old();
    }

    /// Keeps every list within its bound, forgetting the oldest.
    fn forget_old(&mut self) {
        while self.finished.len() > self.finished_kept {
            if let Some(old) = self.finished.pop_front() {
                self.forget(&old);
            }
        }
        while self.removed.len() > REMOVED_KEPT {
            if let Some(old) = self.removed.pop_front() {
                self.forget(&old);
            }
        }
        while self.news.len() > self.finished_kept {
            self.news.pop_front();
        }
    }

    fn forget(&mut self, id: &str) {
        self.prompts.remove(id);
        self.awaiting.remove(id);
        self.left_unseen.remove(id);
        self.owner_lookups_failed.remove(id);
        self.running.retain(|r| r != id);
    }

    fn on_queue(&mut self, now: f64, snapshot: QueueSnapshot, commands: &mut Vec<TrackerCommand>) {
        self.queue_fetch.in_flight = false;
        let running: Vec<&QueueItem> = snapshot.queue_running.iter().collect();
        let pending = snapshot.pending_in_run_order();
        let listed: HashSet<&str> = running
            .iter()
            .chain(pending.iter())
            .map(|i| i.prompt_id.as_str())
            .collect();

        // Where running ends counts: a prompt that starts changes the queue.
        let listed_hash = hash_of(
            running
                .iter()
                .map(|i| i.prompt_id.as_str())
                .chain(["|"])
                .chain(pending.iter().map(|i| i.prompt_id.as_str())),
        );
        let as_before = self.hearing.queue.same_as_last(listed_hash);
        if self.connected {
            self.hearing.queue_reply(now, listed_hash);
        }

        // A reply to a fetch asked for before a submission cannot list that prompt yet.
        let reply = self.queue_fetch.issued;
        self.unconfirmed
            .retain(|id, fresh_from| !listed.contains(id.as_str()) && *fresh_from > reply);
        // Listed again (a reply that raced an older one): it is not over after all.
        self.awaiting.retain(|id, _| !listed.contains(id.as_str()));
        // Prompts we thought queued or running that the server no longer lists have ended.
        let gone: Vec<PromptId> = self
            .prompts
            .values()
            .filter(|p| !p.is_finished() && !listed.contains(p.id.as_str()))
            .filter(|p| !self.unconfirmed.contains_key(&p.id) && !self.awaiting.contains_key(&p.id))
            .map(|p| p.id.clone())
            .collect();
        // A few are looked up one by one; many at once (a burst, a cleared queue) through the
        // newest history, which the next fetch of it answers for.
        let one_by_one = gone.len() <= HISTORY_ITEMS_IN_FLIGHT / 2;
        if !gone.is_empty() {
            tracing::debug!(
                gone = gone.len(),
                unseen = self.queue_unseen,
                "left the queue"
            );
        }
        let answered_by = self.history_fetch.issued;
        let unseen = self.queue_unseen;
        if self.connected {
            self.queue_unseen = false;
        }
        for id in &gone {
            if unseen
                && self
                    .prompts
                    .get(id)
                    .is_some_and(|p| p.phase == Phase::Queued)
            {
                self.left_unseen.insert(id.clone());
            }
            self.awaiting.insert(id.clone(), answered_by);
            if one_by_one {
                self.request_history_item(id, commands);
            }
        }
        if !one_by_one {
            self.request_history(commands);
        }

        let our_id = self.our_client_id.clone();
        for item in &running {
            let change = self.changes;
            let record = self.record_mut(now, &item.prompt_id);
            record.fill_from_item(item, &our_id);
            if record.advance(Phase::Running, change) {
                record.started_at = Some(now);
                self.running.push(item.prompt_id.clone());
            }
        }
        self.pending.clear();
        for item in &pending {
            let record = self.record_mut(now, &item.prompt_id);
            record.fill_from_item(item, &our_id);
            if record.phase == Phase::Queued {
                self.pending.push(item.prompt_id.clone());
            }
        }
        let not_yet_listed: Vec<PromptId> = self
            .unconfirmed
            .keys()
            .filter(|id| {
                self.prompts
                    .get(*id)
                    .is_some_and(|p| p.phase == Phase::Queued)
            })
            .cloned()
            .collect();
        for id in not_yet_listed {
            self.insert_pending_by_number(id);
        }
        self.queue_remaining = Some((running.len() + pending.len()) as u64);
        self.unchanged = as_before && gone.is_empty() && self.unconfirmed.is_empty();
        if std::mem::take(&mut self.queue_fetch.again) {
            self.request_queue(commands);
        }
    }

    /// A reply to `/history?max_items=`: the newest entries, oldest first. Adds what is new; when
    /// it does not reach back to an entry of the last listing, more came and went than it asked
    /// for, so it asks for more (up to the number of finished prompts kept, which bounds what
    /// one reply holds).
    fn on_history(&mut self, now: f64, history: History, commands: &mut Vec<TrackerCommand>) {
        let fetch_number = self.history_fetch.issued;
        let asked = self.history_fetch.asked;
        self.history_fetch.in_flight = false;
        let returned = history.0.len();
        let newest_id = history.0.last().map(|(id, _)| id.as_str());
        let newest = hash_of(newest_id);
        let as_before = self.hearing.history.same_as_last(newest);
        if self.connected {
            let added = newest_id.is_some_and(|id| {
                self.awaiting.contains_key(id)
                    || !self.prompts.get(id).is_some_and(PromptRecord::is_finished)
            });
            self.hearing.history_reply(now, newest, added);
        }
        // Entries after the newest one listed before: all of them when none is in this one.
        let listed_before = history
            .0
            .iter()
            .rposition(|(id, _)| self.history_fetch.listed.contains(id));
        let after_listed = listed_before.map_or(returned, |at| returned - at - 1);
        let listed: HashSet<PromptId> = history.0.iter().map(|(id, _)| id.clone()).collect();
        let mut known = 0usize;
        for (id, entry) in history.0 {
            let seen_finished = !self.awaiting.contains_key(&id)
                && self.prompts.get(&id).is_some_and(PromptRecord::is_finished);
            known += usize::from(seen_finished);
            self.apply_history_entry(now, id, &entry);
        }
        let first = !std::mem::replace(&mut self.history_fetch.synced, true);
        let whole_history = (returned as u64) < u64::from(asked);
        let reaches_listed = listed_before.is_some();
        let cap = u32::try_from(self.finished_kept).unwrap_or(u32::MAX);
        tracing::debug!(
            fetch_number,
            asked,
            returned,
            known,
            reaches_listed,
            first,
            whole_history,
            awaiting = self.awaiting.len(),
            "history fetched"
        );
        if !reaches_listed && !first && !whole_history && asked < cap {
            let fetch = &mut self.history_fetch;
            fetch.window = fetch.window.max(asked.saturating_mul(2)).min(cap);
            fetch.again = true;
        } else {
            self.history_fetch.listed = listed;
            // Room for twice what was new this time, so the next one overlaps again; never more
            // than the prompts kept, which may be fewer than a poll (`clamp` would panic then).
            let new = u32::try_from(after_listed).unwrap_or(u32::MAX);
            self.history_fetch.window = new.saturating_mul(2).max(HISTORY_POLL).min(cap.max(1));
            // Prompts that left the queue before this fetch was asked for and are not in it.
            let unanswered: Vec<PromptId> = self
                .awaiting
                .iter()
                .filter(|(_, answered_by)| **answered_by < fetch_number)
                .map(|(id, _)| id.clone())
                .collect();
            self.unchanged = as_before && known == returned && unanswered.is_empty();
            for id in unanswered {
                if whole_history {
                    // The whole history was listed: the server has no entry for it.
                    self.vanished(now, &id);
                } else {
                    self.request_history_item(&id, commands);
                }
            }
        }
        if std::mem::take(&mut self.history_fetch.again) {
            self.request_history(commands);
        }
    }

    /// The server has no history entry for a prompt that left the queue.
    fn vanished(&mut self, now: f64, id: &str) {
        let Some(record) = self.prompts.get(id) else {
            return;
        };
        let left_unseen = self.left_unseen.remove(id);
        let outcome = match record.phase {
            Phase::Queued if !left_unseen => Outcome::Removed,
            Phase::Queued | Phase::Running => Outcome::Unknown,
            Phase::Finished(_) => {
                // The server has nothing more to say about it.
                self.awaiting.remove(id);
                return;
            }
        };
        self.finish(now, id, outcome, None);
        self.awaiting.remove(id);
    }

    fn apply_history_entry(&mut self, now: f64, id: PromptId, entry: &HistoryEntry) {
        let awaited = self.awaiting.contains_key(&id);
        let known_before = match self.prompts.get(&id) {
            // Every poll lists the newest entries again: nothing new in one already applied
            // (or followed live to its end, unless who queued it is still to learn).
            Some(p)
                if p.is_finished()
                    && !awaited
                    && p.server_finished_ms.is_some()
                    && !p.owner_unknown() =>
            {
                return;
            }
            Some(_) => true,
            None => false,
        };
        let our_id = self.our_client_id.clone();
        let record = self.record_mut(now, &id);
        record.fill_from_item(&entry.prompt, &our_id);
        for (node, output) in &entry.outputs {
            record
                .outputs
                .entry(node.clone())
                .or_insert_with(|| output.clone());
        }
        let mut outcome = None;
        let mut finished_ms = None;
        // What ran before an error or interrupt, as the server lists it.
        let mut executed: Option<Vec<NodeId>> = None;
        if let Some(status) = &entry.status {
            for message in status.decoded_messages().flatten() {
                match message {
                    ServerMessage::ExecutionStart(m) => {
                        record.server_started_ms = record.server_started_ms.or(m.timestamp);
                    }
                    ServerMessage::ExecutionCached(m) => {
                        for node in m.nodes {
                            if !record.cached.contains(&node) {
                                record.cached.push(node.clone());
                            }
                            let n = record.node_mut(&node);
                            if n.state == NodeState::Pending {
                                n.state = NodeState::Cached;
                            }
                        }
                    }
                    ServerMessage::ExecutionSuccess(m) => {
                        outcome = Some(Outcome::Success);
                        finished_ms = m.timestamp;
                    }
                    ServerMessage::ExecutionError(m) => {
                        finished_ms = m.timestamp;
                        executed = Some(m.executed);
                        outcome = Some(Outcome::Error(ErrorInfo {
                            node_id: m.node_id,
                            node_type: m.node_type,
                            exception_type: m.exception_type,
                            exception_message: capped(m.exception_message),
                            traceback: m.traceback.into_iter().map(capped).collect(),
                            current_inputs: m.current_inputs,
                        }));
                    }
                    ServerMessage::ExecutionInterrupted(m) => {
                        finished_ms = m.timestamp;
                        executed = Some(m.executed);
                        outcome = Some(Outcome::Interrupted {
                            node_id: m.node_id,
                            node_type: m.node_type,
                        });
                    }
                    _ => {}
                }
            }
            if outcome.is_none() {
                outcome = Some(match status.status_str.as_str() {
                    "success" => Outcome::Success,
                    _ => Outcome::Unknown,
                });
            }
        }
        let outcome = outcome.unwrap_or(Outcome::Success);
        let failed_node = match &outcome {
            Outcome::Error(e) => e.node_id.clone().map(|n| (n, NodeState::Error)),
            Outcome::Interrupted { node_id, .. } => {
                node_id.clone().map(|n| (n, NodeState::Interrupted))
            }
            _ => None,
        };
        if let Some((node, state)) = failed_node {
            let n = record.node_mut(&node);
            if !n.state.is_complete() {
                n.state = state;
            }
        }
        if record.is_finished() {
            if record.phase == Phase::Finished(Outcome::Unknown) && awaited {
                record.settle_nodes(&outcome, executed.as_deref());
                self.revise_unknown(&id, outcome, finished_ms);
                return;
            }
            // Live events told us already; keep their detail, add the server's clock.
            record.server_finished_ms = record.server_finished_ms.or(finished_ms);
            self.awaiting.remove(&id);
            return;
        }
        record.settle_nodes(&outcome, executed.as_deref());
        self.finish_with(now, &id, outcome, finished_ms, !known_before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::Decoded;
    use crate::comfy::transcript::TranscriptReader;

    const REFERENCE: &str = crate::FIXTURES;

    /// Feeds a transcript's frames to a tracker, as a live connection would.
    fn replay(name: &str, our_id: &str) -> Tracker {
        let mut tracker = Tracker::new(our_id);
        feed(&mut tracker, name, 0.0, 0.0);
        tracker
    }

    /// Feeds the frames of a transcript from its time `from` on, at `offset + t`; returns the
    /// last time fed.
    fn feed(tracker: &mut Tracker, name: &str, offset: f64, from: f64) -> f64 {
        let mut last = offset;
        for (t, input) in transcript_inputs(name) {
            if t < from {
                continue;
            }
            last = offset + t;
            tracker.handle(last, input);
        }
        last
    }

    /// The frames of a transcript as tracker inputs, each with its time.
    fn transcript_inputs(name: &str) -> Vec<(f64, TrackerInput)> {
        let path = format!("{REFERENCE}/transcripts/{name}.jsonl");
        TranscriptReader::open(path.as_ref())
            .unwrap()
            .map(|frame| {
                let frame = frame.unwrap();
                let input = match frame.raw.decode() {
                    Decoded::Message(m) => TrackerInput::Message(m),
                    Decoded::Binary(b) => TrackerInput::Binary(b),
                    Decoded::Malformed { error } => panic!("{name}: malformed frame: {error}"),
                };
                (frame.t, input)
            })
            .collect()
    }

    fn message(json: &str) -> TrackerInput {
        TrackerInput::Message(ServerMessage::from_json(json).unwrap())
    }

    #[test]
    fn full_run_node_times_add_up_to_the_run_and_the_slow_node_leads() {
        let tracker = replay("c_full_run_legacy_previews", "lab-c-54413bc8");
        let p = only_prompt(&tracker);
        let timings = p.node_timings();
        let ran: Vec<&NodeTiming> = timings.iter().filter(|t| !t.cached).collect();
        let ids: Vec<&str> = ran.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(ids[0], "1", "{timings:#?}");
        let mut rest = ids[1..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, ["2", "3", "4", "6"], "every node that ran, once");
        // The transcript's clock: the run is execution_start to execution_success.
        let run = p.finished_at.unwrap() - p.started_at.unwrap();
        let sum: f64 = ran.iter().map(|t| t.seconds).sum();
        assert!((sum - run).abs() < 0.01 * run, "sum {sum} run {run}");
        let shares: f64 = timings.iter().map(|t| t.share_of_total).sum();
        assert!((shares - 1.0).abs() < 1e-9, "{shares}");
        assert!(
            ran.windows(2).all(|w| w[0].seconds >= w[1].seconds),
            "slowest first"
        );
        // Cached: listed last, no time.
        let cached: Vec<&NodeTiming> = timings.iter().filter(|t| t.cached).collect();
        assert_eq!(cached.len(), 1);
        assert_eq!(cached[0].node_id, "5");
        assert_eq!((cached[0].seconds, cached[0].share_of_total), (0.0, 0.0));
        assert!(timings.last().unwrap().cached);
        assert_eq!(p.nodes["5"].run_seconds, None);

        let slowest = p.slowest_node().unwrap();
        assert_eq!(slowest.node_id, "1");
        // The frames alone carry no graph: no title to give.
        assert_eq!(slowest.title, "node 1");
        assert!(slowest.share_of_total > 0.95, "{slowest:?}");
        // From its `executing` to the next node's.
        assert!(
            (slowest.seconds - (1.8159 - 0.0037)).abs() < 1e-6,
            "{slowest:?}"
        );
        assert!(p.has_node_timings() && !p.node_timings_missed());
    }

    #[test]
    fn a_running_prompt_counts_its_running_node_until_now() {
        let mut t = Tracker::new("lab-c-54413bc8");
        let path = format!("{REFERENCE}/transcripts/c_full_run_legacy_previews.jsonl");
        for frame in TranscriptReader::open(path.as_ref()).unwrap() {
            let frame = frame.unwrap();
            if frame.t > 1.0 {
                break;
            }
            if let Decoded::Message(m) = frame.raw.decode() {
                t.handle(frame.t, TrackerInput::Message(m));
            }
        }
        let p = t.running().unwrap();
        assert!(p.has_node_timings());
        assert!(p.slowest_node().is_none(), "not finished");
        let so_far = p.node_timings_at(1.5);
        let running: Vec<&NodeTiming> = so_far.iter().filter(|t| !t.cached).collect();
        assert_eq!(running.len(), 1, "{so_far:#?}");
        assert_eq!(running[0].node_id, "1");
        assert!((running[0].seconds - (1.5 - 0.0037)).abs() < 1e-9);
        assert_eq!(running[0].share_of_total, 1.0);
        // Without a clock only what ended counts: nothing yet.
        assert!(p.node_timings().iter().all(|t| t.cached));
    }

    #[test]
    fn cached_nodes_take_no_time_and_a_fully_cached_run_has_no_slowest_node() {
        let tracker = replay("d_same_prompt_cached", "lab-d");
        let p = only_prompt(&tracker);
        let timings = p.node_timings();
        assert_eq!(timings.len(), 6, "{timings:#?}");
        assert!(timings.iter().all(|t| t.cached && t.seconds == 0.0));
        assert!(p.nodes.values().all(|n| n.run_seconds.is_none()));
        assert_eq!(p.slowest_node(), None);
        assert!(!p.has_node_timings());
    }

    #[test]
    fn a_run_whose_events_came_in_one_burst_names_no_slowest_node() {
        // A whole run's events held back (a stalled link, a stopped process) and handled a
        // microsecond apart: their arrival times say nothing of the nodes.
        let mut t = Tracker::new("lab-c-54413bc8");
        let inputs = transcript_inputs("c_full_run_legacy_previews");
        for (i, (_, input)) in inputs.into_iter().enumerate() {
            t.handle(5.0 + i as f64 * 1e-6, input);
        }
        let p = only_prompt(&t);
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert!(p.has_node_timings());
        assert_eq!(p.slowest_node(), None);
    }

    #[test]
    fn a_failed_run_times_the_failing_node_until_the_error() {
        let tracker = replay("e_execution_error", "lab-e-519deaa7");
        let p = only_prompt(&tracker);
        let timings = p.node_timings();
        let ids: Vec<&str> = timings.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(ids, ["1", "2"]);
        assert!((timings[0].seconds - (0.6111 - 0.0035)).abs() < 1e-6);
        assert!((timings[1].seconds - (0.6118 - 0.6111)).abs() < 1e-6);
        assert_eq!(p.slowest_node().unwrap().node_id, "1");
    }

    #[test]
    fn a_connection_lost_during_the_run_leaves_no_per_node_times() {
        let mut t = Tracker::new("lab-h");
        let last = feed(&mut t, "h_reconnect_same_client_id__1_before", 0.0, 0.0);
        t.handle(last, TrackerInput::Disconnected);
        // The server sends `executing` again for the node running when the socket comes back.
        feed(
            &mut t,
            "h_reconnect_same_client_id__2_after",
            last + 0.8,
            0.0,
        );
        let p = only_prompt(&t);
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert!(p.live);
        assert_eq!(p.node_timings(), Vec::new());
        assert_eq!(p.slowest_node(), None);
        assert!(p.node_timings_missed());
    }

    #[test]
    fn a_prompt_joined_during_its_run_has_no_per_node_times() {
        let mut t = Tracker::new("lab-c-54413bc8");
        feed(&mut t, "c_full_run_legacy_previews", 0.0, 0.5);
        let p = only_prompt(&t);
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert_eq!(p.node_timings(), Vec::new(), "node 1 started unseen");
        assert!(p.node_timings_missed());
    }

    #[test]
    fn a_node_that_runs_twice_adds_both_stretches() {
        let mut t = Tracker::new("me");
        let executing = |node: &str| {
            message(&format!(
                r#"{{"type":"executing","data":{{"node":{node},"prompt_id":"p"}}}}"#
            ))
        };
        t.handle(
            0.0,
            message(r#"{"type":"execution_start","data":{"prompt_id":"p"}}"#),
        );
        t.handle(0.0, executing("\"a\""));
        t.handle(1.0, executing("\"b\""));
        // Lazy inputs: `a` runs again once `b` gave what it asked for.
        t.handle(3.0, executing("\"a\""));
        t.handle(
            4.5,
            message(r#"{"type":"execution_success","data":{"prompt_id":"p"}}"#),
        );
        t.handle(4.6, executing("null"));
        let p = t.prompt("p").unwrap();
        let times: Vec<(String, f64)> = p
            .node_timings()
            .into_iter()
            .map(|t| (t.node_id, t.seconds))
            .collect();
        assert_eq!(times, [("a".into(), 2.5), ("b".into(), 2.0)]);
        assert_eq!(p.slowest_node().unwrap().title, "node a");
    }

    fn only_prompt(tracker: &Tracker) -> &PromptRecord {
        let mut prompts: Vec<&PromptRecord> = tracker.prompts().collect();
        assert_eq!(prompts.len(), 1, "{prompts:#?}");
        prompts.remove(0)
    }

    #[test]
    fn full_run_ends_in_success_with_outputs_cached_nodes_and_step_maxima() {
        let tracker = replay("c_full_run_legacy_previews", "lab-c-54413bc8");
        let p = only_prompt(&tracker);
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert_eq!(p.cached, vec!["5".to_string()]);
        assert_eq!(p.nodes["5"].state, NodeState::Cached);
        assert_eq!(p.nodes["1"].max, 6.0);
        assert!(p.nodes["1"].has_progress);
        assert_eq!(p.nodes["1"].state, NodeState::Done);
        assert!(p.images().count() >= 2, "{:?}", p.outputs);
        assert!(!p.text.is_empty(), "progress text lines kept");
        assert!(tracker.running().is_none());
    }

    #[test]
    fn error_names_the_node_and_exception() {
        let tracker = replay("e_execution_error", "lab-e-519deaa7");
        let p = only_prompt(&tracker);
        let Phase::Finished(Outcome::Error(e)) = &p.phase else {
            panic!("{:?}", p.phase)
        };
        assert_eq!(e.node_id.as_deref(), Some("2"));
        assert_eq!(e.node_type.as_deref(), Some("LabRaiseError"));
        assert_eq!(e.exception_type, "RuntimeError");
        assert_eq!(p.nodes["2"].state, NodeState::Error);
        assert_eq!(p.nodes["1"].state, NodeState::Done);
    }

    #[test]
    fn status_asks_for_the_queue_once_at_a_time() {
        let mut t = Tracker::new("me");
        let status = || {
            TrackerInput::Message(
                ServerMessage::from_json(
                    r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}"#,
                )
                .unwrap(),
            )
        };
        let queue_fetches = |commands: Vec<TrackerCommand>| -> Vec<TrackerCommand> {
            commands
                .into_iter()
                .filter(|c| *c == TrackerCommand::FetchQueue)
                .collect()
        };
        assert_eq!(
            queue_fetches(t.handle(0.0, status())),
            vec![TrackerCommand::FetchQueue]
        );
        assert_eq!(queue_fetches(t.handle(0.1, status())), vec![]);
        // The reply comes; the second status asks for one more fetch.
        assert_eq!(
            t.handle(0.2, TrackerInput::Queue(QueueSnapshot::default())),
            vec![TrackerCommand::FetchQueue]
        );
        assert_eq!(
            t.handle(0.3, TrackerInput::Queue(QueueSnapshot::default())),
            vec![]
        );
    }

    fn http_body<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{REFERENCE}/http/{name}.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(v["body"].clone()).unwrap()
    }

    #[test]
    fn runaway_error_text_is_capped_with_a_note() {
        let long = "é".repeat(ERROR_TEXT_KEPT + 10);
        let cut = capped(long);
        assert!(
            cut.ends_with("… (10 more characters)"),
            "{}",
            &cut[cut.len() - 40..]
        );
        assert_eq!(capped("short".into()), "short");
    }

    #[test]
    fn interrupt_is_its_own_outcome() {
        let tracker = replay("f_interrupt", "lab-f");
        let outcomes: Vec<&str> = tracker
            .finished()
            .filter_map(|p| p.outcome().map(Outcome::label))
            .collect();
        assert!(outcomes.contains(&"interrupted"), "{outcomes:?}");
    }

    #[test]
    fn cached_rerun_lists_every_cached_node() {
        let tracker = replay("d_same_prompt_cached", "lab-d");
        let p = tracker.finished().next().unwrap();
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert!(!p.cached.is_empty());
        let (complete, total) = p.node_counts();
        assert_eq!(complete, total, "{:?}", p.nodes);
    }

    #[test]
    fn another_clients_prompt_is_followed_through_queue_and_history() {
        // A watcher only hears status broadcasts: each asks for /queue.
        let mut t = replay("i_second_client_watching__watcher", "watcher");
        assert!(t.prompts().next().is_none());
        let snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        let running_id = snapshot.queue_running[0].prompt_id.clone();
        t.handle(10.0, TrackerInput::Queue(snapshot));
        let running = t.running().unwrap();
        assert_eq!(running.id, running_id);
        assert!(!running.ours);
        assert!(!running.live);
        assert_eq!(running.node_title("2"), Some("SaveImage"));
        let numbers: Vec<f64> = t.pending().filter_map(|p| p.number).collect();
        let mut sorted = numbers.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(numbers, sorted, "pending in run order");

        // The queue empties: every prompt that left it is looked up in history.
        let commands = t.handle(11.0, TrackerInput::Queue(QueueSnapshot::default()));
        assert!(commands.contains(&TrackerCommand::FetchHistoryItem(running_id.clone())));
        let history: History = http_body("get_history_id_success");
        let (_, entry) = history.0.into_iter().next().unwrap();
        t.handle(
            12.0,
            TrackerInput::HistoryItem {
                prompt_id: running_id.clone(),
                entry: Some(entry),
            },
        );
        let p = t.prompt(&running_id).unwrap();
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert!(p.images().count() > 0);
        assert!(p.duration().is_some());
    }

    #[test]
    fn a_queue_reply_asked_for_before_a_prompts_first_live_event_does_not_end_it() {
        let mut t = Tracker::new("me");
        t.handle(
            0.0,
            TrackerInput::Connected {
                sid: Some("me".into()),
                features: None,
            },
        );
        // The queue is asked for, then the prompt starts before the reply comes.
        t.handle(
            0.1,
            message(r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}"#),
        );
        t.handle(
            0.2,
            message(r#"{"type":"execution_start","data":{"prompt_id":"x","timestamp":1}}"#),
        );
        let commands = t.handle(0.3, TrackerInput::Queue(QueueSnapshot::default()));
        assert_eq!(t.prompt("x").unwrap().phase, Phase::Running);
        assert!(
            !commands.contains(&TrackerCommand::FetchHistoryItem("x".into())),
            "{commands:?}"
        );
        // The next reply is asked for after it started: not listed there, it is over.
        assert!(
            commands.contains(&TrackerCommand::FetchQueue),
            "{commands:?}"
        );
        let commands = t.handle(0.4, TrackerInput::Queue(QueueSnapshot::default()));
        assert!(
            commands.contains(&TrackerCommand::FetchHistoryItem("x".into())),
            "{commands:?}"
        );
    }

    #[test]
    fn a_pending_prompt_without_history_was_removed() {
        let mut t = Tracker::new("me");
        let snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        let pending_id = snapshot.pending_in_run_order()[0].prompt_id.clone();
        t.handle(0.0, TrackerInput::Queue(snapshot));
        t.handle(1.0, TrackerInput::Queue(QueueSnapshot::default()));
        t.handle(
            2.0,
            TrackerInput::HistoryItem {
                prompt_id: pending_id.clone(),
                entry: None,
            },
        );
        assert_eq!(
            t.prompt(&pending_id).unwrap().phase,
            Phase::Finished(Outcome::Removed)
        );
    }

    /// A server restart empties the queue while the connection is down: the pending prompts
    /// were lost, not deleted, and nothing can tell the two apart afterwards.
    #[test]
    fn a_pending_prompt_gone_during_an_outage_ends_unknown() {
        let mut t = Tracker::new("me");
        let connected = TrackerInput::Connected {
            sid: Some("me".into()),
            features: None,
        };
        t.handle(0.0, connected.clone());
        let snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        let pending = snapshot.pending_in_run_order();
        let (lost, removed) = (pending[0].prompt_id.clone(), pending[1].prompt_id.clone());
        let mut after = snapshot.clone();
        after.queue_pending.retain(|i| i.prompt_id != removed);
        t.handle(0.5, TrackerInput::Queue(snapshot));
        // Deleted while we watch: removed.
        t.handle(0.8, TrackerInput::Queue(after));
        t.handle(1.0, TrackerInput::Disconnected);
        t.handle(2.0, connected);
        t.handle(2.1, TrackerInput::Queue(QueueSnapshot::default()));
        for id in [&lost, &removed] {
            t.handle(
                2.2,
                TrackerInput::HistoryItem {
                    prompt_id: id.clone(),
                    entry: None,
                },
            );
        }
        assert_eq!(
            t.prompt(&lost).unwrap().phase,
            Phase::Finished(Outcome::Unknown)
        );
        assert_eq!(
            t.prompt(&removed).unwrap().phase,
            Phase::Finished(Outcome::Removed)
        );
    }

    /// Prompts seen only through their live events (they came and went between two reads of
    /// the queue) have their owner looked up, however they ended, until a lookup succeeds.
    #[test]
    fn the_owner_of_a_prompt_seen_only_live_is_looked_up_until_found() {
        let connected = TrackerInput::Connected {
            sid: Some("me".into()),
            features: None,
        };
        let ends = [
            r#"{"type":"execution_success","data":{"prompt_id":"p","timestamp":2}}"#,
            r#"{"type":"execution_error","data":{"prompt_id":"p","node_id":"1","node_type":"K","executed":[],"exception_message":"x","exception_type":"E","traceback":[],"current_inputs":{},"current_outputs":{},"timestamp":2}}"#,
            r#"{"type":"execution_interrupted","data":{"prompt_id":"p","node_id":"1","node_type":"K","executed":[],"timestamp":2}}"#,
        ];
        for end in ends {
            let mut t = Tracker::new("me");
            t.handle(0.0, connected.clone());
            t.handle(
                0.1,
                message(r#"{"type":"execution_start","data":{"prompt_id":"p","timestamp":1}}"#),
            );
            let commands = t.handle(0.2, message(end));
            let lookup = TrackerCommand::FetchHistoryItem("p".into());
            assert!(commands.contains(&lookup), "{end}: {commands:?}");
            assert!(t.prompt("p").unwrap().owner_unknown());
            // The lookup fails (a cut): it is made again on the next connect.
            t.handle(0.3, TrackerInput::FetchFailed(lookup.clone()));
            t.handle(0.4, TrackerInput::Disconnected);
            let commands = t.handle(0.5, connected.clone());
            assert!(commands.contains(&lookup), "{end}: {commands:?}");
        }
    }

    #[test]
    fn reconnect_fetches_queue_and_history() {
        let mut t = Tracker::new("me");
        let commands = t.handle(
            0.0,
            TrackerInput::Connected {
                sid: Some("me".into()),
                features: None,
            },
        );
        assert_eq!(
            commands,
            vec![
                TrackerCommand::FetchQueue,
                TrackerCommand::FetchHistory {
                    max_items: HISTORY_FETCH
                }
            ]
        );
        assert!(t.is_connected());
    }

    #[test]
    fn a_queue_reply_asked_for_before_a_submission_does_not_end_that_prompt() {
        let mut t = Tracker::new("me");
        let connected = TrackerInput::Connected {
            sid: None,
            features: None,
        };
        assert!(
            t.handle(0.0, connected)
                .contains(&TrackerCommand::FetchQueue)
        );
        let request = PromptRequest {
            prompt: serde_json::json!({"1": {"class_type": "SaveImage", "inputs": {}}}),
            client_id: Some("me".into()),
            ..PromptRequest::default()
        };
        t.handle(
            0.1,
            TrackerInput::Submitted {
                prompt_id: "p1".into(),
                number: 3.0,
                request,
            },
        );
        // The reply to the fetch asked for before the POST does not list p1 yet.
        let commands = t.handle(0.2, TrackerInput::Queue(QueueSnapshot::default()));
        assert_eq!(commands, vec![TrackerCommand::FetchQueue]);
        assert_eq!(t.prompt("p1").unwrap().phase, Phase::Queued);
        assert_eq!(
            t.pending().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["p1"]
        );
        // A reply asked for after the POST that does not list it: it has left the queue.
        let commands = t.handle(0.3, TrackerInput::Queue(QueueSnapshot::default()));
        assert_eq!(
            commands,
            vec![TrackerCommand::FetchHistoryItem("p1".into())]
        );
    }

    #[test]
    fn a_late_queue_snapshot_never_moves_a_finished_prompt_back() {
        let mut t = replay("c_full_run_legacy_previews", "lab-c-54413bc8");
        let id = t.finished().next().unwrap().id.clone();
        let mut item: QueueSnapshot = http_body("get_queue_running_and_pending");
        item.queue_running[0].prompt_id = id.clone();
        t.handle(99.0, TrackerInput::Queue(item));
        assert_eq!(
            t.prompt(&id).unwrap().phase,
            Phase::Finished(Outcome::Success)
        );
    }
}

/// The tracker under load and faults: fetches that fail, prompts that come and go between two
/// fetches, a history longer than one page, bounded memory.
#[cfg(test)]
mod truth_tests {
    use super::*;
    use serde_json::json;

    const REFERENCE: &str = crate::FIXTURES;

    fn http_body<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{REFERENCE}/http/{name}.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(v["body"].clone()).unwrap()
    }

    /// A recorded history entry under another prompt id.
    fn entry(name: &str, id: &str) -> HistoryEntry {
        let history: History = http_body(name);
        let (_, mut entry) = history.0.into_iter().next().unwrap();
        entry.prompt.prompt_id = id.to_string();
        entry
    }

    fn item_json(number: u32, id: &str, client: &str) -> Value {
        json!([number, id, {"1": {"class_type": "LabRaiseError", "inputs": {}}},
            {"client_id": client, "create_time": 1_795_828_000_000u64 + u64::from(number)}, ["1"]])
    }

    fn queue(running: &[&str], pending: &[&str]) -> QueueSnapshot {
        let items = |ids: &[&str], from: u32| -> Vec<Value> {
            ids.iter()
                .zip(from..)
                .map(|(id, n)| item_json(n, id, "someone-else"))
                .collect()
        };
        serde_json::from_value(json!({
            "queue_running": items(running, 1),
            "queue_pending": items(pending, 100),
        }))
        .unwrap()
    }

    fn status(remaining: u64) -> TrackerInput {
        TrackerInput::Message(
            ServerMessage::from_json(&format!(
                r#"{{"type":"status","data":{{"status":{{"exec_info":{{"queue_remaining":{remaining}}}}}}}}}"#
            ))
            .unwrap(),
        )
    }

    fn connected() -> TrackerInput {
        TrackerInput::Connected {
            sid: None,
            features: None,
        }
    }

    /// The newest `n` of `ids` (oldest first, one second apart) as `/history?max_items=n`
    /// answers.
    fn newest(ids: &[String], n: u32, name: &str) -> TrackerInput {
        let from = ids.len().saturating_sub(n as usize);
        TrackerInput::History(History(
            ids.iter()
                .enumerate()
                .skip(from)
                .map(|(i, id)| {
                    let mut entry = entry(name, id);
                    if let Some(status) = &mut entry.status {
                        for (_, data) in &mut status.messages {
                            if let Some(ms) = data.get_mut("timestamp") {
                                *ms = json!(1_795_000_000_000u64 + 1000 * i as u64);
                            }
                        }
                    }
                    (id.clone(), entry)
                })
                .collect(),
        ))
    }

    /// `t` connected to a server whose history holds `seen` alone, and that history.
    fn synced(mut t: Tracker, seen: &str) -> (Tracker, Vec<String>) {
        let server = vec![seen.to_string()];
        t.handle(0.0, connected());
        t.handle(
            0.1,
            newest(&server, HISTORY_FETCH, "get_history_id_success"),
        );
        (t, server)
    }

    fn history_asks(commands: &[TrackerCommand]) -> Vec<u32> {
        commands
            .iter()
            .filter_map(|c| match c {
                TrackerCommand::FetchHistory { max_items } => Some(*max_items),
                _ => None,
            })
            .collect()
    }

    /// Pages through `/history` answers from `server` until the tracker asks no more; the sizes
    /// it asked for.
    fn page_through(
        t: &mut Tracker,
        now: f64,
        server: &[String],
        mut commands: Vec<TrackerCommand>,
    ) -> Vec<u32> {
        let mut asked = Vec::new();
        while let Some(&max_items) = history_asks(&commands).first() {
            asked.push(max_items);
            assert!(asked.len() < 10, "{asked:?}");
            commands = t.handle(now, newest(server, max_items, "get_history_id_success"));
        }
        asked
    }

    #[test]
    fn a_prompt_that_left_the_queue_is_not_running_while_its_history_cannot_be_fetched() {
        let mut t = Tracker::new("me");
        t.handle(0.0, TrackerInput::Queue(queue(&["p1"], &[])));
        assert_eq!(t.running().map(|p| p.id.as_str()), Some("p1"));

        // It ends; the server no longer lists it, and its history fetch fails (timed out).
        let commands = t.handle(1.0, TrackerInput::Queue(queue(&[], &[])));
        assert!(commands.contains(&TrackerCommand::FetchHistoryItem("p1".into())));
        assert!(t.running().is_none(), "the server says it is not running");
        t.handle(
            16.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistoryItem("p1".into())),
        );
        assert!(t.running().is_none());
        assert_eq!(
            t.prompt("p1").unwrap().phase,
            Phase::Finished(Outcome::Unknown)
        );

        // The next status asks again, and the answer replaces the unknown outcome.
        let commands = t.handle(20.0, status(0));
        assert!(
            commands.contains(&TrackerCommand::FetchHistoryItem("p1".into())),
            "{commands:?}"
        );
        t.handle(
            20.1,
            TrackerInput::HistoryItem {
                prompt_id: "p1".into(),
                entry: Some(entry("get_history_id_success", "p1")),
            },
        );
        assert_eq!(
            t.prompt("p1").unwrap().phase,
            Phase::Finished(Outcome::Success)
        );
        assert_eq!(t.finished().count(), 1, "listed once");
        let news = t.take_finished_news();
        assert_eq!(news.len(), 2, "{news:?}");
        assert_eq!(news[0].outcome, Outcome::Unknown);
        assert!(news[1].revised && news[1].outcome == Outcome::Success);
        // Settled: later statuses ask nothing more about it.
        assert!(
            !t.handle(30.0, status(0))
                .contains(&TrackerCommand::FetchHistoryItem("p1".into()))
        );
    }

    #[test]
    fn a_failed_history_page_is_asked_for_again_at_the_next_status() {
        let mut t = Tracker::new("me");
        let commands = t.handle(0.0, connected());
        assert_eq!(history_asks(&commands), [HISTORY_FETCH]);
        t.handle(
            15.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistory {
                max_items: HISTORY_FETCH,
            }),
        );
        let commands = t.handle(20.0, status(0));
        assert_eq!(history_asks(&commands), [HISTORY_FETCH], "{commands:?}");
    }

    #[test]
    fn a_failed_history_page_is_asked_for_again_after_a_while_when_the_server_is_idle() {
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&[], &[])));
        let poll = 0.5 + QUEUE_POLL_EVERY;
        // Only the look at the queue is due.
        assert_eq!(t.timer_due_at(), Some(poll));
        t.handle(
            15.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistory {
                max_items: HISTORY_FETCH,
            }),
        );
        let due = 15.0 + RETRY_FAILED_AFTER;
        assert_eq!(t.timer_due_at(), Some(due));
        assert!(t.on_timer(due - 0.1).is_empty());
        assert_eq!(history_asks(&t.on_timer(due)), [HISTORY_FETCH]);
        // Asked: nothing is due until it fails again, but the look at the queue.
        assert_eq!(t.timer_due_at(), Some(poll));
        assert_eq!(t.on_timer(poll), [TrackerCommand::FetchQueue]);
        // Disconnected, the reconnect asks instead.
        t.handle(
            70.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistory {
                max_items: HISTORY_FETCH,
            }),
        );
        t.handle(71.0, TrackerInput::Disconnected);
        assert_eq!(t.timer_due_at(), None);
        assert!(t.on_timer(100.0).is_empty());
    }

    #[test]
    fn a_failed_lookup_of_a_prompt_that_left_the_queue_is_asked_for_again_after_a_while() {
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&["p1"], &[])));
        t.handle(0.9, status(0));
        let commands = t.handle(1.0, TrackerInput::Queue(queue(&[], &[])));
        assert!(commands.contains(&TrackerCommand::FetchHistoryItem("p1".into())));
        t.handle(
            16.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistoryItem("p1".into())),
        );
        let due = 16.0 + RETRY_FAILED_AFTER;
        assert_eq!(t.timer_due_at(), Some(due));
        let commands = t.on_timer(due);
        assert!(
            commands.contains(&TrackerCommand::FetchHistoryItem("p1".into())),
            "{commands:?}"
        );
        // The queue was looked at at 1.0: the next look is all that is due.
        assert_eq!(t.timer_due_at(), Some(1.0 + QUEUE_POLL_EVERY));
    }

    /// Connected at 0, the first `/queue` answered with `running` at 0.5, then a `status` at
    /// 1.0 whose `/queue` lists `p1` running: the socket hears.
    fn hearing_one_prompt() -> Tracker {
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&[], &[])));
        assert_eq!(t.handle(1.0, status(1)), [TrackerCommand::FetchQueue]);
        t.handle(1.1, TrackerInput::Queue(queue(&["p1"], &[])));
        assert!(!t.take_reopen());
        t
    }

    #[test]
    fn a_queue_that_changed_with_no_status_told_means_the_socket_is_deaf() {
        let mut t = hearing_one_prompt();
        let poll = 1.1 + QUEUE_POLL_EVERY;
        assert_eq!(t.timer_due_at(), Some(poll));
        assert!(t.on_timer(poll - 0.1).is_empty());
        assert_eq!(t.on_timer(poll), [TrackerCommand::FetchQueue]);
        // p1 ended and p2 runs, and no status said so.
        let commands = t.handle(poll + 0.1, TrackerInput::Queue(queue(&["p2"], &[])));
        // Meanwhile the reply itself keeps the queue right: p1's end is looked up.
        assert!(commands.contains(&TrackerCommand::FetchHistoryItem("p1".into())));
        assert_eq!(t.running().map(|p| p.id.as_str()), Some("p2"));
        let deaf_at = poll + 0.1 + DEAF_AFTER;
        assert_eq!(t.timer_due_at(), Some(deaf_at));
        t.on_timer(deaf_at - 0.1);
        assert!(!t.take_reopen());
        t.on_timer(deaf_at);
        assert!(t.take_reopen());
        assert!(!t.take_reopen(), "said once");
        // The new socket starts afresh: what changed across the reconnect is no sign.
        t.handle(deaf_at + 1.0, TrackerInput::Disconnected);
        t.handle(deaf_at + 2.0, connected());
        t.handle(deaf_at + 2.1, TrackerInput::Queue(queue(&[], &[])));
        t.on_timer(deaf_at + 10.0);
        assert!(!t.take_reopen());
    }

    #[test]
    fn a_prompt_that_came_and_went_between_two_looks_with_no_status_told_means_deaf_too() {
        let ids: Vec<String> = vec!["before".into(), "unheard".into()];
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&[], &[])));
        t.handle(
            0.5,
            newest(&ids[..1], HISTORY_FETCH, "get_history_id_success"),
        );
        let poll = 0.5 + QUEUE_POLL_EVERY;
        let commands = t.on_timer(poll);
        assert!(commands.contains(&TrackerCommand::FetchQueue));
        assert_eq!(history_asks(&commands), [HISTORY_POLL]);
        // The queue is as it was; the history is one longer.
        t.handle(poll + 0.1, TrackerInput::Queue(queue(&[], &[])));
        assert!(t.last_input_changed_nothing());
        t.handle(
            poll + 0.1,
            newest(&ids, HISTORY_POLL, "get_history_id_success"),
        );
        assert!(!t.last_input_changed_nothing());
        assert!(t.finished().any(|p| p.id == "unheard"), "shown at once");
        t.on_timer(poll + 0.1 + DEAF_AFTER);
        assert!(t.take_reopen());
    }

    #[test]
    fn history_deleted_by_someone_is_no_sign_of_a_deaf_socket() {
        let ids: Vec<String> = vec!["older".into(), "newer".into()];
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&[], &[])));
        t.handle(0.5, newest(&ids, HISTORY_FETCH, "get_history_id_success"));
        let poll = 0.5 + QUEUE_POLL_EVERY;
        t.on_timer(poll);
        // The newest entry was deleted (no status tells that): the newest is an older one.
        t.handle(poll + 0.1, TrackerInput::Queue(queue(&[], &[])));
        t.handle(
            poll + 0.1,
            newest(&ids[..1], HISTORY_POLL, "get_history_id_success"),
        );
        t.on_timer(poll + 0.1 + DEAF_AFTER);
        assert!(!t.take_reopen());
    }

    #[test]
    fn a_status_soon_after_the_reply_that_shows_its_change_proves_the_socket_hears() {
        let mut t = hearing_one_prompt();
        let poll = 1.1 + QUEUE_POLL_EVERY;
        t.on_timer(poll);
        // The reply came over HTTP before the status over the socket.
        t.handle(poll + 0.1, TrackerInput::Queue(queue(&[], &[])));
        t.handle(poll + 0.3, status(0));
        t.on_timer(poll + 0.1 + DEAF_AFTER);
        assert!(!t.take_reopen());
    }

    #[test]
    fn a_prompt_that_starts_is_a_change_of_the_queue_too() {
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.5, TrackerInput::Queue(queue(&[], &["p1"])));
        t.on_timer(0.5 + QUEUE_POLL_EVERY);
        // The same prompt, now running.
        t.handle(31.0, TrackerInput::Queue(queue(&["p1"], &[])));
        assert!(!t.last_input_changed_nothing());
        t.on_timer(31.0 + DEAF_AFTER);
        assert!(t.take_reopen());
    }

    #[test]
    fn a_look_at_the_queue_that_finds_it_as_it_was_changes_nothing() {
        let mut t = hearing_one_prompt();
        assert!(!t.last_input_changed_nothing(), "p1 started");
        let poll = 1.1 + QUEUE_POLL_EVERY;
        t.on_timer(poll);
        t.handle(poll + 0.1, TrackerInput::Queue(queue(&["p1"], &[])));
        assert!(t.last_input_changed_nothing());
        t.on_timer(poll + 0.1 + DEAF_AFTER);
        assert!(!t.take_reopen());
        // Any other input counts as a change.
        t.handle(poll + 1.0, status(1));
        assert!(!t.last_input_changed_nothing());
    }

    #[test]
    fn the_queue_is_not_looked_at_while_the_socket_is_down() {
        let mut t = hearing_one_prompt();
        t.handle(2.0, TrackerInput::Disconnected);
        assert_eq!(t.timer_due_at(), None);
        assert!(t.on_timer(100.0).is_empty());
        assert!(!t.take_reopen());
    }

    /// Ten prompts end unseen on `server`, then one that `t` looks up on its own (at `now`),
    /// then seven more.
    fn ten_unseen_one_looked_up_seven_more(t: &mut Tracker, server: &mut Vec<String>, now: f64) {
        server.extend((0..10).map(|i| format!("unseen-{i}")));
        server.push("looked-up".into());
        t.handle(
            now,
            TrackerInput::HistoryItem {
                prompt_id: "looked-up".into(),
                entry: Some(entry("get_history_id_success", "looked-up")),
            },
        );
        server.extend((0..7).map(|i| format!("after-{i}")));
    }

    #[test]
    fn after_a_failed_history_fetch_the_next_reaches_back_past_the_failure() {
        let (mut t, mut server) = synced(Tracker::new("me"), "seen");
        // A poll fails (the server held it past the client's timeout)...
        t.handle(
            17.0,
            TrackerInput::FetchFailed(TrackerCommand::FetchHistory {
                max_items: HISTORY_POLL,
            }),
        );
        // ...while ten prompts end unseen, then one that is learned on its own, then seven.
        ten_unseen_one_looked_up_seven_more(&mut t, &mut server, 17.5);
        // The next fetch does not stop at the prompt it knows: the ten before it are found.
        let commands = t.handle(20.0, status(0));
        let asked = page_through(&mut t, 20.5, &server, commands);
        assert_eq!(asked, [HISTORY_FETCH]);
        assert_eq!(t.finished().count(), server.len());
    }

    #[test]
    fn a_poll_reaches_back_to_the_last_listing_not_to_a_prompt_known_otherwise() {
        let (mut t, mut server) = synced(Tracker::new("me"), "seen");
        // Between two polls, with the socket up: ten of another client's prompts end (what
        // runs them is told to that client alone), then one looked up on its own, then seven.
        ten_unseen_one_looked_up_seven_more(&mut t, &mut server, 1.0);
        // A page whose oldest entry is known does not prove the ten before it were seen.
        let commands = t.handle(2.0, status(0));
        let asked = page_through(&mut t, 2.5, &server, commands);
        assert_eq!(asked, [HISTORY_POLL, 2 * HISTORY_POLL, 4 * HISTORY_POLL]);
        assert_eq!(t.finished().count(), server.len());
    }

    #[test]
    fn a_poll_reaches_the_last_listing_with_its_newest_entry_deleted() {
        let (mut t, mut server) = synced(Tracker::new("me"), "seen");
        server.extend((0..100).map(|i| format!("old-{i:03}")));
        let commands = t.handle(1.0, status(1));
        page_through(&mut t, 1.5, &server, commands);
        server.push("last".into());
        let commands = t.handle(2.0, status(0));
        page_through(&mut t, 2.5, &server, commands);
        // Another client deletes the newest entry; one more prompt ends. The rest of the last
        // listing is still there to overlap: one page is enough.
        server.pop();
        server.push("next".into());
        let commands = t.handle(3.0, status(1));
        assert_eq!(page_through(&mut t, 3.5, &server, commands), [HISTORY_POLL]);
        assert!(t.prompt("next").is_some_and(PromptRecord::is_finished));
    }

    #[test]
    fn history_details_say_what_ran_and_unknown_rather_than_pending() {
        let mut t = Tracker::new("me");
        // A success seen only through history: every node that was to run finished.
        t.handle(
            0.0,
            TrackerInput::History(History(vec![(
                "ok".into(),
                entry("get_history_id_success", "ok"),
            )])),
        );
        let ok = t.prompt("ok").unwrap();
        assert_eq!(ok.phase, Phase::Finished(Outcome::Success));
        assert_eq!(ok.node_counts(), (6, 6), "{:?}", ok.nodes);
        assert_eq!(ok.node_state("5"), NodeState::Cached);
        assert_eq!(ok.node_state("1"), NodeState::Done);

        // An error: `executed` lists what ran before the failing node.
        t.handle(
            1.0,
            TrackerInput::History(History(vec![(
                "bad".into(),
                entry("get_history_id_error", "bad"),
            )])),
        );
        let bad = t.prompt("bad").unwrap();
        assert_eq!(bad.node_state("1"), NodeState::Done);
        assert_eq!(bad.node_state("2"), NodeState::Error);
        assert_eq!(bad.node_counts(), (1, 2));

        // An interrupt that listed nothing executed: the interrupted node, nothing invented.
        t.handle(
            2.0,
            TrackerInput::History(History(vec![(
                "stop".into(),
                entry("get_history_id_interrupted", "stop"),
            )])),
        );
        let stop = t.prompt("stop").unwrap();
        assert_eq!(stop.node_state("1"), NodeState::Interrupted);
        assert_eq!(stop.node_state("2"), NodeState::Unknown);

        // Another client's running prompt: which node runs is not known.
        t.handle(3.0, TrackerInput::Queue(queue(&["other"], &["next"])));
        let other = t.prompt("other").unwrap();
        assert_eq!(other.node_state("1"), NodeState::Unknown);
        assert_eq!(
            t.prompt("next").unwrap().node_state("1"),
            NodeState::Pending
        );
    }

    #[test]
    fn prompts_that_came_and_went_between_two_queue_fetches_are_found_in_history() {
        let mut t = Tracker::new("me");
        let commands = t.handle(0.0, connected());
        assert_eq!(history_asks(&commands), [HISTORY_FETCH]);
        t.handle(0.1, TrackerInput::Queue(queue(&[], &[])));
        t.handle(0.1, TrackerInput::History(History(Vec::new())));

        // An instant failure: accepted, run and failed before any /queue could list it.
        let commands = t.handle(1.0, status(1));
        assert_eq!(history_asks(&commands), [HISTORY_POLL]);
        assert!(commands.contains(&TrackerCommand::FetchQueue));
        // The count falls back while that fetch is in flight: one more once it returns.
        assert_eq!(history_asks(&t.handle(1.01, status(0))), Vec::<u32>::new());
        t.handle(1.02, TrackerInput::Queue(queue(&[], &[])));
        let ids = vec!["fast".to_string()];
        let commands = t.handle(1.03, newest(&ids, HISTORY_POLL, "get_history_id_error"));
        assert_eq!(history_asks(&commands), [HISTORY_POLL]);
        let fast = t.prompt("fast").expect("the fast prompt is known");
        assert!(matches!(fast.phase, Phase::Finished(Outcome::Error(_))));
        assert_eq!(t.finished().count(), 1);
        let news = t.take_finished_news();
        assert_eq!(news.len(), 1);
        assert!(news[0].recovered);
        assert_eq!(news[0].server_finished_ms, Some(1_795_000_000_000.0));
    }

    #[test]
    fn resync_after_a_cut_pages_back_to_the_last_prompt_seen() {
        let (mut t, mut server) = synced(Tracker::new("me"), "seen");
        t.handle(1.0, TrackerInput::Disconnected);
        // 200 prompts end during the cut.
        server.extend((0..200).map(|i| format!("cut-{i:03}")));
        let commands = t.handle(10.0, connected());
        let asked = page_through(&mut t, 10.5, &server, commands);
        assert_eq!(asked, [64, 128, 256]);
        assert_eq!(t.finished().count(), 201);
        let recovered = t.take_finished_news();
        assert_eq!(recovered.len(), 201);
        assert!(recovered[1..].iter().all(|n| n.recovered));
        // In completion order, newest first in the list.
        assert_eq!(t.finished().next().unwrap().id, "cut-199");
    }

    #[test]
    fn paging_stops_at_the_cap_of_finished_prompts_kept() {
        let (mut t, mut server) = synced(Tracker::with_finished_kept("me", 100), "seen");
        server.extend((0..1000).map(|i| format!("cut-{i:04}")));
        let commands = t.handle(10.0, connected());
        let asked = page_through(&mut t, 10.5, &server, commands);
        assert_eq!(asked, [64, 100]);
        assert_eq!(t.finished().count(), 100);
        assert!(t.prompts().count() <= 100);
        assert!(t.take_finished_news().len() <= 100);
    }

    #[test]
    fn memory_stays_bounded_over_many_prompts() {
        let mut t = Tracker::with_finished_kept("me", 50);
        for round in 0..20 {
            let ids: Vec<String> = (0..100).map(|i| format!("r{round}-{i}")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let now = f64::from(round);
            t.handle(now, TrackerInput::Queue(queue(&refs[..1], &refs[1..])));
            // Half ran and are in history, half were deleted.
            t.handle(now + 0.1, TrackerInput::Queue(queue(&[], &[])));
            let history = History(
                ids[..50]
                    .iter()
                    .map(|id| (id.clone(), entry("get_history_id_success", id)))
                    .collect(),
            );
            t.handle(now + 0.2, TrackerInput::History(history));
            for id in &ids[50..] {
                t.handle(
                    now + 0.3,
                    TrackerInput::HistoryItem {
                        prompt_id: id.clone(),
                        entry: None,
                    },
                );
            }
        }
        assert_eq!(t.finished().count(), 50);
        assert_eq!(t.removed().count(), REMOVED_KEPT);
        assert!(t.prompts().count() <= 50 + REMOVED_KEPT);
        assert!(t.awaiting.is_empty(), "{:?}", t.awaiting.len());
        assert!(t.news.len() <= 50);
        assert!(t.history_requested.is_empty() && t.item_backlog.is_empty());
    }

    #[test]
    fn deleted_prompts_are_kept_apart_from_the_servers_history() {
        let mut t = Tracker::new("me");
        t.handle(0.0, TrackerInput::Queue(queue(&["run"], &["del"])));
        t.handle(1.0, TrackerInput::Queue(queue(&["run"], &[])));
        t.handle(
            1.1,
            TrackerInput::HistoryItem {
                prompt_id: "del".into(),
                entry: None,
            },
        );
        assert_eq!(
            t.prompt("del").unwrap().phase,
            Phase::Finished(Outcome::Removed)
        );
        assert_eq!(
            t.finished().count(),
            0,
            "the server's history holds nothing"
        );
        assert_eq!(
            t.removed().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["del"]
        );
    }

    #[test]
    fn a_pending_prompts_wait_counts_from_the_servers_create_time() {
        let mut t = Tracker::new("me");
        t.handle(50.0, TrackerInput::Queue(queue(&[], &["p"])));
        assert_eq!(
            t.prompt("p").unwrap().server_queued_ms,
            Some(1_795_828_000_100.0)
        );
        // Older servers do not say: the wait can only count from when it was first seen.
        t.handle(
            51.0,
            TrackerInput::History(History(vec![(
                "h".into(),
                entry("get_history_id_success", "h"),
            )])),
        );
        assert_eq!(t.prompt("h").unwrap().server_queued_ms, None);
    }

    #[test]
    fn many_prompts_leaving_at_once_are_looked_up_through_one_history_page() {
        let mut t = Tracker::new("me");
        t.handle(0.0, connected());
        t.handle(0.1, TrackerInput::History(History(Vec::new())));
        t.handle(0.1, TrackerInput::Queue(QueueSnapshot::default()));
        let ids: Vec<String> = (0..300).map(|i| format!("b{i:03}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        t.handle(1.0, TrackerInput::Queue(queue(&refs[..1], &refs[1..])));
        let commands = t.handle(2.0, TrackerInput::Queue(queue(&[], &[])));
        assert!(
            !commands
                .iter()
                .any(|c| matches!(c, TrackerCommand::FetchHistoryItem(_))),
            "no flood of single lookups"
        );
        assert!(t.running().is_none() && t.pending().next().is_none());
        let mut commands = commands;
        let mut rounds = 0;
        while let Some(&max_items) = history_asks(&commands).first() {
            rounds += 1;
            assert!(rounds < 10);
            commands = t.handle(2.5, newest(&ids, max_items, "get_history_id_success"));
        }
        assert_eq!(t.finished().count(), 300);
        assert!(
            commands.len() <= HISTORY_ITEMS_IN_FLIGHT,
            "at most a few single lookups at once: {commands:?}"
        );
    }
}
