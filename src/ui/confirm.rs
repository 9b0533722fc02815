//! The y/n confirmation in front of a destructive action: the question (which names the prompt
//! and who queued it), and the two answers.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use crate::app::Confirm;
use crate::text::one_line;

use super::theme;
use super::widgets::text_panel;

/// Widest the dialog gets; narrower terminals get all but a margin.
const MAX_WIDTH: u16 = 64;

pub fn draw(confirm: &Confirm, frame: &mut Frame, area: Rect) {
    let width = MAX_WIDTH
        .min(area.width.saturating_sub(4))
        .max(20)
        .min(area.width);
    let question = one_line(&confirm.question).into_owned();
    // Borders and the panel's padding either side.
    let text_width = usize::from(width.saturating_sub(4)).max(1);
    let question_rows = wrapped_rows(&question, text_width);
    let lines = vec![
        Line::from(question),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", theme::accent()),
            Span::styled(" yes    ", theme::dim()),
            Span::styled("n  Esc", theme::accent()),
            Span::styled(" no", theme::dim()),
        ]),
    ];
    let height = (question_rows as u16 + 4).min(area.height);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(text_panel(" Confirm ", true)),
        popup,
    );
}

/// Rows `text` takes when wrapped at word boundaries into `width` columns (as the paragraph
/// wraps it), so the dialog is sized to its question.
fn wrapped_rows(text: &str, width: usize) -> usize {
    let width = width.max(1);
    let mut rows = 1;
    let mut used = 0;
    for word in text.split(' ') {
        let len = word.chars().count();
        if used > 0 && used + 1 + len <= width {
            used += 1 + len;
            continue;
        }
        if used > 0 {
            rows += 1;
        }
        // A word longer than a row is broken across rows.
        rows += len.saturating_sub(1) / width;
        used = len.saturating_sub(1) % width + 1;
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_follow_word_wrapping() {
        assert_eq!(super::wrapped_rows("ab cd", 5), 1);
        assert_eq!(super::wrapped_rows("ab cd ef", 5), 2);
        assert_eq!(super::wrapped_rows("abcdefghijk", 5), 3);
    }
}
