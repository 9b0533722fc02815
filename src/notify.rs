//! Telling a user whose terminal is in the background that a prompt ended: the bell, and a
//! desktop notification by OSC 9 (iTerm2, kitty, WezTerm, Ghostty, Windows Terminal) or
//! OSC 777 (foot, urxvt), passed through tmux when it runs inside tmux.

use std::collections::{HashSet, VecDeque};

/// `--notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyMode {
    Off,
    /// The terminal bell (tmux marks the window).
    #[default]
    Bell,
    /// A desktop notification by escape sequence.
    Osc,
    /// Both.
    Both,
}

/// Which prompts notify: `--notify-all` adds those other clients queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotifyFor {
    pub mode: NotifyMode,
    pub all_prompts: bool,
}

/// Where the notification goes, as the environment tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TerminalKind {
    /// `$TMUX` is set: escape sequences other than the bell must be wrapped to reach the
    /// terminal tmux runs in.
    pub tmux: bool,
    /// `$TERM`.
    pub term: String,
}

impl TerminalKind {
    pub fn from_env() -> Self {
        Self {
            tmux: std::env::var_os("TMUX").is_some_and(|v| !v.is_empty()),
            term: std::env::var("TERM").unwrap_or_default(),
        }
    }

    /// foot and urxvt show OSC 777 and not OSC 9; the Linux console shows neither and would
    /// print the text.
    fn osc(&self) -> Option<Osc> {
        let term = self.term.as_str();
        if term == "linux" || term == "dumb" {
            None
        } else if term.starts_with("foot") || term.starts_with("rxvt") {
            Some(Osc::Notify777)
        } else {
            Some(Osc::Notify9)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Osc {
    Notify9,
    Notify777,
}

/// The bytes that notify, for the terminal to receive as they are. `title` and `body` are
/// cleaned of anything a terminal would act on.
pub fn bytes(mode: NotifyMode, terminal: &TerminalKind, title: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if matches!(mode, NotifyMode::Bell | NotifyMode::Both) {
        out.push(0x07);
    }
    if matches!(mode, NotifyMode::Osc | NotifyMode::Both)
        && let Some(osc) = terminal.osc()
    {
        // ';' separates the fields of OSC 777; a title with one would move text into the body.
        let title = crate::text::one_line(title).replace(';', ",");
        let body = crate::text::one_line(body);
        let sequence = match osc {
            Osc::Notify9 => format!("\x1b]9;{title}: {body}\x1b\\"),
            Osc::Notify777 => format!("\x1b]777;notify;{title};{body}\x1b\\"),
        };
        if terminal.tmux {
            out.extend_from_slice(&tmux_passthrough(sequence.as_bytes()));
        } else {
            out.extend_from_slice(sequence.as_bytes());
        }
    }
    out
}

/// tmux hands a DCS `tmux;` sequence to the outer terminal, its escapes doubled (it needs
/// `allow-passthrough on`, tmux's default before 3.3).
fn tmux_passthrough(sequence: &[u8]) -> Vec<u8> {
    let mut out = b"\x1bPtmux;".to_vec();
    for &byte in sequence {
        if byte == 0x1b {
            out.push(0x1b);
        }
        out.push(byte);
    }
    out.extend_from_slice(b"\x1b\\");
    out
}

/// The prompts already notified, so none notifies twice (a prompt forgotten and learned again
/// from the history would otherwise end twice).
#[derive(Debug, Default)]
pub struct Notified {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Notified {
    const KEPT: usize = 4096;

    /// True the first time `id` is given.
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        if self.order.len() > Self::KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(term: &str, tmux: bool) -> TerminalKind {
        TerminalKind {
            tmux,
            term: term.to_string(),
        }
    }

    #[test]
    fn each_mode_sends_its_bytes() {
        let kitty = terminal("xterm-kitty", false);
        assert_eq!(bytes(NotifyMode::Off, &kitty, "t", "b"), b"");
        assert_eq!(bytes(NotifyMode::Bell, &kitty, "t", "b"), b"\x07");
        assert_eq!(
            bytes(NotifyMode::Osc, &kitty, "comfytop", "done"),
            b"\x1b]9;comfytop: done\x1b\\"
        );
        assert_eq!(
            bytes(NotifyMode::Both, &terminal("foot", false), "a;b", "c;d"),
            b"\x07\x1b]777;notify;a,b;c;d\x1b\\"
        );
        assert_eq!(
            bytes(NotifyMode::Both, &terminal("linux", false), "t", "b"),
            b"\x07"
        );
    }

    #[test]
    fn inside_tmux_the_sequence_is_wrapped_and_the_bell_is_not() {
        assert_eq!(
            bytes(NotifyMode::Both, &terminal("tmux-256color", true), "t", "b"),
            b"\x07\x1bPtmux;\x1b\x1b]9;t: b\x1b\x1b\\\x1b\\"
        );
    }

    #[test]
    fn hostile_text_cannot_end_the_sequence_early() {
        let out = bytes(
            NotifyMode::Osc,
            &terminal("xterm", false),
            "t\x07",
            "x\x1b]52;c;AAAA\x07\x1b\\y\u{9c}",
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches('\x1b').count(), 2, "{text:?}");
        assert!(
            !text.contains('\x07') && !text.contains('\u{9c}'),
            "{text:?}"
        );
    }

    #[test]
    fn a_prompt_notifies_once() {
        let mut notified = Notified::default();
        assert!(notified.first_time("a"));
        assert!(!notified.first_time("a"));
        for i in 0..Notified::KEPT {
            notified.first_time(&i.to_string());
        }
        assert_eq!(notified.ids.len(), Notified::KEPT);
    }
}
