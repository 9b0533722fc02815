//! Following one prompt on a plain terminal, as `submit --wait` does: the WebSocket and the
//! tracker bring the news, [`ProgressView`] turns it into lines, and [`Terminal`] prints them on
//! stderr (a live status line with a bar when stderr is a terminal, plain lines otherwise).

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::comfy::api::PromptRequest;
use crate::comfy::connection::{ConnEvent, Connection, ConnectionConfig};
use crate::comfy::http::ComfyClient;
use crate::comfy::protocol::{NodeId, PromptId};
use crate::session::{FetchReply, run_fetch, sleep_until, tracker_input};
use crate::tracker::{
    NodeState, Outcome, Phase, PromptRecord, Tracker, TrackerCommand, TrackerInput,
};

use super::clean;

/// How long the connection may stay down before following gives up.
pub const OFFLINE_LIMIT: Duration = Duration::from_secs(120);
/// How often the status line is redrawn while nothing arrives (elapsed time, ETA).
const TICK: Duration = Duration::from_secs(1);
const BAR_CELLS: usize = 20;
/// Characters of one line of an error message printed; a longer line is cut, saying how much
/// was left out.
const MESSAGE_LINE_CHARS: usize = 1_000;
/// Off a terminal, a node's steps get a line at each quarter, and also once this many seconds
/// passed since its last line when the steps moved, so a long node is never silent for minutes.
const PLAIN_CADENCE: f64 = 2.0;

/// How a followed prompt ended, as far as comfytop can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    Failed,
    Interrupted,
    /// Removed from the queue while comfytop was connected: someone deleted it.
    Deleted,
    /// Gone without a record: it left the queue while the connection was down (a server restart
    /// empties the queue), or the server kept no history of it.
    Lost,
}

/// The lines that say a prompt was lost; no duration, since when it ended is not known.
pub fn lost_lines() -> Vec<String> {
    vec![
        "lost: the prompt left the queue and the server has no record of how it ended (it was \
         restarted while the connection was down, or its history was cleared)"
            .to_string(),
    ]
}

/// How following ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEnd {
    Finished(Outcome),
    /// Ctrl-C: the prompt goes on without us.
    StoppedByUser,
    /// The connection stayed down too long.
    Lost {
        reason: String,
    },
}

/// A live connection plus a tracker, for following prompts this client submits.
pub struct Follower {
    client: ComfyClient,
    connection: Connection,
    events: mpsc::Receiver<ConnEvent>,
    tracker: Tracker,
    fetch_tx: mpsc::Sender<FetchReply>,
    fetch_rx: mpsc::Receiver<FetchReply>,
    started: Instant,
    /// The prompt followed; other prompts' history is not fetched.
    target: Option<PromptId>,
    last_fetch_error: Option<String>,
    /// Since when and why the connection is down, while it is (after having been up).
    offline: Option<(Instant, String)>,
    /// The connection was down at some time after the prompt was submitted: a prompt that left
    /// the queue without a trace may have been lost to a server restart rather than deleted.
    cut_since_submitted: bool,
}

impl Follower {
    /// Opens the WebSocket under `client_id` and waits until it is connected, so no event of a
    /// prompt submitted afterwards is missed. Fails with the reason if the first attempt fails.
    pub async fn connect(
        client: ComfyClient,
        client_id: &str,
        terminal: &mut Terminal,
    ) -> Result<Self, String> {
        let (tx, events) = mpsc::channel(256);
        let config = ConnectionConfig::new(client.server().clone(), client_id);
        let connection = Connection::spawn(config, tx);
        let (fetch_tx, fetch_rx) = mpsc::channel(64);
        let mut follower = Self {
            client,
            connection,
            events,
            tracker: Tracker::new(client_id),
            fetch_tx,
            fetch_rx,
            started: Instant::now(),
            target: None,
            last_fetch_error: None,
            offline: None,
            cut_since_submitted: false,
        };
        loop {
            let Some(event) = follower.events.recv().await else {
                return Err("the connection task ended".to_string());
            };
            match &event {
                ConnEvent::Disconnected { reason } => {
                    let reason = reason.clone();
                    follower.connection.close().await;
                    return Err(reason);
                }
                ConnEvent::Connected { .. } => {
                    follower.feed_event(event, terminal);
                    return Ok(follower);
                }
                _ => follower.feed_event(event, terminal),
            }
        }
    }

