//! One line per event, as `watch` and `replay` print them: a human-readable form and a JSON form.
//!
//! Every string that came from the server passes through [`crate::text`] before it is part of a
//! line, so a line is always safe to print to a terminal.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bridge::BridgeLink;
use crate::comfy::binary::{BinaryFrame, PreviewImage};
use crate::comfy::connection::{ConnEvent, ReceivedFrame};
use crate::comfy::protocol::{
    Executing, ExecutionCached, Logs, NodeOutput, NodeRunState, Progress, ProgressState,
    ServerMessage,
};
use crate::comfy::server_url::ServerUrl;
use crate::comfy::{Decoded, RawFrame};
use crate::format::short_id;
use crate::text::{one_line, sanitize, terminal_safe_json, truncate};

/// Where node titles come from (the tracker knows them once it has seen a prompt's graph).
pub trait NodeTitles {
    fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str>;

    /// The prompt running now: frames without a prompt id (progress text) belong to it.
    fn running_prompt(&self) -> Option<&str> {
        None
    }
}

impl NodeTitles for crate::tracker::Tracker {
    fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str> {
        crate::tracker::Tracker::node_title(self, prompt_id, node_id)
    }

    fn running_prompt(&self) -> Option<&str> {
        self.running().map(|p| p.id.as_str())
    }
}

/// For describing frames without knowing any graph.
pub struct NoTitles;

impl NodeTitles for NoTitles {
    fn node_title(&self, _prompt_id: &str, _node_id: &str) -> Option<&str> {
        None
    }
}

/// The `event` name of a decoded frame: the message type for JSON frames, `preview_image` for
/// binary types 1 and 4, `progress_text` for type 3, `unknown` for other binary types and
/// `malformed` for frames that do not decode.
/// A frame the comfytop bridge relayed from another client's prompt is named as the frame
/// itself.
pub fn event_name(decoded: &Decoded) -> &str {
    match decoded {
        Decoded::Message(m) => m.unrelayed().0.kind(),
        Decoded::Binary(b) => match b.unrelayed().0 {
            BinaryFrame::Preview(_) => "preview_image",
            BinaryFrame::ProgressText { .. } => "progress_text",
            BinaryFrame::Unknown { .. } | BinaryFrame::Relayed { .. } => "unknown",
        },
        Decoded::Malformed { .. } => "malformed",
    }
}

/// Whose prompt a frame the bridge relayed is about.
fn relayed_owner(decoded: &Decoded) -> Option<&str> {
    match decoded {
        Decoded::Message(m) => m.unrelayed().1,
        Decoded::Binary(b) => b.unrelayed().1,
        Decoded::Malformed { .. } => None,
    }
}

/// " · relayed, queued by <client>" for a frame the bridge relayed.
fn relayed_suffix(owner: Option<&str>) -> String {
    owner
        .map(|owner| format!(" · relayed, queued by {}", truncate(&one_line(owner), 40)))
        .unwrap_or_default()
}

/// Characters of untrusted data shown in a line before it is cut.
const EXCERPT: usize = 120;

/// The human-readable line for one frame: time, event, what it says.
pub fn frame_line(frame: &ReceivedFrame, titles: &impl NodeTitles) -> String {
    let details = match &frame.decoded {
        Decoded::Message(m) => describe_message(m, titles),
        Decoded::Binary(b) => describe_binary(b, titles),
        Decoded::Malformed { error } => {
            format!("{} frame: {}", raw_kind(&frame.raw), one_line(error))
        }
    };
    let event = truncate(event_name(&frame.decoded), 40);
    finish(format!("{:>9.3} {event:<17} {details}", frame.t))
}

