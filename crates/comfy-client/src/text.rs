//! Making untrusted text (node titles, file names, error messages, log lines from a server) safe
//! to put in front of a terminal.
//!
//! A string from the network can carry escape sequences that move the cursor, change colours,
//! retitle the window or rewrite the clipboard, bidi overrides that make text read other than
//! it is, and invisible characters that make two different names look alike. Nothing from a
//! server reaches a terminal or a file name without passing through here.

use std::borrow::Cow;

/// Removes terminal escape sequences (CSI, OSC, DCS and the like, 7- and 8-bit) and every other
/// control character, keeping newlines and tabs. Bidi controls and invisible format characters
/// (see [`is_unsafe`]) are removed too. Returns the input unchanged (no allocation) when it was
/// clean.
pub fn sanitize(input: &str) -> Cow<'_, str> {
    if !input
        .chars()
        .any(|c| is_unsafe(c) && c != '\n' && c != '\t')
    {
        return Cow::Borrowed(input);
    }
    Cow::Owned(strip(input))
}

/// Like [`sanitize`], and for one line of output: every run of newlines, tabs and other
/// whitespace becomes one space, and the ends are trimmed.
pub fn one_line(input: &str) -> Cow<'_, str> {
    let trimmed = input.trim();
    let clean = !trimmed.chars().any(is_unsafe)
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

/// One component of a file name from a server: [`sanitize`]d, without line breaks, tabs or
/// path separators. The caller still decides on length, leading dots and an empty result.
pub fn file_name_part(input: &str) -> String {
    sanitize(input)
        .chars()
        .filter(|c| !matches!(c, '\n' | '\t' | '/' | '\\'))
        .collect()
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
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // JSON escapes are UTF-16 units: a tag character is a surrogate pair.
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Characters no sanitized string contains: C0 and C1 controls, DEL, bidi controls (embeddings,
/// overrides, isolates, the LRM/RLM/ALM marks) and invisible format characters that can make
/// text look other than it is (zero-width space, word joiners, the BOM, soft hyphen, fillers
/// that render as blanks, interlinear annotations, line and paragraph separators). Tag
/// characters count too; [`sanitize`] keeps them only inside an emoji flag sequence.
///
/// Zero-width (non-)joiners and variation selectors stay: emoji and several scripts need them.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f'
        | '\x7f'..='\u{9f}'
        | '\u{ad}'
        | '\u{34f}'
        | '\u{61c}'
        | '\u{115f}'..='\u{1160}'
        | '\u{17b4}'..='\u{17b5}'
        | '\u{180e}'
        | '\u{200b}'
        | '\u{200e}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{3164}'
        | '\u{feff}'
        | '\u{ffa0}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | TAGS_START..=TAGS_END
    )
}

/// The tag block: invisible, and able to smuggle whole ASCII texts, but also the tail of
/// subdivision flags (🏴 + tag letters + cancel tag, the flag of England).
const TAGS_START: char = '\u{e0000}';
const TAGS_END: char = '\u{e007f}';
const BLACK_FLAG: char = '\u{1f3f4}';
const FLAG_TAGS: std::ops::RangeInclusive<char> = '\u{e0020}'..=TAGS_END;
/// Up to six tag letters and the cancel tag (`gbsct` + cancel is the longest in use).
const MAX_FLAG_TAGS: u8 = 7;

