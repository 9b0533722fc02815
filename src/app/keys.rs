//! Every key of the dashboard, declared once in [`BINDINGS`]: its keys, the contexts it works
//! in, its action and its help text. [`update`](super::update) dispatches through
//! [`KeyTable::action`]; the help overlay, the footer hints, the key names inside messages and
//! the README's table are all made from the same table, so a key changed here (or, later, by a
//! user's override) changes everywhere at once.

use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Where the user is, which decides what a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The panels.
    Main,
    /// A prompt's details.
    Details,
    /// The help overlay.
    Help,
    /// A question before a change on the server.
    Confirm,
    /// An image at the terminal's full size.
    FullView,
    /// The server is unreachable (any key also retries then).
    Offline,
    /// The fleet view: one row per server.
    Fleet,
}

impl Context {
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "panels",
            Self::Details => "details",
            Self::Help => "help",
            Self::Confirm => "confirm",
            Self::FullView => "full view",
            Self::Offline => "offline",
            Self::Fleet => "fleet",
        }
    }
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
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
    /// Changes something on the server (see `super::actions`), confirmed first where it
    /// destroys.
    Control(ControlKey),
    /// The answers to a confirmation.
    Yes,
    No,
    /// Connect again now instead of waiting out the backoff.
    RetryNow,
    /// Leave the full-size view.
    CloseFullView,
    /// The fleet view (several servers).
    ShowFleet,
    /// The next / previous server, or server N (1-based, as the server bar numbers them).
    NextServer,
    PrevServer,
    ToServer(u8),
    /// Sort the fleet view another way.
    SortFleet,
    /// The server's own log in the log panel, or not.
    ToggleServerLog,
    /// Search the server's log.
    SearchLog,
    /// The server's memory over time in the log panel, or not.
    ToggleMemory,
}

impl KeyAction {
    /// Every action a user may give other keys in the config's `[keys]` table, by its name
    /// there. Leaving the full-size view takes any key, so it has none.
    pub const CONFIGURABLE: &[(&str, KeyAction)] = &[
        ("quit", Self::Quit),
        ("next-panel", Self::NextPanel),
        ("previous-panel", Self::PrevPanel),
        ("up", Self::Up),
        ("down", Self::Down),
        ("page-up", Self::PageUp),
        ("page-down", Self::PageDown),
        ("top", Self::Top),
        ("bottom", Self::Bottom),
        ("open", Self::Open),
        ("back", Self::Back),
        ("help", Self::Help),
        ("log", Self::ToggleLog),
        ("preview", Self::TogglePreview),
        ("next-output", Self::NextOutput),
        ("full-size", Self::FullSizeView),
        ("save", Self::SaveOutput),
        ("cancel", Self::Control(ControlKey::Cancel)),
        ("delete", Self::Control(ControlKey::Delete)),
        ("clear-pending", Self::Control(ControlKey::ClearPending)),
        ("requeue", Self::Control(ControlKey::Requeue)),
        (
            "requeue-new-seeds",
            Self::Control(ControlKey::RequeueNewSeeds),
        ),
        ("requeue-front", Self::Control(ControlKey::RequeueFront)),
        (
            "requeue-elsewhere",
            Self::Control(ControlKey::RequeueElsewhere),
        ),
        ("free", Self::Control(ControlKey::Free)),
        ("yes", Self::Yes),
        ("no", Self::No),
        ("retry", Self::RetryNow),
        ("fleet", Self::ShowFleet),
        ("next-server", Self::NextServer),
        ("previous-server", Self::PrevServer),
        ("sort-fleet", Self::SortFleet),
        ("server-log", Self::ToggleServerLog),
        ("search-log", Self::SearchLog),
        ("memory", Self::ToggleMemory),
    ];

    /// The action a config file names, or what the names are.
    pub fn from_config_name(name: &str) -> Result<Self, String> {
        Self::CONFIGURABLE
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, action)| *action)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::CONFIGURABLE.iter().map(|(n, _)| *n).collect();
                format!(
                    "no action is named '{name}'; the actions are {}",
                    names.join(", ")
                )
            })
    }

    fn config_name(self) -> &'static str {
        Self::CONFIGURABLE
            .iter()
            .find(|(_, action)| *action == self)
            .map_or("?", |(name, _)| name)
    }
}

