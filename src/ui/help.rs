//! The help overlay: every key, from the key table itself, wrapped to the overlay's width and
//! scrolled with the movement keys when the screen is too small for all of it.

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::app::State;
use crate::app::keys::{KeyAction, KeyTable};

use super::layout::Areas;
use super::theme;
use super::widgets::{text_panel, wrap};

/// Cells of the keys column.
const KEYS_WIDTH: usize = 16;
const MOUSE: &str = "Mouse: click selects a panel or row, the wheel scrolls.";

/// One line of the help: keys (blank on a continuation line) and what they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpLine {
    pub keys: String,
    pub text: String,
    /// A note across the whole width, not a key's line.
    pub note: bool,
}

/// Every line of the help for a text area `width` cells wide.
pub fn lines(keys: &KeyTable, width: usize) -> Vec<HelpLine> {
    let room = width.saturating_sub(KEYS_WIDTH + 1).max(8);
    let mut out = Vec::new();
    for row in keys.dashboard_help() {
        for (i, text) in wrap(row.help, room).into_iter().enumerate() {
            let keys = if i == 0 { row.keys.as_str() } else { "" };
            out.push(HelpLine {
                keys: keys.to_string(),
                text,
                note: false,
            });
        }
    }
    out.push(HelpLine {
        keys: String::new(),
        text: String::new(),
        note: true,
    });
    for text in wrap(MOUSE, width.max(1)) {
        out.push(HelpLine {
            keys: String::new(),
            text,
            note: true,
        });
    }
    out
}

pub fn draw(state: &State, frame: &mut Frame, areas: &Areas) {
    let Some(help) = areas.help(state) else {
        return;
    };
    let shown: Vec<Line> = help
        .lines
        .iter()
        .skip(help.scroll)
        .map(|l| {
            if l.note {
                return Line::from(Span::styled(l.text.clone(), theme::dim()));
            }
            Line::from(vec![
                Span::styled(format!("{:<w$} ", l.keys, w = KEYS_WIDTH), theme::accent()),
                Span::raw(l.text.clone()),
            ])
        })
        .collect();
    let keys = &state.keys;
    let closes = keys.name(KeyAction::Back);
    let title = if help.max_scroll > 0 {
        format!(
            " Keys {}/{} · {}/{} scroll · {closes} closes ",
            help.scroll,
            help.max_scroll,
            keys.name(KeyAction::Down),
            keys.name(KeyAction::Up),
        )
    } else {
        format!(" Keys · {closes} closes ")
    };
    frame.render_widget(Clear, help.frame);
    frame.render_widget(
        Paragraph::new(shown).block(text_panel(title, true)),
        help.frame,
    );
}