/// The human-readable line for a connection event.
pub fn connection_line(event: &ConnEvent, server: &ServerUrl) -> String {
    let text = match event {
        ConnEvent::Connecting { attempt: 1 } => format!("connecting to {server}"),
        ConnEvent::Connecting { attempt } => format!("connecting to {server} (attempt {attempt})"),
        ConnEvent::Connected { sid, features } => {
            let sid = sid.as_deref().unwrap_or("not reported");
            let previews = match features {
                Some(f) if f.supports_preview_metadata() => "previews with metadata",
                Some(_) => "previews without metadata",
                None => "no feature flags from the server",
            };
            format!("connected to {server}, sid {sid}, {previews}")
        }
        ConnEvent::Disconnected { reason } => format!("disconnected: {reason}"),
        ConnEvent::Reconnecting { attempt, delay } => format!(
            "reconnecting in {} (attempt {attempt}); Ctrl-C to stop",
            human_delay(*delay)
        ),
        ConnEvent::Quiet { silent_for } => format!(
            "no data from {server} for {} s; the connection may be stalled",
            silent_for.as_secs()
        ),
        ConnEvent::Resumed => format!("data from {server} again"),
        ConnEvent::Frame(frame) => return frame_line(frame, &NoTitles),
    };
    finish(format!("{:>9} {text}", "--"))
}

/// The JSON line for one frame: `t`, `event`, then the decoded fields.
pub fn frame_json(frame: &ReceivedFrame, titles: &impl NodeTitles) -> String {
    let mut fields = Map::new();
    match &frame.decoded {
        Decoded::Message(m) => match m.unrelayed().0 {
            ServerMessage::Unknown { data, .. } => {
                // Arbitrary data is nested so it cannot collide with `t` and `event`.
                fields.insert("data".into(), data.clone());
            }
            m => {
                if let Value::Object(data) = m.data() {
                    fields = data;
                }
                if let Some(title) = message_node(m).and_then(|(p, n)| titles.node_title(p, n)) {
                    fields.insert("node_title".into(), title.into());
                }
            }
        },
        Decoded::Binary(b) => match b.unrelayed().0 {
            BinaryFrame::Preview(p) => preview_fields(&mut fields, p, titles),
            BinaryFrame::ProgressText { node_id, text } => {
                fields.insert("node_id".into(), node_id.as_str().into());
                fields.insert("text".into(), text.as_str().into());
                if let Some(title) = titles
                    .running_prompt()
                    .and_then(|p| titles.node_title(p, node_id))
                {
                    fields.insert("node_title".into(), title.into());
                }
            }
            BinaryFrame::Unknown {
                event_type,
                payload,
            } => {
                fields.insert("event_type".into(), (*event_type).into());
                fields.insert("bytes".into(), payload.len().into());
            }
            // The parser never nests relays.
            BinaryFrame::Relayed { .. } => {}
        },
        Decoded::Malformed { error } => {
            fields.insert("error".into(), error.as_str().into());
            fields.insert("kind".into(), raw_kind_name(&frame.raw).into());
            if let Some(event_type) = binary_event_type(&frame.raw) {
                fields.insert("event_type".into(), event_type.into());
            }
        }
    }
    if let Some(owner) = relayed_owner(&frame.decoded) {
        fields.insert("relayed_owner".into(), owner.into());
    }
    terminal_safe_json(&JsonLine {
        t: Some(round_t(frame.t)),
        event: event_name(&frame.decoded),
        fields,
    })
}

/// The JSON line for a connection event (no `t`: it is not a frame).
pub fn connection_json(event: &ConnEvent, server: &ServerUrl) -> String {
    let mut fields = Map::new();
    let name = match event {
        ConnEvent::Connecting { attempt } => {
            fields.insert("attempt".into(), (*attempt).into());
            fields.insert("server".into(), server.to_string().into());
            "connecting"
        }
        ConnEvent::Connected { sid, features } => {
            fields.insert("sid".into(), sid.clone().into());
            let features = features
                .as_ref()
                .map_or(Value::Null, |f| Value::Object(f.0.clone()));
            fields.insert("features".into(), features);
            "connected"
        }
        ConnEvent::Disconnected { reason } => {
            fields.insert("reason".into(), reason.as_str().into());
            "disconnected"
        }
        ConnEvent::Reconnecting { attempt, delay } => {
            fields.insert("attempt".into(), (*attempt).into());
            fields.insert("delay_s".into(), delay.as_secs_f64().into());
            "reconnecting"
        }
        ConnEvent::Quiet { silent_for } => {
            fields.insert("silent_s".into(), silent_for.as_secs_f64().into());
            "quiet"
        }
        ConnEvent::Resumed => "resumed",
        ConnEvent::Frame(frame) => return frame_json(frame, &NoTitles),
    };
    terminal_safe_json(&JsonLine {
        t: None,
        event: name,
        fields,
    })
}