/// The keys that change something on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKey {
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
    /// Queue the selected prompt's graph on another server.
    RequeueElsewhere,
}

/// One key as the user presses it, or any key at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Press(KeyCode, KeyModifiers),
    Any,
}

impl Key {
    pub const fn char(c: char) -> Self {
        Self::Press(KeyCode::Char(c), KeyModifiers::NONE)
    }

    pub const fn ctrl(c: char) -> Self {
        Self::Press(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    pub const fn code(code: KeyCode) -> Self {
        Self::Press(code, KeyModifiers::NONE)
    }

    fn matches(self, pressed: &KeyEvent) -> bool {
        match self {
            Self::Any => true,
            Self::Press(code, modifiers) => {
                // Shift is part of a character ('G'); terminals differ in reporting it.
                let mut held = pressed.modifiers;
                if matches!(pressed.code, KeyCode::Char(_) | KeyCode::BackTab) {
                    held.remove(KeyModifiers::SHIFT);
                }
                pressed.code == code && held == modifiers
            }
        }
    }

    /// An upper-case letter whose lower case is also bound: left out of hints.
    fn is_upper_case_twin(self, of: &[Key]) -> bool {
        match self {
            Self::Press(KeyCode::Char(c), m) if c.is_ascii_uppercase() => {
                of.contains(&Self::Press(KeyCode::Char(c.to_ascii_lowercase()), m))
            }
            _ => false,
        }
    }
}

/// A key as a config file writes it, in the help's spelling: `x`, `G`, `Ctrl-r`, `Alt-x`,
/// `Enter`, `Esc`, `Tab`, `Shift-Tab`, `Space`, `Up`/`↑`, `PgDn`, `Home`, `F5`...
impl std::str::FromStr for Key {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut rest = text;
        let mut modifiers = KeyModifiers::NONE;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 2 && (lower.starts_with("ctrl-") || lower.starts_with("alt-"))
            {
                let (modifier, len) = if lower.starts_with("ctrl-") {
                    (KeyModifiers::CONTROL, 5)
                } else {
                    (KeyModifiers::ALT, 4)
                };
                modifiers |= modifier;
                rest = &rest[len..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) if !c.is_control() && !matches!(c, '↑' | '↓' | '←' | '→') => {
                // Ctrl-R is Ctrl-r: terminals send the same for both.
                let c = if modifiers.contains(KeyModifiers::CONTROL) {
                    c.to_ascii_lowercase()
                } else {
                    c
                };
                KeyCode::Char(c)
            }
            _ => match rest.to_ascii_lowercase().as_str() {
                "tab" => KeyCode::Tab,
                "shift-tab" | "backtab" => KeyCode::BackTab,
                "up" | "↑" => KeyCode::Up,
                "down" | "↓" => KeyCode::Down,
                "left" | "←" => KeyCode::Left,
                "right" | "→" => KeyCode::Right,
                "pgup" | "pageup" => KeyCode::PageUp,
                "pgdn" | "pagedown" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "delete" | "del" => KeyCode::Delete,
                "backspace" => KeyCode::Backspace,
                "space" => KeyCode::Char(' '),
                other => match other.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 1..=24) => KeyCode::F(n),
                    _ => {
                        return Err(format!(
                            "'{text}' is not a key; write one like x, G, Ctrl-r, Alt-x, Enter, Esc, Tab, Space, Up, PgDn or F5"
                        ));
                    }
                },
            },
        };
        Ok(Self::Press(code, modifiers))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (code, modifiers) = match self {
            Self::Any => return f.write_str("any key"),
            Self::Press(code, modifiers) => (code, modifiers),
        };
        if modifiers.contains(KeyModifiers::CONTROL) {
            f.write_str("Ctrl-")?;
        }
        if modifiers.contains(KeyModifiers::ALT) {
            f.write_str("Alt-")?;
        }
        match code {
            KeyCode::Char(c) if modifiers.contains(KeyModifiers::CONTROL) => {
                write!(f, "{}", c.to_ascii_uppercase())
            }
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("Shift-Tab"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Delete => f.write_str("Delete"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// One binding: what `keys` do in `contexts`, and how the help says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub action: KeyAction,
    pub keys: Vec<Key>,
    pub contexts: &'static [Context],
    /// Bindings next to each other with the same help share one line of it.
    pub help: &'static str,
}

/// A binding as declared in [`BINDINGS`].
struct Declared {
    action: KeyAction,
    keys: &'static [Key],
    contexts: &'static [Context],
    help: &'static str,
}

use Context::{Confirm, Details, Fleet, FullView, Help, Main, Offline};

const EVERYWHERE: &[Context] = &[Main, Details, Help, Confirm, Fleet];
const DASHBOARD: &[Context] = &[Main, Details, Help, Fleet];
const PANELS_AND_DETAILS: &[Context] = &[Main, Details];
const SERVERS: &[Context] = &[Main, Details, Fleet];
const SERVERS_AND_CONFIRM: &[Context] = &[Main, Details, Fleet, Confirm];

/// The dashboard's keys. The order is the help's order.
const BINDINGS: &[Declared] = &[
    Declared {
        action: KeyAction::Quit,
        keys: &[Key::char('q')],
        contexts: DASHBOARD,
        help: "quit",
    },
    Declared {
        action: KeyAction::Quit,
        keys: &[Key::ctrl('c')],
        contexts: EVERYWHERE,
        help: "quit",
    },
    Declared {
        action: KeyAction::NextPanel,
        keys: &[Key::code(KeyCode::Tab)],
        contexts: &[Main],
        help: "next / previous panel",
    },
    Declared {
        action: KeyAction::PrevPanel,
        keys: &[Key::code(KeyCode::BackTab)],
        contexts: &[Main],
        help: "next / previous panel",
    },
    Declared {
        action: KeyAction::Down,
        keys: &[Key::char('j'), Key::code(KeyCode::Down)],
        contexts: DASHBOARD,
        help: "move the selection / scroll",
    },
    Declared {
        action: KeyAction::Up,
        keys: &[Key::char('k'), Key::code(KeyCode::Up)],
        contexts: DASHBOARD,
        help: "move the selection / scroll",
    },
    Declared {
        action: KeyAction::PageDown,
        keys: &[Key::code(KeyCode::PageDown)],
        contexts: DASHBOARD,
        help: "move by a page",
    },
    Declared {
        action: KeyAction::PageUp,
        keys: &[Key::code(KeyCode::PageUp)],
        contexts: DASHBOARD,
        help: "move by a page",
    },
    Declared {
        action: KeyAction::Top,
        keys: &[Key::char('g'), Key::code(KeyCode::Home)],
        contexts: DASHBOARD,
        help: "first / last",
    },
    Declared {
        action: KeyAction::Bottom,
        keys: &[Key::char('G'), Key::code(KeyCode::End)],
        contexts: DASHBOARD,
        help: "first / last",
    },
    Declared {
        action: KeyAction::Open,
        keys: &[Key::code(KeyCode::Enter)],
        contexts: &[Main],
        help: "details of the selected prompt",
    },
    Declared {
        action: KeyAction::Open,
        keys: &[Key::code(KeyCode::Enter)],
        contexts: &[Fleet],
        help: "the selected server's dashboard",
    },
    Declared {
        action: KeyAction::Back,
        keys: &[Key::code(KeyCode::Esc)],
        contexts: DASHBOARD,
        help: "back / close",
    },
    Declared {
        action: KeyAction::ToggleLog,
        keys: &[Key::char('l')],
        contexts: PANELS_AND_DETAILS,
        help: "show / hide the event log",
    },
    Declared {
        action: KeyAction::ToggleServerLog,
        keys: &[Key::char('L')],
        contexts: PANELS_AND_DETAILS,
        help: "show / hide the server's own log",
    },
    Declared {
        action: KeyAction::ToggleMemory,
        keys: &[Key::char('m')],
        contexts: PANELS_AND_DETAILS,
        help: "show / hide RAM and VRAM over time",
    },
    Declared {
        action: KeyAction::SearchLog,
        keys: &[Key::char('/')],
        contexts: PANELS_AND_DETAILS,
        help: "search the server's log",
    },
    Declared {
        action: KeyAction::TogglePreview,
        keys: &[Key::char('p')],
        contexts: PANELS_AND_DETAILS,
        help: "show / hide the preview pane",
    },
    Declared {
        action: KeyAction::NextOutput,
        keys: &[Key::char('o')],
        contexts: PANELS_AND_DETAILS,
        help: "next output of the prompt (details)",
    },
    Declared {
        action: KeyAction::FullSizeView,
        keys: &[Key::char('v')],
        contexts: PANELS_AND_DETAILS,
        help: "full-size view of the preview or output",
    },
    Declared {
        action: KeyAction::SaveOutput,
        keys: &[Key::char('s')],
        contexts: PANELS_AND_DETAILS,
        help: "save an output (details / History row)",
    },
    Declared {
        action: KeyAction::Control(ControlKey::Cancel),
        keys: &[Key::char('c')],
        contexts: PANELS_AND_DETAILS,
        help: "cancel (interrupt) the running prompt",
    },
    Declared {
        action: KeyAction::Control(ControlKey::Delete),
        keys: &[Key::char('d'), Key::code(KeyCode::Delete)],
        contexts: PANELS_AND_DETAILS,
        help: "delete the selected pending prompt",
    },
    Declared {
        action: KeyAction::Control(ControlKey::ClearPending),
        keys: &[Key::char('X')],
        contexts: PANELS_AND_DETAILS,
        help: "delete every pending prompt",
    },
    Declared {
        action: KeyAction::Control(ControlKey::Requeue),
        keys: &[Key::char('r')],
        contexts: PANELS_AND_DETAILS,
        help: "requeue / with new seeds / to the front",
    },
    Declared {
        action: KeyAction::Control(ControlKey::RequeueNewSeeds),
        keys: &[Key::char('R')],
        contexts: PANELS_AND_DETAILS,
        help: "requeue / with new seeds / to the front",
    },
    Declared {
        action: KeyAction::Control(ControlKey::RequeueFront),
        keys: &[Key::char('F')],
        contexts: PANELS_AND_DETAILS,
        help: "requeue / with new seeds / to the front",
    },
    Declared {
        action: KeyAction::Control(ControlKey::RequeueElsewhere),
        keys: &[Key::char('T')],
        contexts: PANELS_AND_DETAILS,
        help: "requeue on another server (several servers)",
    },
    Declared {
        action: KeyAction::Control(ControlKey::Free),
        keys: &[Key::char('u')],
        contexts: PANELS_AND_DETAILS,
        help: "unload models and free memory",
    },
    Declared {
        action: KeyAction::ShowFleet,
        keys: &[Key::char('0')],
        contexts: PANELS_AND_DETAILS,
        help: "every server at a glance (several servers)",
    },
    Declared {
        action: KeyAction::ToServer(1),
        keys: &[Key::char('1')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(2),
        keys: &[Key::char('2')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(3),
        keys: &[Key::char('3')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(4),
        keys: &[Key::char('4')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(5),
        keys: &[Key::char('5')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(6),
        keys: &[Key::char('6')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(7),
        keys: &[Key::char('7')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(8),
        keys: &[Key::char('8')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::ToServer(9),
        keys: &[Key::char('9')],
        contexts: SERVERS,
        help: "server 1 to 9",
    },
    Declared {
        action: KeyAction::NextServer,
        keys: &[Key::char(']')],
        contexts: SERVERS_AND_CONFIRM,
        help: "next / previous server",
    },
    Declared {
        action: KeyAction::PrevServer,
        keys: &[Key::char('[')],
        contexts: SERVERS_AND_CONFIRM,
        help: "next / previous server",
    },
    Declared {
        action: KeyAction::SortFleet,
        keys: &[Key::char('s')],
        contexts: &[Fleet],
        help: "sort the fleet by order, queue or state",
    },
    Declared {
        action: KeyAction::Help,
        keys: &[Key::char('?')],
        contexts: DASHBOARD,
        help: "this help",
    },
    Declared {
        action: KeyAction::Yes,
        keys: &[Key::char('y'), Key::char('Y')],
        contexts: &[Confirm],
        help: "yes, do it",
    },
    Declared {
        action: KeyAction::No,
        keys: &[Key::char('n'), Key::char('N'), Key::code(KeyCode::Esc)],
        contexts: &[Confirm],
        help: "no, leave it",
    },
    Declared {
        action: KeyAction::RetryNow,
        keys: &[Key::char('r')],
        contexts: &[Offline],
        help: "connect again now (any other key does too, and then does its own job)",
    },
    Declared {
        action: KeyAction::CloseFullView,
        keys: &[Key::Any],
        contexts: &[FullView],
        help: "back to the dashboard",
    },
];

/// The footer's hints per context: the actions (their keys joined by `/`) and the word.
const HINTS: &[(Context, &[KeyAction], &str)] = &[
    (Main, &[KeyAction::Quit], "quit"),
    (Main, &[KeyAction::NextPanel], "panel"),
    (Main, &[KeyAction::Down, KeyAction::Up], "move"),
    (Main, &[KeyAction::Open], "details"),
    (Main, &[KeyAction::ToggleLog], "log"),
    (Main, &[KeyAction::Help], "help"),
    (Details, &[KeyAction::Back], "back"),
    (Details, &[KeyAction::Down, KeyAction::Up], "scroll"),
    (Details, &[KeyAction::Top, KeyAction::Bottom], "top/bottom"),
    (Details, &[KeyAction::ToggleLog], "log"),
    (Details, &[KeyAction::Quit], "quit"),
    (Main, &[KeyAction::ShowFleet], "fleet"),
    (Fleet, &[KeyAction::Quit], "quit"),
    (Fleet, &[KeyAction::Down, KeyAction::Up], "move"),
    (Fleet, &[KeyAction::Open], "open"),
    (
        Fleet,
        &[KeyAction::PrevServer, KeyAction::NextServer],
        "server",
    ),
    (Fleet, &[KeyAction::SortFleet], "sort"),
    (Fleet, &[KeyAction::Help], "help"),
    (Help, &[KeyAction::Back], "close"),
    (Help, &[KeyAction::Quit], "quit"),
    (Confirm, &[KeyAction::Yes], "yes"),
    (Confirm, &[KeyAction::No], "no"),
];

/// `1-9` for a line whose keys are the digits in a row (the server numbers).
fn digit_run(columns: &[Vec<String>]) -> Option<String> {
    let [keys] = columns else {
        return None;
    };
    let digits: Vec<u32> = keys
        .iter()
        .map(|k| k.parse::<u32>().ok().filter(|_| k.len() == 1))
        .collect::<Option<_>>()?;
    let consecutive = digits.windows(2).all(|w| w[1] == w[0] + 1);
    (digits.len() > 2 && consecutive).then(|| format!("{}-{}", digits[0], digits[digits.len() - 1]))
}

/// One line of the help or the README's table: the keys as shown, where, and what they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpRow {
    /// The keys as the help shows them: `j k  ↓ ↑`.
    pub keys: String,
    /// The same keys in their columns: `[[j, k], [↓, ↑]]`.
    pub columns: Vec<Vec<String>>,
    pub contexts: Vec<Context>,
    pub help: &'static str,
}

/// The bindings in use: the built-in ones, which a user's overrides will change.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyTable {
    bindings: Vec<Binding>,
}

impl Default for KeyTable {
    fn default() -> Self {
        Self {
            bindings: BINDINGS
                .iter()
                .map(|d| Binding {
                    action: d.action,
                    keys: d.keys.to_vec(),
                    contexts: d.contexts,
                    help: d.help,
                })
                .collect(),
        }
    }
}

impl KeyTable {
    /// The table with the keys of some actions replaced (the config's `[keys]`). Ctrl-C quits
    /// everywhere whatever is asked. A key left doing two things in one place is an error that
    /// names both.
    pub fn with_overrides(mut self, overrides: &[(KeyAction, Vec<Key>)]) -> Result<Self, String> {
        let ctrl_c = [Key::ctrl('c')];
        for (action, keys) in overrides {
            if keys.is_empty() {
                return Err(format!("{} needs at least one key", action.config_name()));
            }
            for binding in &mut self.bindings {
                if binding.action == *action && binding.keys != ctrl_c {
                    binding.keys.clone_from(keys);
                }
            }
        }
        self.check_no_key_does_two_things()?;
        Ok(self)
    }

    fn check_no_key_does_two_things(&self) -> Result<(), String> {
        for (i, first) in self.bindings.iter().enumerate() {
            for second in &self.bindings[i + 1..] {
                if first.action == second.action {
                    continue;
                }
                let Some(context) = first.contexts.iter().find(|c| second.contexts.contains(c))
                else {
                    continue;
                };
                if let Some(key) = first.keys.iter().find(|k| second.keys.contains(k)) {
                    return Err(format!(
                        "{key} would do both {} and {} (in the {} view); give one of them another key",
                        first.action.config_name(),
                        second.action.config_name(),
                        context.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// What `pressed` does in `context`, if anything. Releases do nothing.
    pub fn action(&self, context: Context, pressed: &KeyEvent) -> Option<KeyAction> {
        if pressed.kind == KeyEventKind::Release {
            return None;
        }
        self.in_context(context)
            .find(|b| b.keys.iter().any(|k| k.matches(pressed)))
            .map(|b| b.action)
    }

    fn in_context(&self, context: Context) -> impl Iterator<Item = &Binding> {
        self.bindings
            .iter()
            .filter(move |b| b.contexts.contains(&context))
    }

    /// The name of the first key that does `action` anywhere, for messages ("c interrupts
    /// it"); `?` when nothing does.
    pub fn name(&self, action: KeyAction) -> String {
        self.bindings
            .iter()
            .filter(|b| b.action == action)
            .find_map(|b| b.keys.first())
            .map_or_else(|| "?".to_string(), Key::to_string)
    }

    /// The footer's hints in `context`: keys and word.
    pub fn hints(&self, context: Context) -> Vec<(String, &'static str)> {
        HINTS
            .iter()
            .filter(|(c, _, _)| *c == context)
            .filter_map(|(_, actions, word)| {
                let keys = match actions {
                    [one] => {
                        let binding = self.in_context(context).find(|b| b.action == *one)?;
                        let keys = &binding.keys;
                        keys.iter()
                            .filter(|k| !k.is_upper_case_twin(keys))
                            .map(Key::to_string)
                            .collect::<Vec<_>>()
                    }
                    several => several
                        .iter()
                        .filter_map(|a| {
                            let binding = self.in_context(context).find(|b| b.action == *a)?;
                            binding.keys.first().map(Key::to_string)
                        })
                        .collect(),
                };
                (!keys.is_empty()).then(|| (keys.join("/"), *word))
            })
            .collect()
    }

    /// The lines of the help: bindings next to each other with the same help and contexts
    /// share a line, their keys side by side (`j k  ↓ ↑`).
    pub fn help_rows(&self) -> Vec<HelpRow> {
        let mut rows: Vec<Vec<&Binding>> = Vec::new();
        for binding in &self.bindings {
            match rows.last_mut() {
                Some(group)
                    if group[0].help == binding.help && group[0].contexts == binding.contexts =>
                {
                    group.push(binding);
                }
                _ => rows.push(vec![binding]),
            }
        }
        rows.into_iter()
            .map(|group| {
                let help = group[0].help;
                let widest = group.iter().map(|b| b.keys.len()).max().unwrap_or(0);
                let columns: Vec<Vec<String>> = (0..widest)
                    .map(|i| {
                        group
                            .iter()
                            .filter_map(|b| b.keys.get(i).map(Key::to_string))
                            .collect()
                    })
                    .collect();
                let keys = match digit_run(&columns) {
                    Some(run) => run,
                    None => columns
                        .iter()
                        .map(|column| column.join(" "))
                        .collect::<Vec<_>>()
                        .join("  "),
                };
                HelpRow {
                    keys,
                    columns,
                    contexts: group[0].contexts.to_vec(),
                    help,
                }
            })
            .collect()
    }

    /// The help overlay's lines: the keys of the panels, details and help.
    pub fn dashboard_help(&self) -> Vec<HelpRow> {
        self.help_rows()
            .into_iter()
            .filter(|row| row.contexts.iter().any(|c| DASHBOARD.contains(c)))
            .collect()
    }

    /// Every key as a Markdown table, as the README shows it.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| Keys | Where | What |\n|---|---|---|\n");
        for row in self.help_rows() {
            // `j` `k`, `↓` `↑`: each key in its own code span, the columns apart.
            let keys = row
                .columns
                .iter()
                .map(|column| {
                    column
                        .iter()
                        .map(|k| format!("`{}`", k.replace('|', "\\|")))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let contexts: Vec<&str> = row.contexts.iter().map(|c| c.name()).collect();
            out.push_str(&format!(
                "| {keys} | {} | {} |\n",
                contexts.join(", "),
                row.help
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn ctrl_c_quits_and_plain_c_cancels() {
        let keys = KeyTable::default();
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(keys.action(Main, &ctrl_c), Some(KeyAction::Quit));
        assert_eq!(keys.action(Confirm, &ctrl_c), Some(KeyAction::Quit));
        assert_eq!(
            keys.action(Main, &key(KeyCode::Char('c'))),
            Some(KeyAction::Control(ControlKey::Cancel))
        );
        assert_eq!(
            keys.action(Details, &key(KeyCode::Delete)),
            Some(KeyAction::Control(ControlKey::Delete))
        );
    }

    #[test]
    fn a_key_means_what_its_context_says() {
        let keys = KeyTable::default();
        let q = key(KeyCode::Char('q'));
        assert_eq!(keys.action(Main, &q), Some(KeyAction::Quit));
        assert_eq!(keys.action(Confirm, &q), None, "q is not an answer");
        let r = key(KeyCode::Char('r'));
        assert_eq!(keys.action(Offline, &r), Some(KeyAction::RetryNow));
        assert_eq!(
            keys.action(Main, &r),
            Some(KeyAction::Control(ControlKey::Requeue))
        );
        assert_eq!(
            keys.action(Confirm, &key(KeyCode::Esc)),
            Some(KeyAction::No)
        );
        assert_eq!(keys.action(Help, &key(KeyCode::Esc)), Some(KeyAction::Back));
        assert_eq!(
            keys.action(Main, &key(KeyCode::Tab)),
            Some(KeyAction::NextPanel)
        );
        assert_eq!(keys.action(Details, &key(KeyCode::Tab)), None);
        assert_eq!(
            keys.action(FullView, &key(KeyCode::Char('x'))),
            Some(KeyAction::CloseFullView)
        );
    }

    #[test]
    fn shift_is_part_of_a_letter_and_releases_do_nothing() {
        let keys = KeyTable::default();
        let shifted_g = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(keys.action(Main, &shifted_g), Some(KeyAction::Bottom));
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(keys.action(Main, &release), None);
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(keys.action(Main, &ctrl_x), None);
    }

    #[test]
    fn every_action_of_the_dashboard_has_a_key_and_no_key_means_two_things_in_one_place() {
        let keys = KeyTable::default();
        for context in [Main, Details, Help, Confirm, FullView, Offline] {
            let bound: Vec<(Key, KeyAction)> = keys
                .in_context(context)
                .flat_map(|b| b.keys.iter().map(move |k| (*k, b.action)))
                .collect();
            for (i, (key, action)) in bound.iter().enumerate() {
                for (other, other_action) in &bound[i + 1..] {
                    assert!(
                        key != other || action == other_action,
                        "{key} means both {action:?} and {other_action:?} in {context:?}"
                    );
                }
            }
        }
        assert_eq!(keys.name(KeyAction::Control(ControlKey::Cancel)), "c");
        assert_eq!(keys.name(KeyAction::NextPanel), "Tab");
        assert_eq!(keys.name(KeyAction::Quit), "q");
    }

    #[test]
    fn hints_and_help_lines_come_from_the_bindings() {
        let keys = KeyTable::default();
        let main: Vec<String> = keys
            .hints(Main)
            .iter()
            .map(|(k, w)| format!("{k} {w}"))
            .collect();
        assert_eq!(
            main,
            [
                "q quit",
                "Tab panel",
                "j/k move",
                "Enter details",
                "l log",
                "? help",
                "0 fleet"
            ]
        );
        let confirm: Vec<String> = keys
            .hints(Confirm)
            .iter()
            .map(|(k, w)| format!("{k} {w}"))
            .collect();
        assert_eq!(confirm, ["y yes", "n/Esc no"]);
        let help = keys.dashboard_help();
        assert_eq!(help[0].keys, "q");
        assert_eq!(help[1].keys, "Ctrl-C");
        assert!(help.iter().any(|r| r.keys == "j k  ↓ ↑"));
        assert!(help.iter().any(|r| r.keys == "r R F"));
        assert!(help.iter().all(|r| r.help != "yes, do it"));
    }

    #[test]
    fn the_readme_lists_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        let table = KeyTable::default().markdown();
        assert!(
            readme.contains(&table),
            "README.md's table of keys is out of date; it should read:\n\n{table}"
        );
    }

    #[test]
    fn keys_parse_from_the_spelling_the_help_shows() {
        for binding in KeyTable::default().bindings {
            for key in binding.keys.iter().filter(|k| **k != Key::Any) {
                assert_eq!(key.to_string().parse::<Key>(), Ok(*key), "{key}");
            }
        }
        assert_eq!("ctrl-R".parse::<Key>(), Ok(Key::ctrl('r')));
        assert_eq!("PageDown".parse::<Key>(), Ok(Key::code(KeyCode::PageDown)));
        assert_eq!("F5".parse::<Key>(), Ok(Key::code(KeyCode::F(5))));
        assert_eq!("-".parse::<Key>(), Ok(Key::char('-')));
        let bad = "Hyper-x".parse::<Key>().unwrap_err();
        assert!(bad.starts_with("'Hyper-x' is not a key"), "{bad}");
    }

    #[test]
    fn an_override_changes_the_key_everywhere_it_is_named() {
        let cancel = KeyAction::Control(ControlKey::Cancel);
        let keys = KeyTable::default()
            .with_overrides(&[
                (cancel, vec![Key::char('x')]),
                (KeyAction::Quit, vec![Key::char('Q')]),
            ])
            .unwrap();
        assert_eq!(keys.action(Main, &key(KeyCode::Char('x'))), Some(cancel));
        assert_eq!(keys.action(Main, &key(KeyCode::Char('c'))), None);
        assert_eq!(keys.name(cancel), "x");
        assert_eq!(keys.action(Main, &key(KeyCode::Char('q'))), None);
        assert_eq!(
            keys.action(Main, &key(KeyCode::Char('Q'))),
            Some(KeyAction::Quit)
        );
        // Ctrl-C quits whatever the table says.
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(keys.action(Confirm, &ctrl_c), Some(KeyAction::Quit));
        assert!(keys.hints(Main).contains(&("Q".to_string(), "quit")));
    }

    #[test]
    fn an_override_that_makes_a_key_do_two_things_is_refused_by_name() {
        let err = KeyTable::default()
            .with_overrides(&[(KeyAction::Help, vec![Key::char('q')])])
            .unwrap_err();
        assert_eq!(
            err,
            "q would do both quit and help (in the panels view); give one of them another key"
        );
        // Moving quit away first frees q.
        assert!(
            KeyTable::default()
                .with_overrides(&[
                    (KeyAction::Help, vec![Key::char('q')]),
                    (KeyAction::Quit, vec![Key::char('Q')])
                ])
                .is_ok()
        );
        assert_eq!(
            KeyAction::from_config_name("toggle")
                .unwrap_err()
                .split(';')
                .next(),
            Some("no action is named 'toggle'")
        );
    }
}
