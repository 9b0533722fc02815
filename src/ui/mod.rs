//! Drawing: a pure function of the [`State`] and the frame's size. One file per panel.
//!
//! Every string that came from the server is sanitized on its way into a cell.

mod confirm;
mod detail;
mod fleet;
mod help;
mod history;
pub mod layout;
mod log;
mod preview;
mod progress;
mod queue;
mod status;
mod theme;
pub mod widgets;

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier};

use crate::app::{Overlay, Panel, State};

pub use layout::{Areas, hit_test};
pub use preview::image_area as preview_area;

/// What drawing keeps from one frame to the next so as not to redo it: History, the largest
/// panel, which stands still through a run. It changes what a frame costs, never what it shows.
#[derive(Debug, Default)]
pub struct Memo {
    history: widgets::PanelMemo<(u64, i64)>,
}

/// Draws the whole dashboard, from nothing.
pub fn draw(state: &State, frame: &mut Frame) {
    draw_with(state, &mut Memo::default(), frame);
}

/// Draws the whole dashboard, taking from `memo` what has not changed since it was drawn.
pub fn draw_with(state: &State, memo: &mut Memo, frame: &mut Frame) {
    let areas = Areas::for_screen(frame.area(), state);
    status::draw(state, frame, areas.status);
    status::draw_footer(state, frame, areas.footer);
    if let Some(bar) = areas.server_bar {
        status::draw_server_bar(state, frame, bar);
    }
    preview::draw(state, frame, &areas);
    if state.ui.fleet.is_some() {
        fleet::draw(state, frame, areas.body);
    } else if let (Some(detail), Some(area)) = (&state.ui.detail, areas.detail) {
        detail::draw(state, detail, frame, area);
    } else {
        queue::draw(state, frame, areas.queue, state.ui.focus == Panel::Queue);
        progress::draw(
            state,
            frame,
            areas.progress,
            state.ui.focus == Panel::Progress,
        );
        let area = areas.history;
        memo.history
            .draw(frame, area, state.history_version(), |frame| {
                history::draw(state, frame, area, state.ui.focus == Panel::History);
            });
    }
    if let Some(log_area) = areas.log.filter(|_| state.ui.fleet.is_none()) {
        log::draw(state, frame, log_area, state.ui.focus == Panel::Log);
    }
    match &state.ui.overlay {
        Some(Overlay::Help) => help::draw(state, frame, &areas),
        Some(Overlay::Confirm(confirm)) => confirm::draw(confirm, frame, areas.body),
        None => {}
    }
    if !state.ui.color {
        without_colour(frame, preview_area(state));
    }
}

/// `--color never` or `NO_COLOR`: every cell loses its colours and keeps its bold, reverse and
/// the rest; what was grey turns dim. Only the preview image, a picture and not text, keeps
/// its own.
fn without_colour(frame: &mut Frame, image: Option<Rect>) {
    let buffer = frame.buffer_mut();
    let area = buffer.area;
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            if image.is_some_and(|image| image.contains(Position::new(x, y))) {
                continue;
            }
            if let Some(cell) = buffer.cell_mut((x, y)) {
                if cell.fg == Color::DarkGray {
                    cell.modifier.insert(Modifier::DIM);
                }
                cell.set_fg(Color::Reset);
                cell.set_bg(Color::Reset);
            }
        }
    }
}

#[cfg(test)]
mod tests;
