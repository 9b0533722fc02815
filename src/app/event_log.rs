//! The event log panel: the latest events, one line each, in the `watch` format.

use std::borrow::Cow;
use std::collections::VecDeque;

use crate::bridge::BridgeLink;
use crate::comfy::Decoded;
use crate::comfy::connection::{ConnEvent, ReceivedFrame};
use crate::comfy::protocol::ServerMessage;
use crate::comfy::server_url::ServerUrl;
use crate::describe::{NodeTitles, StepFrame, connection_line, event_name, frame_line};
use crate::tracker::Tracker;

/// How many lines the log keeps.
pub const LOG_KEPT: usize = 1000;

/// Characters kept of a line: more than any terminal shows, and a thousand lines stay small
/// whatever the server sends (a node id can be a megabyte).
const LINE_KEPT_MAX: usize = 1000;

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The dashboard clock when it happened.
    pub at: f64,
    pub kind: LineKind,
    text: LineText,
}

#[derive(Debug, Clone, PartialEq)]
enum LineText {
    /// Written and sanitized.
    Written(String),
    /// A step's frame received at `t` on the socket's clock, written when shown.
    Step { t: f64, frame: StepFrame },
}

impl LogLine {
    /// The line, safe to print; `titles` names the nodes of a step written now.
    pub fn text(&self, titles: &impl NodeTitles) -> Cow<'_, str> {
        match &self.text {
            LineText::Written(text) => Cow::Borrowed(text),
            LineText::Step { t, frame } => Cow::Owned(frame.line(*t, titles)),
        }
    }
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
}

impl EventLog {
    pub fn push(&mut self, at: f64, kind: LineKind, text: String) {
        let text = match crate::text::truncate(&text, LINE_KEPT_MAX) {
            Cow::Borrowed(_) => text,
            Cow::Owned(cut) => cut,
        };
        self.push_line(LogLine {
            at,
            kind,
            text: LineText::Written(text),
        });
    }

    fn push_line(&mut self, line: LogLine) {
        if self.lines.len() == LOG_KEPT {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
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

    /// Logs a connection event as `watch` prints it.
    pub fn connection(&mut self, at: f64, event: &ConnEvent, server: &ServerUrl) {
        let kind = match event {
            // Frames are logged with the tracker at hand, see `frame`.
            ConnEvent::Frame(_) => return,
            ConnEvent::Disconnected { .. } => LineKind::Error,
            _ => LineKind::Connection,
        };
        self.push(at, kind, connection_line(event, server));
    }

    /// Logs what became of joining the comfytop bridge, as `watch` prints it.
    pub fn bridge(&mut self, at: f64, link: &BridgeLink, server: &ServerUrl) {
        let kind = match link {
            BridgeLink::Unusable(_) => LineKind::Error,
            _ => LineKind::Connection,
        };
        if let Some(line) = crate::describe::bridge_line(link, server) {
            self.push(at, kind, line);
        }
    }

    /// Logs one received frame as `watch` prints it; `tracker` names the nodes. A step's
    /// `progress`, `progress_state` and preview image are written when shown: most of the
    /// frames of a run, in a log that is hidden most of the time.
    pub fn frame(&mut self, at: f64, frame: &ReceivedFrame, tracker: &Tracker) {
        if let Some(step) = StepFrame::of(&frame.decoded) {
            return self.push_line(LogLine {
                at,
                kind: LineKind::Message,
                text: LineText::Step {
                    t: frame.t,
                    frame: step,
                },
            });
        }
        let kind = match &frame.decoded {
            Decoded::Malformed { .. } | Decoded::Message(ServerMessage::ExecutionError(_)) => {
                LineKind::Error
            }
            Decoded::Message(ServerMessage::Unknown { .. }) => LineKind::Unknown,
            decoded if event_name(decoded) == "unknown" => LineKind::Unknown,
            _ => LineKind::Message,
        };
        self.push(at, kind, frame_line(frame, tracker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::RawFrame;
    use crate::describe::NoTitles;

    fn frame(json: &str) -> ReceivedFrame {
        let raw = RawFrame::Text(json.to_string());
        ReceivedFrame {
            t: 1.5,
            decoded: raw.decode(),
            raw,
        }
    }

    #[test]
    fn unknown_types_are_logged_with_their_data_sanitized() {
        let mut log = EventLog::default();
        log.frame(
            0.0,
            &frame(r#"{"type":"crystools.monitor","data":{"cpu":"\u001b[31m3"}}"#),
            &Tracker::new("me"),
        );
        let line = log.lines().back().unwrap();
        assert_eq!(line.kind, LineKind::Unknown);
        let text = line.text(&NoTitles);
        assert!(text.contains("crystools.monitor"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn steps_written_when_shown_read_as_written_at_once() {
        use crate::app::testing::{client_id, connected, replay, transcript};
        let name = "b_feature_flags_metadata_previews";
        let mut state = connected(&client_id(name), 0.0, Default::default());
        replay(&mut state, name, 1.0, f64::INFINITY);
        let tracker = &state.server().tracker;
        let written_at_once: Vec<String> = transcript(name)
            .iter()
            .filter(|f| StepFrame::of(&f.decoded).is_some())
            .map(|f| frame_line(f, tracker))
            .collect();
        let kept_as_steps: Vec<String> = state
            .server()
            .log
            .lines()
            .iter()
            .filter(|l| matches!(l.text, LineText::Step { .. }))
            .map(|l| l.text(tracker).into_owned())
            .collect();
        assert_eq!(kept_as_steps, written_at_once);
        // Every kind of step, with the running node named by its title.
        assert!(kept_as_steps.iter().any(|l| l.contains(" progress ")));
        assert!(
            kept_as_steps
                .iter()
                .any(|l| l.contains(" preview_image ") && l.contains("node 1 \"Slow Steps\""))
        );
        assert!(
            kept_as_steps.iter().any(|l| l.contains(" progress_state ")
                && l.contains("running node 1 \"Slow Steps\" 3/6")),
            "{kept_as_steps:#?}"
        );
    }

    #[test]
    fn a_huge_id_is_cut_and_its_step_written_at_once() {
        let mut log = EventLog::default();
        let node = "n".repeat(1 << 20);
        let json = format!(
            r#"{{"type":"progress","data":{{"value":1,"max":2,"prompt_id":"p1","node":"{node}"}}}}"#
        );
        log.frame(0.0, &frame(&json), &Tracker::new("me"));
        let line = log.lines().back().unwrap();
        let LineText::Written(text) = &line.text else {
            panic!("kept as a step: {line:?}");
        };
        assert_eq!(text.chars().count(), LINE_KEPT_MAX);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn ring_buffer_keeps_the_newest_lines() {
        let mut log = EventLog::default();
        for i in 0..LOG_KEPT + 5 {
            log.push(i as f64, LineKind::Message, i.to_string());
        }
        assert_eq!(log.len(), LOG_KEPT);
        assert_eq!(log.lines().front().unwrap().text(&NoTitles), "5");
    }
}