/// The line for the comfytop bridge on `server` once asked; none while not known.
pub fn bridge_line(link: &BridgeLink, server: &ServerUrl) -> Option<String> {
    let text = match link {
        BridgeLink::Unknown => return None,
        BridgeLink::Watching { version } => format!(
            "comfytop bridge {} on {server}: every prompt's events come here",
            one_line(version)
        ),
        BridgeLink::Absent => format!(
            "no comfytop bridge on {server}: other clients' prompts show without live detail (see comfytop install-bridge)"
        ),
        BridgeLink::Unusable(why) => format!("comfytop bridge on {server}: {}", one_line(why)),
    };
    Some(finish(format!("{:>9} {text}", "--")))
}

/// The JSON line for the comfytop bridge on `server`: `{"event":"bridge","state":..}`.
pub fn bridge_json(link: &BridgeLink, server: &ServerUrl) -> Option<String> {
    let mut fields = Map::new();
    fields.insert("server".into(), server.to_string().into());
    let state = match link {
        BridgeLink::Unknown => return None,
        BridgeLink::Watching { version } => {
            fields.insert("version".into(), version.as_str().into());
            "watching"
        }
        BridgeLink::Absent => "absent",
        BridgeLink::Unusable(why) => {
            fields.insert("reason".into(), why.as_str().into());
            "unusable"
        }
    };
    fields.insert("state".into(), state.into());
    Some(terminal_safe_json(&JsonLine {
        t: None,
        event: "bridge",
        fields,
    }))
}

#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<f64>,
    event: &'a str,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// `450 ms` below a second, `1.9 s` from there.
