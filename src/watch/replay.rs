//! `comfytop replay`: a transcript fed through the same decoding, tracker and lines as a live
//! `watch`.
//!
//! A replay does no HTTP: the fetches the tracker asks for are not run. The HTTP answers the
//! recording client used (written next to the frames since transcripts have `"kind":"http"`
//! lines) are fed to the tracker where they were recorded, so other clients' prompts, their
//! outcomes and node titles show as they did live. Older transcripts have only frames: prompts
//! of other clients stay as far as `status` frames tell.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::Duration;

use crate::comfy::connection::ReceivedFrame;
use crate::comfy::protocol::ServerMessage;
use crate::comfy::transcript::{
    TranscriptEntry, TranscriptFrame, TranscriptLineError, TranscriptReader,
};
use crate::comfy::{Decoded, RawFrame};

use crate::text::{one_line, truncate};
use crate::tracker::Tracker;

use super::{LineFormat, Stats, Watcher, prompt_outcomes, recorded_input, time_went};

/// How fast frames are played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// No delays.
    Max,
    /// The recorded gaps divided by this factor (2.0 = twice as fast).
    Speed(f64),
}

/// What a replay saw.
#[derive(Debug)]
pub struct ReplayReport {
    pub stats: Stats,
    /// Recorded HTTP answers fed to the tracker.
    pub answers: u64,
    /// Lines that were not frames.
    pub bad_lines: u64,
    /// The tracker's state at the end.
    pub tracker: Tracker,
}

impl ReplayReport {
    /// Every line was a frame and every frame decoded.
    pub fn is_clean(&self) -> bool {
        self.stats.malformed == 0 && self.bad_lines == 0
    }

    /// The summary printed after a replay.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        let mut out = format!(
            "{} frames, {} unknown, {} malformed, {} bad lines\n",
            s.frames, s.unknown, s.malformed, self.bad_lines
        );
        if self.answers > 0 {
            out.push_str(&format!("http answers: {}\n", self.answers));
        }
        // Event names are the server's message types: made safe and cut as the lines cut them.
        let events: Vec<String> = s
            .events
            .iter()
            .map(|(k, n)| format!("{} {n}", truncate(&one_line(k), 40)))
            .collect();
        if !events.is_empty() {
            out.push_str(&format!("events: {}\n", events.join(", ")));
        }
        let prompts = prompt_outcomes(&self.tracker);
        out.push_str(&format!("prompts: {}\n", prompts.len()));
        for p in &prompts {
            out.push_str(&format!("  {p}\n"));
        }
        let timed = time_went(&self.tracker);
        if !timed.is_empty() {
            out.push_str("where the time went (slowest nodes):\n");
            for line in &timed {
                out.push_str(&format!("  {line}\n"));
            }
        }
        out
    }
}

/// Plays the transcript at `path` (`-` for stdin) to stdout, bad lines to stderr. The error is
/// an I/O error: the file could not be opened, or stdout went away.
pub fn run_file(path: &Path, format: LineFormat, pace: Pace) -> io::Result<ReplayReport> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut diagnostics = io::stderr().lock();
    if path == Path::new("-") {
        let reader = TranscriptReader::new(io::stdin().lock());
        return replay(reader, "stdin", format, pace, &mut out, &mut diagnostics);
    }
    let reader = TranscriptReader::open(path)?;
    let source = path.display().to_string();
    replay(reader, &source, format, pace, &mut out, &mut diagnostics)
}