    /// Tells the tracker the server accepted `prompt_id`, and follows that prompt from now on.
    pub fn submitted(&mut self, prompt_id: &str, number: f64, request: PromptRequest) {
        self.target = Some(prompt_id.to_string());
        let now = self.now();
        let commands = self.tracker.handle(
            now,
            TrackerInput::Submitted {
                prompt_id: prompt_id.to_string(),
                number,
                request,
            },
        );
        self.run(commands);
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// How a prompt that ended with `outcome` ended for a script: a prompt gone without a trace
    /// while the connection was down is lost, not deleted.
    pub fn ending(&self, outcome: &Outcome) -> Ending {
        match outcome {
            Outcome::Success => Ending::Succeeded,
            Outcome::Error(_) => Ending::Failed,
            Outcome::Interrupted { .. } => Ending::Interrupted,
            Outcome::Removed if !self.cut_since_submitted => Ending::Deleted,
            Outcome::Removed | Outcome::Unknown => Ending::Lost,
        }
    }

    /// Follows `prompt_id` until it ends, Ctrl-C, or the connection stays down too long.
    pub async fn follow(
        &mut self,
        prompt_id: &str,
        terminal: &mut Terminal,
        ctrl_c: &mut CtrlC,
    ) -> FollowEnd {
        self.target = Some(prompt_id.to_string());
        let mut view = ProgressView::new(terminal.is_tty());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(record) = self.tracker.prompt(prompt_id) {
                let ahead = self.ahead_of(prompt_id);
                let frame = view.update(record, ahead, self.now());
                terminal.show(&frame);
                if let Phase::Finished(outcome) = &record.phase {
                    let lines = match self.ending(outcome) {
                        Ending::Lost => lost_lines(),
                        _ => ending_lines(record),
                    };
                    terminal.show(&Frame {
                        lines,
                        status: None,
                    });
                    return FollowEnd::Finished(outcome.clone());
                }
            }
            let offline_deadline = self
                .offline
                .as_ref()
                .map(|(since, _)| *since + OFFLINE_LIMIT);
            let timer_at = self
                .tracker
                .timer_due_at()
                .map(|at| self.started + Duration::from_secs_f64(at.max(0.0)));
            tokio::select! {
                biased;
                () = ctrl_c.pressed() => {
                    terminal.show(&Frame::default());
                    return FollowEnd::StoppedByUser;
                }
                event = self.events.recv() => {
                    let Some(event) = event else {
                        return FollowEnd::Lost { reason: "the connection task ended".into() };
                    };
                    self.feed_event(event, terminal);
                }
                Some(reply) = self.fetch_rx.recv() => self.feed_reply(reply, terminal),
                () = sleep_until(offline_deadline) => {
                    let reason = self.offline.take().map(|(_, reason)| reason).unwrap_or_default();
                    return FollowEnd::Lost { reason };
                }
                // A lookup that failed for good is asked again in a while, also from an idle
                // server; the queue is looked at now and then, which shows a socket gone deaf.
                () = sleep_until(timer_at) => {
                    let commands = self.tracker.on_timer(self.now());
                    self.run(commands);
                    if self.tracker.take_reopen() {
                        self.connection.reopen();
                    }
                }
                _ = tick.tick(), if terminal.is_tty() => {}
            }
        }
    }

