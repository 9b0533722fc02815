//! The non-interactive modes: `watch` follows a live server and `replay` plays a transcript, both
//! through one [`Watcher`], so they decode, track and print the same way.
//!
//! A [`Watcher`] is pure: it turns events into lines and tracker commands, and leaves reading the
//! socket, running the fetches and printing to [`live`] and [`replay`].

pub mod live;
pub mod replay;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use std::io;

use crate::comfy::Decoded;
use crate::comfy::api::History;
use crate::comfy::connection::{ConnEvent, ReceivedFrame};
use crate::comfy::protocol::ServerMessage;
use crate::comfy::server_url::ServerUrl;
use crate::comfy::transcript::{Recorder, TranscriptHttp};
use crate::describe::{self, event_name};
use crate::text::{one_line, terminal_safe_json, truncate};
use crate::tracker::{Outcome, Phase, PromptRecord, Tracker, TrackerCommand, TrackerInput};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineFormat {
    /// One human-readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Counts of what came in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub frames: u64,
    /// Frames per `event` name (see [`describe::event_name`]).
    pub events: BTreeMap<String, u64>,
    /// Message types and binary event types this client does not know.
    pub unknown: u64,
    pub malformed: u64,
}

impl Stats {
    fn count(&mut self, decoded: &Decoded) {
        self.frames += 1;
        let name = event_name(decoded);
        match self.events.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.events.insert(name.to_string(), 1);
            }
        }
        match decoded {
            Decoded::Message(ServerMessage::Unknown { .. })
            | Decoded::Binary(crate::comfy::binary::BinaryFrame::Unknown { .. }) => {
                self.unknown += 1
            }
            Decoded::Malformed { .. } => self.malformed += 1,
            _ => {}
        }
    }
}

/// What one event produced: lines to print, fetches to run.
#[derive(Debug, Default)]
pub struct Step {
    pub lines: Vec<String>,
    pub commands: Vec<TrackerCommand>,
}

/// Decodes, tracks and describes: the part of `watch` and `replay` that does no I/O.
pub struct Watcher {
    tracker: Tracker,
    format: LineFormat,
    stats: Stats,
    /// The first history answer came: prompts first seen finished after it ended while
    /// nobody watched (during a cut, or between two looks at the queue), and each gets its
    /// line; before it, they are the server's backlog, summed up in one line.
    backlog_seen: bool,
}

impl Watcher {
    pub fn new(our_client_id: &str, format: LineFormat) -> Self {
        Self {
            tracker: Tracker::new(our_client_id),
            format,
            stats: Stats::default(),
            backlog_seen: false,
        }
    }

    /// Keeps at most `kept` finished prompts (`--history`).
    pub fn keeping_finished(mut self, kept: usize) -> Self {
        self.tracker = Tracker::with_finished_kept(self.tracker.our_client_id(), kept);
        self
    }

    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// One received frame: exactly one line, and the fetches the tracker asks for. `now` is the
    /// tracker's clock (monotonic over reconnects), not the frame's `t`.
    pub fn on_frame(&mut self, now: f64, frame: ReceivedFrame) -> Step {
        self.stats.count(&frame.decoded);
        // Described first, so the decoded frame can then move into the tracker uncloned.
        let line = match self.format {
            LineFormat::Human => describe::frame_line(&frame, &self.tracker),
            LineFormat::Json => describe::frame_json(&frame, &self.tracker),
        };
        let commands = match frame.decoded {
            Decoded::Message(m) => self.tracker.handle(now, TrackerInput::Message(m)),
            Decoded::Binary(b) => self.tracker.handle(now, TrackerInput::Binary(b)),
            Decoded::Malformed { .. } => Vec::new(),
        };
        Step {
            lines: vec![line],
            commands,
        }
    }

    /// Any connection event: a notice line, or for a frame what [`Watcher::on_frame`] gives.
    pub fn on_connection(&mut self, now: f64, event: ConnEvent, server: &ServerUrl) -> Step {
        if let ConnEvent::Frame(frame) = event {
            return self.on_frame(now, frame);
        }
        let line = match self.format {
            LineFormat::Human => describe::connection_line(&event, server),
            LineFormat::Json => describe::connection_json(&event, server),
        };
        let commands = match crate::session::tracker_input(event) {
            Some(input) => self.tracker.handle(now, input),
            None => Vec::new(),
        };
        Step {
            lines: vec![line],
            commands,
        }
    }

