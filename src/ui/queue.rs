//! The queue: the running prompt, then the pending ones in the order they will run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};

use crate::app::detail::{origin_column, phase_mark};
use crate::app::{State, time};
use crate::format::short_id;
use crate::tracker::{Phase, PromptRecord};

use super::theme;
use super::widgets::{centered_row, fit_middle, list_table, panel};

/// Cells of the frame, the columns other than "by" (the time's at its narrowest) and the gaps.
const FIXED_COLUMNS: u16 = 2 + 1 + 5 + 8 + 5 + 5 + 5;
const BY_MIN: usize = 8;

/// `#12`, `-8` for front-of-queue numbers, blank when unknown.
pub fn number(prompt: &PromptRecord) -> String {
    prompt.number.map(|n| format!("{n}")).unwrap_or_default()
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let rows = state.queue_rows();
    let pending = rows.iter().filter(|p| p.phase == Phase::Queued).count();
    let running = rows.len() - pending;
    let mut title = vec![Span::raw(" Queue ")];
    if !rows.is_empty() {
        title.push(Span::styled(
            format!("{running} running · {pending} pending "),
            theme::dim(),
        ));
    }
    let title = Line::from(title);
    let block = panel(title, focused);
    if rows.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let text = if state.server().tracker.queue_remaining().is_none() {
            "waiting for the server…"
        } else {
            "queue is empty"
        };
        frame.render_widget(
            Paragraph::new(text).style(theme::dim()).centered(),
            centered_row(inner),
        );
        return;
    }
    // From the rows at hand: listing them again costs as much as the queue is long.
    let selected = state.ui.queue.resolve(rows.iter().map(|p| p.id.as_str()));
    // The "by" column takes the room the others leave, for client ids that differ at their end.
    let by_width = usize::from(area.width.saturating_sub(FIXED_COLUMNS))
        .clamp(BY_MIN, crate::control::CLIENT_ID_SHOWN);
    let table_row = |p: &&PromptRecord| {
        let (mark, _) = phase_mark(&p.phase);
        let (nodes_done, nodes) = p.node_counts();
        let nodes = if p.phase == Phase::Running && p.live {
            format!("{nodes_done}/{nodes}")
        } else {
            nodes.to_string()
        };
        let time = match p.phase {
            Phase::Running => time::clock(state.running_for(p).unwrap_or(0.0)),
            _ => {
                // "≥": the server did not say when it was queued, so this counts from when this
                // dashboard first saw it.
                let waited = state.waiting_for(p);
                let clock = time::clock(waited.seconds);
                if waited.since_seen {
                    format!("≥{clock}")
                } else {
                    clock
                }
            }
        };
        let style = theme::phase(&p.phase);
        Row::new(vec![
            Cell::from(Span::styled(mark, style)),
            Cell::from(number(p)),
            Cell::from(short_id(&p.id)),
            Cell::from(fit_middle(&origin_column(p), by_width)),
            Cell::from(nodes),
            Cell::from(time),
        ])
    };
    let header = Row::new(["", "#", "prompt", "by", "nodes", "time"]);
    list_table(
        frame,
        area,
        block,
        (header, &rows, table_row),
        &[
            Constraint::Length(1),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(by_width as u16),
            Constraint::Length(5),
            Constraint::Min(5),
        ],
        focused,
        selected,
    );
}
