//! One line per event, as `watch` and `replay` print them: a human-readable form and a JSON form.
//!
//! Every string that came from the server passes through [`crate::text`] before it is part of a
//! line, so a line is always safe to print to a terminal.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::comfy::binary::{BinaryFrame, PreviewImage};
use crate::comfy::connection::{ConnEvent, ReceivedFrame};
use crate::comfy::protocol::{NodeRunState, ServerMessage};
use crate::comfy::server_url::ServerUrl;
use crate::comfy::{Decoded, RawFrame};
use crate::text::{one_line, sanitize, terminal_safe_json, truncate};

/// Where node titles come from (the tracker knows them once it has seen a prompt's graph).
pub trait NodeTitles {
    fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str>;
}

impl NodeTitles for crate::tracker::Tracker {
    fn node_title(&self, prompt_id: &str, node_id: &str) -> Option<&str> {
        crate::tracker::Tracker::node_title(self, prompt_id, node_id)
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
pub fn event_name(decoded: &Decoded) -> &str {
    match decoded {
        Decoded::Message(m) => m.kind(),
        Decoded::Binary(BinaryFrame::Preview(_)) => "preview_image",
        Decoded::Binary(BinaryFrame::ProgressText { .. }) => "progress_text",
        Decoded::Binary(BinaryFrame::Unknown { .. }) => "unknown",
        Decoded::Malformed { .. } => "malformed",
    }
}

/// Characters of untrusted data shown in a line before it is cut.
const EXCERPT: usize = 120;

/// The human-readable line for one frame: time, event, what it says.
pub fn frame_line(frame: &ReceivedFrame, titles: &impl NodeTitles) -> String {
    let mut details = String::new();
    let event: &str = match &frame.decoded {
        Decoded::Message(m) => {
            describe_message(&mut details, m, titles);
            m.kind()
        }
        Decoded::Binary(b) => {
            describe_binary(&mut details, b, titles);
            event_name(&frame.decoded)
        }
        Decoded::Malformed { error } => {
            let _ = write!(
                details,
                "{} frame: {}",
                raw_kind(&frame.raw),
                one_line(error)
            );
            "malformed"
        }
    };
    let event = truncate(event, 40);
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
        ConnEvent::Frame(frame) => return frame_line(frame, &NoTitles),
    };
    finish(format!("{:>9} {text}", "--"))
}

/// The JSON line for one frame: `t`, `event`, then the decoded fields.
pub fn frame_json(frame: &ReceivedFrame, titles: &impl NodeTitles) -> String {
    let mut fields = Map::new();
    match &frame.decoded {
        Decoded::Message(ServerMessage::Unknown { data, .. }) => {
            // Arbitrary data is nested so it cannot collide with `t` and `event`.
            fields.insert("data".into(), data.clone());
        }
        Decoded::Message(m) => {
            if let Value::Object(data) = m.data() {
                fields = data;
            }
            if let Some(title) = message_node(m).and_then(|(p, n)| titles.node_title(p, n)) {
                fields.insert("node_title".into(), title.into());
            }
        }
        Decoded::Binary(BinaryFrame::Preview(p)) => preview_fields(&mut fields, p, titles),
        Decoded::Binary(BinaryFrame::ProgressText { node_id, text }) => {
            fields.insert("node_id".into(), node_id.as_str().into());
            fields.insert("text".into(), text.as_str().into());
        }
        Decoded::Binary(BinaryFrame::Unknown {
            event_type,
            payload,
        }) => {
            fields.insert("event_type".into(), (*event_type).into());
            fields.insert("bytes".into(), payload.len().into());
        }
        Decoded::Malformed { error } => {
            fields.insert("error".into(), error.as_str().into());
            fields.insert("kind".into(), raw_kind_name(&frame.raw).into());
            if let Some(event_type) = binary_event_type(&frame.raw) {
                fields.insert("event_type".into(), event_type.into());
            }
        }
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
        ConnEvent::Frame(frame) => return frame_json(frame, &NoTitles),
    };
    terminal_safe_json(&JsonLine {
        t: None,
        event: name,
        fields,
    })
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

fn describe_message(out: &mut String, m: &ServerMessage, titles: &impl NodeTitles) {
    let node = |prompt: Option<&str>, node: &str| node_label(titles, prompt, node);
    let _ = match m {
        ServerMessage::Status(s) => {
            let _ = write!(out, "queue {}", s.queue_remaining());
            match &s.sid {
                Some(sid) => write!(out, ", sid {}", one_line(sid)),
                None => Ok(()),
            }
        }
        ServerMessage::FeatureFlags(f) => {
            let flags: Vec<String> =
                f.0.iter()
                    .map(|(k, v)| format!("{}={}", one_line(k), one_line(&v.to_string())))
                    .collect();
            write!(out, "{}", truncate(&flags.join(" "), EXCERPT))
        }
        ServerMessage::ExecutionStart(s) => write!(out, "prompt {}", short(&s.prompt_id)),
        ServerMessage::ExecutionCached(c) => {
            let _ = write!(out, "prompt {}: ", short(&c.prompt_id));
            if c.nodes.is_empty() {
                write!(out, "nothing cached")
            } else {
                let nodes: Vec<String> = c
                    .nodes
                    .iter()
                    .map(|n| node(Some(&c.prompt_id), n))
                    .collect();
                write!(
                    out,
                    "{} cached: {}",
                    c.nodes.len(),
                    truncate(&nodes.join(", "), EXCERPT)
                )
            }
        }
        ServerMessage::Executing(e) => match (&e.prompt_id, &e.node) {
            (Some(p), Some(n)) => {
                let _ = write!(out, "prompt {} node {}", short(p), node(Some(p), n));
                match &e.display_node {
                    Some(d) if d != n => write!(out, " (shown as {})", one_line(d)),
                    _ => Ok(()),
                }
            }
            (Some(p), None) => write!(out, "prompt {} done", short(p)),
            (None, Some(n)) => write!(out, "node {} (running; sent on reconnect)", node(None, n)),
            (None, None) => write!(out, "nothing running"),
        },
        ServerMessage::Executed(e) => {
            let p = e.prompt_id.as_deref();
            let _ = write!(out, "{}node {}: ", prompt_prefix(p), node(p, &e.node));
            match &e.output {
                None => write!(out, "no output"),
                Some(output) => {
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
                        write!(out, "empty output")
                    } else {
                        write!(out, "{}", truncate(&parts.join(", "), EXCERPT * 2))
                    }
                }
            }
        }
        ServerMessage::Progress(p) => {
            let prompt = p.prompt_id.as_deref();
            let _ = write!(out, "{}", prompt_prefix(prompt));
            if let Some(n) = &p.node {
                let _ = write!(out, "node {} ", node(prompt, n));
            }
            write!(out, "{}/{}", number(p.value), number(p.max))
        }
        ServerMessage::ProgressState(s) => {
            let _ = write!(out, "prompt {}: ", short(&s.prompt_id));
            let count = |state: NodeRunState| s.nodes.values().filter(|n| n.state == state).count();
            let mut parts = Vec::new();
            for (state, name) in [
                (NodeRunState::Finished, "finished"),
                (NodeRunState::Error, "error"),
                (NodeRunState::Pending, "pending"),
                (NodeRunState::Other, "other"),
            ] {
                match count(state) {
                    0 => {}
                    k => parts.push(format!("{k} {name}")),
                }
            }
            let running: Vec<String> = s
                .nodes
                .iter()
                .filter(|(_, n)| n.state == NodeRunState::Running)
                .take(3)
                .map(|(id, n)| {
                    format!(
                        "node {} {}/{}",
                        node(Some(&s.prompt_id), id),
                        number(n.value),
                        number(n.max)
                    )
                })
                .collect();
            if !running.is_empty() {
                parts.push(format!("running {}", running.join(", ")));
            }
            if parts.is_empty() {
                write!(out, "no nodes")
            } else {
                write!(out, "{}", parts.join(", "))
            }
        }
        ServerMessage::ExecutionSuccess(s) => {
            write!(out, "prompt {} succeeded", short(&s.prompt_id))
        }
        ServerMessage::ExecutionError(e) => {
            let p = Some(e.prompt_id.as_str());
            let _ = write!(out, "prompt {} failed", short(&e.prompt_id));
            if let Some(n) = &e.node_id {
                let _ = write!(out, " in node {}", node(p, n));
            }
            if let Some(t) = &e.node_type {
                let _ = write!(out, " ({})", one_line(t));
            }
            let message = format!("{}: {}", e.exception_type, e.exception_message);
            write!(out, ": {}", truncate(&one_line(&message), EXCERPT * 2))
        }
        ServerMessage::ExecutionInterrupted(e) => {
            let p = Some(e.prompt_id.as_str());
            let _ = write!(out, "prompt {} interrupted", short(&e.prompt_id));
            if let Some(n) = &e.node_id {
                let _ = write!(out, " at node {}", node(p, n));
            }
            match &e.node_type {
                Some(t) => write!(out, " ({})", one_line(t)),
                None => Ok(()),
            }
        }
        ServerMessage::Logs(l) => {
            let lines: Vec<_> = l.entries.iter().map(|e| one_line(&e.m)).collect();
            let _ = if lines.is_empty() {
                write!(out, "no entries")
            } else {
                write!(out, "{}", truncate(&lines.join(" | "), EXCERPT * 2))
            };
            match &l.size {
                Some(size) => write!(out, " [terminal {}x{}]", size.cols, size.rows),
                None => Ok(()),
            }
        }
        ServerMessage::Unknown { data, .. } => {
            write!(
                out,
                "(unknown type) {}",
                truncate(&one_line(&data.to_string()), EXCERPT)
            )
        }
    };
}

fn describe_binary(out: &mut String, frame: &BinaryFrame, titles: &impl NodeTitles) {
    let _ = match frame {
        BinaryFrame::Preview(p) => {
            let _ = write!(out, "{} {} bytes", format_name(p), p.data.len());
            match &p.metadata {
                Some(m) => write!(
                    out,
                    ", prompt {} node {}",
                    short(&m.prompt_id),
                    node_label(titles, Some(&m.prompt_id), &m.node_id)
                ),
                None => Ok(()),
            }
        }
        BinaryFrame::ProgressText { node_id, text } => write!(
            out,
            "node {}: {}",
            one_line(node_id),
            truncate(&one_line(text), EXCERPT * 2)
        ),
        BinaryFrame::Unknown {
            event_type,
            payload,
        } => write!(out, "binary type {event_type}, {} bytes", payload.len()),
    };
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
    let node = one_line(node);
    match prompt.and_then(|p| titles.node_title(p, &node)) {
        Some(title) => format!("{node} \"{}\"", truncate(&one_line(title), 60)),
        None => node.into_owned(),
    }
}

fn prompt_prefix(prompt: Option<&str>) -> String {
    prompt.map_or_else(String::new, |p| format!("prompt {} ", short(p)))
}

/// The first 8 characters of an id: enough to tell prompts apart in a line.
fn short(id: &str) -> std::borrow::Cow<'_, str> {
    let id = one_line(id);
    match id.char_indices().nth(8) {
        Some((end, _)) => std::borrow::Cow::Owned(id[..end].to_string()),
        None => id,
    }
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
