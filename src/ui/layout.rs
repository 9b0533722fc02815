//! Where each panel goes, as a function of the terminal size and what is shown. Drawing and the
//! mouse's hit test both use it, so a click lands on what is drawn.

use ratatui::layout::{Constraint, Layout, Position, Rect};

use crate::app::{ClickTarget, Panel, State, Ui};

use super::widgets::list_offset;

/// From this width on, the queue and history sit left of the progress panel.
const TWO_COLUMNS_FROM: u16 = 100;

/// Rows above a list's first item: the frame's top line and the column header.
pub const LIST_HEAD_ROWS: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub status: Rect,
    pub footer: Rect,
    /// Everything between the status bar and the footer (the detail view and dialogs use it).
    pub body: Rect,
    pub queue: Rect,
    pub progress: Rect,
    pub history: Rect,
    pub log: Option<Rect>,
}

impl Areas {
    /// The layout of a screen of `area` showing `ui`, with `queue_len` prompts in the queue (the
    /// queue panel grows with it, up to a share of the screen, and gives the rest to history).
    pub fn of(area: Rect, ui: &Ui, queue_len: usize) -> Self {
        let [status, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(0),
            Constraint::Length(1),
        ])
        .areas(area);
        let (main, log) = if ui.show_log {
            let [main, log] =
                Layout::vertical([Constraint::Percentage(65), Constraint::Percentage(35)])
                    .areas(body);
            (main, Some(log))
        } else {
            (body, None)
        };
        // Frame, header and at least one row; an empty queue needs one line to say so.
        let queue_wanted = u16::try_from(queue_len.max(1))
            .unwrap_or(u16::MAX)
            .saturating_add(LIST_HEAD_ROWS + 1);
        let (queue, progress, history) = if area.width >= TWO_COLUMNS_FROM {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(44), Constraint::Percentage(56)])
                    .areas(main);
            let queue_height = queue_wanted.clamp(5, (left.height / 2).max(5));
            let [queue, history] =
                Layout::vertical([Constraint::Length(queue_height), Constraint::Min(0)])
                    .areas(left);
            (queue, right, history)
        } else {
            let queue_height = queue_wanted.clamp(5, (main.height * 3 / 10).max(5));
            let [queue, progress, history] = Layout::vertical([
                Constraint::Length(queue_height),
                Constraint::Percentage(60),
                Constraint::Percentage(40),
            ])
            .areas(main);
            (queue, progress, history)
        };
        Self {
            status,
            footer,
            body,
            queue,
            progress,
            history,
            log,
        }
    }

    fn panels(&self) -> impl Iterator<Item = (Panel, Rect)> {
        [
            (Panel::Queue, self.queue),
            (Panel::Progress, self.progress),
            (Panel::History, self.history),
        ]
        .into_iter()
        .chain(self.log.map(|r| (Panel::Log, r)))
    }
}

/// Rows of list items a panel of `area` shows.
pub fn list_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(LIST_HEAD_ROWS + 1))
}

/// What is under the terminal cell (`column`, `row`): a list row, or a panel.
pub fn hit_test(state: &State, column: u16, row: u16) -> Option<ClickTarget> {
    let screen = Rect::new(0, 0, state.ui.width, state.ui.height);
    let areas = Areas::of(screen, &state.ui, state.queue_rows().len());
    let position = Position::new(column, row);
    let (panel, area) = areas.panels().find(|(_, r)| r.contains(position))?;
    let (len, selected) = match panel {
        Panel::Queue => (state.queue_rows().len(), state.selected_queue_row()),
        Panel::History => (state.history_rows().len(), state.selected_history_row()),
        Panel::Progress | Panel::Log => return Some(ClickTarget::Panel(panel)),
    };
    let first_row = area.y + LIST_HEAD_ROWS;
    let last_row = area.y + area.height.saturating_sub(1);
    if row < first_row || row >= last_row {
        return Some(ClickTarget::Panel(panel));
    }
    let offset = list_offset(selected, list_rows(area));
    let index = offset + usize::from(row - first_row);
    Some(if index < len {
        ClickTarget::Row { panel, index }
    } else {
        ClickTarget::Panel(panel)
    })
}
