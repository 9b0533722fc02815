//! The terminal's setup and teardown. Whatever way the dashboard ends (quit, error, panic,
//! SIGTERM, SIGHUP), the terminal is handed back as it was: main screen, cooked mode, cursor shown,
//! mouse and focus reporting off.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::Show;
use crossterm::event::{DisableFocusChange, DisableMouseCapture, EnableFocusChange};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

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
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
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
