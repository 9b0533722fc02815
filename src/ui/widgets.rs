//! Small drawing helpers shared by the panels.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Padding, Row, Table, TableState};
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

use super::layout::list_rows;
use super::theme;

/// The first row shown of a list so that `selected` is visible in `visible` rows.
pub fn list_offset(selected: Option<usize>, visible: usize) -> usize {
    match selected {
        Some(s) if visible > 0 && s >= visible => s + 1 - visible,
        _ => 0,
    }
}

/// A panel's frame with its title; the focused one stands out.
pub fn panel<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let title: Line = title.into();
    Block::new()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme::border(focused))
        .title(title.style(theme::title(focused)))
}

/// A panel for text, with a column of padding on each side.
pub fn text_panel<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    panel(title, focused).padding(Padding::horizontal(1))
}

/// A horizontal bar of `width` cells for `fraction` (0..=1), in eighths of a cell.
pub fn bar(fraction: f64, width: usize) -> (String, String) {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let fraction = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let eighths = (fraction * width as f64 * 8.0).round() as usize;
    let full = eighths / 8;
    let part = eighths % 8;
    let mut done: String = "█".repeat(full);
    let mut used = full;
    if part > 0 && used < width {
        done.push(PARTS[part]);
        used += 1;
    }
    (done, "─".repeat(width.saturating_sub(used)))
}

/// A bar as spans, done part in the gauge colour and the rest dim.
pub fn bar_spans(fraction: f64, width: usize) -> [Span<'static>; 2] {
    let (done, rest) = bar(fraction, width);
    [
        Span::styled(done, theme::gauge_done()),
        Span::styled(rest, theme::dim()),
    ]
}