    /// Closes the WebSocket properly.
    pub async fn close(self) {
        self.connection.close().await;
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// How many prompts run before `prompt_id` (the running one included), while it waits.
    fn ahead_of(&self, prompt_id: &str) -> Option<usize> {
        let position = self.tracker.pending().position(|p| p.id == prompt_id)?;
        let running = self.tracker.running().is_some_and(|p| p.id != prompt_id);
        Some(position + usize::from(running))
    }

    fn feed_event(&mut self, event: ConnEvent, terminal: &mut Terminal) {
        // Said when the connection drops or the reason changes, not at every retry.
        match &event {
            ConnEvent::Disconnected { reason } => {
                let since = self
                    .offline
                    .as_ref()
                    .map_or_else(Instant::now, |(since, _)| *since);
                let repeated = self.offline.as_ref().is_some_and(|(_, r)| r == reason);
                if self.target.is_some() {
                    self.cut_since_submitted = true;
                }
                if !repeated {
                    terminal.lines(vec![format!(
                        "connection lost: {}; reconnecting (the prompt goes on on the server)",
                        clean(reason)
                    )]);
                }
                self.offline = Some((since, reason.clone()));
            }
            ConnEvent::Connected { .. } if self.offline.take().is_some() => {
                terminal.lines(vec!["reconnected".to_string()]);
            }
            _ => {}
        }
        if let Some(input) = tracker_input(event) {
            let now = self.now();
            let commands = self.tracker.handle(now, input);
            self.run(commands);
        }
    }

    fn feed_reply(&mut self, reply: FetchReply, terminal: &mut Terminal) {
        match &reply.error {
            // Said once, not at every retry; the connection notices say the rest.
            Some(error) if self.tracker.is_connected() => {
                let text = clean(&error.to_string());
                if self.last_fetch_error.as_deref() != Some(text.as_str()) {
                    terminal.lines(vec![format!("warning: {text}")]);
                    self.last_fetch_error = Some(text);
                }
            }
            Some(_) => {}
            None => self.last_fetch_error = None,
        }
        let now = self.now();
        let commands = self.tracker.handle(now, reply.input);
        self.run(commands);
    }

    /// Runs the fetches that matter for the followed prompt; the others (the wide history
    /// refresh, other prompts' history) are answered as failed at once, which costs nothing.
    fn run(&mut self, commands: Vec<TrackerCommand>) {
        let mut pending = commands;
        while let Some(command) = pending.pop() {
            let wanted = match &command {
                TrackerCommand::FetchQueue => true,
                TrackerCommand::FetchHistoryItem(id) => self.target.as_deref() == Some(id),
                TrackerCommand::FetchHistory { .. } => false,
            };
            if wanted {
                let client = self.client.clone();
                let tx = self.fetch_tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(run_fetch(&client, command).await).await;
                });
            } else {
                let now = self.now();
                pending.extend(self.tracker.handle(now, TrackerInput::FetchFailed(command)));
            }
        }
    }
}

/// Ctrl-C, caught from the moment this is created: the process is no longer ended by it, so
/// whoever holds this must act on [`CtrlC::pressed`].
pub struct CtrlC(watch::Receiver<bool>);

impl CtrlC {
    /// Starts listening (on the current tokio runtime).
    pub fn listen() -> Self {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Self(rx)
    }

    pub fn was_pressed(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once Ctrl-C was pressed (at once if it already was).
    pub async fn pressed(&mut self) {
        if self.0.wait_for(|&pressed| pressed).await.is_err() {
            // The signal could not be caught: it will never be reported.
            std::future::pending::<()>().await;
        }
    }
}

/// Lines to print for good, and the live status line (terminals only).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub lines: Vec<String>,
    pub status: Option<String>,
}

/// Turns a prompt's state into output. On a terminal: a line per finished node and a status
/// line with a bar; elsewhere: a line per started node and one at each quarter of its steps.
#[derive(Debug)]
pub struct ProgressView {
    tty: bool,
    /// Nodes given their line (started on plain output, finished on a terminal).
    printed: HashSet<NodeId>,
    cached_printed: bool,
    /// Per node, the quarter of its steps last printed, and when and at which step (plain
    /// output).
    printed_steps: HashMap<NodeId, PrintedSteps>,
    ahead_printed: Option<usize>,
}

impl ProgressView {
    pub fn new(tty: bool) -> Self {
        Self {
            tty,
            printed: HashSet::new(),
            cached_printed: false,
            printed_steps: HashMap::new(),
            ahead_printed: None,
        }
    }

