//! The detail view of one prompt: summary, error with its traceback, outputs, nodes.

use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Scrollbar, ScrollbarOrientation, ScrollbarState};

use crate::app::detail::page;
use crate::app::{Detail, State};
use crate::format::short_id;

use super::theme;
use super::widgets::text_panel;

pub fn draw(state: &State, detail: &Detail, frame: &mut Frame, area: Rect) {
    let title = Line::from(vec![
        Span::raw(" Prompt "),
        Span::styled(format!("{} ", short_id(&detail.prompt_id)), theme::accent()),
        Span::styled("Esc back ", theme::dim()),
    ]);
    let block = text_panel(title, true);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(prompt) = state.server().tracker.prompt(&detail.prompt_id) else {
        frame.render_widget(
            Paragraph::new("This prompt is no longer known (older ones are forgotten).")
                .style(theme::dim()),
            inner,
        );
        return;
    };
    let (doc, max) = page(state, prompt, inner);
    let scroll = detail.scroll.min(max);
    let text: Vec<Line> = doc
        .into_iter()
        .skip(scroll)
        .take(usize::from(inner.height))
        .map(|l| Line::styled(l.text, theme::tone(l.tone)))
        .collect();
    frame.render_widget(Paragraph::new(text), inner);
    if max > 0 {
        let mut bar = ScrollbarState::new(max).position(scroll);
        frame.render_stateful_widget(
            Scrollbar::new(ScrollbarOrientation::VerticalRight)
                .begin_symbol(None)
                .end_symbol(None),
            area.inner(Margin::new(0, 1)),
            &mut bar,
        );
    }
}
