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
    /// Server control (see `super::actions`): each asks for a confirmation where it destroys.
    Control(Control),
}

/// The keys that change something on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Interrupt the running prompt.
    Cancel,
    /// Delete the selected pending prompt.
    Delete,
    /// Delete every pending prompt.
    ClearPending,
    /// Queue the selected prompt's graph again...
    Requeue,
    /// ...with new random seeds...
    RequeueNewSeeds,
    /// ...or at the front of the queue.
    RequeueFront,
    /// Unload models and free memory.
    Free,
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
        help: "save an output (details / History row)",
    },
    Binding {
        keys: "c",
        help: "cancel (interrupt) the running prompt",
    },
    Binding {
        keys: "d  Delete",
        help: "delete the selected pending prompt",
    },
    Binding {
        keys: "X",
        help: "delete every pending prompt",
    },
    Binding {
        keys: "r  R  F",
        help: "requeue / with new seeds / to the front",
    },
    Binding {
        keys: "u",
        help: "unload models and free memory",
    },
    Binding {
        keys: "?",
        help: "this help",
    },
];

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
        KeyCode::Char('c') => Action::Control(Control::Cancel),
        KeyCode::Char('d') | KeyCode::Delete => Action::Control(Control::Delete),
        KeyCode::Char('X') => Action::Control(Control::ClearPending),
        KeyCode::Char('r') => Action::Control(Control::Requeue),
        KeyCode::Char('R') => Action::Control(Control::RequeueNewSeeds),
        KeyCode::Char('F') => Action::Control(Control::RequeueFront),
        KeyCode::Char('u') => Action::Control(Control::Free),
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
    fn ctrl_c_quits_and_plain_c_cancels() {
        assert_eq!(
            action(&KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action(&key(KeyCode::Char('c'))),
            Some(Action::Control(Control::Cancel))
        );
        assert_eq!(
            action(&key(KeyCode::Delete)),
            Some(Action::Control(Control::Delete))
        );
    }

    #[test]
    fn preview_keys_are_bound() {
        assert_eq!(
            action(&key(KeyCode::Char('p'))),
            Some(Action::TogglePreview)
        );
        assert_eq!(action(&key(KeyCode::Char('o'))), Some(Action::NextOutput));
        assert_eq!(action(&key(KeyCode::Char('v'))), Some(Action::FullSizeView));
        assert_eq!(action(&key(KeyCode::Char('s'))), Some(Action::SaveOutput));
    }

    #[test]
    fn shift_g_goes_to_the_bottom() {
        let k = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(action(&k), Some(Action::Bottom));
    }
}