    /// What to print for `record` as of `now`; `ahead` is the number of prompts before it.
    pub fn update(&mut self, record: &PromptRecord, ahead: Option<usize>, now: f64) -> Frame {
        let mut lines = Vec::new();
        if record.phase == Phase::Queued {
            if let Some(ahead) = ahead
                && ahead > 0
                && self.ahead_printed != Some(ahead)
                && !self.tty
            {
                lines.push(format!("waiting: {}", prompts_ahead(ahead)));
            }
            self.ahead_printed = ahead;
            let status = self.tty.then(|| {
                let wait = format_secs((now - record.first_seen).max(0.0));
                match ahead {
                    Some(n) if n > 0 => format!("queued: {} │ {wait}", prompts_ahead(n)),
                    _ => format!("queued │ {wait}"),
                }
            });
            return Frame { lines, status };
        }
        if !self.cached_printed && !record.cached.is_empty() {
            self.cached_printed = true;
            let names: Vec<String> = record
                .cached
                .iter()
                .map(|id| node_label(record, id))
                .collect();
            lines.push(format!("cached: {}", names.join(", ")));
        }
        for id in &record.execution_order {
            let Some(node) = record.nodes.get(id) else {
                continue;
            };
            if node.state == NodeState::Cached || self.printed.contains(id) {
                continue;
            }
            // A terminal shows the running node live and keeps a line per finished one; plain
            // output says when each node starts.
            let due = if self.tty {
                node.state == NodeState::Done
            } else {
                node.state != NodeState::Pending
            };
            if due {
                self.printed.insert(id.clone());
                lines.push(if self.tty {
                    done_line(record, id)
                } else {
                    node_label(record, id)
                });
            }
        }
        if !self.tty
            && let Some(id) = &record.current_node
            && let Some(node) = record.nodes.get(id)
            && let Some(fraction) = node.fraction()
        {
            let quarter = (fraction * 4.0).floor() as u32;
            let printed = self
                .printed_steps
                .entry(id.clone())
                .or_insert(PrintedSteps {
                    quarter: 0,
                    at: now,
                    value: 0.0,
                });
            let moved = node.value != printed.value;
            if quarter > printed.quarter || (moved && now - printed.at >= PLAIN_CADENCE) {
                *printed = PrintedSteps {
                    quarter: quarter.max(printed.quarter),
                    at: now,
                    value: node.value,
                };
                lines.push(progress_text(record, id, now));
            }
        }
        let status = (self.tty && !record.is_finished()).then(|| status_line(record, now));
        Frame { lines, status }
    }
}

/// What plain output last said about a node's steps.
#[derive(Debug, Clone, Copy)]
struct PrintedSteps {
    quarter: u32,
    /// When (the caller's clock).
    at: f64,
    value: f64,
}

fn prompts_ahead(n: usize) -> String {
    if n == 1 {
        "1 prompt ahead".to_string()
    } else {
        format!("{n} prompts ahead")
    }
}

/// `[3] Slow Steps`: the node id and its title (or class).
pub fn node_label(record: &PromptRecord, id: &str) -> String {
    match record.node_title(id) {
        Some(title) => format!("[{}] {}", clean(id), clean(title)),
        None => format!("[{}]", clean(id)),
    }
}

fn done_line(record: &PromptRecord, id: &str) -> String {
    let mut line = format!("✓ {}", node_label(record, id));
    if let Some(node) = record.nodes.get(id) {
        if node.has_progress {
            line.push_str(&format!("  {} steps", format_count(node.max)));
        }
        if let (Some(start), Some(end)) = (node.started_at, node.finished_at)
            && end - start >= 0.05
        {
            line.push_str(&format!("  {}", format_secs(end - start)));
        }
    }
    line
}

/// `[3] Slow Steps 3/6 50% 3.3 it/s ETA 1s`.
fn progress_text(record: &PromptRecord, id: &str, now: f64) -> String {
    format!(
        "{}{}",
        node_label(record, id),
        step_details(record, id, now)
    )
}

/// ` 3/6 50% 3.3 it/s ETA 1s` for a node that reports steps, else nothing.
fn step_details(record: &PromptRecord, id: &str, now: f64) -> String {
    let Some(node) = record.nodes.get(id).filter(|n| n.has_progress) else {
        return String::new();
    };
    let mut text = format!(" {}/{}", format_count(node.value), format_count(node.max));
    if let Some(fraction) = node.fraction() {
        text.push_str(&format!(" {:.0}%", fraction * 100.0));
    }
    if let Some(rate) = node.rate() {
        text.push_str(&format!(" {}", crate::format::speed(rate)));
    }
    if let (Some(eta), Some(at)) = (node.eta(), node.last_progress_at())
        && node.value < node.max
    {
        let left = (eta - (now - at)).max(0.0);
        text.push_str(&format!(" ETA {}", format_secs(left)));
    }
    text
}