fn human_delay(delay: std::time::Duration) -> String {
    if delay < std::time::Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// Tenths of a millisecond, as transcripts have.
fn round_t(t: f64) -> f64 {
    (t * 10_000.0).round() / 10_000.0
}

/// The last safety net: whatever was missed field by field, no control character leaves here.
fn finish(line: String) -> String {
    match sanitize(&line) {
        std::borrow::Cow::Borrowed(_) if !line.contains(['\n', '\t']) => line,
        clean => clean.replace(['\n', '\t'], " "),
    }
}

fn describe_message(m: &ServerMessage, titles: &impl NodeTitles) -> String {
    let node = |prompt: Option<&str>, node: &str| node_label(titles, prompt, node);
    // " in node 2 \"Title\" (LabRaiseError)": where a prompt failed or stopped.
    let node_and_type = |preposition: &str, prompt: &str, id: Option<&str>, class: Option<&str>| {
        let at = id
            .map(|n| format!(" {preposition} node {}", node(Some(prompt), n)))
            .unwrap_or_default();
        let kind = class
            .map(|t| format!(" ({})", one_line(t)))
            .unwrap_or_default();
        format!("{at}{kind}")
    };
    match m {
        ServerMessage::Status(s) => match &s.sid {
            Some(sid) => format!("queue {}, sid {}", s.queue_remaining(), one_line(sid)),
            None => format!("queue {}", s.queue_remaining()),
        },
        ServerMessage::FeatureFlags(f) => {
            let flags: Vec<String> =
                f.0.iter()
                    .map(|(k, v)| format!("{}={}", one_line(k), one_line(&v.to_string())))
                    .collect();
            truncate(&flags.join(" "), EXCERPT).into_owned()
        }
        ServerMessage::ExecutionStart(s) => format!("prompt {}", short_id(&s.prompt_id)),
        ServerMessage::ExecutionCached(c) => cached_line(c, titles),
        ServerMessage::Executing(e) => executing_line(e, titles),
        ServerMessage::Executed(e) => {
            let p = e.prompt_id.as_deref();
            let output = match &e.output {
                None => "no output".to_string(),
                Some(output) => describe_output(output),
            };
            format!("{}node {}: {output}", prompt_prefix(p), node(p, &e.node))
        }
        ServerMessage::Progress(p) => progress_details(p, titles),
        // How many nodes are in each state, and the first running ones with their steps.
        ServerMessage::ProgressState(s) => ProgressStateSummary::of(s).details(titles),
        ServerMessage::ExecutionSuccess(s) => {
            format!("prompt {} succeeded", short_id(&s.prompt_id))
        }
        ServerMessage::ExecutionError(e) => {
            let at = node_and_type(
                "in",
                &e.prompt_id,
                e.node_id.as_deref(),
                e.node_type.as_deref(),
            );
            let message = format!("{}: {}", e.exception_type, e.exception_message);
            format!(
                "prompt {} failed{at}: {}",
                short_id(&e.prompt_id),
                truncate(&one_line(&message), EXCERPT * 2)
            )
        }
        ServerMessage::ExecutionInterrupted(e) => {
            let at = node_and_type(
                "at",
                &e.prompt_id,
                e.node_id.as_deref(),
                e.node_type.as_deref(),
            );
            format!("prompt {} interrupted{at}", short_id(&e.prompt_id))
        }
        ServerMessage::Logs(l) => logs_line(l),
        ServerMessage::Relayed(r) => format!(
            "{}{}",
            describe_message(&r.message, titles),
            relayed_suffix(Some(&r.owner))
        ),
        ServerMessage::Unknown { data, .. } => format!(
            "(unknown type) {}",
            truncate(&one_line(&data.to_string()), EXCERPT)
        ),
    }
}

fn cached_line(c: &ExecutionCached, titles: &impl NodeTitles) -> String {
    if c.nodes.is_empty() {
        return format!("prompt {}: nothing cached", short_id(&c.prompt_id));
    }
    let nodes: Vec<String> = c
        .nodes
        .iter()
        .map(|n| node_label(titles, Some(&c.prompt_id), n))
        .collect();
    format!(
        "prompt {}: {} cached: {}",
        short_id(&c.prompt_id),
        c.nodes.len(),
        truncate(&nodes.join(", "), EXCERPT)
    )
}

fn executing_line(e: &Executing, titles: &impl NodeTitles) -> String {
    let node = |prompt: Option<&str>, node: &str| node_label(titles, prompt, node);
    match (&e.prompt_id, &e.node) {
        (Some(p), Some(n)) => {
            let shown_as = match &e.display_node {
                Some(d) if d != n => format!(" (shown as {})", one_line(d)),
                _ => String::new(),
            };
            format!("prompt {} node {}{shown_as}", short_id(p), node(Some(p), n))
        }
        (Some(p), None) => format!("prompt {} done", short_id(p)),
        (None, Some(n)) => format!("node {} (running; sent on reconnect)", node(None, n)),
        (None, None) => "nothing running".to_string(),
    }
}

/// What a `progress_state` line says, worked out without writing it: how many nodes are in each
/// state and the first few running. Cheap to take at every step; the event log keeps it and
/// writes the line only when it is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressStateSummary {
    prompt_id: String,
    /// Finished, error, pending, other.
    counts: [usize; 4],
    /// Node id, value and max of the first running nodes.
    running: Vec<(String, f64, f64)>,
}

impl ProgressStateSummary {
    /// Running nodes named in a line.
    const RUNNING_SHOWN: usize = 3;

