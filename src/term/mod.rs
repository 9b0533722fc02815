//! The terminal's setup and teardown. Whatever way the dashboard ends (quit, error, panic,
//! SIGTERM, SIGHUP), the terminal is handed back as it was: main screen, cooked mode, cursor shown,
//! mouse and focus reporting off.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::cursor::Show;
use crossterm::event::{
    DisableFocusChange, DisableMouseCapture, EnableFocusChange, Event, KeyCode, KeyEvent,
    KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::backend::Backend as _;
use ratatui::layout::{Position, Rect};
use ratatui::{Terminal, TerminalOptions, Viewport};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

mod backend;

pub use backend::ScreenBackend;

pub type Tui = Terminal<ScreenBackend<FrameWriter>>;

/// The dashboard's way to the terminal: what a frame writes is held until ratatui flushes at
/// its end, then written at once. `Stdout` alone writes every kilobyte (its buffer is that
/// small), a dozen writes for a frame full of preview. Unlike `BufWriter` it writes nothing
/// when dropped: after a panic halfway through a frame, the rest of it would land on the
/// screen just handed back.
pub struct FrameWriter<W: Write = Stdout> {
    pending: Vec<u8>,
    out: W,
}

impl FrameWriter {
    fn new() -> Self {
        Self::to(io::stdout())
    }
}

impl<W: Write> FrameWriter<W> {
    fn to(out: W) -> Self {
        Self {
            pending: Vec::new(),
            out,
        }
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let written = self
            .out
            .write_all(&self.pending)
            .and_then(|()| self.out.flush());
        // Dropped even when the write failed: a terminal that is gone gets no backlog.
        self.pending.clear();
        written
    }
}

/// Set while the terminal is in dashboard mode, so teardown runs once and only when needed.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The terminal in dashboard mode; dropping it restores the terminal.
pub struct TerminalGuard {
    pub terminal: Tui,
}

impl TerminalGuard {
    /// Raw mode, the alternate screen, focus reports and (when `mouse`) mouse reports.
    pub fn enter(mouse: bool) -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = (|| {
            let mut stdout = io::stdout();
            execute!(
                stdout,
                EnterAlternateScreen,
                Clear(ClearType::All),
                EnableFocusChange
            )?;
            if mouse {
                execute!(stdout, EnableMouseButtons)?;
            }
            let backend = ScreenBackend::new(FrameWriter::new());
            // A fixed viewport, which the loop resizes when the terminal says it was resized: a
            // full-screen one asks for the size before every frame, and crossterm opens
            // /dev/tty to answer each time.
            let area = Rect::from((Position::ORIGIN, backend.size()?));
            let mut terminal = Terminal::with_options(
                backend,
                TerminalOptions {
                    viewport: Viewport::Fixed(area),
                },
            )?;
            // Not `terminal.clear()`: it asks the terminal where the cursor is and waits for the
            // answer, which costs a round trip over ssh and fails on terminals that never answer.
            terminal.hide_cursor()?;
            Ok(terminal)
        })();
        match setup {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Mouse reports for presses, releases and the wheel only (modes 1000 and 1006), not for every
/// move as crossterm's `EnableMouseCapture` asks: moving the pointer over the window then sends
/// nothing, which matters over ssh. Undone by `DisableMouseCapture`.
struct EnableMouseButtons;

impl crossterm::Command for EnableMouseButtons {
    fn write_ansi(&self, f: &mut impl std::fmt::Write) -> std::fmt::Result {
        f.write_str("\x1b[?1000h\x1b[?1006h")
    }
}

/// Hands the terminal back. Safe to call from anywhere, any number of times; errors are ignored
/// (after SIGHUP there may be no terminal left to write to).
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut stdout = io::stdout();
    let _ = execute!(
        stdout,
        DisableMouseCapture,
        DisableFocusChange,
        LeaveAlternateScreen,
        Show
    );
    let _ = disable_raw_mode();
    let _ = stdout.flush();
}

/// Restores the terminal before the panic hook in place (color-eyre's, installed by `main`)
/// prints its report; else the report would land on the alternate screen and vanish.
fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    // Only a panic on the thread that owns the terminal ends the dashboard. Panics elsewhere
    // are caught (a tokio task, the preview worker's guarded decode) and the dashboard goes on,
    // so restoring the terminal for them would leave it drawing on a cooked screen.
    let ui_thread = std::thread::current().id();
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == ui_thread {
            restore();
        }
        report(info);
    }));
}

