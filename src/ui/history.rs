//! Recently finished prompts, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row};
use unicode_width::UnicodeWidthStr as _;

use crate::app::detail::{origin_column, phase_mark};
use crate::app::{State, time};
use crate::format::{percent, short_id};
use crate::text::one_line;
use crate::tracker::{NodeTiming, Outcome, Phase, PromptRecord};

use super::layout::list_rows;
use super::theme;
use super::widgets::{centered_row, fit, fit_middle, list_offset, list_table, panel};

/// Cells of the frame, the columns other than "by", and the gaps between columns.
const FIXED_COLUMNS: u16 = 2 + 13 + 8 + 7 + 6 + 3 + 5;
const BY_MIN: usize = 8;
const OUTCOME_CELLS: usize = 13;
/// The slowest node (`KSampler 82%`) gets a column of its own from this width of the room
/// left after the fixed columns and "by"; narrower (the left half of 120 columns), it takes the
/// place of the word "success" in the outcome cell, which the mark says already, and that
/// column takes one cell from "by" so that `✓ KSampler 82%` fits whole.
const SLOWEST_MIN: usize = 12;
const OUTCOME_WITH_SLOWEST: usize = 2 + SLOWEST_MIN;
const SLOWEST_MAX: usize = 24;

/// Where a finished prompt's slowest node is shown, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlowestPlace {
    /// No row has one: the columns stay as they were.
    Nowhere,
    /// A column of this many cells after "took".
    Column(usize),
    /// In the outcome cell of successful prompts, after the mark.
    Outcome,
}

/// `KSampler 82%` in `cells`: the title cut to fit, the share kept whole.
fn slowest_text(slowest: &NodeTiming, cells: usize) -> String {
    let share = percent(slowest.share_of_total);
    let title_cells = cells.saturating_sub(share.len() + 1);
    let title = fit(&one_line(&slowest.title), title_cells);
    // `Slow…`, not `Slow …`: a cut at a space leaves no gap before the ellipsis.
    let title = match title.strip_suffix('…') {
        Some(head) => format!("{}…", head.trim_end()),
        None => title,
    };
    format!("{title} {share}")
}

fn is_removed(prompt: &PromptRecord) -> bool {
    prompt.phase == Phase::Finished(Outcome::Removed)
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let tracker = &state.server().tracker;
    // The count is the server's history; prompts deleted from the queue are listed too (never
    // ran, so not in it), marked and counted apart.
    let removed = tracker.removed_count();
    let mut title = vec![
        Span::raw(" History "),
        Span::styled(format!("{} ", tracker.finished_count()), theme::dim()),
    ];
    if removed > 0 {
        title.push(Span::styled(format!("· {removed} removed "), theme::dim()));
    }
    let title = Line::from(title);
    let block = panel(title, focused);
    if state.history_len() == 0 {
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
    // Only the rows in view are looked up: a long history costs no more than a short one.
    let selected = state.selected_history_row();
    let visible = list_rows(area);
    let offset = list_offset(selected, visible);
    let rows = state.history_page(offset, visible);
    let room = usize::from(area.width.saturating_sub(FIXED_COLUMNS));
    // As wide as the widest `Title 82%` in view needs (within bounds): "by" keeps the rest.
    let slowest_wanted = rows
        .iter()
        // The cheap test first: most prompts have no per-node times.
        .filter(|p| p.is_finished() && p.has_node_timings())
        .filter_map(|p| p.slowest_node())
        .map(|slowest| one_line(&slowest.title).width() + 1 + percent(slowest.share_of_total).len())
        .max();
    let place = match (slowest_wanted, room.saturating_sub(BY_MIN + 1)) {
        (None, _) => SlowestPlace::Nowhere,
        (Some(wanted), column) if column >= SLOWEST_MIN => {
            SlowestPlace::Column(wanted.clamp(SLOWEST_MIN, SLOWEST_MAX).min(column))
        }
        (Some(_), _) => SlowestPlace::Outcome,
    };
    let (outcome_cells, by_room) = match place {
        SlowestPlace::Nowhere => (OUTCOME_CELLS, room),
        SlowestPlace::Column(cells) => (OUTCOME_CELLS, room - cells - 1),
        SlowestPlace::Outcome => (
            OUTCOME_WITH_SLOWEST,
            room.saturating_sub(OUTCOME_WITH_SLOWEST - OUTCOME_CELLS),
        ),
    };
    let by_width = by_room.clamp(BY_MIN, crate::control::CLIENT_ID_SHOWN);
    let table_row = |p: &&PromptRecord| {
        let (mark, word) = phase_mark(&p.phase);
        let style = theme::phase(&p.phase);
        let when = state
            .finished_ago(p)
            .map(time::ago_in_column)
            .unwrap_or_default();
        let took = p.duration().map(time::duration).unwrap_or_default();
        let outputs = p.images().count();
        // A removed prompt never ran: its whole row is dimmed.
        let row_style = if is_removed(p) {
            theme::dim()
        } else {
            ratatui::style::Style::new()
        };
        let slowest = match place {
            SlowestPlace::Nowhere => None,
            _ if p.has_node_timings() => p.slowest_node(),
            _ => None,
        };
        let outcome = match (&slowest, place) {
            (Some(slowest), SlowestPlace::Outcome)
                if p.phase == Phase::Finished(Outcome::Success) =>
            {
                Line::from(vec![
                    Span::styled(format!("{mark} "), style),
                    Span::raw(slowest_text(slowest, outcome_cells - 2)),
                ])
            }
            _ => Line::from(Span::styled(format!("{mark} {word}"), style)),
        };
        let mut cells = vec![
            Cell::from(outcome),
            Cell::from(short_id(&p.id)),
            Cell::from(when),
            Cell::from(took),
        ];
        if let SlowestPlace::Column(width) = place {
            let text = slowest.map(|s| slowest_text(&s, width)).unwrap_or_default();
            cells.push(Cell::from(text));
        }
        cells.extend([
            Cell::from(if outputs > 0 {
                outputs.to_string()
            } else {
                String::new()
            }),
            Cell::from(fit_middle(&origin_column(p), by_width)),
        ]);
        Row::new(cells).style(row_style)
    };
    let mut header = vec!["outcome", "prompt", "when", "took"];
    let mut widths = vec![
        Constraint::Length(outcome_cells as u16),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
    ];
    if let SlowestPlace::Column(cells) = place {
        header.push("slowest");
        widths.push(Constraint::Length(cells as u16));
    }
    header.extend(["out", "by"]);
    widths.extend([Constraint::Length(3), Constraint::Min(by_width as u16)]);
    list_table(
        frame,
        area,
        block,
        (Row::new(header), &rows, table_row),
        &widths,
        focused,
        selected.map(|s| s - offset),
    );
}