    pub fn of(s: &ProgressState) -> Self {
        let mut counts = [0; 4];
        let mut running = Vec::new();
        for (id, n) in &s.nodes {
            match n.state {
                NodeRunState::Finished => counts[0] += 1,
                NodeRunState::Error => counts[1] += 1,
                NodeRunState::Pending => counts[2] += 1,
                NodeRunState::Other => counts[3] += 1,
                NodeRunState::Running if running.len() < Self::RUNNING_SHOWN => {
                    running.push((id.clone(), n.value, n.max));
                }
                NodeRunState::Running => {}
            }
        }
        Self {
            prompt_id: s.prompt_id.clone(),
            counts,
            running,
        }
    }

    /// The line's text after the event name.
    fn details(&self, titles: &impl NodeTitles) -> String {
        let mut parts: Vec<String> = ["finished", "error", "pending", "other"]
            .into_iter()
            .zip(self.counts)
            .filter(|(_, k)| *k > 0)
            .map(|(name, k)| format!("{k} {name}"))
            .collect();
        let running: Vec<String> = self
            .running
            .iter()
            .map(|(id, value, max)| {
                format!(
                    "node {} {}/{}",
                    node_label(titles, Some(&self.prompt_id), id),
                    number(*value),
                    number(*max)
                )
            })
            .collect();
        if !running.is_empty() {
            parts.push(format!("running {}", running.join(", ")));
        }
        if parts.is_empty() {
            parts.push("no nodes".to_string());
        }
        format!("prompt {}: {}", short_id(&self.prompt_id), parts.join(", "))
    }
}

/// A `progress`, `progress_state` or preview image frame as the event log keeps it until its
/// line is shown: these come at every step, and the log is hidden most of the time.
#[derive(Debug, Clone, PartialEq)]
pub enum StepFrame {
    Progress(Progress),
    ProgressState(ProgressStateSummary),
    /// The image's format and size, and with metadata whose node it shows (prompt, node).
    Preview {
        format: &'static str,
        bytes: usize,
        node: Option<(String, String)>,
    },
}

impl StepFrame {
    /// Longest prompt or node id kept: a line with a longer one is written at once, cut, so
    /// that a thousand kept lines stay small whatever the server sends.
    const ID_KEPT_MAX: usize = 256;

    /// The frame's step, if it is one (not one the bridge relayed: those are written at once).
    pub fn of(decoded: &Decoded) -> Option<Self> {
        let step = match decoded {
            Decoded::Message(ServerMessage::Progress(p)) => Self::Progress(p.clone()),
            Decoded::Message(ServerMessage::ProgressState(s)) => {
                Self::ProgressState(ProgressStateSummary::of(s))
            }
            Decoded::Binary(BinaryFrame::Preview(p)) => Self::Preview {
                format: format_name(p),
                bytes: p.data.len(),
                node: p
                    .metadata
                    .as_ref()
                    .map(|m| (m.prompt_id.clone(), m.node_id.clone())),
            },
            _ => return None,
        };
        (step.longest_id() <= Self::ID_KEPT_MAX).then_some(step)
    }

    /// The length of its longest prompt or node id.
    fn longest_id(&self) -> usize {
        match self {
            Self::Progress(p) => p.prompt_id.iter().chain(&p.node).map(String::len).max(),
            Self::ProgressState(s) => s
                .running
                .iter()
                .map(|(id, _, _)| id.len())
                .chain([s.prompt_id.len()])
                .max(),
            Self::Preview { node, .. } => node.as_ref().map(|(p, n)| p.len().max(n.len())),
        }
        .unwrap_or(0)
    }

    /// The line [`frame_line`] writes for the frame it was taken from, received at `t`.
    pub fn line(&self, t: f64, titles: &impl NodeTitles) -> String {
        let (event, details) = match self {
            Self::Progress(p) => ("progress", progress_details(p, titles)),
            Self::ProgressState(s) => ("progress_state", s.details(titles)),
            Self::Preview {
                format,
                bytes,
                node,
            } => {
                let node = node.as_ref().map(|(p, n)| (p.as_str(), n.as_str()));
                (
                    "preview_image",
                    preview_details(format, *bytes, node, titles),
                )
            }
        };
        finish(format!("{t:>9.3} {event:<17} {details}"))
    }
}