/// How long the orderly way out may take once a signal came or the terminal went away. Then
/// the process restores what it can and exits anyway: whatever the loop is stuck on (crossterm's
/// reader spins on a hung-up terminal), the dashboard must not outlive its terminal.
pub const GRACE: Duration = Duration::from_millis(500);

/// Why the dashboard has to end though nobody pressed `q`: SIGTERM, SIGINT, SIGHUP, or the
/// terminal hanging up (an ssh drop, a killed tmux session).
pub struct Endings {
    reasons: mpsc::UnboundedReceiver<&'static str>,
}

impl Endings {
    /// Starts watching. Call it first thing, inside the runtime: from then on each of these ends
    /// the process within [`GRACE`], whatever the dashboard is doing, and [`Endings::next`]
    /// tells the loop so that it can leave in order before that.
    pub fn watch() -> io::Result<Self> {
        let (sender, reasons) = mpsc::unbounded_channel();
        for (kind, name, number) in [
            (SignalKind::terminate(), "SIGTERM", 15),
            (SignalKind::hangup(), "SIGHUP", 1),
            (SignalKind::interrupt(), "SIGINT", 2),
        ] {
            let mut stream = signal(kind)?;
            let sender = sender.clone();
            tokio::spawn(async move {
                if stream.recv().await.is_some() {
                    let _ = sender.send(name);
                    // The usual exit status of a process ended by this signal.
                    exit_after_grace(128 + number);
                }
            });
        }
        std::thread::Builder::new()
            .name("comfytop-hangup".into())
            .spawn(move || {
                if wait_for_hangup() {
                    let _ = sender.send("the terminal closed");
                    exit_after_grace(129);
                }
            })?;
        Ok(Self { reasons })
    }

    /// Resolves with the reason to end. Cancel-safe, for `tokio::select!`.
    pub async fn next(&mut self) -> &'static str {
        match self.reasons.recv().await {
            Some(reason) => reason,
            // No watcher left: nothing will ever say so.
            None => std::future::pending().await,
        }
    }
}

/// Blocks until stdin's terminal hangs up (true), or returns false if it cannot tell. Asks
/// for no events: poll reports a hang-up or an error anyway, and nothing else wakes it.
fn wait_for_hangup() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdin = io::stdin();
    loop {
        let mut fds = [PollFd::new(&stdin, PollFlags::empty())];
        match poll(&mut fds, None) {
            Ok(_) => {
                let gone = PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
                if fds[0].revents().intersects(gone) {
                    return true;
                }
                // Woken for nothing: do not spin if that ever repeats.
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}

/// Gives the loop [`GRACE`] to leave in order, then restores the terminal and exits with
/// `code`. Only the first call counts.
fn exit_after_grace(code: i32) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("comfytop-exit".into())
        .spawn(move || {
            std::thread::sleep(GRACE);
            tracing::warn!(code, "the dashboard did not end in time; exiting");
            // Restore on a thread of its own: a write stuck on a dead terminal must not keep
            // the process alive.
            let (restored, wait) = std::sync::mpsc::channel();
            let _ = std::thread::Builder::new().spawn(move || {
                restore();
                let _ = restored.send(());
            });
            let _ = wait.recv_timeout(Duration::from_millis(200));
            std::process::exit(code);
        });
}

/// Terminal events from input bytes that crossterm's reader did not see (typed while the
/// graphics query held stdin), parsed by anes. Keys, the left button and the wheel; anes's
/// quirks aside, as crossterm would have reported them.
pub fn typed_events(bytes: &[u8]) -> Vec<Event> {
    let mut parser = anes::parser::Parser::default();
    let mut events = Vec::new();
    for (i, &byte) in bytes.iter().enumerate() {
        // anes reads DEL as Backtab; terminals send it for Backspace.
        if byte == 0x7f {
            events.push(key(KeyCode::Backspace, KeyModifiers::NONE));
            continue;
        }
        let more = i + 1 < bytes.len();
        parser.advance(&[byte], more);
        events.extend(parser.by_ref().filter_map(translate_sequence));
    }
    events
}

fn key(code: KeyCode, modifiers: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, modifiers))
}

