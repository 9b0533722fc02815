//! The full-size view: the image alone on the normal screen, at the terminal's full size.

use std::io::{self, Write};
use std::time::Duration;

use crossterm::cursor::MoveTo;
use crossterm::event::{Event, KeyEventKind};
use crossterm::style::Print;
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};
use image::DynamicImage;
use ratatui_image::FontSize;
use ratatui_image::picker::ProtocolType;

use super::graphics::Renderer;
use crate::term::Tui;

/// Leaves the dashboard's alternate screen, draws `image` with viuer as large as the terminal
/// allows, with `caption` on the last line, waits for any key, and returns to the dashboard as it
/// was (its next draw repaints every cell). A resize while waiting redraws at the new size.
///
/// `renderer` is what the terminal answered at startup: kitty and iTerm2 draw with their own
/// protocol (outside tmux, which viuer does not pass through), anything else with 24-bit colour
/// blocks. viuer is never left to probe the terminal itself: its kitty probe waits for an answer
/// that a terminal without kitty support may never send.
///
/// Blocks the calling thread while it waits: call it from the UI loop, which then reads no
/// events of its own. Kitty images on the alternate screen may need encoding again afterwards
/// ([`super::PreviewPipeline::refresh`]).
///
/// While it waits, `newer` is asked a few times a second for a newer image of the same thing
/// (the next preview of a running prompt); the view shows each one it gets.
pub fn show_full_size(
    terminal: &mut Tui,
    image: &DynamicImage,
    caption: &str,
    renderer: Option<&Renderer>,
    newer: &mut dyn FnMut() -> Option<DynamicImage>,
) -> io::Result<()> {
    let config = viuer_config(renderer);
    let cell = renderer.map(Renderer::font_size);
    let mut out = io::stdout();
    execute!(out, LeaveAlternateScreen)?;
    let shown = show_and_wait(&mut out, image, caption, config, cell, newer);
    // Go back whatever happened above, leaving no image on the screen the shell gets back.
    let back =
        execute!(out, Clear(ClearType::All), EnterAlternateScreen).and_then(|()| terminal.clear());
    shown.and(back)
}

/// How viuer draws for `renderer`: at the top left, with the terminal's own protocol where it
/// has one, else in 24-bit colour blocks.
fn viuer_config(renderer: Option<&Renderer>) -> viuer::Config {
    let protocol = renderer.filter(|r| !r.in_tmux()).map(Renderer::protocol);
    viuer::Config {
        absolute_offset: true,
        x: 0,
        y: 0,
        restore_cursor: false,
        use_kitty: protocol == Some(ProtocolType::Kitty),
        use_iterm: protocol == Some(ProtocolType::Iterm2),
        // The pane draws in 24-bit colour whatever `COLORTERM` says (viuer would fall back to
        // 256 colours without it): the same image looks the same in both.
        truecolor: true,
        ..Default::default()
    }
}

fn show_and_wait(
    out: &mut impl Write,
    image: &DynamicImage,
    caption: &str,
    config: viuer::Config,
    cell: Option<FontSize>,
    newer: &mut dyn FnMut() -> Option<DynamicImage>,
) -> io::Result<()> {
    let raw_before = terminal::is_raw_mode_enabled()?;
    if !raw_before {
        terminal::enable_raw_mode()?;
    }
    let mut shown: Option<DynamicImage> = None;
    let result = (|| {
        let mut clear = true;
        loop {
            draw(
                out,
                shown.as_ref().unwrap_or(image),
                caption,
                &config,
                cell,
                clear,
            )?;
            match wait(newer)? {
                Waited::Key => return Ok(()),
                Waited::Resize => clear = true,
                Waited::Newer(image) => {
                    shown = Some(image);
                    // Drawn over the last one: the scrollback keeps a single copy.
                    clear = false;
                }
            }
        }
    })();
    if !raw_before {
        terminal::disable_raw_mode()?;
    }
    result
}

