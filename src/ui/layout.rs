//! Where each panel goes, as a function of the terminal size and what is shown: the one owner of
//! screen geometry. Drawing, the mouse's hit test and `app::update` (scroll limits, the preview
//! worker's view) all ask it, so they cannot disagree.

use ratatui::layout::{Constraint, Layout, Margin, Position, Rect};

use crate::app::{ClickTarget, Panel, State, Ui};

use super::widgets::{list_offset, wrap};

/// From this width on, the queue and history sit left of the progress panel.
const TWO_COLUMNS_FROM: u16 = 100;

/// Rows above a list's first item: the frame's top line and the column header.
pub const LIST_HEAD_ROWS: u16 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub status: Rect,
    /// One row under the status bar naming every server, when several are watched.
    pub server_bar: Option<Rect>,
    pub footer: Rect,
    /// Everything between the status bar and the footer (the detail view and dialogs use it).
    pub body: Rect,
    pub queue: Rect,
    pub progress: Rect,
    pub history: Rect,
    pub log: Option<Rect>,
    /// The detail view's frame while it is open (the body, less the preview pane).
    pub detail: Option<Rect>,
    /// The preview pane's frame, when shown (beside the detail view, or in the progress panel's
    /// room, which `progress` then no longer covers).
    pub preview: Option<Rect>,
}

/// The help overlay as laid out: its frame, its lines wrapped to it, and where it is scrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Help {
    pub frame: Rect,
    pub lines: Vec<super::help::HelpLine>,
    /// The first line shown, already within `0..=max_scroll`.
    pub scroll: usize,
    pub max_scroll: usize,
}

/// The help overlay's widest.
const HELP_WIDTH: u16 = 64;

/// Below this the preview pane is not worth its room.
const MIN_PANE: (u16, u16) = (14, 6);
/// The pane goes under the progress panel only when this leaves it enough rows.
const STACKED_FROM_HEIGHT: u16 = 16;
/// The pane's share of the progress panel's width (beside it) or height (under it)...
const BESIDE_SHARE: u16 = 38;
const UNDER_SHARE: u16 = 55;
/// ...and of the detail view's width.
const DETAIL_SHARE: u16 = 45;

impl Areas {
    /// The layout of the screen `state` last heard of (its terminal size).
    pub fn of_state(state: &State) -> Self {
        Self::for_screen(Rect::new(0, 0, state.ui.width, state.ui.height), state)
    }

    /// The layout of a screen of `area` showing `state`.
    pub fn for_screen(area: Rect, state: &State) -> Self {
        Self::of(
            area,
            &state.ui,
            state.queue_len_up_to(usize::from(area.height)),
            crate::app::preview::pane_wanted(state),
        )
    }

    /// The layout of a screen of `area` showing `ui`, with `queue_len` prompts in the queue (the
    /// queue panel grows with it, up to a share of the screen, and gives the rest to history),
    /// and the preview pane if `preview` (and it fits).
    pub fn of(area: Rect, ui: &Ui, queue_len: usize, preview: bool) -> Self {
        let [status, server_bar, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(u16::from(ui.server_bar)),
            Constraint::Min(0),
            Constraint::Length(footer_rows(ui, area)),
        ])
        .areas(area);
        let server_bar = ui.server_bar.then_some(server_bar);
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
        let detail_open = ui.detail.is_some();
        // The detail view covers the panels, not the event log (`l` shows it beside details).
        let beside = if detail_open { main } else { progress };
        let (beside, preview) = if preview {
            split_for_pane(beside, detail_open)
        } else {
            (beside, None)
        };
        let (progress, detail) = if detail_open {
            (progress, Some(beside))
        } else {
            (beside, None)
        };
        Self {
            status,
            server_bar,
            footer,
            body,
            queue,
            progress,
            history,
            log,
            detail,
            preview,
        }
    }

    /// The help overlay, if it is open: centred in the body, as tall as its lines or the body.
    pub fn help(&self, state: &State) -> Option<Help> {
        if state.ui.overlay != Some(crate::app::Overlay::Help) {
            return None;
        }
        let width = HELP_WIDTH.min(self.body.width);
        // Frame and padding: two columns each side, one row above and below.
        let lines = super::help::lines(&state.keys, usize::from(width.saturating_sub(4)));
        let wanted = u16::try_from(lines.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2);
        let height = wanted.min(self.body.height);
        let [row] = Layout::vertical([Constraint::Length(height)])
            .flex(ratatui::layout::Flex::Center)
            .areas(self.body);
        let [frame] = Layout::horizontal([Constraint::Length(width)])
            .flex(ratatui::layout::Flex::Center)
            .areas(row);
        let max_scroll = lines
            .len()
            .saturating_sub(usize::from(height.saturating_sub(2)));
        Some(Help {
            frame,
            lines,
            scroll: state.ui.help_scroll.min(max_scroll),
            max_scroll,
        })
    }

    /// The detail view's text: inside its frame and its column of padding each side.
    pub fn detail_text(&self) -> Option<Rect> {
        self.detail.map(|r| r.inner(Margin::new(2, 1)))
    }

    /// The cells the preview image may fill: inside the pane's frame, less its status line.
    pub fn preview_image(&self) -> Option<Rect> {
        self.preview.map(|pane| Rect {
            x: pane.x + 1,
            y: pane.y + 1,
            width: pane.width.saturating_sub(2),
            height: pane.height.saturating_sub(3),
        })
    }

    fn panels(&self) -> impl Iterator<Item = (Panel, Rect)> {
        [
            (Panel::Queue, self.queue),
            (Panel::Progress, self.progress),
            (Panel::History, self.history),
        ]
        .into_iter()
        .chain(self.log.map(|r| (Panel::Log, r)))
        // The pane shows the running prompt's preview: a click on it is one on the progress.
        .chain(self.preview.map(|r| (Panel::Progress, r)))
    }
}

