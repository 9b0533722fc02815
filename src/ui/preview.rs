//! The preview pane: the newest preview of the running prompt beside the progress panel, or the
//! selected output beside the detail view, with a status line under it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::preview::{key_on_view, selected_output};
use crate::preview::{PreviewKey, PreviewPane};

use super::layout::Areas;
use super::theme;
use super::widgets::{fit, panel};

/// Below this the pane is not worth its room.
const MIN_PANE: (u16, u16) = (14, 6);
/// From this width on, the pane sits beside the progress panel; narrower, under it when there
/// are rows enough.
const SIDE_BY_SIDE_FROM_WIDTH: u16 = 84;
const STACKED_FROM_HEIGHT: u16 = 16;

/// Splits `area` (the progress panel's, or the detail view's) into what stays and the pane.
fn split(area: Rect, detail: bool) -> (Rect, Option<Rect>) {
    let stacked = area.width < SIDE_BY_SIDE_FROM_WIDTH && area.height >= STACKED_FROM_HEIGHT;
    let (rest, pane) = if !detail && stacked {
        let [rest, pane] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
        (rest, pane)
    } else {
        let share = if detail { 45 } else { 38 };
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

/// Whether the pane is shown: `p` did not hide it, and it has something to show.
fn wanted(state: &State) -> bool {
    state.previews.show && key_on_view(state).is_some()
}

/// The area the panel beside the pane keeps, and the pane's frame.
pub fn split_for(state: &State, areas: &Areas) -> (Rect, Option<Rect>) {
    let detail = state.ui.detail.is_some();
    let area = if detail { areas.body } else { areas.progress };
    if !wanted(state) {
        return (area, None);
    }
    split(area, detail)
}

/// The cells the image may fill (inside the pane's frame), if the pane is shown.
pub fn image_area(state: &State) -> Option<Rect> {
    let screen = Rect::new(0, 0, state.ui.width, state.ui.height);
    let areas = Areas::of(screen, &state.ui, state.queue_rows().len());
    let (_, pane) = split_for(state, &areas);
    pane.map(inner)
}

/// Inside the frame, less the status line.
fn inner(pane: Rect) -> Rect {
    Rect {
        x: pane.x + 1,
        y: pane.y + 1,
        width: pane.width.saturating_sub(2),
        height: pane.height.saturating_sub(3),
    }
}

pub fn draw(state: &State, frame: &mut Frame, pane: Rect) {
    let key = key_on_view(state);
    let mut title = vec![Span::raw(" Preview ")];
    match &key {
        Some(PreviewKey::Output(_)) => {
            if let Some((image, index, count)) = selected_output(state) {
                title.push(Span::styled(
                    format!("{}/{count} ", index + 1),
                    theme::accent(),
                ));
                let name = crate::text::one_line(&image.filename);
                title.push(Span::raw(format!("{} ", fit(&name, 30))));
            }
        }
        Some(PreviewKey::Live(prompt_id)) => {
            let node = state
                .previews
                .state
                .slot(&PreviewKey::Live(prompt_id.clone()))
                .and_then(|s| s.node_id.clone());
            if let Some(node) = node {
                let title_text = state
                    .server
                    .tracker
                    .node_title(prompt_id, &node)
                    .map(|t| crate::text::one_line(t).into_owned())
                    .unwrap_or_else(|| format!("node {node}"));
                title.push(Span::styled(
                    format!("{} ", fit(&title_text, 30)),
                    theme::dim(),
                ));
            }
        }
        None => {}
    }
    let block = panel(Line::from(title), false);
    frame.render_widget(block, pane);
    let image = inner(pane);
    frame.render_widget(
        PreviewPane::new(&state.previews.state, key.as_ref()).message_style(theme::dim()),
        image,
    );
    let status_row = Rect {
        y: image.y + image.height,
        height: 1,
        ..image
    };
    let now = state.previews.instant(state.now);
    let status = state
        .previews
        .note
        .clone()
        .or_else(|| {
            key.as_ref()
                .and_then(|k| state.previews.state.status_line(k, now))
        })
        .unwrap_or_default();
    let width = usize::from(status_row.width);
    frame.render_widget(
        Paragraph::new(Line::styled(fit(&status, width), theme::dim())),
        status_row,
    );
}