fn draw(
    out: &mut impl Write,
    image: &DynamicImage,
    caption: &str,
    config: &viuer::Config,
    cell: Option<FontSize>,
    clear: bool,
) -> io::Result<()> {
    let (cols, rows) = terminal::size()?;
    // viuer stretches to a width and height given both: give it the largest that keeps the
    // image's shape in cells of this shape.
    let (width, height) = fit_in_cells(
        (image.width(), image.height()),
        (cols, rows.saturating_sub(1)),
        cell,
    );
    if clear {
        // Scroll what the screen held into the scrollback instead of erasing it.
        queue!(out, MoveTo(0, rows.saturating_sub(1)))?;
        out.write_all("\r\n".repeat(usize::from(rows)).as_bytes())?;
    }
    queue!(out, MoveTo(0, 0))?;
    out.flush()?;
    let config = viuer::Config {
        width: Some(width),
        height: Some(height),
        ..config.clone()
    };
    viuer::print(image, &config).map_err(|e| io::Error::other(e.to_string()))?;
    let line: String = crate::text::one_line(&format!("{caption} · any key returns"))
        .chars()
        .take(usize::from(cols))
        .collect();
    execute!(out, MoveTo(0, rows.saturating_sub(1)), Print(line))
}

/// How often a followed image is looked for while no key comes.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

enum Waited {
    Key,
    /// Draw again at the new size.
    Resize,
    Newer(DynamicImage),
}

/// Waits for a key press, a resize, or a newer image from `newer`.
fn wait(newer: &mut dyn FnMut() -> Option<DynamicImage>) -> io::Result<Waited> {
    loop {
        if crossterm::event::poll(FOLLOW_EVERY)? {
            match crossterm::event::read()? {
                Event::Key(key) if key.kind == KeyEventKind::Press => return Ok(Waited::Key),
                Event::Resize(..) => return Ok(Waited::Resize),
                _ => {}
            }
        } else if let Some(image) = newer() {
            return Ok(Waited::Newer(image));
        }
    }
}

/// A cell's shape when the terminal did not say: twice as tall as wide.
const DEFAULT_CELL: FontSize = FontSize::new(1, 2);

/// The most cells (columns, rows) within `(cols, rows)` an image of `pixels` (width, height)
/// fills at its own aspect ratio, in cells of `cell` pixels (about 1:2 when unknown). Small
/// images are enlarged: this is the full-size view.
pub fn fit_in_cells(
    (width, height): (u32, u32),
    (cols, rows): (u16, u16),
    cell: Option<FontSize>,
) -> (u32, u32) {
    let cell = cell
        .filter(|c| c.width > 0 && c.height > 0)
        .unwrap_or(DEFAULT_CELL);
    let (cols, rows) = (f64::from(cols.max(1)), f64::from(rows.max(1)));
    // Columns per row that keep the image's shape.
    let shape = (f64::from(width.max(1)) * f64::from(cell.height))
        / (f64::from(height.max(1)) * f64::from(cell.width));
    let (w, h) = if cols / rows > shape {
        (rows * shape, rows)
    } else {
        (cols, cols / shape)
    };
    let cells = |v: f64, max: f64| v.round().clamp(1.0, max) as u32;
    (cells(w, cols), cells(h, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_image_stays_square_on_screen() {
        // 64x64 on an 80x23 screen of 1:2 cells: 46 columns by 23 rows, square in pixels.
        assert_eq!(fit_in_cells((64, 64), (80, 23), None), (46, 23));
        // Cells of 10x20 pixels say the same.
        assert_eq!(
            fit_in_cells((64, 64), (80, 23), Some(FontSize::new(10, 20))),
            (46, 23)
        );
        // Wider cells (8x20) need fewer columns for the same width in pixels.
        let (w, h) = fit_in_cells((64, 64), (80, 23), Some(FontSize::new(8, 20)));
        assert_eq!(h, 23);
        assert_eq!(w, 58);
    }

    #[test]
    fn blocks_are_drawn_in_24_bit_colour_like_the_pane_without_colorterm() {
        // viuer's default follows COLORTERM, which ssh and tmux often drop.
        let renderer = Renderer::fixed(ProtocolType::Halfblocks, FontSize::new(10, 20));
        for renderer in [None, Some(&renderer)] {
            let config = viuer_config(renderer);
            assert!(config.truecolor);
            assert!(!config.use_kitty && !config.use_iterm);
        }
    }

    #[test]
    fn a_wide_image_is_bound_by_the_width() {
        // 1024x256 (4:1) on 80x40: 80 columns, 10 rows of 1:2 cells (20 columns tall).
        assert_eq!(fit_in_cells((1024, 256), (80, 40), None), (80, 10));
        assert_eq!(fit_in_cells((1, 1), (0, 0), None), (1, 1));
        assert_eq!(fit_in_cells((0, 0), (80, 24), None), (48, 24));
    }
}