fn progress_details(p: &Progress, titles: &impl NodeTitles) -> String {
    let prompt = p.prompt_id.as_deref();
    let at = p
        .node
        .as_deref()
        .map(|n| format!("node {} ", node_label(titles, prompt, n)))
        .unwrap_or_default();
    format!(
        "{}{at}{}/{}",
        prompt_prefix(prompt),
        number(p.value),
        number(p.max)
    )
}

fn logs_line(l: &Logs) -> String {
    let lines: Vec<_> = l.entries.iter().map(|e| one_line(&e.m)).collect();
    let text = if lines.is_empty() {
        "no entries".to_string()
    } else {
        truncate(&lines.join(" | "), EXCERPT * 2).into_owned()
    };
    match &l.size {
        Some(size) => format!("{text} [terminal {}x{}]", size.cols, size.rows),
        None => text,
    }
}

/// `lab/full_00001_.png (output), + text`: the files a node wrote, then its other output keys.
fn describe_output(output: &NodeOutput) -> String {
    let mut parts: Vec<String> = output
        .images
        .iter()
        .map(|img| {
            let path = if img.subfolder.is_empty() {
                one_line(&img.filename).into_owned()
            } else {
                format!("{}/{}", one_line(&img.subfolder), one_line(&img.filename))
            };
            format!("{path} ({})", one_line(&img.folder))
        })
        .collect();
    if !output.other.is_empty() {
        let keys: Vec<_> = output.other.keys().map(|k| one_line(k)).collect();
        parts.push(format!("+ {}", keys.join(", ")));
    }
    if parts.is_empty() {
        return "empty output".to_string();
    }
    truncate(&parts.join(", "), EXCERPT * 2).into_owned()
}

fn describe_binary(frame: &BinaryFrame, titles: &impl NodeTitles) -> String {
    match frame {
        BinaryFrame::Preview(p) => {
            let node = p
                .metadata
                .as_ref()
                .map(|m| (m.prompt_id.as_str(), m.node_id.as_str()));
            preview_details(format_name(p), p.data.len(), node, titles)
        }
        BinaryFrame::ProgressText { node_id, text } => format!(
            "node {}: {}",
            node_label(titles, titles.running_prompt(), node_id),
            truncate(&one_line(text), EXCERPT * 2)
        ),
        BinaryFrame::Unknown {
            event_type,
            payload,
        } => format!("binary type {event_type}, {} bytes", payload.len()),
        BinaryFrame::Relayed { owner, frame } => format!(
            "{}{}",
            describe_binary(frame, titles),
            relayed_suffix(Some(owner))
        ),
    }
}

/// "jpeg 5439 bytes", and with metadata ", prompt <id> node <label>".
fn preview_details(
    format: &str,
    bytes: usize,
    node: Option<(&str, &str)>,
    titles: &impl NodeTitles,
) -> String {
    let size = format!("{format} {bytes} bytes");
    match node {
        Some((prompt_id, node_id)) => format!(
            "{size}, prompt {} node {}",
            short_id(prompt_id),
            node_label(titles, Some(prompt_id), node_id)
        ),
        None => size,
    }
}

fn preview_fields(fields: &mut Map<String, Value>, p: &PreviewImage, titles: &impl NodeTitles) {
    let event_type = if p.metadata.is_some() { 4 } else { 1 };
    fields.insert("event_type".into(), event_type.into());
    fields.insert("format".into(), format_name(p).into());
    fields.insert("bytes".into(), p.data.len().into());
    if let Some(m) = &p.metadata {
        if let Ok(Value::Object(meta)) = serde_json::to_value(m) {
            fields.extend(meta);
        }
        if let Some(title) = titles.node_title(&m.prompt_id, &m.node_id) {
            fields.insert("node_title".into(), title.into());
        }
    }
}

