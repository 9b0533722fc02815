//! The dashboard's ratatui backend: crossterm's, with the loop that writes a frame's changed
//! cells done here.
//!
//! A half-block preview changes every cell of its pane in every frame, each with its own two
//! colours, and crossterm formats each colour through `core::fmt`: a fifth of the UI loop's time
//! in a busy run. This loop writes the very same bytes (a test compares them with crossterm's
//! for any cells) with the numbers formatted by hand; moves, attributes, underline colours and
//! everything besides drawing still go through crossterm.

use std::io::{self, Write};

use crossterm::cursor::MoveTo;
use crossterm::queue;
use crossterm::style::{
    Attribute, Color as CrosstermColor, Colored, Colors, SetAttribute, SetBackgroundColor,
    SetColors, SetForegroundColor, SetUnderlineColor,
};
use ratatui::backend::{Backend, ClearType, CrosstermBackend, IntoCrossterm as _, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use ratatui::style::{Color, Modifier};

pub struct ScreenBackend<W: Write> {
    inner: CrosstermBackend<W>,
    /// What a frame writes, gathered before it goes to `inner` in one write.
    frame: Vec<u8>,
}

impl<W: Write> ScreenBackend<W> {
    pub fn new(writer: W) -> Self {
        Self {
            inner: CrosstermBackend::new(writer),
            frame: Vec::new(),
        }
    }
}

impl<W: Write> Write for ScreenBackend<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(&mut self.inner)
    }
}

impl<W: Write> Backend for ScreenBackend<W> {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let out = &mut self.frame;
        out.clear();
        let mut fg = Color::Reset;
        let mut bg = Color::Reset;
        let mut underline_color = Color::Reset;
        let mut modifier = Modifier::empty();
        let mut last: Option<(u16, u16)> = None;
        // Under NO_COLOR crossterm writes no colour at all; its own command keeps that rule.
        let colours_by_hand = !Colored::ansi_color_disabled_memoized();
        for (x, y, cell) in content {
            if !matches!(last, Some((lx, ly)) if lx.checked_add(1) == Some(x) && ly == y) {
                queue!(out, MoveTo(x, y))?;
            }
            last = Some((x, y));
            if cell.modifier != modifier {
                queue_modifier_change(out, modifier, cell.modifier)?;
                modifier = cell.modifier;
            }
            if cell.fg != fg || cell.bg != bg {
                if colours_by_hand {
                    out.extend_from_slice(b"\x1b[");
                    push_colour(out, Layer::Foreground, cell.fg);
                    out.push(b';');
                    push_colour(out, Layer::Background, cell.bg);
                    out.push(b'm');
                } else {
                    let colors = Colors::new(cell.fg.into_crossterm(), cell.bg.into_crossterm());
                    queue!(out, SetColors(colors))?;
                }
                fg = cell.fg;
                bg = cell.bg;
            }
            if cell.underline_color != underline_color {
                queue!(
                    out,
                    SetUnderlineColor(cell.underline_color.into_crossterm())
                )?;
                underline_color = cell.underline_color;
            }
            out.extend_from_slice(cell.symbol().as_bytes());
        }
        queue!(
            out,
            SetForegroundColor(CrosstermColor::Reset),
            SetBackgroundColor(CrosstermColor::Reset),
            SetUnderlineColor(CrosstermColor::Reset),
            SetAttribute(Attribute::Reset),
        )?;
        self.inner.write_all(out)
    }

    fn append_lines(&mut self, n: u16) -> io::Result<()> {
        self.inner.append_lines(n)
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.inner.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.inner.show_cursor()
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        self.inner.get_cursor_position()
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        self.inner.set_cursor_position(position)
    }

    fn clear(&mut self) -> io::Result<()> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        self.inner.size()
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        self.inner.window_size()
    }

    fn flush(&mut self) -> io::Result<()> {
        Backend::flush(&mut self.inner)
    }
}

#[derive(Clone, Copy)]
enum Layer {
    Foreground,
    Background,
}

/// One colour's SGR parameters, as crossterm's `Colored` writes them.
fn push_colour(out: &mut Vec<u8>, layer: Layer, colour: Color) {
    let (reset, prefix): (&[u8], &[u8]) = match layer {
        Layer::Foreground => (b"39", b"38;"),
        Layer::Background => (b"49", b"48;"),
    };
    let indexed = match colour {
        Color::Reset => {
            out.extend_from_slice(reset);
            return;
        }
        Color::Rgb(r, g, b) => {
            out.extend_from_slice(prefix);
            out.extend_from_slice(b"2;");
            push_u8(out, r);
            out.push(b';');
            push_u8(out, g);
            out.push(b';');
            push_u8(out, b);
            return;
        }
        Color::Indexed(i) => i,
        // The sixteen named colours are the first sixteen indexed ones.
        Color::Black => 0,
        Color::Red => 1,
        Color::Green => 2,
        Color::Yellow => 3,
        Color::Blue => 4,
        Color::Magenta => 5,
        Color::Cyan => 6,
        Color::Gray => 7,
        Color::DarkGray => 8,
        Color::LightRed => 9,
        Color::LightGreen => 10,
        Color::LightYellow => 11,
        Color::LightBlue => 12,
        Color::LightMagenta => 13,
        Color::LightCyan => 14,
        Color::White => 15,
    };
    out.extend_from_slice(prefix);
    out.extend_from_slice(b"5;");
    push_u8(out, indexed);
}