/// Plays `frames`, writing one line per frame to `out` and one line per bad transcript line
/// (prefixed with `source`) to `diagnostics`. Only write errors end it early.
pub fn replay<R: BufRead>(
    frames: TranscriptReader<R>,
    source: &str,
    format: LineFormat,
    pace: Pace,
    out: &mut impl Write,
    diagnostics: &mut impl Write,
) -> io::Result<ReplayReport> {
    let mut entries = frames.entries();
    let mut next = entries.next();
    let our_id = match &next {
        Some(Ok(TranscriptEntry::Frame(first))) => first_sid(first).unwrap_or_default(),
        _ => String::new(),
    };
    let mut watcher = Watcher::new(&our_id, format);
    let mut clock = TranscriptClock::default();
    let mut bad_lines = 0;
    let mut answers = 0;
    while let Some(item) = next.take() {
        // The reader is on the line of `item` until it is asked for the next one.
        let line_number = entries.line_number();
        next = entries.next();
        let bad = |reason: String| TranscriptLineError {
            line_number,
            reason,
        };
        let entry = item.and_then(|entry| {
            let connections = clock.connections;
            let ticked = match &entry {
                TranscriptEntry::Frame(frame) => clock.tick(frame.t),
                TranscriptEntry::Http(answer) => clock.tick_answer(answer.t),
            }
            .map_err(bad)?;
            if clock.connections != connections {
                // Frames sent between two sockets were never recorded: the tracker must not
                // take the cut for time a node ran.
                watcher.on_connection_lost(ticked.0);
            }
            let input = match &entry {
                TranscriptEntry::Http(answer) => Some(recorded_input(answer).map_err(bad)?),
                TranscriptEntry::Frame(_) => None,
            };
            Ok((entry, input, ticked))
        });
        let (entry, input, (now, gap)) = match entry {
            Ok(entry) => entry,
            Err(TranscriptLineError {
                line_number,
                reason,
            }) => {
                bad_lines += 1;
                writeln!(diagnostics, "{source}: line {line_number}: {reason}")?;
                continue;
            }
        };
        if let Pace::Speed(speed) = pace {
            std::thread::sleep(pause(gap, speed));
        }
        let step = match (entry, input) {
            (_, Some(input)) => {
                answers += 1;
                watcher.on_reply(now, input)
            }
            (TranscriptEntry::Frame(TranscriptFrame { t, raw }), None) => {
                let decoded = raw.decode();
                watcher.on_frame(now, ReceivedFrame { t, raw, decoded })
            }
            (TranscriptEntry::Http(_), None) => continue,
        };
        for line in step.lines {
            writeln!(out, "{line}")?;
        }
        if pace != Pace::Max {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(ReplayReport {
        stats: watcher.stats().clone(),
        answers,
        bad_lines,
        tracker: watcher.into_tracker(),
    })
}

/// The socket id from a transcript's first frame (the first `status` carries it): the tracker's
/// "own" client id, as it was for the recording client.
fn first_sid(frame: &TranscriptFrame) -> Option<String> {
    let RawFrame::Text(_) = &frame.raw else {
        return None;
    };
    match frame.raw.decode() {
        Decoded::Message(ServerMessage::Status(s)) => s.sid,
        _ => None,
    }
}

/// The longest a paced replay waits between two frames: a recording idle for an hour plays on
/// after this.
pub const MAX_PAUSE: Duration = Duration::from_secs(5);

/// A new connection's clock starts at 0, so a time that goes back to more than this is not a
/// reconnect but a broken transcript.
const RECONNECT_START: f64 = 60.0;

/// HTTP answers are stamped from when the recorder learned of the socket, a moment (up to the
/// connection's wait for the server's feature flags) after the frames' clock started: an answer
/// that reads up to this much earlier than the line before it is on the same socket.
const ANSWER_LAG: f64 = 5.0;

/// How long to wait for a recorded gap of `gap` seconds at `speed`.
fn pause(gap: f64, speed: f64) -> Duration {
    let secs = gap / speed;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else if secs >= MAX_PAUSE.as_secs_f64() {
        MAX_PAUSE
    } else {
        Duration::from_secs_f64(secs)
    }
}

/// Turns transcript times (seconds since *that* socket connected, so they restart when a
/// recording spans a reconnect) into one monotonic clock for the tracker.
#[derive(Debug, Default)]
struct TranscriptClock {
    offset: f64,
    last: f64,
    /// New connections seen after the first.
    connections: u32,
}

impl TranscriptClock {
    /// [`TranscriptClock::tick`] for a recorded HTTP answer: one that reads a little earlier than
    /// the line before it lags on the same socket (see [`ANSWER_LAG`]) and keeps the time where
    /// it was, rather than starting a new connection whose offset would add the whole old
    /// connection's length to whatever runs.
    fn tick_answer(&mut self, t: f64) -> Result<(f64, f64), String> {
        if t.is_finite() && t >= 0.0 && t < self.last && self.last - t <= ANSWER_LAG {
            return Ok((self.offset + self.last, 0.0));
        }
        self.tick(t)
    }

    /// (monotonic time, seconds since the previous frame), or why `t` cannot follow the
    /// previous time.
    fn tick(&mut self, t: f64) -> Result<(f64, f64), String> {
        if !t.is_finite() || t < 0.0 {
            return Err(format!(
                "\"t\" is {t}, not a time since the socket connected"
            ));
        }
        let gap = if t < self.last {
            if t > RECONNECT_START {
                return Err(format!(
                    "\"t\" goes back from {} to {t}: a new connection's times start at 0, so \
                     the lines are out of order",
                    self.last
                ));
            }
            // A new connection: its clock starts again at 0.
            self.offset += self.last;
            self.connections += 1;
            t
        } else {
            t - self.last
        };
        self.last = t;
        Ok((self.offset + t, gap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_runs_on_across_a_reconnect() {
        let mut clock = TranscriptClock::default();
        assert_eq!(clock.tick(0.5), Ok((0.5, 0.5)));
        assert_eq!(clock.tick(2.0), Ok((2.0, 1.5)));
        assert_eq!(clock.tick(0.25), Ok((2.25, 0.25)));
        assert_eq!(clock.tick(1.0), Ok((3.0, 0.75)));
    }

    #[test]
    fn an_answer_stamped_a_moment_behind_the_frames_is_on_the_same_socket() {
        let mut clock = TranscriptClock::default();
        assert_eq!(clock.tick(300.0), Ok((300.0, 300.0)));
        assert_eq!(clock.tick_answer(299.9), Ok((300.0, 0.0)));
        assert_eq!(clock.connections, 0);
        // Time goes on from where it was: no node gains the old connection's length.
        assert_eq!(clock.tick(300.5), Ok((300.5, 0.5)));
        // A frame whose time goes back is a new socket.
        assert_eq!(clock.tick(0.25), Ok((300.75, 0.25)));
        assert_eq!(clock.connections, 1);
    }

    #[test]
    fn clock_refuses_times_that_are_not_times() {
        let mut clock = TranscriptClock::default();
        assert_eq!(clock.tick(500.0), Ok((500.0, 500.0)));
        let back = clock.tick(400.0).unwrap_err();
        assert!(back.contains("goes back from 500 to 400"), "{back}");
        assert!(clock.tick(f64::NAN).is_err());
        assert!(clock.tick(-1.0).is_err());
        // The refused times left the clock as it was.
        assert_eq!(clock.tick(501.0), Ok((501.0, 1.0)));
    }

    #[test]
    fn pauses_are_the_gap_over_the_speed_and_never_long() {
        assert_eq!(pause(1.0, 2.0), Duration::from_millis(500));
        assert_eq!(pause(1e300, 1.0), MAX_PAUSE);
        assert_eq!(pause(1e9, 1e-300), MAX_PAUSE);
        assert_eq!(pause(0.0, 1.0), Duration::ZERO);
    }

    #[test]
    fn a_paced_replay_of_an_absurd_time_ends_and_names_the_line() {
        let transcript = concat!(
            r#"{"t":0.001,"kind":"text","data":{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":"me"}}}"#,
            "\n",
            r#"{"t":1e308,"kind":"text","data":{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}}"#,
            "\n",
            r#"{"t":0.002,"kind":"text","data":{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}}}}}"#,
            "\n",
        );
        let mut out = Vec::new();
        let mut diagnostics = Vec::new();
        let report = replay(
            TranscriptReader::new(transcript.as_bytes()),
            "t.jsonl",
            LineFormat::Human,
            Pace::Speed(1.0),
            &mut out,
            &mut diagnostics,
        )
        .unwrap();
        let diagnostics = String::from_utf8(diagnostics).unwrap();
        assert!(
            diagnostics.starts_with("t.jsonl: line 2: \"t\" is 1e308,"),
            "{diagnostics}"
        );
        assert_eq!(report.bad_lines, 1);
        assert_eq!(report.stats.frames, 2);
        assert!(!report.is_clean());
    }
}
