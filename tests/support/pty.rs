//! The real `comfytop` binary in a pseudo-terminal, its screen read through a terminal emulator.

use std::io::Write;
use std::os::fd::{AsFd as _, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, PtySize, native_pty_system};

type Writer = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

/// How the emulated terminal answers the program's queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// Cursor position and status requests, as every terminal does.
    Status,
    /// None at all: a terminal that never answers (tmux with no outer terminal attached).
    Silent,
}

pub struct PtyApp {
    child: Box<dyn Child + Send + Sync>,
    writer: Writer,
    parser: Arc<Mutex<vt100::Parser>>,
    /// Every byte the program wrote, for failure messages.
    raw: Arc<Mutex<Vec<u8>>>,
    stop_reading: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    // Kept open so the reader thread sees the program's output until it exits.
    master: Option<Box<dyn portable_pty::MasterPty + Send>>,
}

impl PtyApp {
    /// Starts the binary with `args` in a `cols`x`rows` terminal.
    pub fn spawn(args: &[&str], cols: u16, rows: u16) -> Self {
        Self::spawn_answering(args, cols, rows, Answers::Status)
    }

    /// The dashboard on `url` at 120x40 without images, once it says it is connected.
    pub fn connected_dashboard(url: &str) -> Self {
        let app = Self::spawn(&[url, "--image-protocol", "none"], 120, 40);
        app.wait_for("connected", Duration::from_secs(20), |s| {
            s.contains("● connected")
        });
        app
    }

    /// Like [`PtyApp::spawn`], in a terminal that answers as `answers` says.
    pub fn spawn_answering(args: &[&str], cols: u16, rows: u16, answers: Answers) -> Self {
        Self::spawn_with(args, &[], cols, rows, answers)
    }

    /// Like [`PtyApp::spawn`], with `env` set for the program.
    pub fn spawn_with(
        args: &[&str],
        env: &[(&str, &str)],
        cols: u16,
        rows: u16,
        answers: Answers,
    ) -> Self {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_comfytop"));
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.env_remove("COMFYUI_URL");
        command.env_remove("COMFYUI_HEADERS");
        command.env_remove("COMFYTOP_CONFIG");
        command.env_remove("TMUX");
        command.env("XDG_CONFIG_HOME", super::NO_CONFIG_HOME);
        command.env("COMFYTOP_STATE_DIR", super::STATE_DIR);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = pair.slave.spawn_command(command).unwrap();
        drop(pair.slave);
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(size(rows), size(cols), 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        // A reader of our own on a copy of the master's descriptor, which it closes when told
        // to stop: `hang_up` needs every copy closed.
        let raw_fd = pair.master.as_raw_fd().unwrap();
        // SAFETY: the master is open (owned by `pair`) for the duration of the dup.
        let master_fd =
            rustix::io::fcntl_dupfd_cloexec(unsafe { BorrowedFd::borrow_raw(raw_fd) }, 0).unwrap();
        let writer: Writer = Arc::new(Mutex::new(Some(pair.master.take_writer().unwrap())));
        let stop_reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let parser = parser.clone();
            let raw = raw.clone();
            let writer = writer.clone();
            let stop = stop_reading.clone();
            std::thread::spawn(move || {
                use rustix::event::{PollFd, PollFlags, Timespec, poll};
                let mut buf = [0u8; 8192];
                let tick = Timespec::try_from(Duration::from_millis(20)).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let mut fds = [PollFd::new(&master_fd, PollFlags::IN)];
                    match poll(&mut fds, Some(&tick)) {
                        Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    let n = match rustix::io::read(master_fd.as_fd(), &mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                        // EIO: the program and everything it started closed the terminal.
                        Err(_) => break,
                    };
                    let bytes = &buf[..n];
                    // Answer cursor position and status queries, as every terminal does. The
                    // graphics query at startup reads until the status answer.
                    if answers == Answers::Status {
                        let mut writer = writer.lock().unwrap();
                        if let Some(writer) = writer.as_mut() {
                            if bytes.windows(4).any(|w| w == b"\x1b[6n") {
                                let _ = writer.write_all(b"\x1b[1;1R");
                            }
                            if bytes.windows(4).any(|w| w == b"\x1b[5n") {
                                let _ = writer.write_all(b"\x1b[0n");
                            }
                            let _ = writer.flush();
                        }
                    }
                    parser.lock().unwrap().process(bytes);
                    raw.lock().unwrap().extend_from_slice(bytes);
                }
            })
        };
        Self {
            child,
            writer,
            parser,
            raw,
            stop_reading,
            reader: Some(reader),
            master: Some(pair.master),
        }
    }

