//! Recorded WebSocket traffic: one JSON object per line, one line per frame, in arrival order.
//!
//! ```text
//! {"t":0.0004,"kind":"text","data":{"type":"status","data":{...}}}
//! {"t":0.3069,"kind":"binary","event_type":1,"b64":"<the whole frame, base64>"}
//! ```
//!
//! `t` is seconds since the socket connected. A text frame's JSON is written verbatim as `data`.
//!
//! Next to the frames, a transcript may hold the HTTP answers the recording client used, so a
//! replay learns what it learned (other clients' prompts, node titles, outcomes):
//!
//! ```text
//! {"t":0.0112,"kind":"http","request":"GET /queue","body":{"queue_running":[],...}}
//! ```
//!
//! [`TranscriptReader`] yields frames only and steps over these lines; [`TranscriptEntries`]
//! yields both.
//! A text frame that is not one line of JSON (a broken server) has no place in that shape, so it
//! is written as `"text": "<the frame>"` instead; readers of the plain format see an unexpected
//! line for it, which is what it is.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::RawFrame;

/// The latest `t` a transcript line may carry: about 30 years of one connection. Anything later
/// is a broken file, and would make a paced replay wait for ever.
pub const MAX_T: f64 = 1e9;

/// One frame read from a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptFrame {
    /// Seconds since the recorded socket connected.
    pub t: f64,
    pub raw: RawFrame,
}

/// An HTTP answer recorded in a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptHttp {
    /// On the clock of the frames around it.
    pub t: f64,
    /// `GET /queue`, `GET /history?max_items=64`, `GET /history/{id}`.
    pub request: String,
    pub body: serde_json::Value,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub enum TranscriptEntry {
    Frame(TranscriptFrame),
    Http(TranscriptHttp),
}

/// A transcript line that could not be read, and why. The reader goes on with the next line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line_number}: {reason}")]
pub struct TranscriptLineError {
    /// 1-based, as editors count.
    pub line_number: usize,
    pub reason: String,
}

/// Reads a transcript line by line. Blank lines are skipped; a bad line yields an error with its
/// line number and the next call goes on with the line after it. An I/O error ends the
/// iteration after being reported.
pub struct TranscriptReader<R> {
    input: R,
    line_number: usize,
    buf: Vec<u8>,
    failed: bool,
}

impl TranscriptReader<BufReader<File>> {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self::new(BufReader::new(File::open(path)?)))
    }
}

impl<R: BufRead> TranscriptReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line_number: 0,
            buf: Vec::with_capacity(4096),
            failed: false,
        }
    }

    /// The 1-based number of the line last read, as editors count.
    pub fn line_number(&self) -> usize {
        self.line_number
    }
}

impl<R: BufRead> TranscriptReader<R> {
    /// The reader that yields HTTP answers too.
    pub fn entries(self) -> TranscriptEntries<R> {
        TranscriptEntries(self)
    }

    fn next_entry(&mut self) -> Option<Result<TranscriptEntry, TranscriptLineError>> {
        while !self.failed {
            self.buf.clear();
            self.line_number += 1;
            let error = |reason: String| TranscriptLineError {
                line_number: self.line_number,
                reason,
            };
            match self.input.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Some(Err(error(format!("could not read: {e}"))));
                }
            }
            let Ok(line) = std::str::from_utf8(&self.buf) else {
                return Some(Err(error("not valid UTF-8".to_string())));
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(parse_entry(line).map_err(error));
        }
        None
    }
}