/// Drops escape sequences and controls (newline and tab excepted).
fn strip(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.chars().peekable();
    // Tag characters still allowed: after 🏴, as many as a subdivision flag needs.
    let mut flag_tags_left = 0;
    while let Some(c) = chars.next() {
        let flag_tag = flag_tags_left > 0 && FLAG_TAGS.contains(&c);
        flag_tags_left = match c {
            BLACK_FLAG => MAX_FLAG_TAGS,
            TAGS_END => 0,
            _ if flag_tag => flag_tags_left - 1,
            _ => 0,
        };
        match c {
            '\n' | '\t' => out.push(c),
            _ if flag_tag => out.push(c),
            // Line and paragraph separators break lines like a newline would.
            '\u{2028}' | '\u{2029}' => out.push('\n'),
            // ESC: drop the sequence it starts, not only the ESC byte, so "[31m" does not show.
            '\x1b' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Two-character sequences (ESC c, ESC 7, ...) and a lone trailing ESC.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            c if is_unsafe(c) => {}
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
    fn bidi_marks_and_invisible_format_characters_are_dropped() {
        let spoof = "ok\u{202a}\u{202b}\u{202c}\u{202d}\u{2066}\u{2067}\u{2068}\u{2069}\u{200e}\u{200f}\u{61c}";
        assert_eq!(sanitize(spoof), "ok");
        assert_eq!(
            sanitize("zero\u{200b}width\u{feff}\u{2060}\u{ad}"),
            "zerowidth"
        );
        assert_eq!(sanitize("blank\u{3164}\u{115f}name"), "blankname");
        assert_eq!(one_line("para\u{2029}graph"), "para graph");
        assert_eq!(file_name_part("../x\u{202e}gnp.exe"), "..xgnp.exe");
    }

    #[test]
    fn normal_text_cjk_and_emoji_sequences_stay() {
        for text in [
            "KSampler (Advanced)",
            "画像を保存 — 저장 — ذخیره‌سازی",
            "👩‍🔬 done ✔️",
            "flag 🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f} ok",
        ] {
            assert_eq!(sanitize(text), text);
            assert_eq!(one_line(text), text);
        }
    }

    #[test]
    fn tag_characters_outside_a_flag_are_dropped() {
        // ASCII smuggled as invisible tags, alone or after a real flag.
        let hidden: String = "rm -rf"
            .chars()
            .map(|c| char::from_u32(0xe0000 + c as u32).unwrap())
            .collect();
        assert_eq!(sanitize(&format!("a{hidden}b")), "ab");
        let after_flag =
            format!("🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}{hidden}");
        assert_eq!(
            sanitize(&after_flag),
            "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}"
        );
        let long: String = std::iter::once('🏴')
            .chain(hidden.chars().cycle().take(40))
            .collect();
        assert!(sanitize(&long).chars().count() <= 1 + usize::from(MAX_FLAG_TAGS));
    }

    #[test]
    fn file_name_parts_lose_separators_and_line_breaks() {
        assert_eq!(file_name_part("a/b\\c\nd\u{2066}.png"), "abcd.png");
    }

    /// Every character a sanitized string may not hold (tags count apart: see below).
    fn forbidden(c: char) -> bool {
        is_unsafe(c) && !FLAG_TAGS.contains(&c)
    }

    /// Tag characters in `text` only in short runs right after 🏴.
    fn tags_only_in_flags(text: &str) -> bool {
        let mut left = 0u8;
        for c in text.chars() {
            if (TAGS_START..=TAGS_END).contains(&c) {
                if left == 0 {
                    return false;
                }
                left -= 1;
            } else {
                left = if c == BLACK_FLAG { MAX_FLAG_TAGS } else { 0 };
            }
        }
        true
    }

    /// Text with everything dangerous mixed into ordinary and wide characters.
    fn hostile_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let dangerous = prop_oneof![
            Just('\x1b'),
            Just('\u{9b}'),
            Just('\u{9d}'),
            Just('\u{9c}'),
            Just('\x07'),
            Just('['),
            Just(']'),
            Just('\\'),
            Just('\u{202e}'),
            Just('\u{202c}'),
            Just('\u{2066}'),
            Just('\u{2069}'),
            Just('\u{200e}'),
            Just('\u{200f}'),
            Just('\u{61c}'),
            Just('\u{200b}'),
            Just('\u{feff}'),
            Just('\u{2028}'),
            Just(BLACK_FLAG),
            Just('\u{e0067}'),
            Just('\u{e007f}'),
            Just('\u{e0001}'),
            Just('\u{200d}'),
            Just('画'),
            Just('é'),
            Just('\n'),
            Just('\t'),
            Just(' '),
        ];
        let any_char = prop_oneof![
            3 => dangerous,
            1 => any::<char>(),
            1 => (0u32..0x100).prop_map(|n| char::from_u32(n).unwrap_or('?')),
            1 => (0x2000u32..0x2070).prop_map(|n| char::from_u32(n).unwrap_or('?')),
        ];
        proptest::collection::vec(any_char, 0..64).prop_map(|chars| chars.into_iter().collect())
    }

    proptest::proptest! {
        #[test]
        fn sanitized_text_holds_no_control_bidi_or_invisible_character(text in hostile_text()) {
            let clean = sanitize(&text);
            proptest::prop_assert!(
                !clean.chars().any(|c| forbidden(c) && c != '\n' && c != '\t'),
                "{:?} -> {:?}", text, clean
            );
            proptest::prop_assert!(tags_only_in_flags(&clean), "{:?} -> {:?}", text, clean);
            let line = one_line(&text);
            proptest::prop_assert!(!line.chars().any(forbidden), "{:?} -> {:?}", text, line);
            proptest::prop_assert!(tags_only_in_flags(&line), "{:?} -> {:?}", text, line);
            let name = file_name_part(&text);
            proptest::prop_assert!(
                !name.chars().any(|c| forbidden(c) || c == '/' || c == '\\'),
                "{:?} -> {:?}", text, name
            );
            // Sanitizing is idempotent: nothing the first pass leaves can form a new sequence.
            proptest::prop_assert_eq!(sanitize(&clean), clean.clone());
            let json = terminal_safe_json(&serde_json::json!({ "m": text }));
            proptest::prop_assert!(!json.chars().any(is_unsafe), "{:?}", json);
            let back: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            proptest::prop_assert_eq!(back["m"].as_str(), Some(text.as_str()));
        }
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
        assert!(!line.chars().any(is_unsafe));
    }
}