fn format_name(p: &PreviewImage) -> &'static str {
    match p.format {
        crate::comfy::binary::ImageFormat::Jpeg => "jpeg",
        crate::comfy::binary::ImageFormat::Png => "png",
        crate::comfy::binary::ImageFormat::Other => "unknown-format",
    }
}

/// The (prompt, node) a message is about, for the title lookup.
fn message_node(m: &ServerMessage) -> Option<(&str, &str)> {
    match m {
        ServerMessage::Executing(e) => Some((e.prompt_id.as_deref()?, e.node.as_deref()?)),
        ServerMessage::Executed(e) => Some((e.prompt_id.as_deref()?, &e.node)),
        ServerMessage::Progress(p) => Some((p.prompt_id.as_deref()?, p.node.as_deref()?)),
        ServerMessage::ExecutionError(e) => Some((&e.prompt_id, e.node_id.as_deref()?)),
        ServerMessage::ExecutionInterrupted(e) => Some((&e.prompt_id, e.node_id.as_deref()?)),
        _ => None,
    }
}

/// `3 "Save Image"` when the title is known, else `3`.
fn node_label(titles: &impl NodeTitles, prompt: Option<&str>, node: &str) -> String {
    // Looked up by the id as the server sent it; only what is shown is made safe.
    let shown = one_line(node);
    match prompt.and_then(|p| titles.node_title(p, node)) {
        Some(title) => format!("{shown} \"{}\"", truncate(&one_line(title), 60)),
        None => shown.into_owned(),
    }
}

fn prompt_prefix(prompt: Option<&str>) -> String {
    prompt.map_or_else(String::new, |p| format!("prompt {} ", short_id(p)))
}

/// Whole numbers without a fraction, as the server sends them.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn raw_kind(raw: &RawFrame) -> String {
    match binary_event_type(raw) {
        Some(t) => format!("binary type {t}"),
        None => raw_kind_name(raw).to_string(),
    }
}

fn raw_kind_name(raw: &RawFrame) -> &'static str {
    match raw {
        RawFrame::Text(_) => "text",
        RawFrame::Binary(_) => "binary",
    }
}