/// Splits `area` (the progress panel's, or the detail view's) into what stays and the preview
/// pane; no pane when it would be too small.
fn split_for_pane(area: Rect, detail: bool) -> (Rect, Option<Rect>) {
    // Under or beside, whichever fits the larger square image (a cell is about twice as tall
    // as wide).
    let square = |w: u16, h: u16| w.min(h.saturating_mul(2));
    let share = |len: u16, percent: u16| (u32::from(len) * u32::from(percent) / 100) as u16;
    let beside = square(share(area.width, BESIDE_SHARE), area.height);
    let under = square(area.width, share(area.height, UNDER_SHARE));
    let stacked = area.height >= STACKED_FROM_HEIGHT && under > beside;
    let (rest, pane) = if !detail && stacked {
        let [rest, pane] = Layout::vertical([
            Constraint::Percentage(100 - UNDER_SHARE),
            Constraint::Percentage(UNDER_SHARE),
        ])
        .areas(area);
        (rest, pane)
    } else {
        let share = if detail { DETAIL_SHARE } else { BESIDE_SHARE };
        let [rest, pane] = Layout::horizontal([
            Constraint::Percentage(100 - share),
            Constraint::Percentage(share),
        ])
        .areas(area);
        (rest, pane)
    };
    if pane.width < MIN_PANE.0 || pane.height < MIN_PANE.1 {
        return (area, None);
    }
    (rest, Some(pane))
}

/// A long notice may take up to a third of the screen's height in the footer.
const NOTICE_MAX_SHARE: u16 = 3;

/// The footer's notice, wrapped to a footer of `width` cells (one space each side).
pub fn notice_lines(ui: &Ui, width: u16) -> Vec<String> {
    ui.notice.as_ref().map_or_else(Vec::new, |notice| {
        wrap(
            &crate::text::one_line(&notice.text),
            usize::from(width.saturating_sub(2)),
        )
    })
}

/// Rows the footer takes on a screen of `area`: one, or as many as the last notice needs to be
/// read whole (an error is no use cut short), up to a third of the screen.
fn footer_rows(ui: &Ui, area: Rect) -> u16 {
    let wanted = u16::try_from(notice_lines(ui, area.width).len()).unwrap_or(u16::MAX);
    wanted.clamp(1, (area.height / NOTICE_MAX_SHARE).max(1))
}

/// Rows of list items a panel of `area` shows.
pub fn list_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(LIST_HEAD_ROWS + 1))
}

/// What is under the terminal cell (`column`, `row`): a list row, or a panel.
pub fn hit_test(state: &State, column: u16, row: u16) -> Option<ClickTarget> {
    if state.ui.fleet.is_some() {
        return None;
    }
    let areas = Areas::of_state(state);
    let position = Position::new(column, row);
    let (panel, area) = areas.panels().find(|(_, r)| r.contains(position))?;
    let (len, selected) = match panel {
        Panel::Queue => (state.queue_rows().len(), state.selected_queue_row()),
        Panel::History => (state.history_len(), state.selected_history_row()),
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