    /// An HTTP reply for a command. Prints what it taught about prompts: phase changes one line
    /// each, and prompts first seen already finished (the history fetched on connect) as one
    /// summary line.
    pub fn on_reply(&mut self, now: f64, input: TrackerInput) -> Step {
        let before = self.tracker.changes();
        let backlog = !self.backlog_seen;
        if matches!(input, TrackerInput::History(_)) {
            self.backlog_seen = true;
        }
        let commands = self.tracker.handle(now, input);

        let mut changed: Vec<&PromptRecord> = Vec::new();
        let mut recovered: Vec<&PromptRecord> = Vec::new();
        let mut earlier: BTreeMap<&'static str, u64> = BTreeMap::new();
        for p in self.tracker.prompts().filter(|p| p.moved_since(before)) {
            match p.new_since(before) {
                true if p.is_finished() && backlog => {
                    *earlier.entry(PhaseKey::of(p).0).or_default() += 1;
                }
                true if p.is_finished() => recovered.push(p),
                _ => changed.push(p),
            }
        }
        // Queue order, then first seen, then id: lines come out in a stable order.
        changed.sort_by(|a, b| {
            let number = |p: &PromptRecord| p.number.unwrap_or(f64::MAX);
            number(a)
                .total_cmp(&number(b))
                .then(a.first_seen.total_cmp(&b.first_seen))
                .then(a.id.cmp(&b.id))
        });
        // In the order they finished, by the server's clock when it said.
        recovered.sort_by(|a, b| {
            let finished = |p: &PromptRecord| p.server_finished_ms.unwrap_or(f64::MAX);
            finished(a).total_cmp(&finished(b)).then(a.id.cmp(&b.id))
        });
        let mut lines: Vec<String> = recovered
            .into_iter()
            .map(|p| self.recovered_line(p))
            .chain(changed.into_iter().map(|p| self.prompt_line(p)))
            .collect();
        if !earlier.is_empty() {
            lines.insert(0, self.history_line(&earlier));
        }
        Step { lines, commands }
    }

    /// A fetch that failed: one line saying so (`error` names the call and the server); the
    /// tracker asks again when the next `status` comes, or after a while (see
    /// [`Watcher::on_timer`]).
    pub fn on_fetch_failed(&mut self, now: f64, command: TrackerCommand, error: &str) -> Step {
        let request = request_name(&command);
        let line = match self.format {
            LineFormat::Human => format!("{:>9} {}", "--", one_line(error)),
            LineFormat::Json => terminal_safe_json(&json!({
                "event": "fetch_failed",
                "request": request,
                "error": error,
            })),
        };
        let commands = self.tracker.handle(now, TrackerInput::FetchFailed(command));
        Step {
            lines: vec![line],
            commands,
        }
    }

    /// The time the tracker gave ([`Tracker::timer_due_at`]) came: a failed fetch is asked
    /// again, or the queue looked at; then [`Watcher::take_reopen`] says whether the socket
    /// went deaf.
    pub fn on_timer(&mut self, now: f64) -> Step {
        Step {
            lines: Vec::new(),
            commands: self.tracker.on_timer(now),
        }
    }

    /// Whether the socket should be reopened: the server no longer sends to it.
    pub fn take_reopen(&mut self) -> bool {
        self.tracker.take_reopen()
    }

    /// What became of joining the comfytop bridge: one line, nothing to fetch.
    pub fn on_bridge(&self, link: &crate::bridge::BridgeLink, server: &ServerUrl) -> Step {
        let line = match self.format {
            LineFormat::Human => describe::bridge_line(link, server),
            LineFormat::Json => describe::bridge_json(link, server),
        };
        Step {
            lines: line.into_iter().collect(),
            commands: Vec::new(),
        }
    }

    /// The connection was lost where no line says so (a recording that goes on on a new
    /// socket): the tracker learns what a live cut tells it.
    pub fn on_connection_lost(&mut self, now: f64) -> Vec<TrackerCommand> {
        self.tracker.handle(now, TrackerInput::Disconnected)
    }

    /// The tracker, with everything it learned.
    pub fn into_tracker(self) -> Tracker {
        self.tracker
    }

