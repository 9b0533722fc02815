//! The preview pane: the newest preview of the running prompt beside the progress panel, or the
//! selected output beside the detail view, with a status line under it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::State;
use crate::app::preview::{key_on_view, selected_output};
use crate::preview::{PreviewKey, PreviewPane};

use super::layout::Areas;
use super::theme;
use super::widgets::{fit, panel};

/// The cells the image may fill (inside the pane's frame), if the pane is shown.
pub fn image_area(state: &State) -> Option<Rect> {
    Areas::of_state(state).preview_image()
}

pub fn draw(state: &State, frame: &mut Frame, areas: &Areas) {
    let Some(pane) = areas.preview else {
        return;
    };
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
            // Whose preview it is: it may stay after its prompt finished.
            title.push(Span::styled(
                format!("{} ", crate::format::short_id(prompt_id)),
                theme::accent(),
            ));
            let finished = state
                .server()
                .tracker
                .prompt(prompt_id)
                .is_some_and(|p| p.is_finished());
            if finished {
                title.push(Span::styled("finished · ", theme::dim()));
            }
            let node = state
                .previews
                .state
                .slot(&PreviewKey::Live(prompt_id.clone()))
                .and_then(|s| s.node_id.clone());
            if let Some(node) = node {
                let title_text = state
                    .server()
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
    let Some(image) = areas.preview_image() else {
        return;
    };
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui_image::FontSize;
    use ratatui_image::picker::ProtocolType;

    use crate::app::preview::{selected_output, view_for};
    use crate::app::testing::{REFERENCE, client_id, connected, detail_with_two_outputs, replay};
    use crate::app::{Command, Event, PreviewResults, Reply, State, update};
    use crate::comfy::api::History;
    use crate::preview::{DecodeLimits, PipelineConfig, PreviewFrame, Renderer, Work, Worker};

    fn worker(limits: DecodeLimits) -> Worker {
        Worker::new(PipelineConfig {
            renderer: Some(Renderer::fixed(
                ProtocolType::Halfblocks,
                FontSize::new(10, 20),
            )),
            limits,
            ..PipelineConfig::default()
        })
    }

    /// Sizes the screen, runs `frames` through `worker` for the view the layout asks for, hands
    /// the results to `update` and draws.
    fn render(
        state: &mut State,
        worker: &mut Worker,
        frames: Vec<PreviewFrame>,
        (width, height): (u16, u16),
    ) -> String {
        let now = state.now;
        update(state, now, Event::Resize { width, height });
        let view = view_for(state, super::image_area(state).map(|r| r.as_size()));
        state.previews.state.want_view(view.clone());
        let batch = worker.step(
            Work {
                frames,
                view: Some(view),
                refresh: false,
            },
            Instant::now(),
        );
        update(state, now + 1.0, Event::Preview(PreviewResults(batch)));
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|frame| crate::ui::draw(state, frame))
            .unwrap();
        terminal.backend().to_string()
    }

    fn submitted(commands: Vec<Command>) -> Vec<PreviewFrame> {
        commands
            .into_iter()
            .filter_map(|c| match c {
                Command::SubmitPreview(frame) => Some(frame),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_running_prompt_with_its_newest_preview_in_half_blocks() {
        let name = "c_full_run_legacy_previews";
        for size in [(80, 24), (120, 40), (160, 48)] {
            let mut state = connected(&client_id(name), 0.0, History::default());
            let frames = submitted(replay(&mut state, name, 0.0, 1.2));
            assert!(state.server().tracker.running().is_some());
            let last = frames.last().cloned().into_iter().collect();
            let screen = render(&mut state, &mut worker(DecodeLimits::default()), last, size);
            assert!(screen.contains('▀') || screen.contains('▄'), "{screen}");
            insta::assert_snapshot!(format!("preview_running_{}x{}", size.0, size.1), screen);
        }
    }

    /// The detail view of a finished prompt with two outputs, the first one fetched as `bytes`.
    fn output_detail(bytes: Bytes, limits: DecodeLimits) -> String {
        let mut state = detail_with_two_outputs();
        let (image, _, _) = selected_output(&state).unwrap();
        let frames = submitted(update(
            &mut state,
            2.0,
            Event::Reply(
                0,
                Reply::Output {
                    image,
                    result: Ok(bytes),
                },
            ),
        ));
        render(&mut state, &mut worker(limits), frames, (120, 40))
    }

    #[test]
    fn an_output_in_the_detail_view() {
        let png = std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap();
        let screen = output_detail(Bytes::from(png), DecodeLimits::default());
        assert!(screen.contains("1/2 full_00003_.png"));
        insta::assert_snapshot!("preview_output_detail_120x40", screen);
    }

    #[test]
    fn a_corrupt_output_shows_why() {
        let screen = output_detail(
            Bytes::from_static(b"\x89PNG\r\n\x1a\nthis is not a png"),
            DecodeLimits::default(),
        );
        assert!(screen.contains('⚠'), "{screen}");
        insta::assert_snapshot!("preview_output_corrupt_120x40", screen);
    }

    #[test]
    fn an_output_over_the_limit_is_a_note() {
        let png = std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap();
        let limits = DecodeLimits {
            max_pixels: 100,
            ..DecodeLimits::default()
        };
        let screen = output_detail(Bytes::from(png), limits);
        assert!(screen.contains("not shown"), "{screen}");
        insta::assert_snapshot!("preview_output_over_limit_120x40", screen);
    }
}
