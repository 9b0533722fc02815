//! `comfytop --demo` in real terminals on a virtual X display (Xvfb): kitty and xterm in its
//! VT340 (sixel) mode. A screenshot of the display must show an image in the preview pane, not
//! the rows of empty boxes an old kitty draws for placements it does not understand.
//!
//! Needs `Xvfb`, `kitty`, `xterm` and ImageMagick's `import` (`.ci/run` installs them where
//! apt-get is there); without them each test says what is missing and passes without running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use image::RgbImage;

/// How long a terminal has to show a preview: the demo queues its first prompt after 2 s, and
/// kitty's software OpenGL starts slowly on a busy machine.
const PREVIEW_WITHIN: Duration = Duration::from_secs(50);
/// Between two screenshots.
const SHOT_EVERY: Duration = Duration::from_secs(3);
/// The terminal window, in pixels (Xvfb's screen is this size; no window manager).
const SCREEN: (u32, u32) = (1280, 800);

/// A program needed here that is not installed, if any.
fn missing_tool(tools: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    tools
        .iter()
        .find(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .map(|tool| (*tool).to_string())
}

/// A child process killed (with its process group) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a free display; returns it and the display's name (`:N`).
fn start_xvfb() -> (Running, String) {
    use std::io::{BufRead as _, BufReader};
    let screen = format!("{}x{}x24", SCREEN.0, SCREEN.1);
    // `-displayfd 1`: Xvfb picks a free display and writes its number on stdout.
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-nolisten",
            "tcp",
            "-screen",
            "0",
            &screen,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb starts");
    let stdout = child.stdout.take().expect("Xvfb's stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("Xvfb says its display");
    let display = format!(":{}", line.trim());
    assert!(display.len() > 1, "Xvfb gave no display number");
    (Running(child), display)
}

/// A screenshot of the whole display, or `None` if `import` failed.
fn screenshot(display: &str, path: &Path) -> Option<RgbImage> {
    let status = Command::new("import")
        .args(["-display", display, "-window", "root"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    image::open(path).ok().map(|i| i.into_rgb8())
}

/// Colours (4 bits a channel) that cover at least 16 pixels in the given columns: an image has
/// many, text in a few colours (edges smoothed included) has few, empty boxes fewer still.
fn colour_count(shot: &RgbImage, columns: std::ops::Range<u32>) -> usize {
    let mut counts = std::collections::HashMap::<[u8; 3], u32>::new();
    for (x, _, pixel) in shot.enumerate_pixels() {
        if columns.contains(&x) {
            let key = pixel.0.map(|c| c >> 4);
            *counts.entry(key).or_default() += 1;
        }
    }
    counts.values().filter(|&&n| n >= 16).count()
}

/// Whether anything but the background was drawn (a terminal that drew nothing at all).
fn drew_anything(shot: &RgbImage) -> bool {
    let first = shot.get_pixel(0, 0);
    shot.pixels().any(|p| p != first)
}

fn shot_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("comfytop-{name}-{}.png", std::process::id()))
}

/// Runs `terminal` (its command line, ending with the program to run) on a fresh display and
/// waits for a preview image in the right half of the screen, where the preview pane is.
fn preview_shows_an_image(name: &str, terminal: &[&str], env: &[(&str, &str)]) {
    // One terminal at a time: two X servers, two demos and two terminals at once on a small
    // machine can starve the one being watched past the deadline.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let needed = ["Xvfb", "import", terminal[0]];
    if let Some(tool) = missing_tool(&needed) {
        eprintln!(
            "skipped: `{tool}` is not installed (apt-get install xvfb kitty xterm imagemagick)"
        );
        return;
    }
    let (_xvfb, display) = start_xvfb();
    let comfytop = env!("CARGO_BIN_EXE_comfytop");
    let log = shot_path(&format!("{name}-log")).with_extension("log");
    let mut command = Command::new(terminal[0]);
    command
        .args(&terminal[1..])
        .args([comfytop, "--demo", "--log"])
        .arg(&log)
        .env("DISPLAY", &display)
        .env_remove("TMUX")
        .env_remove("COMFYUI_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let _terminal = Running(command.spawn().expect("the terminal starts"));

    let path = shot_path(name);
    let start = Instant::now();
    let (width, _) = SCREEN;
    let mut last = None;
    let mut drawn = false;
    while start.elapsed() < PREVIEW_WITHIN {
        std::thread::sleep(SHOT_EVERY);
        let Some(shot) = screenshot(&display, &path) else {
            continue;
        };
        drawn |= drew_anything(&shot);
        // The terminal window starts at the top left; the dashboard's right half holds the
        // preview pane, the left half the queue (text only).
        let window_width = shot.width().min(width);
        let right = colour_count(&shot, window_width / 2..window_width);
        let left = colour_count(&shot, 0..window_width / 2);
        last = Some((left, right));
        if right >= 48 && right >= 2 * left {
            return;
        }
    }
    if !drawn {
        eprintln!(
            "skipped: {name} drew nothing on the virtual display in {PREVIEW_WITHIN:?} (no usable OpenGL?)"
        );
        return;
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    panic!(
        "no preview image in {name} within {PREVIEW_WITHIN:?}: colours (left, right) {last:?}; \
         last screenshot {}; comfytop's log:\n{logged}",
        path.display()
    );
}

#[test]
fn kitty_shows_the_preview_as_an_image() {
    // kitty needs OpenGL 3.3: Mesa's software renderer provides it on a virtual display.
    preview_shows_an_image(
        "kitty",
        &[
            "kitty",
            "--config",
            "NONE",
            "-o",
            "font_size=9",
            "-o",
            "remember_window_size=no",
            "-o",
            "initial_window_width=1280",
            "-o",
            "initial_window_height=800",
        ],
        &[("LIBGL_ALWAYS_SOFTWARE", "1")],
    );
}

#[test]
fn xterm_vt340_shows_the_preview_as_an_image() {
    preview_shows_an_image(
        "xterm",
        &[
            "xterm",
            "-ti",
            "vt340",
            "-xrm",
            "XTerm*numColorRegisters: 256",
            "-fa",
            "DejaVu Sans Mono",
            "-fs",
            "9",
            "-geometry",
            "160x48+0+0",
            "-e",
        ],
        &[],
    );
}
