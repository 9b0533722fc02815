//! Recently finished prompts, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use crate::app::detail::{Origin, phase_mark};
use crate::app::event_log::short_id;
use crate::app::{State, time};

use super::theme;
use super::widgets::{centered_row, list_table, panel};

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let rows = state.history_rows();
    let title = Line::from(vec![
        Span::raw(" History "),
        Span::styled(format!("{} ", rows.len()), theme::dim()),
    ]);
    let block = panel(title, focused);
    if rows.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new("nothing finished yet")
                .style(theme::dim())
                .centered(),
            centered_row(inner),
        );
        return;
    }
    let selected = state.selected_history_row();
    let table_rows = rows.iter().map(|p| {
        let (mark, word) = phase_mark(&p.phase);
        let style = theme::phase(&p.phase);
        let when = state.finished_ago(p).map(time::ago).unwrap_or_default();
        let took = p.duration().map(time::duration).unwrap_or_default();
        let outputs = p.images().count();
        Row::new(vec![
            Cell::from(Span::styled(format!("{mark} {word}"), style)),
            Cell::from(short_id(&p.id)),
            Cell::from(when),
            Cell::from(took),
            Cell::from(if outputs > 0 {
                outputs.to_string()
            } else {
                String::new()
            }),
            Cell::from(Origin::of(p).short()),
        ])
    });
    let header = Row::new(["outcome", "prompt", "when", "took", "out", "by"]);
    list_table(
        frame,
        area,
        block,
        (header, table_rows.collect()),
        &[
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Min(8),
        ],
        focused,
        selected,
    );
}