impl<R: BufRead> Iterator for TranscriptReader<R> {
    type Item = Result<TranscriptFrame, TranscriptLineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_entry()? {
                Ok(TranscriptEntry::Frame(frame)) => return Some(Ok(frame)),
                Ok(TranscriptEntry::Http(_)) => continue,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// Reads every entry of a transcript, frames and HTTP answers (see
/// [`TranscriptReader::entries`]).
pub struct TranscriptEntries<R>(TranscriptReader<R>);

impl<R: BufRead> TranscriptEntries<R> {
    /// The 1-based number of the line last read.
    pub fn line_number(&self) -> usize {
        self.0.line_number
    }
}

impl<R: BufRead> Iterator for TranscriptEntries<R> {
    type Item = Result<TranscriptEntry, TranscriptLineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_entry()
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    t: f64,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    event_type: Option<u64>,
    #[serde(borrow, default)]
    b64: Option<Cow<'a, str>>,
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    body: Option<serde_json::Value>,
}

/// Parses one transcript line that holds a frame.
pub fn parse_line(line: &str) -> Result<TranscriptFrame, String> {
    match parse_entry(line)? {
        TranscriptEntry::Frame(frame) => Ok(frame),
        TranscriptEntry::Http(_) => Err("an HTTP answer, not a frame".to_string()),
    }
}

/// Parses one transcript line.
pub fn parse_entry(line: &str) -> Result<TranscriptEntry, String> {
    let line: Line = serde_json::from_str(line).map_err(|e| format!("not a frame record: {e}"))?;
    if !(0.0..=MAX_T).contains(&line.t) {
        let shown = if line.t.abs() >= 1e6 {
            format!("{:e}", line.t)
        } else {
            line.t.to_string()
        };
        return Err(format!(
            "\"t\" is {shown}, which is not a time in a recording (seconds since the socket \
             connected, from 0 to {MAX_T:e})"
        ));
    }
    let raw = match line.kind.as_ref() {
        "text" => match (line.data, line.text) {
            (Some(data), _) if data.get() != "null" => RawFrame::Text(data.get().to_string()),
            (_, Some(text)) => RawFrame::Text(text),
            _ => return Err("text frame without \"data\"".to_string()),
        },
        "http" => {
            let request = line
                .request
                .ok_or_else(|| "http answer without \"request\"".to_string())?;
            let body = line
                .body
                .ok_or_else(|| "http answer without \"body\"".to_string())?;
            return Ok(TranscriptEntry::Http(TranscriptHttp {
                t: line.t,
                request,
                body,
            }));
        }
        "binary" => {
            let b64 = line
                .b64
                .ok_or_else(|| "binary frame without \"b64\"".to_string())?;
            let frame = BASE64
                .decode(b64.as_bytes())
                .map_err(|e| format!("\"b64\" is not base64: {e}"))?;
            let actual = frame
                .first_chunk::<4>()
                .map(|b| u64::from(u32::from_be_bytes(*b)));
            if let (Some(claimed), Some(actual)) = (line.event_type, actual)
                && claimed != actual
            {
                return Err(format!(
                    "\"event_type\" is {claimed} but the frame starts with type {actual}"
                ));
            }
            RawFrame::Binary(Bytes::from(frame))
        }
        other => {
            return Err(format!(
                "unknown \"kind\" {:?} (expected \"text\", \"binary\" or \"http\")",
                crate::text::truncate(&crate::text::one_line(other), 40)
            ));
        }
    };
    Ok(TranscriptEntry::Frame(TranscriptFrame { t: line.t, raw }))
}

/// A time as a transcript writes it: tenths of a millisecond, as recorded transcripts have;
/// rounding keeps lines short.
fn format_t(t: f64) -> serde_json::Number {
    let t = if t.is_finite() {
        (t * 10_000.0).round() / 10_000.0
    } else {
        0.0
    };
    serde_json::Number::from_f64(t).unwrap_or_else(|| serde_json::Number::from(0))
}

/// Writes one HTTP answer as a transcript line, newline included.
pub fn format_http_line(t: f64, request: &str, body: &impl serde::Serialize) -> String {
    let t = format_t(t);
    let request = serde_json::Value::String(request.to_string());
    // Serializing plain data to a String cannot fail; `null` stands in if it ever did.
    let body = serde_json::to_string(body).unwrap_or_else(|_| "null".to_string());
    format!("{{\"t\":{t},\"kind\":\"http\",\"request\":{request},\"body\":{body}}}\n")
}

/// Writes one frame as a transcript line, newline included.
pub fn format_line(t: f64, raw: &RawFrame) -> String {
    let t = format_t(t);
    match raw {
        RawFrame::Text(text) => match verbatim_json(text) {
            Some(json) => format!("{{\"t\":{t},\"kind\":\"text\",\"data\":{json}}}\n"),
            None => {
                let text = serde_json::Value::String(text.clone());
                format!("{{\"t\":{t},\"kind\":\"text\",\"text\":{text}}}\n")
            }
        },
        RawFrame::Binary(frame) => {
            let event_type = match frame.first_chunk::<4>() {
                Some(b) => u32::from_be_bytes(*b).to_string(),
                None => "null".to_string(),
            };
            let b64 = BASE64.encode(frame);
            format!(
                "{{\"t\":{t},\"kind\":\"binary\",\"event_type\":{event_type},\"b64\":\"{b64}\"}}\n"
            )
        }
    }
}

/// The frame's text when it can stand verbatim as `data`: JSON on one line with nothing around
/// it. Anything else is written as `text`, so every frame reads back exactly as it came.
fn verbatim_json(text: &str) -> Option<&str> {
    let value: &RawValue = serde_json::from_str(text).ok()?;
    let json = value.get();
    // `"data":null` would read back as a frame without data.
    let fits = json.len() == text.len() && !text.contains(['\n', '\r']) && json != "null";
    fits.then_some(json)
}

/// Appends received frames to a transcript, one flushed line per frame, so a crash loses at most
/// the frame being written.
pub struct Recorder<W: Write = File> {
    out: W,
}

impl Recorder<File> {
    /// Opens `path` for appending, creating it if needed.
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::new(file))
    }
}

