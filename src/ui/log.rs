//! The event log: the latest events, one line each, newest at the bottom.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::event_log::LineKind;

use super::theme;
use super::widgets::text_panel;

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let log = &state.server().log;
    let scroll = state.ui.log_scroll.min(log.len().saturating_sub(1));
    let title = if scroll > 0 {
        format!(" Events ({scroll} newer below) ")
    } else {
        " Events ".to_string()
    };
    let block = text_panel(title, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = usize::from(inner.height);
    let end = log.len() - scroll.min(log.len());
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = log
        .lines()
        .range(start..end)
        .map(|line| {
            let style = match line.kind {
                LineKind::Connection => theme::accent(),
                LineKind::Message => ratatui::style::Style::new(),
                LineKind::Error => theme::bad(),
                LineKind::Unknown => theme::warn(),
            };
            // The `watch` line: its time is the frame's, since the socket connected.
            Line::from(Span::styled(line.text.as_str(), style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}
