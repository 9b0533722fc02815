//! What the fuzz targets check of one input, shared with the tests: the fuzz targets in
//! `fuzz_targets/` call these, and so do `tests/protocol_props.rs` (on generated inputs) and
//! `tests/fuzz_regressions.rs` (on the inputs that once found a bug). Each panics when a
//! property does not hold.

// Each includer uses part of it.
#![allow(dead_code)]

use bytes::Bytes;
use comfy_client::binary::{BinaryFrame, ImageFormat};
use comfy_client::protocol::ServerMessage;
use comfy_client::transcript::{
    Recorder, TranscriptEntry, TranscriptReader, parse_entry, parse_line,
};
use comfy_client::{Decoded, RawFrame};
use serde_json::Value;

/// What a parser made of some bytes must be what the connection's `RawFrame::decode` made of
/// them: the value (as `as_decoded` wraps it), or `Malformed` with the parser's error. The
/// value, when there is one.
fn agreeing<T: Clone, E: std::fmt::Display>(
    parsed: Result<T, E>,
    decoded: Decoded,
    as_decoded: fn(T) -> Decoded,
) -> Option<T> {
    match parsed {
        Ok(value) => {
            assert_eq!(decoded, as_decoded(value.clone()));
            Some(value)
        }
        Err(error) => {
            assert_eq!(
                decoded,
                Decoded::Malformed {
                    error: error.to_string()
                }
            );
            None
        }
    }
}

/// Binary WebSocket frames: any bytes either parse or are a `FrameError`, never a panic; what
/// parses encodes to bytes that parse back to the same frame, and frames with a canonical layout
/// encode back to the very bytes they came from.
pub fn binary_frame(data: &[u8]) {
    let wire = Bytes::copy_from_slice(data);
    let Some(frame) = agreeing(
        BinaryFrame::parse(wire.clone()),
        RawFrame::Binary(wire.clone()).decode(),
        Decoded::Binary,
    ) else {
        return;
    };

    let encoded = frame.encode();
    let again = BinaryFrame::parse(encoded.clone())
        .unwrap_or_else(|e| panic!("{frame:?} encodes to bytes that do not parse: {e}"));
    assert_eq!(again, frame, "encode → parse changed the frame");
    assert_eq!(again.encode(), encoded, "encoding is not stable");
    assert_eq!(&encoded[..4], &frame.event_type().to_be_bytes());

    let (inner, owner) = frame.unrelayed();
    assert!(!matches!(inner, BinaryFrame::Relayed { .. }));
    assert_eq!(
        owner.is_some(),
        matches!(frame, BinaryFrame::Relayed { .. })
    );

    // Layouts with one way to write them come back byte for byte (a type-4 header is JSON, and
    // an unknown image format code is written as 0, so those may not).
    let canonical = match inner {
        BinaryFrame::Preview(p) => p.metadata.is_none() && p.format != ImageFormat::Other,
        BinaryFrame::ProgressText { .. } | BinaryFrame::Unknown { .. } => true,
        BinaryFrame::Relayed { .. } => false,
    };
    if canonical {
        assert_eq!(encoded, wire, "{frame:?} did not encode to its own bytes");
    }
}

/// JSON text frames: any text either decodes to a `ServerMessage` or is a `MessageError`, never
/// a panic; what decodes is written back (`to_json`) to text that decodes to the same message,
/// and its parts (`kind`, `data`) rebuild it. Bytes that are not UTF-8 are no text frame.
pub fn json_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(message) = agreeing(
        ServerMessage::from_json(text),
        RawFrame::Text(text.to_string()).decode(),
        Decoded::Message,
    ) else {
        return;
    };

    let json = message.to_json();
    let again = ServerMessage::from_json(&json)
        .unwrap_or_else(|e| panic!("{message:?} writes {json}, which does not decode: {e}"));
    // The same message, floats aside (see `nearly_equal`): `data()` is the whole message, since
    // it rebuilds it (below).
    assert_eq!(again.kind(), message.kind());
    assert!(
        nearly_equal(&again.data(), &message.data()),
        "to_json → from_json changed the message: {message:?} became {again:?}"
    );

    let rebuilt = ServerMessage::from_parts(message.kind().to_string(), message.data());
    assert_eq!(rebuilt.as_ref(), Ok(&message));

    let (inner, owner) = message.unrelayed();
    assert!(!matches!(inner, ServerMessage::Relayed(_)));
    assert_eq!(
        owner.is_some(),
        matches!(message, ServerMessage::Relayed(_))
    );
    assert_eq!(inner.prompt_id(), message.prompt_id());
}