/// The live line: current node with a bar, steps, speed and ETA, then nodes and elapsed time.
fn status_line(record: &PromptRecord, now: f64) -> String {
    let (complete, total) = record.node_counts();
    let elapsed = format_secs((now - record.started_at.unwrap_or(record.first_seen)).max(0.0));
    let current = match &record.current_node {
        Some(id) => {
            let bar = record
                .nodes
                .get(id)
                .and_then(|n| n.fraction())
                .map(|f| format!(" {}", bar(f)))
                .unwrap_or_default();
            format!(
                "{}{bar}{}",
                node_label(record, id),
                step_details(record, id, now)
            )
        }
        None => "starting".to_string(),
    };
    let node_number = (complete + 1).min(total.max(1));
    format!("{current} │ node {node_number}/{total} │ {elapsed}")
}

fn bar(fraction: f64) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * BAR_CELLS as f64).round() as usize).min(BAR_CELLS);
    format!("{}{}", "█".repeat(filled), "░".repeat(BAR_CELLS - filled))
}

/// The closing lines for a finished prompt.
pub fn ending_lines(record: &PromptRecord) -> Vec<String> {
    let took = record
        .duration()
        .map(|d| format!(" after {}", format_secs(d)))
        .unwrap_or_default();
    let node = |id: &Option<NodeId>, kind: &Option<String>| match (id, kind) {
        (Some(id), Some(kind)) => match record.node_title(id) {
            Some(title) if title != kind => {
                format!("node [{}] {} ({})", clean(id), clean(title), clean(kind))
            }
            _ => format!("node [{}] {}", clean(id), clean(kind)),
        },
        (Some(id), None) => format!("node {}", node_label(record, id)),
        (None, Some(kind)) => format!("a {} node", clean(kind)),
        (None, None) => "an unknown node".to_string(),
    };
    match record.outcome() {
        Some(Outcome::Success) => {
            let outputs = output_refs(record).len();
            let outputs = match outputs {
                0 => String::new(),
                1 => ", 1 output".to_string(),
                n => format!(", {n} outputs"),
            };
            vec![format!("done{took}{outputs}")]
        }
        Some(Outcome::Error(error)) => {
            let mut lines = vec![format!(
                "error in {}{took}: {}",
                node(&error.node_id, &error.node_type),
                clean(&error.exception_type)
            )];
            lines.extend(
                error
                    .exception_message
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        let line = crate::comfy::api::cut_text(&clean(l), MESSAGE_LINE_CHARS);
                        format!("  {line}")
                    }),
            );
            lines
        }
        Some(Outcome::Interrupted { node_id, node_type }) => {
            vec![format!("interrupted in {}{took}", node(node_id, node_type))]
        }
        Some(Outcome::Removed) => vec!["deleted from the queue before it ran".to_string()],
        Some(Outcome::Unknown) => vec![
            "it left the queue, and the server has no record of how it ended (history cleared, \
             or the server restarted)"
                .to_string(),
        ],
        None => Vec::new(),
    }
}

/// Every file a prompt's outputs name (images, and any other output list of files: videos,
/// audio), in node order, each once.
pub fn output_refs(record: &PromptRecord) -> Vec<crate::comfy::protocol::ImageRef> {
    super::download::files_of(record.outputs.values())
}

/// `12.3s`, `4m05s`, `1h02m`.
pub fn format_secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        let whole = secs as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        let whole = secs as u64;
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

fn format_count(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.1}")
    }
}

/// stderr, with a status line redrawn in place when it is a terminal.
pub struct Terminal {
    tty: bool,
    /// The status line on screen, if any.
    status_shown: Option<String>,
}