fn binary_event_type(raw: &RawFrame) -> Option<u32> {
    match raw {
        RawFrame::Binary(b) => b.first_chunk::<4>().map(|b| u32::from_be_bytes(*b)),
        RawFrame::Text(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::comfy::protocol::FeatureFlags;

    /// One running prompt `p1` whose node 1 is titled as given.
    struct Titles(&'static str);

    impl NodeTitles for Titles {
        fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str> {
            (prompt_id == "p1" && node_id == "1").then_some(self.0)
        }

        fn running_prompt(&self) -> Option<&str> {
            Some("p1")
        }
    }

    fn frame(t: f64, raw: RawFrame) -> ReceivedFrame {
        let decoded = raw.decode();
        ReceivedFrame { t, raw, decoded }
    }

    fn text(json: &str) -> ReceivedFrame {
        frame(1.5, RawFrame::Text(json.to_string()))
    }

    #[test]
    fn node_titles_are_shown_when_known_and_sanitized() {
        let executing = text(r#"{"type":"executing","data":{"node":"1","prompt_id":"p1"}}"#);
        assert_eq!(
            frame_line(&executing, &Titles("Slow Steps")),
            "    1.500 executing         prompt p1 node 1 \"Slow Steps\""
        );
        assert_eq!(
            frame_line(&executing, &Titles("Evil\u{1b}[2J\u{1b}]0;x\u{7}\nTitle")),
            "    1.500 executing         prompt p1 node 1 \"Evil Title\""
        );
        let json: Value = serde_json::from_str(&frame_json(&executing, &Titles("Slow"))).unwrap();
        assert_eq!(json["node_title"], "Slow");
        assert_eq!(json["event"], "executing");
        assert_eq!(json["t"], 1.5);
    }

    /// Node `1\x1b[31m` of the running prompt `p1` is titled.
    struct HostileId;

    impl NodeTitles for HostileId {
        fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str> {
            (prompt_id == "p1" && node_id == "1\u{1b}[31m").then_some("Title")
        }
    }

    #[test]
    fn a_node_id_with_controls_is_looked_up_as_sent_and_shown_made_safe() {
        let executing =
            text(r#"{"type":"executing","data":{"node":"1\u001b[31m","prompt_id":"p1"}}"#);
        assert_eq!(
            frame_line(&executing, &HostileId),
            "    1.500 executing         prompt p1 node 1 \"Title\""
        );
    }

    #[test]
    fn progress_text_belongs_to_the_running_prompt() {
        let mut raw = b"\x00\x00\x00\x03\x00\x00\x00\x011".to_vec();
        raw.extend_from_slice(b"step 2/6");
        let f = frame(0.25, RawFrame::Binary(raw.into()));
        assert_eq!(
            frame_line(&f, &Titles("Slow Steps")),
            "    0.250 progress_text     node 1 \"Slow Steps\": step 2/6"
        );
        assert_eq!(
            frame_line(&f, &NoTitles),
            "    0.250 progress_text     node 1: step 2/6"
        );
    }

    #[test]
    fn message_details_read_naturally() {
        let line = |json: &str| frame_line(&text(json), &NoTitles);
        assert!(
            line(r#"{"type":"executing","data":{"node":null,"prompt_id":"abcdef0123456789"}}"#)
                .ends_with("executing         prompt abcdef01 done")
        );
        assert!(
            line(r#"{"type":"execution_interrupted","data":{"prompt_id":"p","node_id":"1","node_type":"LabLongRun"}}"#)
                .ends_with("prompt p interrupted at node 1 (LabLongRun)")
        );
        assert!(
            line(r#"{"type":"progress_state","data":{"prompt_id":"p","nodes":{"1":{"value":3,"max":3,"state":"finished"},"2":{"value":2.5,"max":10,"state":"running"}}}}"#)
                .ends_with("prompt p: 1 finished, running node 2 2.50/10")
        );
        assert!(
            line(r#"{"type":"executed","data":{"node":"9","prompt_id":"p","output":{"text":["hi"]}}}"#)
                .ends_with("prompt p node 9: + text")
        );
        assert!(
            line(r#"{"type":"crystools.monitor","data":{"cpu":3.5}}"#)
                .ends_with("crystools.monitor (unknown type) {\"cpu\":3.5}")
        );
    }

    #[test]
    fn connection_lines_say_what_happens() {
        let server = ServerUrl::parse("http://box:8188").unwrap();
        let line = |e: ConnEvent| connection_line(&e, &server);
        assert_eq!(
            line(ConnEvent::Connecting { attempt: 1 }),
            "       -- connecting to http://box:8188"
        );
        assert_eq!(
            line(ConnEvent::Connected {
                sid: Some("s".into()),
                features: None
            }),
            "       -- connected to http://box:8188, sid s, no feature flags from the server"
        );
        assert_eq!(
            line(ConnEvent::Connected {
                sid: None,
                features: Some(FeatureFlags::default())
            }),
            "       -- connected to http://box:8188, sid not reported, previews without metadata"
        );
        assert_eq!(
            line(ConnEvent::Reconnecting {
                attempt: 3,
                delay: Duration::from_millis(1940)
            }),
            "       -- reconnecting in 1.9 s (attempt 3); Ctrl-C to stop"
        );
        let json: Value = serde_json::from_str(&connection_json(
            &ConnEvent::Disconnected {
                reason: "gone\u{1b}[0m".into(),
            },
            &server,
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "disconnected", "reason": "gone\u{1b}[0m"})
        );
    }
}
