//! Colours and marks, in the 16 named colours so every terminal shows them.

use ratatui::style::{Color, Modifier, Style};

use crate::app::detail::Tone;
use crate::tracker::{NodeState, Outcome, Phase};

pub fn border(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

pub fn title(focused: bool) -> Style {
    let style = Style::new().add_modifier(Modifier::BOLD);
    if focused {
        style.fg(Color::Cyan)
    } else {
        style
    }
}

pub fn header() -> Style {
    Style::new()
        .fg(Color::DarkGray)
        .add_modifier(Modifier::BOLD)
}

pub fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn good() -> Style {
    Style::new().fg(Color::Green)
}

pub fn bad() -> Style {
    Style::new().fg(Color::Red)
}

pub fn warn() -> Style {
    Style::new().fg(Color::Yellow)
}

pub fn accent() -> Style {
    Style::new().fg(Color::Cyan)
}

pub fn selected(focused: bool) -> Style {
    if focused {
        Style::new().add_modifier(Modifier::REVERSED)
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    }
}

pub fn gauge_done() -> Style {
    Style::new().fg(Color::Cyan)
}

pub fn tone(tone: Tone) -> Style {
    match tone {
        Tone::Title => Style::new().add_modifier(Modifier::BOLD),
        Tone::Heading => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        Tone::Text => Style::new(),
        Tone::Dim => dim(),
        Tone::Good => good(),
        Tone::Bad => bad(),
        Tone::Warn => warn(),
        Tone::Code => Style::new().fg(Color::Gray),
    }
}

pub fn node(state: NodeState) -> Style {
    match state {
        NodeState::Pending | NodeState::Unknown => dim(),
        NodeState::Running => accent().add_modifier(Modifier::BOLD),
        NodeState::Cached => Style::new().fg(Color::Blue),
        NodeState::Done => good(),
        NodeState::Error => bad(),
        NodeState::Interrupted => warn(),
    }
}

pub fn phase(phase: &Phase) -> Style {
    match phase {
        Phase::Queued => dim(),
        Phase::Running => accent(),
        Phase::Finished(Outcome::Success) => good(),
        Phase::Finished(Outcome::Error(_)) => bad(),
        Phase::Finished(Outcome::Interrupted { .. }) => warn(),
        Phase::Finished(Outcome::Removed | Outcome::Unknown) => dim(),
    }
}
