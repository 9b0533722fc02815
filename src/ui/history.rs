//! Recently finished prompts, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use crate::app::detail::{origin_column, phase_mark};
use crate::app::{State, time};
use crate::format::short_id;
use crate::tracker::{Outcome, Phase, PromptRecord};

use super::theme;
use super::widgets::{centered_row, fit_middle, list_table, panel};

/// Cells of the frame, the columns other than "by", and the gaps between columns.
const FIXED_COLUMNS: u16 = 2 + 13 + 8 + 7 + 6 + 3 + 5;
const BY_MIN: usize = 8;

fn is_removed(prompt: &PromptRecord) -> bool {
    prompt.phase == Phase::Finished(Outcome::Removed)
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let rows = state.history_rows();
    // The count is the server's history; prompts deleted from the queue are listed too (never
    // ran, so not in it), marked and counted apart.
    let removed = rows.iter().filter(|p| is_removed(p)).count();
    let mut title = vec![
        Span::raw(" History "),
        Span::styled(format!("{} ", rows.len() - removed), theme::dim()),
    ];
    if removed > 0 {
        title.push(Span::styled(format!("· {removed} removed "), theme::dim()));
    }
    let title = Line::from(title);
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
    let selected = state.ui.history.resolve(rows.iter().map(|p| p.id.as_str()));
    let by_width = usize::from(area.width.saturating_sub(FIXED_COLUMNS))
        .clamp(BY_MIN, crate::control::CLIENT_ID_SHOWN);
    let table_row = |p: &&PromptRecord| {
        let (mark, word) = phase_mark(&p.phase);
        let style = theme::phase(&p.phase);
        let when = state.finished_ago(p).map(time::ago).unwrap_or_default();
        let took = p.duration().map(time::duration).unwrap_or_default();
        let outputs = p.images().count();
        // A removed prompt never ran: its whole row is dimmed.
        let row_style = if is_removed(p) {
            theme::dim()
        } else {
            ratatui::style::Style::new()
        };
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
            Cell::from(fit_middle(&origin_column(p), by_width)),
        ])
        .style(row_style)
    };
    let header = Row::new(["outcome", "prompt", "when", "took", "out", "by"]);
    list_table(
        frame,
        area,
        block,
        (header, &rows, table_row),
        &[
            Constraint::Length(13),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Min(by_width as u16),
        ],
        focused,
        selected,
    );
}
