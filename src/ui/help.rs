//! The help overlay: every key, from the keymap itself.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use crate::app::keymap::BINDINGS;

use super::theme;
use super::widgets::text_panel;

pub fn draw(frame: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = BINDINGS
        .iter()
        .map(|b| {
            Line::from(vec![
                Span::styled(format!(" {:<16}", b.keys), theme::accent()),
                Span::raw(b.help),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " Mouse: click selects a panel or row, the wheel scrolls.",
        theme::dim(),
    )));
    let height = (lines.len() as u16 + 2).min(area.height);
    let width = 60.min(area.width);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(text_panel(" Keys · Esc closes ", true)),
        popup,
    );
}