impl<W: Write> Recorder<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn record(&mut self, t: f64, raw: &RawFrame) -> io::Result<()> {
        // One write per line: with O_APPEND that keeps lines whole even if two writers share
        // the file.
        self.out.write_all(format_line(t, raw).as_bytes())?;
        self.out.flush()
    }

    /// Records an HTTP answer the recording client used.
    pub fn record_http(
        &mut self,
        t: f64,
        request: &str,
        body: &impl serde::Serialize,
    ) -> io::Result<()> {
        self.out
            .write_all(format_http_line(t, request, body).as_bytes())?;
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &str) -> Vec<Result<TranscriptFrame, TranscriptLineError>> {
        TranscriptReader::new(input.as_bytes()).collect()
    }

    #[test]
    fn text_and_binary_lines_are_read() {
        let frames = read_all(concat!(
            r#"{"t":0.0004,"kind":"text","data":{"type":"status","data":{"sid":"x"}}}"#,
            "\n",
            r#"{"t":0.2051,"kind":"binary","event_type":3,"b64":"AAAAAwAAAAExc3RlcCAxLzMgKHNlZWQgMik="}"#,
            "\n",
        ));
        assert_eq!(
            frames[0],
            Ok(TranscriptFrame {
                t: 0.0004,
                raw: RawFrame::Text(r#"{"type":"status","data":{"sid":"x"}}"#.into())
            })
        );
        let Ok(TranscriptFrame {
            raw: RawFrame::Binary(bytes),
            ..
        }) = &frames[1]
        else {
            panic!("{frames:?}")
        };
        assert_eq!(&bytes[..4], &[0, 0, 0, 3]);
        assert_eq!(&bytes[9..], b"step 1/3 (seed 2)");
    }

    #[test]
    fn bad_lines_are_numbered_and_the_rest_is_read() {
        let frames = read_all(concat!(
            "{\"t\":1,\"kind\":\"text\",\"data\":{\"type\":\"a\"}}\n",
            "\n",
            "not json\n",
            "{\"t\":2,\"kind\":\"binary\",\"event_type\":1,\"b64\":\"!!\"}\n",
            "{\"t\":3,\"kind\":\"binary\",\"event_type\":4,\"b64\":\"AAAAAQ==\"}\n",
            "{\"t\":4,\"kind\":\"video\"}\n",
            "{\"t\":5,\"kind\":\"text\"}\n",
            "{\"t\":6,\"kind\":\"text\",\"data\":{\"type\":\"b\"}}\n",
            "{\"t\":1e308,\"kind\":\"text\",\"data\":{\"type\":\"c\"}}\n",
            "{\"t\":-1,\"kind\":\"text\",\"data\":{\"type\":\"c\"}}\n",
            "{\"t\":1e999,\"kind\":\"text\",\"data\":{\"type\":\"c\"}}",
        ));
        let lines: Vec<_> = frames
            .iter()
            .map(|f| f.as_ref().map(|f| f.t).map_err(|e| e.line_number))
            .collect();
        assert_eq!(
            lines,
            vec![
                Ok(1.0),
                Err(3),
                Err(4),
                Err(5),
                Err(6),
                Err(7),
                Ok(6.0),
                Err(9),
                Err(10),
                Err(11)
            ]
        );
        let reasons: Vec<String> = frames
            .iter()
            .filter_map(|f| f.as_ref().err().map(ToString::to_string))
            .collect();
        assert!(
            reasons[0].starts_with("line 3: not a frame record"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("not base64"), "{reasons:?}");
        assert!(reasons[2].contains("\"event_type\" is 4"), "{reasons:?}");
        assert!(reasons[3].contains("unknown \"kind\""), "{reasons:?}");
        assert!(reasons[4].contains("without \"data\""), "{reasons:?}");
        assert!(
            reasons[5].starts_with("line 9: \"t\" is 1e308,"),
            "{reasons:?}"
        );
        assert!(
            reasons[5].contains("not a time in a recording"),
            "{reasons:?}"
        );
        assert!(
            reasons[6].starts_with("line 10: \"t\" is -1,"),
            "{reasons:?}"
        );
        assert!(
            reasons[7].starts_with("line 11: not a frame record"),
            "{reasons:?}"
        );
    }

    #[test]
    fn http_answers_are_entries_and_frame_readers_step_over_them() {
        let mut recorder = Recorder::new(Vec::new());
        let frame = RawFrame::Text(r#"{"type":"status","data":{}}"#.into());
        recorder.record(0.5, &frame).unwrap();
        let body = serde_json::json!({"queue_running": [], "queue_pending": []});
        recorder.record_http(0.61234, "GET /queue", &body).unwrap();
        recorder.record(0.7, &frame).unwrap();
        let written = String::from_utf8(recorder.into_inner()).unwrap();
        assert!(
            written.contains(r#"{"t":0.6123,"kind":"http","request":"GET /queue","body":{"#),
            "{written}"
        );

        let frames: Vec<_> = TranscriptReader::new(written.as_bytes()).collect();
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames.iter().all(Result::is_ok));

        let entries: Vec<_> = TranscriptReader::new(written.as_bytes())
            .entries()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            entries[1],
            TranscriptEntry::Http(TranscriptHttp {
                t: 0.6123,
                request: "GET /queue".into(),
                body
            })
        );
        assert!(matches!(entries[2], TranscriptEntry::Frame(_)));
        let missing = read_all("{\"t\":1,\"kind\":\"http\",\"body\":{}}\n");
        assert!(
            missing[0]
                .as_ref()
                .unwrap_err()
                .reason
                .contains("without \"request\"")
        );
    }

    #[test]
    fn invalid_utf8_is_one_bad_line() {
        let mut input = b"\xff\xfe\n".to_vec();
        input.extend_from_slice(b"{\"t\":1,\"kind\":\"text\",\"data\":{}}\n");
        let frames: Vec<_> = TranscriptReader::new(&input[..]).collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].as_ref().unwrap_err().line_number, 1);
        assert!(frames[1].is_ok());
    }

    #[test]
    fn written_lines_read_back_to_the_same_frames() {
        let frames = [
            (0.0, RawFrame::Text(r#"{"type":"status","data":{}}"#.into())),
            (1.23456, RawFrame::Text("not json \u{1b}[31m".into())),
            (2.0, RawFrame::Text("{\n  \"type\": \"x\"\n}".into())),
            (
                3.5,
                RawFrame::Binary(Bytes::from_static(&[0, 0, 0, 9, 1, 2])),
            ),
            (4.0, RawFrame::Binary(Bytes::from_static(&[0, 1]))),
        ];
        let mut recorder = Recorder::new(Vec::new());
        for (t, raw) in &frames {
            recorder.record(*t, raw).unwrap();
        }
        let written = String::from_utf8(recorder.into_inner()).unwrap();
        assert_eq!(written.lines().count(), frames.len());
        let read: Vec<TranscriptFrame> = TranscriptReader::new(written.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read[0].raw, frames[0].1);
        assert_eq!(read[1].t, 1.2346);
        assert_eq!(read[1].raw, frames[1].1);
        assert_eq!(read[2].raw, frames[2].1);
        assert_eq!(read[3].raw, frames[3].1);
        assert_eq!(read[4].raw, frames[4].1);
        assert!(written.contains(r#""event_type":9,"#));
        assert!(written.contains(r#""event_type":null,"#));
    }
}