/// `text` cut to `width` characters, with an ellipsis when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    // Wide characters (CJK, emoji) take two cells: count cells, not characters.
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `text` broken into lines of at most `width` cells, at spaces where a line has one, else
/// anywhere (a long path has none). Nothing is lost: the lines hold every character.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            // Break after the last space, carrying the word begun over, unless that leaves
            // half the line empty (a long path is cut where the line ends instead).
            let carry = match line.rfind(' ') {
                Some(space) if space > 0 && line[space + 1..].width() <= width / 2 => {
                    line.split_off(space + 1)
                }
                _ => String::new(),
            };
            lines.push(line.trim_end().to_string());
            used = carry.width();
            line = carry;
        }
        line.push(c);
        used += w;
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` cut to `width` cells in its middle, keeping both ends: ids that differ only at their
/// end (`other-qa-6`, `other-qa-7`) stay apart.
pub fn fit_middle(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    if width < 3 {
        return fit(text, width);
    }
    let tail_room = (width - 1) / 2;
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_room {
            break;
        }
        used += w;
        tail.push(c);
    }
    let head = fit(text, width - used);
    format!("{head}{}", tail.into_iter().rev().collect::<String>())
}

/// `text` cut or padded to exactly `width` cells.
pub fn pad(text: &str, width: usize) -> String {
    let fitted = fit(text, width);
    let fill = width.saturating_sub(fitted.width());
    format!("{fitted}{}", " ".repeat(fill))
}

/// A selectable list panel: `items` under `header` in `block`, the selected row highlighted and
/// kept in view. Only the rows in view are made (`row`): a queue of ten thousand prompts costs
/// a frame what a screenful does.
pub fn list_table<'a, T>(
    frame: &mut Frame,
    area: Rect,
    block: Block<'a>,
    (header, items, row): (Row<'a>, &[T], impl Fn(&T) -> Row<'a>),
    widths: &[Constraint],
    focused: bool,
    selected: Option<usize>,
) {
    let visible = list_rows(area);
    let offset = list_offset(selected, visible);
    let rows = items.iter().skip(offset).take(visible).map(row);
    let table = Table::new(rows, widths.iter().copied())
        .header(header.style(theme::header()))
        .block(block)
        .row_highlight_style(theme::selected(focused));
    let mut table_state = TableState::new().with_selected(selected.map(|s| s - offset));
    frame.render_stateful_widget(table, area, &mut table_state);
}

/// A panel's last drawing, kept from frame to frame: drawn again only when what it is drawn
/// from (its version, `V`) or its area changed, and otherwise copied from here.
#[derive(Debug)]
pub struct PanelMemo<V> {
    drawn: Option<(V, Rect)>,
    cells: Buffer,
}

impl<V> Default for PanelMemo<V> {
    fn default() -> Self {
        Self {
            drawn: None,
            cells: Buffer::default(),
        }
    }
}

impl<V: PartialEq> PanelMemo<V> {
    /// Puts the panel in `area` of `frame`: what `draw` drew there for the same `version`, or
    /// what it draws now. The area must be one nothing else draws in before it.
    pub fn draw(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        version: V,
        draw: impl FnOnce(&mut Frame),
    ) {
        let drawn = Some((version, area));
        if self.drawn == drawn {
            copy_cells(&self.cells, frame.buffer_mut());
            return;
        }
        draw(frame);
        self.cells = Buffer::empty(area);
        copy_cells(frame.buffer_mut(), &mut self.cells);
        self.drawn = drawn;
    }
}

/// Puts `from`'s cells in `to` where their areas meet, a row at a time.
fn copy_cells(from: &Buffer, to: &mut Buffer) {
    let area = from.area.intersection(to.area);
    let width = usize::from(area.width);
    for y in area.top()..area.bottom() {
        let source = from.index_of(area.x, y);
        let target = to.index_of(area.x, y);
        to.content[target..target + width].clone_from_slice(&from.content[source..source + width]);
    }
}

/// A line of text centred vertically in `area`, for empty panels.
pub fn centered_row(area: Rect) -> Rect {
    Rect::new(
        area.x,
        area.y + area.height / 2,
        area.width,
        1.min(area.height),
    )
}

pub fn styled(text: impl Into<String>, style: Style) -> Span<'static> {
    Span::styled(text.into(), style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_eighths_and_keeps_its_width() {
        assert_eq!(bar(0.0, 4), (String::new(), "────".into()));
        assert_eq!(bar(0.5, 4), ("██".into(), "──".into()));
        assert_eq!(bar(1.0 / 16.0, 2), ("▏".into(), "─".into()));
        assert_eq!(bar(2.0, 3).0, "███");
        assert_eq!(bar(f64::NAN, 3).1, "───");
    }

    #[test]
    fn offset_keeps_the_selection_in_view() {
        assert_eq!(list_offset(Some(2), 5), 0);
        assert_eq!(list_offset(Some(7), 5), 3);
        assert_eq!(list_offset(None, 5), 0);
        assert_eq!(list_offset(Some(3), 0), 0);
    }

    #[test]
    fn wrap_keeps_every_character_within_the_width() {
        let text = "not saved: cannot create the directory /srv/out/x: No such file or directory";
        let lines = wrap(text, 20);
        assert!(lines.iter().all(|l| l.width() <= 20), "{lines:?}");
        assert_eq!(lines.join(" ").replace("  ", " "), text);
        assert_eq!(lines[0], "not saved: cannot");
        let path = wrap("/a/very/long/path/without/spaces", 10);
        assert_eq!(path, ["/a/very/lo", "ng/path/wi", "thout/spac", "es"]);
        assert_eq!(wrap("", 5), [""]);
        assert!(wrap("连接被服务器关闭了", 5).iter().all(|l| l.width() <= 5));
    }

    #[test]
    fn fit_middle_keeps_both_ends() {
        assert_eq!(fit_middle("other-qa-6", 8), "othe…a-6");
        assert_eq!(fit_middle("other-qa-7", 8), "othe…a-7");
        assert_eq!(fit_middle("short", 8), "short");
        assert!(fit_middle("连接被服务器关闭了", 7).width() <= 7);
    }

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("KSampler", 4), "KSa…");
        assert_eq!(pad("ab", 4), "ab  ");
    }

    #[test]
    fn fit_and_pad_count_cells_of_wide_characters() {
        let cut = fit("连接被服务器关闭了", 7);
        assert_eq!(cut, "连接被…");
        assert!(cut.width() <= 7);
        assert_eq!(pad("连接", 6), "连接  ");
    }
}