    fn prompt_line(&self, p: &PromptRecord) -> String {
        match self.format {
            LineFormat::Human => {
                let id: String = one_line(&p.id).chars().take(8).collect();
                let line = format!("{:>9} prompt {id} {}", "--", phase_text(p));
                crate::text::sanitize(&line).replace(['\n', '\t'], " ")
            }
            LineFormat::Json => terminal_safe_json(&Value::Object(prompt_fields(p))),
        }
    }

    /// A prompt that finished while nobody watched: its id, outcome and when it finished.
    fn recovered_line(&self, p: &PromptRecord) -> String {
        match self.format {
            LineFormat::Human => {
                let id: String = one_line(&p.id).chars().take(8).collect();
                let when = p
                    .server_finished_ms
                    .map(|ms| format!(" at {} UTC", clock_time(ms)))
                    .unwrap_or_default();
                let line = format!(
                    "{:>9} prompt {id} {} (finished unseen{when})",
                    "--",
                    phase_text(p)
                );
                crate::text::sanitize(&line).replace(['\n', '\t'], " ")
            }
            LineFormat::Json => {
                let mut fields = prompt_fields(p);
                fields.insert("recovered".into(), true.into());
                if let Some(ms) = p.server_finished_ms {
                    fields.insert(
                        "finished_ms".into(),
                        crate::commands::queue::number_json(ms.round()),
                    );
                }
                terminal_safe_json(&Value::Object(fields))
            }
        }
    }

    fn history_line(&self, outcomes: &BTreeMap<&'static str, u64>) -> String {
        let total: u64 = outcomes.values().sum();
        match self.format {
            LineFormat::Human => {
                let parts: Vec<String> = outcomes.iter().map(|(k, n)| format!("{n} {k}")).collect();
                format!(
                    "{:>9} history: {total} earlier prompt{} ({})",
                    "--",
                    if total == 1 { "" } else { "s" },
                    parts.join(", ")
                )
            }
            LineFormat::Json => terminal_safe_json(&json!({
                "event": "history",
                "prompts": total,
                "outcomes": outcomes,
            })),
        }
    }
}

/// A prompt as a `watch --json` object.
fn prompt_fields(p: &PromptRecord) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("event".into(), "prompt".into());
    fields.insert("prompt_id".into(), p.id.clone().into());
    let phase = match &p.phase {
        Phase::Queued => "queued",
        Phase::Running => "running",
        Phase::Finished(_) => "finished",
    };
    fields.insert("phase".into(), phase.into());
    if let Some(outcome) = p.outcome() {
        fields.insert("outcome".into(), outcome.label().into());
    }
    if let Some(Outcome::Error(e)) = p.outcome() {
        fields.insert(
            "error".into(),
            json!({
                "node_id": e.node_id,
                "node_type": e.node_type,
                "exception_type": e.exception_type,
                "exception_message": e.exception_message,
            }),
        );
    }
    if let Some(number) = p.number {
        fields.insert("number".into(), crate::commands::queue::number_json(number));
    }
    fields.insert("client_id".into(), p.client_id.clone().into());
    fields.insert("ours".into(), p.ours.into());
    fields.insert("relayed".into(), p.relayed.into());
    if let Some(d) = p.duration().filter(|_| p.is_finished()) {
        fields.insert("duration_s".into(), d.into());
    }
    fields
}

