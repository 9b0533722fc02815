//! `comfytop replay`: a transcript fed through the same decoding, tracker and lines as a live
//! `watch`.
//!
//! A replay does no HTTP: the fetches the tracker asks for are not run, so prompts of other
//! clients stay as far as `status` frames tell, and node titles (which come from `/queue`) are
//! not shown.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::Duration;

use crate::comfy::connection::ReceivedFrame;
use crate::comfy::protocol::ServerMessage;
use crate::comfy::transcript::{TranscriptFrame, TranscriptLineError, TranscriptReader};
use crate::comfy::{Decoded, RawFrame};

use crate::tracker::Tracker;

use super::{LineFormat, Stats, Watcher, prompt_outcomes};

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
        let events: Vec<String> = s.events.iter().map(|(k, n)| format!("{k} {n}")).collect();
        if !events.is_empty() {
            out.push_str(&format!("events: {}\n", events.join(", ")));
        }
        let prompts = prompt_outcomes(&self.tracker);
        out.push_str(&format!("prompts: {}\n", prompts.len()));
        for p in &prompts {
            out.push_str(&format!("  {p}\n"));
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
    let mut frames = frames.peekable();
    let our_id = match frames.peek() {
        Some(Ok(first)) => first_sid(first).unwrap_or_default(),
        _ => String::new(),
    };
    let mut watcher = Watcher::new(&our_id, format);
    let mut clock = TranscriptClock::default();
    let mut bad_lines = 0;
    for item in frames {
        let TranscriptFrame { t, raw } = match item {
            Ok(frame) => frame,
            Err(TranscriptLineError {
                line_number,
                reason,
            }) => {
                bad_lines += 1;
                writeln!(diagnostics, "{source}: line {line_number}: {reason}")?;
                continue;
            }
        };
        let (now, gap) = clock.tick(t);
        if let Pace::Speed(speed) = pace
            && gap > 0.0
        {
            std::thread::sleep(Duration::from_secs_f64((gap / speed).min(3600.0)));
        }
        let decoded = raw.decode();
        let step = watcher.on_frame(now, ReceivedFrame { t, raw, decoded });
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

/// Turns transcript times (seconds since *that* socket connected, so they restart when a
/// recording spans a reconnect) into one monotonic clock for the tracker.
#[derive(Debug, Default)]
struct TranscriptClock {
    offset: f64,
    last: f64,
}

impl TranscriptClock {
    /// (monotonic time, seconds since the previous frame).
    fn tick(&mut self, t: f64) -> (f64, f64) {
        let t = if t.is_finite() { t.max(0.0) } else { self.last };
        let gap = if t < self.last {
            // A new connection: its clock starts again at 0.
            self.offset += self.last;
            t
        } else {
            t - self.last
        };
        self.last = t;
        (self.offset + t, gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_runs_on_across_a_reconnect() {
        let mut clock = TranscriptClock::default();
        assert_eq!(clock.tick(0.5), (0.5, 0.5));
        assert_eq!(clock.tick(2.0), (2.0, 1.5));
        assert_eq!(clock.tick(0.25), (2.25, 0.25));
        assert_eq!(clock.tick(1.0), (3.0, 0.75));
    }
}
