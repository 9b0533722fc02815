//! The full-size view: the image alone on the normal screen, at the terminal's full size.

use std::io::{self, Write};

use crossterm::cursor::MoveTo;
use crossterm::event::{Event, KeyEventKind};
use crossterm::style::Print;
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};
use image::DynamicImage;
use ratatui::DefaultTerminal;
use ratatui_image::picker::ProtocolType;

use super::graphics::Renderer;

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
pub fn show_full_size(
    terminal: &mut DefaultTerminal,
    image: &DynamicImage,
    caption: &str,
    renderer: Option<&Renderer>,
) -> io::Result<()> {
    let protocol = renderer.filter(|r| !r.in_tmux()).map(Renderer::protocol);
    let config = viuer::Config {
        absolute_offset: true,
        x: 0,
        y: 0,
        restore_cursor: false,
        use_kitty: protocol == Some(ProtocolType::Kitty),
        use_iterm: protocol == Some(ProtocolType::Iterm2),
        ..Default::default()
    };
    let mut out = io::stdout();
    execute!(out, LeaveAlternateScreen)?;
    let shown = show_and_wait(&mut out, image, caption, config);
    // Go back whatever happened above.
    let back = execute!(out, EnterAlternateScreen).and_then(|()| terminal.clear());
    shown.and(back)
}

fn show_and_wait(
    out: &mut impl Write,
    image: &DynamicImage,
    caption: &str,
    config: viuer::Config,
) -> io::Result<()> {
    let raw_before = terminal::is_raw_mode_enabled()?;
    if !raw_before {
        terminal::enable_raw_mode()?;
    }
    let result = (|| loop {
        draw(out, image, caption, &config)?;
        if wait_for_key()? {
            return Ok(());
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
) -> io::Result<()> {
    let (cols, rows) = terminal::size()?;
    // Scroll what the screen held into the scrollback instead of erasing it.
    queue!(out, MoveTo(0, rows.saturating_sub(1)))?;
    out.write_all("\r\n".repeat(usize::from(rows)).as_bytes())?;
    queue!(out, MoveTo(0, 0))?;
    out.flush()?;
    let config = viuer::Config {
        width: Some(u32::from(cols.max(1))),
        height: Some(u32::from(rows.saturating_sub(1).max(1))),
        ..config.clone()
    };
    viuer::print(image, &config).map_err(|e| io::Error::other(e.to_string()))?;
    let line: String = crate::text::one_line(&format!("{caption} · any key returns"))
        .chars()
        .take(usize::from(cols))
        .collect();
    execute!(out, MoveTo(0, rows.saturating_sub(1)), Print(line))
}

/// `true` on a key press, `false` on a resize (draw again).
fn wait_for_key() -> io::Result<bool> {
    loop {
        match crossterm::event::read()? {
            Event::Key(key) if key.kind == KeyEventKind::Press => return Ok(true),
            Event::Resize(..) => return Ok(false),
            _ => {}
        }
    }
}
