//! Every key the dashboard knows, in one place: [`action`] maps keys to actions and [`BINDINGS`]
//! describes them for the help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    NextPanel,
    PrevPanel,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Open,
    Back,
    Help,
    ToggleLog,
    TogglePreview,
    NextOutput,
    FullSizeView,
    SaveOutput,
}

/// One line of the help: the keys as shown, and what they do.
pub struct Binding {
    pub keys: &'static str,
    pub help: &'static str,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "q  Ctrl-C",
        help: "quit",
    },
    Binding {
        keys: "Tab  Shift-Tab",
        help: "next / previous panel",
    },
    Binding {
        keys: "j k  ↓ ↑",
        help: "move the selection / scroll",
    },
    Binding {
        keys: "PgDn PgUp",
        help: "move by a page",
    },
    Binding {
        keys: "g  G  Home End",
        help: "first / last",
    },
    Binding {
        keys: "Enter",
        help: "details of the selected prompt",
    },
    Binding {
        keys: "Esc",
        help: "back / close",
    },
    Binding {
        keys: "l",
        help: "show / hide the event log",
    },
    Binding {
        keys: "p",
        help: "show / hide the preview pane",
    },
    Binding {
        keys: "o",
        help: "next output of the prompt (details)",
    },
    Binding {
        keys: "v",
        help: "full-size view of the preview or output",
    },
    Binding {
        keys: "s",
        help: "save the output shown (details)",
    },
    Binding {
        keys: "?",
        help: "this help",
    },
];

/// Keys kept free for actions still to come (server control), so nothing else takes them:
/// c cancel, d delete, X clear, r/R requeue, F requeue to the front, u free memory.
pub const RESERVED: &[char] = &['c', 'd', 'X', 'r', 'R', 'F', 'u'];

/// The action of a key press, if it has one. Releases and repeats of non-movement keys do nothing.
pub fn action(key: &KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let action = match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        _ if ctrl => return None,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Tab => Action::NextPanel,
        KeyCode::BackTab => Action::PrevPanel,
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('l') => Action::ToggleLog,
        KeyCode::Char('p') => Action::TogglePreview,
        KeyCode::Char('o') => Action::NextOutput,
        KeyCode::Char('v') => Action::FullSizeView,
        KeyCode::Char('s') => Action::SaveOutput,
        _ => return None,
    };
    Some(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn ctrl_c_quits_and_plain_c_is_reserved() {
        assert_eq!(
            action(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(action(&key(KeyCode::Char('c'))), None);
    }

    #[test]
    fn no_reserved_key_is_bound() {
        for c in RESERVED {
            assert_eq!(action(&key(KeyCode::Char(*c))), None, "{c}");
        }
    }

    #[test]
    fn shift_g_goes_to_the_bottom() {
        let k = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(action(&k), Some(Action::Bottom));
    }
}