/// `17:02:11`: the time of day (UTC) of a server timestamp in ms since the epoch.
fn clock_time(ms: f64) -> String {
    let secs = (ms / 1000.0).floor().rem_euclid(86_400.0) as u64;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Every known prompt with its phase or outcome, oldest first, one line each.
pub fn prompt_outcomes(tracker: &Tracker) -> Vec<String> {
    let mut prompts: Vec<&PromptRecord> = tracker.prompts().collect();
    prompts.sort_by(|a, b| a.first_seen.total_cmp(&b.first_seen).then(a.id.cmp(&b.id)));
    prompts
        .into_iter()
        .map(|p| format!("{} {}", one_line(&p.id), phase_text(p)))
        .collect()
}

/// Slowest nodes named per prompt in [`time_went`].
const SLOWEST_NAMED: usize = 3;

/// Where the time went in every prompt that finished with per-node times (followed live from
/// its start), oldest first, one line each with its slowest nodes:
/// `647d7248 node 1 "Slow Steps" 1.8 s (99%), node 2 0.1 s (1%)`.
pub fn time_went(tracker: &Tracker) -> Vec<String> {
    let mut prompts: Vec<&PromptRecord> = tracker
        .prompts()
        .filter(|p| p.slowest_node().is_some())
        .collect();
    prompts.sort_by(|a, b| a.first_seen.total_cmp(&b.first_seen).then(a.id.cmp(&b.id)));
    prompts
        .into_iter()
        .map(|p| {
            let nodes: Vec<String> = p
                .node_timings()
                .iter()
                .filter(|t| !t.cached)
                .take(SLOWEST_NAMED)
                .map(|t| {
                    // The title only where the graph says it (a recording with its HTTP
                    // answers), as `watch` lines name nodes.
                    let title = p
                        .node_title(&t.node_id)
                        .map(|title| format!(" \"{}\"", truncate(&one_line(title), 60)))
                        .unwrap_or_default();
                    format!(
                        "node {}{title} {:.1} s ({})",
                        one_line(&t.node_id),
                        t.seconds,
                        crate::format::percent(t.share_of_total)
                    )
                })
                .collect();
            format!("{} {}", crate::format::short_id(&p.id), nodes.join(", "))
        })
        .collect()
}

/// `queued by another client`, `failed in node 2 "Raise" (LabRaiseError): ...`.
pub fn phase_text(p: &PromptRecord) -> String {
    let owner = match (&p.client_id, p.ours) {
        (_, true) => " by this client",
        (Some(_), false) => " by another client",
        (None, false) => "",
    };
    // ` in node 2 "Raise"`, or nothing when the server did not say which node.
    let at = |word: &str, id: &Option<String>| -> String {
        let Some(id) = id else {
            return String::new();
        };
        match p.node_title(id) {
            Some(title) => format!(" {word} node {} \"{}\"", one_line(id), one_line(title)),
            None => format!(" {word} node {}", one_line(id)),
        }
    };
    let took = p
        .duration()
        .map(|d| format!(" in {d:.1} s"))
        .unwrap_or_default();
    match &p.phase {
        Phase::Queued => match p.number {
            Some(n) => format!("queued as #{n}{owner}"),
            None => format!("queued{owner}"),
        },
        Phase::Running => format!("running{owner}"),
        Phase::Finished(Outcome::Success) => format!("succeeded{took}"),
        Phase::Finished(Outcome::Error(e)) => {
            let kind = e
                .node_type
                .as_deref()
                .map(|t| format!(" ({})", one_line(t)))
                .unwrap_or_default();
            let message = format!("{}: {}", e.exception_type, e.exception_message);
            format!(
                "failed{}{kind}: {}",
                at("in", &e.node_id),
                truncate(&one_line(&message), 240)
            )
        }
        Phase::Finished(Outcome::Interrupted { node_id, .. }) => {
            format!("interrupted{}", at("at", node_id))
        }
        Phase::Finished(Outcome::Removed) => "removed from the queue".to_string(),
        Phase::Finished(Outcome::Unknown) => {
            "left the queue; the server keeps no history of it".to_string()
        }
    }
}

/// A prompt's phase and outcome, to notice changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PhaseKey(&'static str);

impl PhaseKey {
    fn of(p: &PromptRecord) -> Self {
        Self(match &p.phase {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Finished(o) => o.label(),
        })
    }
}

/// Records the HTTP answer behind a tracker input (a fetched queue or history) in a transcript,
/// so a replay learns what the live view learned. Other inputs are not answers: nothing is
/// written.
pub fn record_answer(recorder: &mut Recorder, t: f64, input: &TrackerInput) -> io::Result<()> {
    match input {
        TrackerInput::Queue(snapshot) => recorder.record_http(t, QUEUE_REQUEST, snapshot),
        TrackerInput::History(history) => recorder.record_http(t, HISTORY_REQUEST, history),
        TrackerInput::HistoryItem { prompt_id, entry } => {
            // As the server answers `GET /history/{id}`: the entry under its id, or nothing.
            let mut body = Map::new();
            if let Some(entry) = entry {
                let entry = serde_json::to_value(entry).unwrap_or(Value::Null);
                body.insert(prompt_id.clone(), entry);
            }
            let request = format!("{HISTORY_REQUEST}/{prompt_id}");
            recorder.record_http(t, &request, &Value::Object(body))
        }
        _ => Ok(()),
    }
}

const QUEUE_REQUEST: &str = "GET /queue";
const HISTORY_REQUEST: &str = "GET /history";

/// The tracker input a recorded HTTP answer stands for.
pub fn recorded_input(answer: &TranscriptHttp) -> Result<TrackerInput, String> {
    let shape = |e: serde_json::Error| format!("{}: unexpected answer: {e}", answer.request);
    let body = answer.body.clone();
    if answer.request == QUEUE_REQUEST {
        return serde_json::from_value(body)
            .map(TrackerInput::Queue)
            .map_err(shape);
    }
    if let Some(rest) = answer.request.strip_prefix(HISTORY_REQUEST) {
        let history: History = serde_json::from_value(body).map_err(shape)?;
        return Ok(match rest.strip_prefix('/') {
            Some(prompt_id) => {
                let entry = history
                    .0
                    .into_iter()
                    .find(|(id, _)| id == prompt_id)
                    .map(|(_, entry)| entry);
                TrackerInput::HistoryItem {
                    prompt_id: prompt_id.to_string(),
                    entry,
                }
            }
            None => TrackerInput::History(history),
        });
    }
    Err(format!(
        "unknown request {:?}",
        truncate(&one_line(&answer.request), 60)
    ))
}

/// The request a command makes, for messages.
pub fn request_name(command: &TrackerCommand) -> String {
    match command {
        TrackerCommand::FetchQueue => "/queue".to_string(),
        TrackerCommand::FetchHistory { max_items } => format!("/history?max_items={max_items}"),
        TrackerCommand::FetchHistoryItem(id) => format!("/history/{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::api::QueueSnapshot;

    const REFERENCE: &str = crate::FIXTURES;

    fn body<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{REFERENCE}/http/{name}.json");
        let file: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        serde_json::from_value(file["body"].clone()).unwrap()
    }

    #[test]
    fn replies_tell_what_changed_for_other_clients_prompts() {
        let mut watcher = Watcher::new("me", LineFormat::Human);
        let queue: QueueSnapshot = body("get_queue_running_and_pending");
        let lines = watcher.on_reply(1.0, TrackerInput::Queue(queue)).lines;
        // Run order: the running one, then the `front` one (-8), then 6 and 7.
        assert_eq!(
            lines,
            [
                "       -- prompt dd848e16 queued as #-8 by another client",
                "       -- prompt c2faa6db running by another client",
                "       -- prompt 2f97d7a2 queued as #6 by another client",
                "       -- prompt 24acff7a queued as #7 by another client",
            ]
        );

        // The same snapshot again teaches nothing.
        let queue: QueueSnapshot = body("get_queue_running_and_pending");
        assert!(
            watcher
                .on_reply(2.0, TrackerInput::Queue(queue))
                .lines
                .is_empty()
        );

        // History on connect: the three known prompts finish one line each, the rest of the
        // history is summed up in one line first.
        let history: History = body("get_history");
        let lines = watcher.on_reply(3.0, TrackerInput::History(history)).lines;
        assert_eq!(
            lines[0],
            "       -- history: 14 earlier prompts (2 error, 2 interrupted, 10 success)"
        );
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[1].starts_with("       -- prompt dd848e16 succeeded in "));
        assert!(lines[2].starts_with("       -- prompt c2faa6db succeeded in "));
        assert!(lines[3].starts_with("       -- prompt 2f97d7a2 succeeded in "));
    }

    #[test]
    fn a_failed_prompt_from_history_names_its_node_and_exception() {
        let mut watcher = Watcher::new("me", LineFormat::Json);
        let queue: QueueSnapshot = serde_json::from_value(json!({
            "queue_running": [body::<History>("get_history_id_error").0[0].1.prompt],
            "queue_pending": [],
        }))
        .unwrap();
        watcher.on_reply(1.0, TrackerInput::Queue(queue));
        let entry = body::<History>("get_history_id_error").0.remove(0);
        let lines = watcher
            .on_reply(
                2.0,
                TrackerInput::HistoryItem {
                    prompt_id: entry.0,
                    entry: Some(entry.1),
                },
            )
            .lines;
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["event"], "prompt");
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["error"]["node_id"], "2");
        assert_eq!(line["error"]["exception_type"], "RuntimeError");
        assert_eq!(line["ours"], false);
    }

    /// The recorded history with its first entry under a new id, as a prompt that finished
    /// during a cut.
    fn history_with_one_more() -> History {
        let mut history: History = body("get_history");
        let mut extra = history.0[0].clone();
        extra.0 = "feedbeef-0000-4000-8000-000000000000".to_string();
        extra.1.prompt.prompt_id = extra.0.clone();
        history.0.push(extra);
        history
    }

    #[test]
    fn prompts_that_finished_during_a_cut_get_a_line_each_with_outcome_and_time() {
        for format in [LineFormat::Human, LineFormat::Json] {
            let mut watcher = Watcher::new("me", format);
            let first = watcher.on_reply(1.0, TrackerInput::History(body("get_history")));
            assert_eq!(first.lines.len(), 1, "the backlog is one line: {first:#?}");
            let history = history_with_one_more();
            let lines = watcher.on_reply(2.0, TrackerInput::History(history)).lines;
            assert_eq!(lines.len(), 1, "{lines:#?}");
            match format {
                LineFormat::Human => {
                    let finished_ms = history_with_one_more().0.last().map(|(_, entry)| {
                        let status = entry.status.as_ref().unwrap();
                        status.messages.last().unwrap().1["timestamp"]
                            .as_f64()
                            .unwrap()
                    });
                    let at = clock_time(finished_ms.unwrap());
                    assert!(
                        lines[0].starts_with("       -- prompt feedbeef succeeded in ")
                            && lines[0].ends_with(&format!(" s (finished unseen at {at} UTC)")),
                        "{lines:#?}"
                    );
                }
                LineFormat::Json => {
                    let line: Value = serde_json::from_str(&lines[0]).unwrap();
                    assert_eq!(line["event"], "prompt");
                    assert_eq!(line["prompt_id"], "feedbeef-0000-4000-8000-000000000000");
                    assert_eq!(line["outcome"], "success");
                    assert_eq!(line["recovered"], true);
                    assert!(line["finished_ms"].is_i64(), "{line}");
                    assert!(line["duration_s"].as_f64().is_some(), "{line}");
                }
            }
        }
    }

    #[test]
    fn server_times_read_as_utc_times_of_day() {
        assert_eq!(clock_time(1_795_828_739_386.0), "01:18:59");
        assert_eq!(clock_time(0.0), "00:00:00");
    }

    #[test]
    fn json_queue_numbers_are_integers_as_queue_prints_them() {
        let mut watcher = Watcher::new("me", LineFormat::Json);
        let queue: QueueSnapshot = body("get_queue_running_and_pending");
        let lines = watcher.on_reply(1.0, TrackerInput::Queue(queue)).lines;
        assert!(lines[0].contains(r#""number":-8,"#), "{lines:#?}");
        assert!(lines.iter().all(|l| !l.contains(".0,")), "{lines:#?}");
    }

    #[test]
    fn a_failed_fetch_is_one_line() {
        let mut watcher = Watcher::new("me", LineFormat::Human);
        let step = watcher.on_fetch_failed(
            1.0,
            TrackerCommand::FetchQueue,
            "GET /queue: cannot reach http://box (refused).\nIs ComfyUI running?",
        );
        assert_eq!(
            step.lines,
            ["       -- GET /queue: cannot reach http://box (refused). Is ComfyUI running?"]
        );
    }

    #[test]
    fn a_history_fetch_that_failed_for_good_is_asked_again_when_its_time_comes() {
        let mut watcher = Watcher::new("me", LineFormat::Json);
        let server = ServerUrl::parse("http://box:8188").unwrap();
        let connected = ConnEvent::Connected {
            sid: None,
            features: None,
        };
        let history = watcher.on_connection(0.0, connected, &server).commands;
        let Some(asked @ TrackerCommand::FetchHistory { .. }) = history
            .into_iter()
            .find(|c| matches!(c, TrackerCommand::FetchHistory { .. }))
        else {
            panic!("a connect asks for the history");
        };
        watcher.on_fetch_failed(15.0, asked, "GET /history: no answer within 15 s");
        let due = watcher.tracker().timer_due_at().unwrap();
        let step = watcher.on_timer(due);
        assert!(step.lines.is_empty());
        assert!(
            step.commands
                .iter()
                .any(|c| matches!(c, TrackerCommand::FetchHistory { .. })),
            "{:?}",
            step.commands
        );
    }
}
