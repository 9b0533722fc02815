//! Making untrusted text (node titles, file names, error messages, log lines from a server) safe
//! to put in front of a terminal.
//!
//! A string from the network can carry escape sequences that move the cursor, change colours,
//! retitle the window or rewrite the clipboard, and bidi overrides that make text read other than
//! it is. Nothing from a server reaches a terminal without passing through here.

use std::borrow::Cow;

/// Removes terminal escape sequences (CSI, OSC, DCS and the like, 7- and 8-bit) and every other
/// control character, keeping newlines and tabs. Bidi override and isolate characters are
/// removed too. Returns the input unchanged (no allocation) when it was clean.
pub fn sanitize(input: &str) -> Cow<'_, str> {
    if !input
        .chars()
        .any(|c| needs_handling(c) && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(input);
    }
    Cow::Owned(strip(input))
}

/// Like [`sanitize`], and for one line of output: every run of newlines, tabs and other
/// whitespace becomes one space, and the ends are trimmed.
pub fn one_line(input: &str) -> Cow<'_, str> {
    let trimmed = input.trim();
    let clean = !trimmed.chars().any(needs_handling)
        && !trimmed
            .as_bytes()
            .windows(2)
            .any(|w| w[0] == b' ' && w[1] == b' ');
    if clean {
        return Cow::Borrowed(trimmed);
    }
    let stripped = strip(trimmed);
    let mut out = String::with_capacity(stripped.len());
    for word in stripped.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    Cow::Owned(out)
}

/// Cuts `input` to at most `max_chars` characters, marking a cut with `…`.
pub fn truncate(input: &str, max_chars: usize) -> Cow<'_, str> {
    match input.char_indices().nth(max_chars) {
        None => Cow::Borrowed(input),
        Some(_) => {
            let keep = max_chars.saturating_sub(1);
            let end = input
                .char_indices()
                .nth(keep)
                .map_or(input.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &input[..end]))
        }
    }
}

/// Serializes `value` as compact JSON with C1 controls, DEL and bidi controls written as
/// `\uXXXX` escapes (serde_json already escapes C0). The data stays exact for a JSON reader,
/// while a terminal that shows the line raw sees nothing it would act on. A value that cannot
/// be JSON (a map with non-string keys) gives `null`.
pub fn terminal_safe_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, SafeFormatter);
    if value.serialize(&mut ser).is_err() {
        return "null".to_string();
    }
    // serde_json writes valid UTF-8, and the formatter only adds ASCII.
    String::from_utf8(out).unwrap_or_default()
}

struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if needs_handling(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// C0 and C1 controls, DEL, and the bidi embedding/override/isolate characters.
fn needs_handling(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Drops escape sequences and controls (newline and tab excepted).
fn strip(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            // ESC: drop the sequence it starts, not only the ESC byte, so "[31m" does not show.
            '\x1b' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Two-character sequences (ESC c, ESC 7, ...) and a lone trailing ESC.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if needs_handling(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of a CSI sequence: parameter and intermediate bytes (0x20..=0x3f), then the
/// final byte (or whatever else ends it early).
fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if !('\x20'..='\x3f').contains(&c) {
            break;
        }
    }
}

/// Skips the body of an OSC/DCS/SOS/PM/APC string, up to BEL, ST (`ESC \` or U+009C) or the
/// end of the input.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\x07' | '\u{9c}' => break,
            '\x1b' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                break;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(
            sanitize("Slow Steps: step 1/6\n"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(one_line("KSampler (Advanced)"), Cow::Borrowed(_)));
    }

    #[test]
    fn colour_and_cursor_sequences_are_removed_whole() {
        assert_eq!(sanitize("\x1b[31mred\x1b[0m"), "red");
        assert_eq!(sanitize("a\x1b[2J\x1b[1;1Hb"), "ab");
        assert_eq!(sanitize("x\u{9b}31my"), "xy");
    }

    #[test]
    fn osc_title_and_clipboard_writes_are_removed_whole() {
        assert_eq!(sanitize("\x1b]0;pwned\x07title"), "title");
        assert_eq!(sanitize("\x1b]52;c;aGVsbG8=\x1b\\after"), "after");
        assert_eq!(sanitize("\x1bPdcs body\x1b\\ok"), "ok");
        assert_eq!(sanitize("\u{9d}8;;http://x\u{9c}link"), "link");
    }

    #[test]
    fn other_controls_and_bidi_overrides_are_dropped() {
        assert_eq!(sanitize("a\x00b\x08c\x7fd\re"), "abcde");
        assert_eq!(sanitize("abc\u{202e}fed"), "abcfed");
        assert_eq!(sanitize("lone escape at end\x1b"), "lone escape at end");
        assert_eq!(sanitize("tab\tand\nnewline"), "tab\tand\nnewline");
    }

    #[test]
    fn one_line_folds_whitespace() {
        assert_eq!(
            one_line("  lab: deliberate failure\n\tat  node 2\r\n"),
            "lab: deliberate failure at node 2"
        );
        assert_eq!(one_line("a\x1b[1mb\nc"), "ab c");
    }

    #[test]
    fn truncate_marks_the_cut_on_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 5), "ééééé");
        assert_eq!(truncate("éééééé", 5), "éééé…");
    }

    #[test]
    fn json_keeps_data_but_escapes_what_a_terminal_would_act_on() {
        let value = serde_json::json!({"m": "a\u{1b}[31m\u{9b}b\u{202e}c"});
        let line = terminal_safe_json(&value);
        assert_eq!(line, r#"{"m":"a\u001b[31m\u009bb\u202ec"}"#);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
        assert!(!line.chars().any(needs_handling));
    }
}