    /// Closes the terminal, as a killed tmux session or an ssh drop does: every copy of the
    /// master side is closed, so the program's side hangs up.
    pub fn hang_up(&mut self) {
        self.stop_reading.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.writer.lock().unwrap().take();
        self.master.take();
    }

    /// Resizes the terminal to `cols`x`rows`, as a user dragging the window does: the program
    /// gets SIGWINCH, and the emulated screen takes the new size (cut or blank-filled).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let size = |n: u16| std::num::NonZeroU16::new(n).unwrap();
        self.parser.lock().unwrap().set_size(size(rows), size(cols));
        self.master
            .as_ref()
            .expect("the terminal is open")
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
    }

    /// Whether the program is gone within `limit`.
    pub fn gone_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            if start.elapsed() > limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The screen's text now.
    pub fn screen(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Whether the cell at (`row`, `col`) (0-based) is drawn in reverse video.
    pub fn inverse_at(&self, row: u16, col: u16) -> bool {
        self.parser
            .lock()
            .unwrap()
            .screen()
            .cell(row, col)
            .is_some_and(|c| c.inverse())
    }

    /// Cells drawn as a half block (▀ or ▄) in a colour of their own, in the columns from
    /// `from_col` on.
    pub fn coloured_half_blocks(&self, from_col: u16) -> usize {
        let parser = self.parser.lock().unwrap();
        let screen = parser.screen();
        let (rows, cols) = screen.size();
        let mut count = 0;
        for row in 0..rows.get() {
            for col in from_col..cols.get() {
                let Some(cell) = screen.cell(row, col) else {
                    continue;
                };
                let half = matches!(cell.contents(), "▀" | "▄");
                let coloured = !matches!(cell.fgcolor(), vt100::Color::Default)
                    || !matches!(cell.bgcolor(), vt100::Color::Default);
                if half && coloured {
                    count += 1;
                }
            }
        }
        count
    }

    pub fn alternate_screen(&self) -> bool {
        self.parser.lock().unwrap().screen().alternate_screen()
    }

    pub fn cursor_hidden(&self) -> bool {
        self.parser.lock().unwrap().screen().hide_cursor()
    }

    pub fn mouse_captured(&self) -> bool {
        self.parser.lock().unwrap().screen().mouse_protocol_mode() != vt100::MouseProtocolMode::None
    }

    /// Waits until `check` holds for the screen, or panics with the screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if start.elapsed() > limit {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let mut writer = self.writer.lock().unwrap();
        let writer = writer.as_mut().expect("the terminal is open");
        writer.write_all(bytes).unwrap();
        writer.flush().unwrap();
    }

    /// Waits for the program to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> u32 {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take in the last bytes (the terminal restore).
                std::thread::sleep(Duration::from_millis(200));
                return status.exit_code();
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the program did not exit; screen:\n{}", self.screen());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn process_id(&self) -> Option<u32> {
        self.child.process_id()
    }

    /// What the program wrote, as lossy text (for failure messages).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }

    /// Every byte the program wrote so far, exactly.
    pub fn raw_output(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }
}

impl Drop for PtyApp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
    }
}