impl Terminal {
    pub fn stderr() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            status_shown: None,
        }
    }

    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Prints the frame's lines, then its status line in place of the previous one.
    pub fn show(&mut self, frame: &Frame) {
        let mut err = std::io::stderr().lock();
        if !self.tty {
            for line in &frame.lines {
                let _ = writeln!(err, "{line}");
            }
            return;
        }
        if frame.lines.is_empty() && frame.status == self.status_shown {
            return;
        }
        if self.status_shown.take().is_some() {
            let _ = write!(err, "\r\x1b[2K");
        }
        for line in &frame.lines {
            let _ = writeln!(err, "{line}");
        }
        if let Some(status) = &frame.status {
            // A terminal that reports no size (0 columns) is taken as 80 wide.
            let width = crossterm::terminal::size()
                .ok()
                .map(|(cols, _)| usize::from(cols))
                .filter(|&cols| cols > 0)
                .unwrap_or(80);
            let shown: String = status.chars().take(width.saturating_sub(1)).collect();
            let _ = write!(err, "{shown}");
            self.status_shown = Some(status.clone());
        }
        let _ = err.flush();
    }

    /// Prints lines above the status line (which the next frame redraws).
    pub fn lines(&mut self, lines: Vec<String>) {
        self.show(&Frame {
            lines,
            status: None,
        });
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.status_shown.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::Decoded;
    use crate::comfy::transcript::{TranscriptFrame, TranscriptReader};
    use serde_json::Value;

    const REFERENCE: &str = crate::FIXTURES;

    /// Plays a transcript into a tracker, rendering after every frame; returns all lines.
    fn render(name: &str, our_id: &str, tty: bool) -> (Vec<String>, Vec<String>, Tracker) {
        let path = format!("{REFERENCE}/transcripts/{name}.jsonl");
        let mut tracker = Tracker::new(our_id);
        // The submission the recording made, as `submit` tells the tracker.
        let meta_path = format!("{REFERENCE}/transcripts/{name}.meta.json");
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(meta_path).unwrap()).unwrap();
        let post = meta["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == "/prompt")
            .unwrap();
        tracker.handle(
            0.0,
            TrackerInput::Submitted {
                prompt_id: meta["prompt_ids"]["run"].as_str().unwrap().to_string(),
                number: 0.0,
                request: serde_json::from_value(post["body"].clone()).unwrap(),
            },
        );
        let mut view = ProgressView::new(tty);
        let mut lines = Vec::new();
        let mut statuses = Vec::new();
        for frame in TranscriptReader::open(path.as_ref()).unwrap() {
            let TranscriptFrame { t, raw } = frame.unwrap();
            let input = match raw.decode() {
                Decoded::Message(m) => TrackerInput::Message(m),
                Decoded::Binary(b) => TrackerInput::Binary(b),
                Decoded::Malformed { error } => panic!("{error}"),
            };
            tracker.handle(t, input);
            for record in tracker.prompts() {
                let frame = view.update(record, None, t);
                lines.extend(frame.lines);
                statuses.extend(frame.status);
            }
        }
        (lines, statuses, tracker)
    }

    #[test]
    fn plain_output_has_a_line_per_node_and_per_quarter_of_steps() {
        let (lines, statuses, tracker) =
            render("c_full_run_legacy_previews", "lab-c-54413bc8", false);
        assert!(statuses.is_empty(), "no status line off a terminal");
        assert!(
            lines.contains(&"cached: [5] EmptyImage".to_string()),
            "{lines:#?}"
        );
        assert!(lines.contains(&"[1] Slow Steps".to_string()), "{lines:#?}");
        let steps: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with("[1] Slow Steps "))
            .collect();
        // 6 steps: quarters crossed at steps 2, 3, 5 and 6.
        assert_eq!(steps.len(), 4, "{steps:#?}");
        assert!(steps[0].starts_with("[1] Slow Steps 2/6 33%"), "{steps:#?}");
        assert!(
            steps[3].starts_with("[1] Slow Steps 6/6 100%"),
            "{steps:#?}"
        );
        assert!(
            steps[1].contains(" it/s") && steps[1].contains(" ETA "),
            "{steps:#?}"
        );
        let record = tracker.finished().next().unwrap();
        let ending = ending_lines(record);
        assert_eq!(ending.len(), 1);
        assert!(ending[0].starts_with("done after "), "{ending:?}");
        assert!(ending[0].ends_with(" outputs"), "{ending:?}");
    }

    /// A tracker following prompt "p" of one node with `max` steps, started at time 0.
    fn long_node(max: u32) -> Tracker {
        let mut tracker = Tracker::new("me");
        let request: PromptRequest = serde_json::from_value(serde_json::json!({
            "prompt": {"1": {"class_type": "LabSlowSteps", "inputs": {"steps": max}}},
            "client_id": "me",
        }))
        .unwrap();
        tracker.handle(
            0.0,
            TrackerInput::Submitted {
                prompt_id: "p".into(),
                number: 0.0,
                request,
            },
        );
        for text in [
            r#"{"type":"execution_start","data":{"prompt_id":"p","timestamp":0}}"#.to_string(),
            r#"{"type":"executing","data":{"node":"1","display_node":"1","prompt_id":"p"}}"#
                .to_string(),
        ] {
            step(&mut tracker, 0.0, &text);
        }
        tracker
    }

    fn step(tracker: &mut Tracker, now: f64, text: &str) {
        let Decoded::Message(message) = crate::comfy::RawFrame::Text(text.into()).decode() else {
            panic!("{text}")
        };
        tracker.handle(now, TrackerInput::Message(message));
    }

    #[test]
    fn plain_output_of_a_long_node_speaks_every_two_seconds_while_it_moves() {
        let max = 10_000;
        let mut tracker = long_node(max);
        let mut view = ProgressView::new(false);
        let mut printed: Vec<(f64, String)> = Vec::new();
        // One step every 0.1 s for 10 s: 100 steps, far from the first quarter (2,500).
        for i in 1..=100 {
            let now = f64::from(i) * 0.1;
            step(
                &mut tracker,
                now,
                &format!(
                    r#"{{"type":"progress","data":{{"value":{i},"max":{max},"prompt_id":"p","node":"1"}}}}"#
                ),
            );
            let record = tracker.prompt("p").unwrap();
            for line in view.update(record, None, now).lines {
                printed.push((now, line));
            }
        }
        let steps: Vec<&(f64, String)> = printed
            .iter()
            .filter(|(_, l)| l.contains("/10000 "))
            .collect();
        // About every 2 s (4 or 5 lines in 10 s, by rounding), never more often.
        assert!((4..=5).contains(&steps.len()), "{printed:#?}");
        assert!(steps[0].0 >= PLAIN_CADENCE, "{steps:#?}");
        assert!(steps[0].1.starts_with("[1] "), "{steps:#?}");
        assert!(
            steps
                .windows(2)
                .all(|w| w[1].0 - w[0].0 >= PLAIN_CADENCE - 1e-9),
            "{steps:#?}"
        );

        // Once the last steps are told, nothing moves: nothing more is said, however long.
        let record = tracker.prompt("p").unwrap();
        let last = view.update(record, None, 60.0).lines;
        assert!(
            last[0].starts_with("[1] ") && last[0].contains(" 100/10000 "),
            "{last:?}"
        );
        assert!(view.update(record, None, 600.0).lines.is_empty());
    }

    #[test]
    fn terminal_output_has_a_line_per_finished_node_and_a_live_bar() {
        let (lines, statuses, _) = render("c_full_run_legacy_previews", "lab-c-54413bc8", true);
        let done: Vec<&String> = lines.iter().filter(|l| l.starts_with("✓ ")).collect();
        assert!(
            done[0].starts_with("✓ [1] Slow Steps  6 steps  "),
            "{done:#?}"
        );
        assert!(
            statuses
                .iter()
                .any(|s| s.starts_with("[1] Slow Steps ██████████░░░░░░░░░░ 3/6 50%")),
            "{statuses:#?}"
        );
        assert!(statuses[0].starts_with("queued │ "), "{statuses:#?}");
        let running = statuses.iter().skip_while(|s| s.starts_with("queued"));
        assert!(running.clone().count() > 6);
        assert!(
            running.clone().all(|s| s.contains(" │ node ")),
            "{statuses:#?}"
        );
    }

    #[test]
    fn an_error_names_node_exception_and_message() {
        let (_, _, tracker) = render("e_execution_error", "lab-e-519deaa7", false);
        let record = tracker.finished().next().unwrap();
        let lines = ending_lines(record);
        assert!(
            lines[0].starts_with("error in node [2] LabRaiseError after "),
            "{lines:?}"
        );
        assert!(lines[0].ends_with(": RuntimeError"), "{lines:?}");
        assert!(lines[1].contains("deliberate failure"), "{lines:?}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_secs(3.21), "3.2s");
        assert_eq!(format_secs(245.0), "4m05s");
        assert_eq!(format_secs(3725.0), "1h02m");
        assert_eq!(crate::format::speed(0.5), "2.0 s/it");
        assert_eq!(bar(0.5).chars().filter(|c| *c == '█').count(), 10);
    }
}
