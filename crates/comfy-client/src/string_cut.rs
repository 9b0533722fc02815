//! Cuts every long string of a JSON document while its bytes arrive, so a `/history` body that
//! carries a 50 MB exception message three times is never held whole: each string keeps its
//! first characters and says how many were left out, the way [`cut_text`](super::api::cut_text)
//! does, and the rest of the document passes through byte for byte.
//!
//! It only tracks where strings begin and end; anything that is not JSON passes through unchanged
//! for the parser to refuse as before.

/// Feeds body chunks through, writing the cut document to an output buffer.
#[derive(Debug)]
pub struct StringCutter {
    max_chars: usize,
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Outside,
    Inside(InString),
}

#[derive(Debug, Clone, Copy, Default)]
struct InString {
    /// Characters copied so far.
    kept: usize,
    /// Characters left out so far; copying stopped at the first one.
    left_out: usize,
    escape: Escape,
    /// The last `\uXXXX` was the first half of a surrogate pair: the next escape completes the
    /// same character, so it is neither counted nor a place to cut.
    high_surrogate: bool,
}

#[derive(Debug, Clone, Copy, Default)]
enum Escape {
    #[default]
    None,
    /// After a backslash.
    Started,
    /// Inside `\uXXXX`: hex digits still to come and the value so far.
    Unicode { digits_left: u8, value: u16 },
}

impl StringCutter {
    pub fn new(max_chars: usize) -> Self {
        Self {
            max_chars,
            state: State::Outside,
        }
    }

    /// Appends `chunk`, with strings cut, to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // Where the bytes being copied began; `None` while a string's tail is left out.
        let mut run_start = match self.state {
            State::Inside(string) if string.left_out > 0 => None,
            _ => Some(0),
        };
        for (i, &byte) in chunk.iter().enumerate() {
            match &mut self.state {
                State::Outside => {
                    if byte == b'"' {
                        self.state = State::Inside(InString::default());
                    }
                }
                State::Inside(string) => {
                    let was_cutting = string.left_out > 0;
                    if string.step(byte, self.max_chars) {
                        if was_cutting {
                            // The note goes before the closing quote, which starts a new run.
                            out.extend_from_slice(
                                format!("… ({} more characters)", string.left_out).as_bytes(),
                            );
                            run_start = Some(i);
                        }
                        self.state = State::Outside;
                    } else if !was_cutting
                        && string.left_out > 0
                        && let Some(start) = run_start.take()
                    {
                        out.extend_from_slice(&chunk[start..i]);
                    }
                }
            }
        }
        if let Some(start) = run_start {
            out.extend_from_slice(&chunk[start..]);
        }
    }
}

impl InString {
    /// Takes one byte inside a string; true when it is the closing quote.
    fn step(&mut self, byte: u8, max_chars: usize) -> bool {
        match self.escape {
            Escape::Started => {
                self.escape = if byte == b'u' {
                    Escape::Unicode {
                        digits_left: 4,
                        value: 0,
                    }
                } else {
                    Escape::None
                };
                false
            }
            Escape::Unicode { digits_left, value } => {
                let digit = char::from(byte).to_digit(16).unwrap_or(0) as u16;
                let value = value.wrapping_mul(16).wrapping_add(digit);
                if digits_left > 1 {
                    self.escape = Escape::Unicode {
                        digits_left: digits_left - 1,
                        value,
                    };
                } else {
                    self.escape = Escape::None;
                    self.high_surrogate =
                        !self.high_surrogate && (0xD800..=0xDBFF).contains(&value);
                }
                false
            }
            Escape::None => {
                if byte == b'"' {
                    return true;
                }
                let continues_a_character =
                    (byte & 0xC0 == 0x80) || (self.high_surrogate && byte == b'\\');
                if !continues_a_character {
                    // A new character begins: the only place a cut may fall.
                    self.high_surrogate = false;
                    if self.left_out > 0 || self.kept == max_chars {
                        self.left_out += 1;
                    } else {
                        self.kept += 1;
                    }
                }
                if byte == b'\\' {
                    self.escape = Escape::Started;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cut_text;
    use proptest::prelude::*;

    fn cut_in_chunks(document: &[u8], max_chars: usize, chunk: usize) -> Vec<u8> {
        let mut cutter = StringCutter::new(max_chars);
        let mut out = Vec::new();
        for piece in document.chunks(chunk.max(1)) {
            cutter.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn a_long_string_keeps_its_head_and_says_how_much_was_left_out() {
        let document = br#"{"s":"abc","l":"0123456789","n":[1,2]}"#;
        let out = cut_in_chunks(document, 4, 3);
        assert_eq!(
            String::from_utf8_lossy(&out),
            r#"{"s":"abc","l":"0123… (6 more characters)","n":[1,2]}"#
        );
    }

    #[test]
    fn escapes_and_surrogate_pairs_are_one_character_and_never_split() {
        // "é" escaped, then an astral character as a surrogate pair, then a quote escaped.
        let document = br#"["a\u00e9\ud83d\ude00\"bc"]"#;
        let out = cut_in_chunks(document, 3, 1);
        let parsed: Vec<String> = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(parsed, vec!["aé😀… (3 more characters)".to_string()]);
    }

    #[test]
    fn what_is_not_json_passes_through() {
        let page = b"<html><body>\"not json at all\"</body></html>";
        assert_eq!(cut_in_chunks(page, 100, 7), page.to_vec());
    }

    proptest! {
        /// Whatever the chunking, the cut document parses to what cutting each string after
        /// parsing gives.
        #[test]
        fn cutting_while_reading_is_cutting_after_parsing(
            strings in proptest::collection::vec(".{0,40}", 0..8),
            max_chars in 0usize..20,
            chunk in 1usize..17,
        ) {
            let document = serde_json::to_vec(&strings).unwrap_or_default();
            let escaped_too = String::from_utf8_lossy(&document).replace('é', "\\u00e9");
            for document in [document.clone(), escaped_too.into_bytes()] {
                let out = cut_in_chunks(&document, max_chars, chunk);
                let parsed: serde_json::Value = serde_json::from_slice(&out)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected: Vec<String> =
                    strings.iter().map(|s| cut_text(s, max_chars)).collect();
                prop_assert_eq!(&parsed, &serde_json::json!(expected));
            }
        }
    }
}
