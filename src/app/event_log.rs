//! The event log panel: the latest events, one line each, in the `watch` style.

use std::collections::VecDeque;

use serde_json::Value;

use crate::comfy::Decoded;
use crate::comfy::binary::BinaryFrame;
use crate::comfy::connection::ConnEvent;
use crate::comfy::protocol::{NodeRunState, ServerMessage};
use crate::text::sanitize;
use crate::tracker::Tracker;

/// How many lines the log keeps.
pub const LOG_KEPT: usize = 1000;

/// One line of the log; `text` is already sanitized.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The dashboard clock when it happened.
    pub at: f64,
    pub kind: LineKind,
    pub text: String,
}

/// What a line is about, for colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Connection,
    Message,
    Error,
    Unknown,
}

/// A ring buffer of the latest lines, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    lines: VecDeque<LogLine>,
    /// Lines ever pushed, so a view can tell that the log moved on.
    total: u64,
}

impl EventLog {
    pub fn push(&mut self, at: f64, kind: LineKind, text: String) {
        if self.lines.len() == LOG_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(LogLine { at, kind, text });
        self.total += 1;
    }

    pub fn lines(&self) -> &VecDeque<LogLine> {
        &self.lines
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Logs a connection event.
    pub fn connection(&mut self, at: f64, event: &ConnEvent) {
        let (kind, text) = match event {
            ConnEvent::Connecting { attempt } => (
                LineKind::Connection,
                format!("connecting (attempt {attempt})"),
            ),
            ConnEvent::Connected { sid, features } => {
                let mut text = "connected".to_string();
                if let Some(sid) = sid {
                    text.push_str(&format!(" sid={}", sanitize(sid)));
                }
                if let Some(flags) = features {
                    text.push_str(&format!(
                        " preview_metadata={}",
                        flags.supports_preview_metadata()
                    ));
                }
                (LineKind::Connection, text)
            }
            ConnEvent::Disconnected { reason } => (
                LineKind::Error,
                format!("disconnected: {}", sanitize(reason)),
            ),
            ConnEvent::Reconnecting { attempt, delay } => (
                LineKind::Connection,
                format!(
                    "reconnecting in {:.1} s (attempt {attempt})",
                    delay.as_secs_f64()
                ),
            ),
            // Frames are logged with the tracker at hand, see `frame`.
            ConnEvent::Frame(_) => return,
        };
        self.push(at, kind, text);
    }

    /// Logs one received frame. `tracker` names nodes (call it before the tracker sees the frame
    /// or after; titles do not change).
    pub fn frame(&mut self, at: f64, decoded: &Decoded, tracker: &Tracker) {
        let (kind, text) = describe(decoded, tracker);
        self.push(at, kind, text);
    }
}

/// The first 8 characters of a prompt id, enough to tell prompts apart on screen.
pub fn short_id(id: &str) -> String {
    sanitize(id).chars().take(8).collect()
}

fn node_name(tracker: &Tracker, prompt_id: Option<&str>, node: &str) -> String {
    let title = prompt_id
        .and_then(|p| tracker.node_title(p, node))
        .or_else(|| {
            tracker
                .running()
                .and_then(|p| p.node_title(node))
                .filter(|_| prompt_id.is_none())
        });
    match title {
        Some(title) => format!("{} ({})", sanitize(title), sanitize(node)),
        None => sanitize(node).into_owned(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// One line for one frame, in the `watch` style: the event name, then what it says.
pub fn describe(decoded: &Decoded, tracker: &Tracker) -> (LineKind, String) {
    match decoded {
        Decoded::Message(message) => describe_message(message, tracker),
        Decoded::Binary(frame) => describe_binary(frame, tracker),
        Decoded::Malformed { error } => (
            LineKind::Error,
            format!("malformed frame: {}", sanitize(error)),
        ),
    }
}

fn describe_message(message: &ServerMessage, tracker: &Tracker) -> (LineKind, String) {
    let pid = message.prompt_id();
    let id = pid.map(short_id).unwrap_or_default();
    let text = match message {
        ServerMessage::Status(s) => {
            let mut text = format!("status queue_remaining={}", s.queue_remaining());
            if let Some(sid) = &s.sid {
                text.push_str(&format!(" sid={}", sanitize(sid)));
            }
            text
        }
        ServerMessage::FeatureFlags(flags) => {
            let keys: Vec<String> = flags
                .0
                .iter()
                .map(|(k, v)| format!("{}={}", sanitize(k), sanitize(&v.to_string())))
                .collect();
            truncate(&format!("feature_flags {}", keys.join(" ")), 200)
        }
        ServerMessage::ExecutionStart(_) => format!("execution_start {id}"),
        ServerMessage::ExecutionCached(m) => {
            let nodes: Vec<String> = m.nodes.iter().map(|n| sanitize(n).into_owned()).collect();
            format!("execution_cached {id} nodes=[{}]", nodes.join(", "))
        }
        ServerMessage::Executing(m) => match &m.node {
            Some(node) => format!("executing {id} {}", node_name(tracker, pid, node)),
            None => format!("executing {id} done"),
        },
        ServerMessage::Executed(m) => {
            let images = m.output.as_ref().map_or(0, |o| o.images.len());
            format!(
                "executed {id} {} images={images}",
                node_name(tracker, pid, &m.node)
            )
        }
        ServerMessage::Progress(m) => {
            let node = m
                .node
                .as_deref()
                .map(|n| node_name(tracker, pid, n))
                .unwrap_or_default();
            format!("progress {id} {node} {}/{}", m.value, m.max)
        }
        ServerMessage::ProgressState(m) => {
            let running: Vec<String> = m
                .nodes
                .values()
                .filter(|n| n.state == NodeRunState::Running)
                .map(|n| {
                    format!(
                        "{} {}/{}",
                        node_name(tracker, pid, &n.node_id),
                        n.value,
                        n.max
                    )
                })
                .collect();
            let finished = m
                .nodes
                .values()
                .filter(|n| n.state == NodeRunState::Finished)
                .count();
            format!(
                "progress_state {id} finished={finished} running=[{}]",
                running.join(", ")
            )
        }
        ServerMessage::ExecutionSuccess(_) => format!("execution_success {id}"),
        ServerMessage::ExecutionError(m) => {
            let node = m
                .node_id
                .as_deref()
                .map(|n| node_name(tracker, pid, n))
                .unwrap_or_default();
            let text = format!(
                "execution_error {id} {node} {}: {}",
                sanitize(&m.exception_type),
                sanitize(&m.exception_message)
            );
            return (LineKind::Error, truncate(&text, 300));
        }
        ServerMessage::ExecutionInterrupted(m) => {
            let node = m
                .node_id
                .as_deref()
                .map(|n| node_name(tracker, pid, n))
                .unwrap_or_default();
            format!("execution_interrupted {id} {node}")
        }
        ServerMessage::Logs(logs) => {
            let first = logs
                .entries
                .first()
                .map(|e| sanitize(e.m.trim_end()).into_owned())
                .unwrap_or_default();
            truncate(&format!("logs entries={} {first}", logs.entries.len()), 200)
        }
        ServerMessage::Unknown { kind, data } => {
            let data = match data {
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let text = format!("unknown {} {}", sanitize(kind), sanitize(&data));
            return (LineKind::Unknown, truncate(&text, 200));
        }
    };
    (LineKind::Message, text)
}

fn describe_binary(frame: &BinaryFrame, tracker: &Tracker) -> (LineKind, String) {
    match frame {
        BinaryFrame::Preview(p) => {
            let format = match p.format {
                crate::comfy::binary::ImageFormat::Jpeg => "jpeg",
                crate::comfy::binary::ImageFormat::Png => "png",
                crate::comfy::binary::ImageFormat::Other => "other",
            };
            let mut text = format!("preview_image {format} {} B", p.data.len());
            if let Some(meta) = &p.metadata {
                text.push_str(&format!(
                    " {} {}",
                    short_id(&meta.prompt_id),
                    node_name(tracker, Some(&meta.prompt_id), &meta.node_id)
                ));
            }
            (LineKind::Message, text)
        }
        BinaryFrame::ProgressText { node_id, text } => {
            let prompt = tracker.running().map(|p| p.id.as_str());
            let line = format!(
                "progress_text {}: {}",
                node_name(tracker, prompt, node_id),
                sanitize(text.trim_end())
            );
            (LineKind::Message, truncate(&line, 300))
        }
        BinaryFrame::Unknown {
            event_type,
            payload,
        } => (
            LineKind::Unknown,
            format!("unknown binary event_type={event_type} {} B", payload.len()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> Decoded {
        Decoded::Message(ServerMessage::from_json(json).unwrap())
    }

    #[test]
    fn unknown_types_are_logged_with_their_data_sanitized() {
        let t = Tracker::new("me");
        let (kind, text) = describe(
            &message(r#"{"type":"crystools.monitor","data":{"cpu":"\u001b[31m3"}}"#),
            &t,
        );
        assert_eq!(kind, LineKind::Unknown);
        assert!(text.starts_with("unknown crystools.monitor {"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn ring_buffer_keeps_the_newest_lines() {
        let mut log = EventLog::default();
        for i in 0..LOG_KEPT + 5 {
            log.push(i as f64, LineKind::Message, i.to_string());
        }
        assert_eq!(log.len(), LOG_KEPT);
        assert_eq!(log.lines().front().unwrap().text, "5");
        assert_eq!(log.total(), (LOG_KEPT + 5) as u64);
    }
}