fn push_u8(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

/// The attributes that take `from` to `to`, in the order ratatui's crossterm backend writes
/// them (bold and dim share one reset, so either one's removal resets both and restores the
/// other).
fn queue_modifier_change(out: &mut Vec<u8>, from: Modifier, to: Modifier) -> io::Result<()> {
    let removed = from - to;
    let added = to - from;
    if removed.contains(Modifier::REVERSED) {
        queue!(out, SetAttribute(Attribute::NoReverse))?;
    }
    let reset_intensity = removed.intersects(Modifier::BOLD | Modifier::DIM);
    if reset_intensity {
        queue!(out, SetAttribute(Attribute::NormalIntensity))?;
        if to.contains(Modifier::DIM) {
            queue!(out, SetAttribute(Attribute::Dim))?;
        }
        if to.contains(Modifier::BOLD) {
            queue!(out, SetAttribute(Attribute::Bold))?;
        }
    }
    for (modifier, attribute) in [
        (Modifier::ITALIC, Attribute::NoItalic),
        (Modifier::UNDERLINED, Attribute::NoUnderline),
        (Modifier::CROSSED_OUT, Attribute::NotCrossedOut),
        (Modifier::HIDDEN, Attribute::NoHidden),
        (
            Modifier::SLOW_BLINK | Modifier::RAPID_BLINK,
            Attribute::NoBlink,
        ),
    ] {
        if removed.intersects(modifier) {
            queue!(out, SetAttribute(attribute))?;
        }
    }
    for (modifier, attribute) in [
        (Modifier::REVERSED, Attribute::Reverse),
        (Modifier::BOLD, Attribute::Bold),
        (Modifier::ITALIC, Attribute::Italic),
        (Modifier::UNDERLINED, Attribute::Underlined),
        (Modifier::DIM, Attribute::Dim),
        (Modifier::CROSSED_OUT, Attribute::CrossedOut),
        (Modifier::HIDDEN, Attribute::Hidden),
        (Modifier::SLOW_BLINK, Attribute::SlowBlink),
        (Modifier::RAPID_BLINK, Attribute::RapidBlink),
    ] {
        let intensity = modifier.intersects(Modifier::BOLD | Modifier::DIM);
        if added.contains(modifier) && !(intensity && reset_intensity) {
            queue!(out, SetAttribute(attribute))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use ratatui::buffer::Buffer;
    use ratatui::layout::Rect;

    use super::*;

    fn colour() -> impl Strategy<Value = Color> {
        prop_oneof![
            Just(Color::Reset),
            (0u8..16).prop_map(|i| match i {
                0 => Color::Black,
                1 => Color::Red,
                2 => Color::Green,
                3 => Color::Yellow,
                4 => Color::Blue,
                5 => Color::Magenta,
                6 => Color::Cyan,
                7 => Color::Gray,
                8 => Color::DarkGray,
                9 => Color::LightRed,
                10 => Color::LightGreen,
                11 => Color::LightYellow,
                12 => Color::LightBlue,
                13 => Color::LightMagenta,
                14 => Color::LightCyan,
                _ => Color::White,
            }),
            any::<u8>().prop_map(Color::Indexed),
            any::<(u8, u8, u8)>().prop_map(|(r, g, b)| Color::Rgb(r, g, b)),
        ]
    }

    /// Cells with few distinct styles, so that neighbours often share one and no change is
    /// written between them, as on a real screen.
    fn cell() -> impl Strategy<Value = Cell> {
        let style = (colour(), colour(), colour(), any::<u16>());
        (
            prop::sample::select(vec![" ", "a", "▀", "█", "é"]),
            prop::collection::vec(style, 1..4),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(symbol, styles, pick)| {
                let (fg, bg, underline_color, bits) = *pick.get(&styles);
                let mut cell = Cell::new(symbol);
                cell.fg = fg;
                cell.bg = bg;
                cell.underline_color = underline_color;
                cell.modifier = Modifier::from_bits_truncate(bits);
                cell
            })
    }

    fn screen(width: u16, height: u16) -> impl Strategy<Value = Buffer> {
        let area = Rect::new(0, 0, width, height);
        prop::collection::vec(cell(), usize::from(width * height)).prop_map(move |cells| {
            let mut buffer = Buffer::empty(area);
            buffer.content = cells;
            buffer
        })
    }

    /// Has `backend` write what changed from `before` to `after`.
    fn drawn_by<B: Backend>(mut backend: B, before: &Buffer, after: &Buffer)
    where
        B::Error: std::fmt::Debug,
    {
        backend
            .draw(before.diff(after).into_iter())
            .unwrap_or_else(|e| panic!("drawing into memory failed: {e:?}"));
    }

    proptest! {
        /// Whatever cells changed, the bytes are crossterm's own.
        #[test]
        fn a_frame_is_written_as_ratatuis_crossterm_backend_writes_it(
            (before, after) in (1u16..12, 1u16..6)
                .prop_flat_map(|(w, h)| (screen(w, h), screen(w, h)))
        ) {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            drawn_by(ScreenBackend::new(&mut ours), &before, &after);
            drawn_by(CrosstermBackend::new(&mut theirs), &before, &after);
            prop_assert!(!ours.is_empty());
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }
}
