//! Untrusted text made safe for a terminal cell.
//!
//! Node titles, error messages, tracebacks, file names and log lines come from the server and from
//! custom nodes anyone can write. An escape sequence among them could move the cursor, change
//! colours, set the window title or worse, so every such string passes through here before it is
//! drawn or printed.

use std::borrow::Cow;

const ESC: char = '\u{1b}';
const BEL: char = '\u{7}';
/// The 8-bit forms of CSI, OSC, DCS, SOS, PM and APC.
const C1_CSI: char = '\u{9b}';
const C1_STRING_STARTS: [char; 5] = ['\u{90}', '\u{98}', '\u{9d}', '\u{9e}', '\u{9f}'];
const C1_ST: char = '\u{9c}';

/// `s` without control characters or escape sequences, on one line: newlines and tabs become
/// spaces, every other C0/C1 control and every ESC sequence is removed. Borrows when `s` is clean.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    clean(s, false)
}

/// Like [`sanitize`], but newlines are kept (for tracebacks and multi-line messages). `\r\n`
/// becomes `\n`; a lone `\r` is dropped.
pub fn sanitize_multiline(s: &str) -> Cow<'_, str> {
    clean(s, true)
}

fn clean(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let is_safe = |c: char| !c.is_control() || (keep_newlines && c == '\n');
    if s.chars().all(is_safe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' | '\t' => out.push(' '),
            ESC => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => skip_csi(&mut chars),
                // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Any other escape is ESC plus one character.
                _ => {}
            },
            C1_CSI => skip_csi(&mut chars),
            c if C1_STRING_STARTS.contains(&c) => skip_string(&mut chars),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | C1_ST => break,
            ESC => {
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
        assert!(matches!(sanitize("KSampler (3) ✓"), Cow::Borrowed(_)));
        assert!(matches!(sanitize_multiline("a\nb"), Cow::Borrowed(_)));
    }

    #[test]
    fn escape_sequences_are_removed_whole() {
        assert_eq!(sanitize("a\u{1b}[31;1mred\u{1b}[0m b"), "ared b");
        assert_eq!(sanitize("x\u{1b}]0;pwned\u{7}y"), "xy");
        assert_eq!(
            sanitize("x\u{1b}]8;;http://e\u{1b}\\link\u{1b}]8;;\u{1b}\\y"),
            "xlinky"
        );
        assert_eq!(sanitize("x\u{1b}Py"), "x");
        assert_eq!(sanitize("x\u{1b}cy"), "xy");
        assert_eq!(sanitize("x\u{9b}2Jy"), "xy");
        assert_eq!(sanitize("x\u{9d}title\u{9c}y"), "xy");
    }

    #[test]
    fn controls_go_and_newlines_follow_the_caller() {
        assert_eq!(sanitize("a\nb\tc\rd\u{0}e\u{7f}f\u{85}g"), "a b cdefg");
        assert_eq!(sanitize_multiline("a\r\nb\u{8}c\n"), "a\nbc\n");
    }

    #[test]
    fn unterminated_sequences_do_not_panic() {
        assert_eq!(sanitize("a\u{1b}"), "a");
        assert_eq!(sanitize("a\u{1b}["), "a");
        assert_eq!(sanitize("a\u{1b}]title"), "a");
    }

    proptest::proptest! {
        #[test]
        fn output_never_holds_a_control(s in "\\PC*|[\u{0}-\u{a0}]*") {
            let out = sanitize(&s);
            proptest::prop_assert!(!out.chars().any(char::is_control));
            let out = sanitize_multiline(&s);
            proptest::prop_assert!(!out.chars().any(|c| c.is_control() && c != '\n'));
        }
    }
}