fn translate_sequence(sequence: anes::parser::Sequence) -> Option<Event> {
    use anes::parser::{KeyCode as A, KeyModifiers as AM, Mouse, MouseButton as AB, Sequence};
    match sequence {
        Sequence::Key(code, anes_modifiers) => {
            let mut modifiers = KeyModifiers::NONE;
            for (from, to) in [
                (AM::SHIFT, KeyModifiers::SHIFT),
                (AM::CONTROL, KeyModifiers::CONTROL),
                (AM::ALT, KeyModifiers::ALT),
                (AM::META, KeyModifiers::META),
            ] {
                if anes_modifiers.contains(from) {
                    modifiers |= to;
                }
            }
            let code = match code {
                A::Backspace => KeyCode::Backspace,
                A::Enter => KeyCode::Enter,
                A::Left => KeyCode::Left,
                A::Right => KeyCode::Right,
                A::Up => KeyCode::Up,
                A::Down => KeyCode::Down,
                A::Home => KeyCode::Home,
                A::End => KeyCode::End,
                A::PageUp => KeyCode::PageUp,
                A::PageDown => KeyCode::PageDown,
                A::Tab => KeyCode::Tab,
                A::BackTab => KeyCode::BackTab,
                A::Delete => KeyCode::Delete,
                A::Insert => KeyCode::Insert,
                A::F(n) => KeyCode::F(n),
                A::Null => KeyCode::Null,
                A::Esc => KeyCode::Esc,
                // Control characters come as themselves; crossterm reports Ctrl and a letter.
                A::Char(c @ '\u{1}'..='\u{1a}') => {
                    modifiers |= KeyModifiers::CONTROL;
                    KeyCode::Char(char::from(c as u8 - 1 + b'a'))
                }
                A::Char(c) => KeyCode::Char(c),
            };
            Some(key(code, modifiers))
        }
        Sequence::Mouse(mouse, _) => {
            // anes counts cells from 1, crossterm from 0.
            let at = |x: u16, y: u16| (x.saturating_sub(1), y.saturating_sub(1));
            let (kind, (column, row)) = match mouse {
                Mouse::Down(AB::Left, x, y) => (MouseEventKind::Down(MouseButton::Left), at(x, y)),
                Mouse::ScrollUp(x, y) => (MouseEventKind::ScrollUp, at(x, y)),
                Mouse::ScrollDown(x, y) => (MouseEventKind::ScrollDown, at(x, y)),
                _ => return None,
            };
            Some(Event::Mouse(MouseEvent {
                kind,
                column,
                row,
                modifiers: KeyModifiers::NONE,
            }))
        }
        Sequence::CursorPosition(..) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that counts the writes it gets.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl Write for &mut Writes {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_frame_is_written_at_once_on_flush_and_never_on_drop() {
        let mut terminal = Writes::default();
        let mut frame = FrameWriter::to(&mut terminal);
        for _ in 0..3000 {
            frame.write_all(b"\x1b[1;1Hx").unwrap();
        }
        frame.flush().unwrap();
        frame.write_all(b"half a frame").unwrap();
        drop(frame);
        assert_eq!(
            terminal.0.len(),
            1,
            "one write for the frame, none for what was left"
        );
        assert_eq!(terminal.0[0].len(), 3000 * 7);
    }

    fn keys(bytes: &[u8]) -> Vec<(KeyCode, KeyModifiers)> {
        typed_events(bytes)
            .into_iter()
            .filter_map(|e| match e {
                Event::Key(k) => Some((k.code, k.modifiers)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn typed_bytes_become_the_keys_crossterm_would_report() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            keys(b"q?\r\t\x1b[A\x7f\x03"),
            vec![
                (KeyCode::Char('q'), none),
                (KeyCode::Char('?'), none),
                (KeyCode::Enter, none),
                (KeyCode::Tab, none),
                (KeyCode::Up, none),
                (KeyCode::Backspace, none),
                (KeyCode::Char('c'), KeyModifiers::CONTROL),
            ]
        );
        assert_eq!(keys(b"\x1b"), vec![(KeyCode::Esc, none)]);
        assert_eq!(keys("é".as_bytes()), vec![(KeyCode::Char('é'), none)]);
    }

    #[test]
    fn a_typed_click_lands_on_the_same_cell() {
        let events = typed_events(b"\x1b[<0;5;4M");
        let Some(Event::Mouse(mouse)) = events.first() else {
            panic!("{events:?}");
        };
        assert_eq!(mouse.kind, MouseEventKind::Down(MouseButton::Left));
        assert_eq!((mouse.column, mouse.row), (4, 3));
    }
}