/// Transcripts: any bytes read as a transcript give entries and numbered errors, never a panic;
/// the reader agrees with `parse_entry` line by line, and whatever it reads, written back by the
/// recorder, reads back the same (times rounded as the writer rounds them).
pub fn transcript(data: &[u8]) {
    let entries: Vec<_> = TranscriptReader::new(data).entries().collect();

    // The frame reader is the entry reader without the HTTP answers.
    let frames: Vec<_> = TranscriptReader::new(data).collect();
    let expected_frames: Vec<_> = entries
        .iter()
        .filter_map(|entry| match entry {
            Ok(TranscriptEntry::Frame(frame)) => Some(Ok(frame.clone())),
            Ok(TranscriptEntry::Http(_)) => None,
            Err(error) => Some(Err(error.clone())),
        })
        .collect();
    assert_eq!(frames, expected_frames);

    // Line by line, as the reader splits them: bad UTF-8 is an error, blank lines are skipped,
    // the rest is `parse_entry` (error texts may differ in where serde_json says it stopped).
    let mut expected = Vec::new();
    for (index, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let line_number = index + 1;
        match std::str::from_utf8(line) {
            Err(_) => expected.push(Err(line_number)),
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => {
                let entry = parse_entry(line);
                // `parse_line` is `parse_entry` for frames only.
                match (&entry, parse_line(line)) {
                    (Ok(TranscriptEntry::Frame(a)), Ok(b)) => assert_eq!(a, &b),
                    (Ok(TranscriptEntry::Http(_)) | Err(_), Err(_)) => {}
                    (entry, frame) => panic!("parse_entry {entry:?} but parse_line {frame:?}"),
                }
                expected.push(entry.map_err(|_| line_number));
            }
        }
    }
    let got: Vec<_> = entries
        .iter()
        .map(|entry| {
            entry.clone().map_err(|error| {
                assert!(!error.reason.is_empty());
                error.line_number
            })
        })
        .collect();
    assert_eq!(got, expected);

    // What was read, written again, reads back the same.
    let read: Vec<&TranscriptEntry> = entries.iter().filter_map(|e| e.as_ref().ok()).collect();
    let mut recorder = Recorder::new(Vec::new());
    for entry in &read {
        match entry {
            TranscriptEntry::Frame(frame) => recorder.record(frame.t, &frame.raw),
            TranscriptEntry::Http(http) => recorder.record_http(http.t, &http.request, &http.body),
        }
        .expect("writing to a Vec");
    }
    let written = recorder.into_inner();
    assert_eq!(
        written.iter().filter(|&&b| b == b'\n').count(),
        read.len(),
        "one line per entry"
    );
    let reread: Vec<TranscriptEntry> = TranscriptReader::new(&written[..])
        .entries()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("a written transcript does not read back: {e}"));
    assert_eq!(reread.len(), read.len());
    for (before, after) in read.iter().zip(&reread) {
        let (t_before, t_after) = match (before, after) {
            (TranscriptEntry::Frame(a), TranscriptEntry::Frame(b)) => {
                assert_eq!(a.raw, b.raw);
                (a.t, b.t)
            }
            (TranscriptEntry::Http(a), TranscriptEntry::Http(b)) => {
                assert_eq!(a.request, b.request);
                assert!(
                    nearly_equal(&a.body, &b.body),
                    "{:?} read back as {:?}",
                    a.body,
                    b.body
                );
                (a.t, b.t)
            }
            (a, b) => panic!("{a:?} read back as {b:?}"),
        };
        // Written to a tenth of a millisecond.
        let tolerance = 0.5e-4 + t_before * f64::EPSILON * 4.0;
        assert!(
            (t_after - t_before).abs() <= tolerance,
            "t {t_before} read back as {t_after}"
        );
    }
}

/// JSON values equal but for the last bits of floats. serde_json reads floats fast rather than
/// exactly (its `float_roundtrip` feature is off), so a float written with the fewest digits that
/// name it can read back one unit in the last place off: a message written and read again is
/// the same message to about 15 significant digits, not to the bit.
pub fn nearly_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => {
                        (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
                    }
                    _ => false,
                }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| nearly_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| nearly_equal(v, w)))
        }
        _ => a == b,
    }
}
