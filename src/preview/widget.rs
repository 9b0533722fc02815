//! The preview pane: the encoded image centred in its area, or a line saying why there is none.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget, Wrap};
use ratatui_image::Image;
use ratatui_image::protocol::Protocol;

use super::PreviewKey;
use super::graphics::fill_kitty_cells;
use super::state::{Condition, PreviewState};

/// Draws the preview of one key in any `Rect`. Drawing only reads the state: the image was
/// encoded off the UI loop for the size the pane asked for ([`PreviewState::want_view`]).
pub struct PreviewPane<'a> {
    state: &'a PreviewState,
    key: Option<&'a PreviewKey>,
    message_style: Style,
}

impl<'a> PreviewPane<'a> {
    pub fn new(state: &'a PreviewState, key: Option<&'a PreviewKey>) -> Self {
        Self {
            state,
            key,
            message_style: Style::default().fg(Color::DarkGray),
        }
    }

    pub fn message_style(mut self, style: Style) -> Self {
        self.message_style = style;
        self
    }

    fn message(&self) -> String {
        if !self.state.enabled() {
            return "previews off (--image-protocol none)".to_string();
        }
        let Some(key) = self.key else {
            return "no preview".to_string();
        };
        match self.state.slot(key).map(|s| &s.condition) {
            None => match key {
                PreviewKey::Live(_) => "waiting for a preview…".to_string(),
                PreviewKey::Output(_) => "loading…".to_string(),
            },
            Some(Condition::Decoding | Condition::Ready { .. }) => "decoding…".to_string(),
            Some(Condition::Refused(problem)) => format!("not shown: {problem}"),
            Some(Condition::Broken(problem)) => format!("⚠ {problem}"),
        }
    }
}

impl Widget for PreviewPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let failed = self
            .key
            .and_then(|k| self.state.slot(k))
            .is_some_and(|s| matches!(s.condition, Condition::Refused(_) | Condition::Broken(_)));
        let rendered = self.key.and_then(|k| self.state.shown(k));
        if let Some(rendered) = rendered.filter(|_| self.state.enabled() && !failed) {
            let size = rendered.protocol.size();
            // An image encoded for a larger pane waits for its re-encode rather than spill.
            if size.width <= area.width && size.height <= area.height {
                let centred = Rect {
                    x: area.x + (area.width - size.width) / 2,
                    y: area.y + (area.height - size.height) / 2,
                    width: size.width,
                    height: size.height,
                };
                Image::new(&rendered.protocol).render(centred, buf);
                if let Protocol::Kitty(_) = &rendered.protocol {
                    fill_kitty_cells(buf, centred);
                }
                return;
            }
        }
        let text = self.message();
        let lines = u16::try_from(text.chars().count().div_ceil(usize::from(area.width)))
            .unwrap_or(u16::MAX)
            .clamp(1, area.height);
        let message_area = Rect {
            y: area.y + (area.height - lines) / 2,
            height: lines,
            ..area
        };
        Paragraph::new(Line::from(text))
            .style(self.message_style)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true })
            .render(message_area, buf);
    }
}
