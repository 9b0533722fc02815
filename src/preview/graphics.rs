//! Which graphics protocol draws the previews, and encoding an image for it at a pane's size.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use fast_image_resize::{FilterType as ResizeFilter, ResizeAlg, ResizeOptions, Resizer};
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui_image::FontSize;
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Capability, Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::halfblocks::Halfblocks;
use ratatui_image::protocol::iterm2::Iterm2;
use ratatui_image::protocol::kitty::Kitty;
use ratatui_image::protocol::sixel::Sixel;
use tokio::sync::mpsc;

/// `--image-protocol`: how previews are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ImageProtocol {
    /// Ask the terminal; unicode half-blocks when it does not answer.
    #[default]
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    /// Unicode half-blocks in 24-bit colour: any terminal, plain ssh.
    Halfblocks,
    /// No previews.
    None,
}

/// Half-block colours are rounded to this step, so that a pixel that barely changed between two
/// preview steps keeps its cell, and the terminal diff does not resend it.
const HALFBLOCK_COLOUR_STEP: u8 = 8;
/// A half-block pixel keeps its previous colour until a channel moves by more than this.
const HALFBLOCK_STEADY: u8 = 24;

/// What a stream of kitty previews may send, in bytes on the wire per second. Kitty scales an
/// image to the cells it is placed in, so a frame is sent small, never larger than this allows
/// at the preview rate (RGBA, base64: 16 bytes for 3 pixels, before any compression), and the
/// terminal fills the pane with it. Over ssh a live preview then costs what a link can spare.
pub const KITTY_BYTES_PER_SECOND: u32 = 128 * 1024;
/// The most pixels a kitty frame is sent with, at any rate: a 256×256 preview.
const KITTY_FRAME_PIXELS_MAX: u32 = 256 * 256;
/// The text in ratatui-image's kitty transmission after which the placement's cells go.
const KITTY_VIRTUAL_PLACEMENT: &str = "a=T,U=1,";

/// Encodes images for one terminal: the protocol, the size of a cell in pixels, and whether the
/// output passes through tmux. Cheap to clone and `Send`, so a worker thread can own one.
#[derive(Debug, Clone)]
pub struct Renderer {
    protocol: ProtocolType,
    font_size: FontSize,
    tmux: bool,
    kitty_compress: bool,
    /// One kitty image id for the whole run: each new frame replaces the last one in the
    /// terminal instead of piling up in its memory.
    kitty_id: u32,
    /// The most pixels a kitty frame of a stream is sent with (see [`KITTY_BYTES_PER_SECOND`]).
    kitty_frame_pixels: u32,
}

impl Renderer {
    /// Starts settling the renderer for `choice`. `None` and `Halfblocks` need no terminal;
    /// otherwise the terminal is asked (kitty, sixel, its name and version, the cell size; tmux
    /// passthrough where ratatui-image supports it) and the answer comes later, from a thread,
    /// while the dashboard draws and takes keys. An explicit protocol still asks for the cell
    /// size. Stdio that is not a terminal gets half-blocks (or the explicit protocol) at once.
    ///
    /// Call it once the first frame is drawn (the question goes out on stdout then), and read
    /// no terminal input until [`QueryNews::Settled`] arrives: the answer comes on stdin.
    pub fn detect(choice: ImageProtocol) -> Detection {
        match choice {
            ImageProtocol::None => return Detection::Known(None),
            ImageProtocol::Halfblocks => {
                return Detection::Known(Some(Self::from_picker(&Picker::halfblocks())));
            }
            ImageProtocol::Auto
            | ImageProtocol::Kitty
            | ImageProtocol::Sixel
            | ImageProtocol::Iterm2 => {}
        }
        let env = TerminalEnv::read();
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if !tty {
            return Detection::Known(Some(settle(choice, None, &env)));
        }
        let asked = {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(query_bytes(&env).as_bytes())
                .and_then(|()| stdout.flush())
        };
        if asked.is_err() {
            return Detection::Known(Some(settle(choice, None, &env)));
        }
        let (news, receiver) = mpsc::unbounded_channel();
        let reader = std::thread::Builder::new()
            .name("comfytop-query".into())
            .spawn(move || read_answers(choice, &env, &news));
        match reader {
            Ok(_) => Detection::Asking(receiver),
            Err(_) => Detection::Known(Some(settle(choice, None, &TerminalEnv::default()))),
        }
    }

    pub fn from_picker(picker: &Picker) -> Self {
        Self {
            protocol: picker.protocol_type(),
            font_size: picker.font_size(),
            tmux: picker.tmux_detected(),
            kitty_compress: picker
                .capabilities()
                .contains(&Capability::KittyCompression),
            kitty_id: rand::random::<u32>().max(1),
            kitty_frame_pixels: KITTY_FRAME_PIXELS_MAX,
        }
    }

    /// Sizes kitty frames for a stream of `fps` previews a second.
    #[must_use]
    pub fn for_preview_rate(mut self, fps: u32) -> Self {
        let per_frame = KITTY_BYTES_PER_SECOND / fps.max(1);
        self.kitty_frame_pixels = (per_frame / 16 * 3).min(KITTY_FRAME_PIXELS_MAX);
        self
    }

    /// A renderer that needs no terminal: a given protocol and cell size, no tmux. For tests and
    /// benchmarks.
    pub fn fixed(protocol: ProtocolType, font_size: FontSize) -> Self {
        Self {
            protocol,
            font_size,
            tmux: false,
            kitty_compress: false,
            kitty_id: 1,
            kitty_frame_pixels: KITTY_FRAME_PIXELS_MAX,
        }
    }

    pub fn protocol(&self) -> ProtocolType {
        self.protocol
    }

    /// The protocol's name as `--image-protocol` spells it.
    pub fn name(&self) -> &'static str {
        match self.protocol {
            ProtocolType::Halfblocks => "halfblocks",
            ProtocolType::Sixel => "sixel",
            ProtocolType::Kitty => "kitty",
            ProtocolType::Iterm2 => "iterm2",
        }
    }

    pub fn font_size(&self) -> FontSize {
        self.font_size
    }

    pub fn in_tmux(&self) -> bool {
        self.tmux
    }

    /// Pixels per cell as this protocol draws them: a half-block cell holds two square pixels,
    /// one above the other.
    fn cell_pixels(&self) -> (u32, u32) {
        match self.protocol {
            ProtocolType::Halfblocks => (1, 2),
            _ => (
                u32::from(self.font_size.width.max(1)),
                u32::from(self.font_size.height.max(1)),
            ),
        }
    }

    /// Scales `image` to fit `area` (in cells), keeping its aspect ratio, and encodes it. The
    /// result is at most `area` large; an empty area or a failed encoding is an error message.
    pub fn encode(&self, image: &DynamicImage, area: Size) -> Result<Protocol, String> {
        self.encode_next(image, area, &mut None)
    }

    /// Like [`Renderer::encode`], for the next frame of a stream. With half-blocks, a pixel whose
    /// colour moved less than a small threshold since `last` (the previous frame's pixels, updated
    /// here) keeps its old colour exactly: its cell stays the same and the terminal diff does not
    /// resend it. Over ssh this is most of the bytes of a converging preview.
    pub fn encode_next(
        &self,
        image: &DynamicImage,
        area: Size,
        last: &mut Option<RgbImage>,
    ) -> Result<Protocol, String> {
        if area.width == 0 || area.height == 0 {
            return Err("the pane has no room".to_string());
        }
        let (cell_w, cell_h) = self.cell_pixels();
        let box_w = u32::from(area.width) * cell_w;
        let box_h = u32::from(area.height) * cell_h;
        let (mut width, mut height) = fit(image.width(), image.height(), box_w, box_h);
        if self.protocol == ProtocolType::Halfblocks {
            // Whole cells: an odd height would be stretched (and its colours blended) later.
            height = (height.div_ceil(2) * 2).min(box_h);
            width = width.min(box_w);
        }
        let cells = Size::new(
            cells_for(width, cell_w, area.width),
            cells_for(height, cell_h, area.height),
        );
        if self.protocol == ProtocolType::Kitty {
            // Sent no larger than the image, nor than the stream allows; the placement gives
            // the cells to fill (see `fill_kitty_cells`).
            (width, height) = fit(
                image.width(),
                image.height(),
                width.min(image.width()),
                height.min(image.height()),
            );
            let pixels = f64::from(width) * f64::from(height);
            let allowed = f64::from(self.kitty_frame_pixels.max(1));
            if pixels > allowed {
                let shrink = (allowed / pixels).sqrt();
                let side = |v: u32| ((f64::from(v) * shrink).floor() as u32).max(1);
                (width, height) = (side(width), side(height));
            }
        }
        // Downscaled before encoding: fewer pixels, fewer bytes.
        let scaled = if image.width() > width || image.height() > height {
            shrink(image, width, height)
        } else {
            image.resize_exact(width, height, FilterType::Nearest)
        };
        let encoded = match self.protocol {
            ProtocolType::Halfblocks => {
                let pixels = steady_colours(scaled.into_rgb8(), last.as_ref());
                *last = Some(pixels.clone());
                Halfblocks::new(DynamicImage::ImageRgb8(pixels), cells).map(Protocol::Halfblocks)
            }
            ProtocolType::Sixel => Sixel::new(scaled, cells, self.tmux).map(Protocol::Sixel),
            ProtocolType::Kitty => {
                Kitty::new(scaled, cells, self.kitty_id, self.tmux, self.kitty_compress)
                    .map(Protocol::Kitty)
            }
            ProtocolType::Iterm2 => Iterm2::new(scaled, cells, self.tmux).map(Protocol::ITerm2),
        };
        encoded.map_err(|e| format!("cannot encode for {}: {e}", self.name()))
    }
}

/// Tells kitty the cells a preview fills, so that it scales the image sent (smaller than the
/// pane: see [`KITTY_BYTES_PER_SECOND`]) to them. ratatui-image's transmission, in the first
/// cell of `area` where a kitty image was just rendered, names the image's pixel size only, and
/// kitty would show it at that size. Nothing happens when the cell holds no transmission (the
/// image was sent before).
pub fn fill_kitty_cells(buf: &mut Buffer, area: Rect) {
    let Some(cell) = buf.cell_mut(area.as_position()) else {
        return;
    };
    let symbol = cell.symbol();
    let Some(at) = symbol.find(KITTY_VIRTUAL_PLACEMENT) else {
        return;
    };
    let (head, tail) = symbol.split_at(at + KITTY_VIRTUAL_PLACEMENT.len());
    let filled = format!("{head}c={},r={},{tail}", area.width, area.height);
    cell.set_symbol(&filled);
}

/// `image` shrunk to `width`×`height`, each pixel the average of those it covers: as good as a
/// filter when shrinking. fast_image_resize does it in SIMD, a tenth of the time `image` takes.
fn shrink(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    let mut shrunk = DynamicImage::new(width, height, image.color());
    let average = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(ResizeFilter::Box));
    match Resizer::new().resize(image, &mut shrunk, &average) {
        Ok(()) => shrunk,
        // A pixel type it does not take (none that a preview decodes to).
        Err(_) => image.thumbnail_exact(width, height),
    }
}

/// The largest size with the aspect ratio of `width`×`height` that fits `box_w`×`box_h`, scaling
/// up or down.
fn fit(width: u32, height: u32, box_w: u32, box_h: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let ratio = (f64::from(box_w) / w).min(f64::from(box_h) / h);
    let scaled = |v: f64, max: u32| ((v * ratio).round() as u32).clamp(1, max.max(1));
    (scaled(w, box_w), scaled(h, box_h))
}

fn cells_for(pixels: u32, per_cell: u32, max: u16) -> u16 {
    let cells = pixels.div_ceil(per_cell).max(1);
    u16::try_from(cells).unwrap_or(u16::MAX).min(max)
}

/// Rounds every channel to a multiple of [`HALFBLOCK_COLOUR_STEP`], then keeps the colour of
/// `last` where no channel moved more than [`HALFBLOCK_STEADY`].
fn steady_colours(mut pixels: RgbImage, last: Option<&RgbImage>) -> RgbImage {
    let step = u16::from(HALFBLOCK_COLOUR_STEP);
    let round = |c: u8| (((u16::from(c) + step / 2) / step) * step).min(255) as u8;
    for pixel in pixels.pixels_mut() {
        for channel in &mut pixel.0 {
            *channel = round(*channel);
        }
    }
    if let Some(last) = last.filter(|l| l.dimensions() == pixels.dimensions()) {
        for (pixel, old) in pixels.pixels_mut().zip(last.pixels()) {
            let moved = pixel
                .0
                .iter()
                .zip(old.0)
                .any(|(&a, b)| a.abs_diff(b) > HALFBLOCK_STEADY);
            if !moved {
                *pixel = *old;
            }
        }
    }
    pixels
}

/// How long the terminal has to answer. Nothing waits on it but the previews' protocol: the
/// dashboard draws and takes keys meanwhile.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A lone Esc in the input is the Esc key once nothing follows it this soon.
const ESC_ALONE_AFTER: Duration = Duration::from_millis(50);
/// A string answer (kitty's, XTVERSION's) longer than this is garbage, not an answer.
const LONGEST_ANSWER: usize = 4096;
/// kitty draws ratatui-image's unicode-placeholder placements (`U=1`) from this version on;
/// older ones reject every such command ("invalid key character: 0x55") and show empty boxes.
const KITTY_PLACEHOLDERS_SINCE: (u32, u32, u32) = (0, 28, 0);

const ESC: u8 = 0x1b;

/// Where the renderer comes from: known at once, or from the terminal's answer.
#[derive(Debug)]
pub enum Detection {
    /// Known without asking (`none`, `halfblocks`, or stdio is not a terminal).
    Known(Option<Renderer>),
    /// The question is out: its reader thread sends [`QueryNews`].
    Asking(mpsc::UnboundedReceiver<QueryNews>),
}

/// What the graphics query's reader thread reports.
#[derive(Debug)]
pub enum QueryNews {
    /// Bytes the user typed while the query held stdin: input for the dashboard, in order.
    Typed(Vec<u8>),
    /// The query is over (answered, timed out, or the terminal went away); the last message.
    Settled(Renderer),
}

/// What the environment says about the terminal before it is asked.
#[derive(Debug, Clone, Default)]
struct TerminalEnv {
    tmux: bool,
    /// A protocol hinted at by environment variables (iTerm2-like terminals).
    hint: Option<ProtocolType>,
    /// Terminals whose kitty and sixel support ratatui-image knows to be broken (WezTerm,
    /// Konsole): neither is asked for.
    skip_kitty_and_sixel: bool,
}

impl TerminalEnv {
    fn read() -> Self {
        // The only public way to ratatui-image's hints from the environment: tmux (where it
        // also turns passthrough on) and iTerm2-like terminals. The font size given is unused.
        #[allow(deprecated)]
        let picker = Picker::from_fontsize(FontSize::new(10, 20));
        let hint = Some(picker.protocol_type()).filter(|p| *p != ProtocolType::Halfblocks);
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
        Self {
            tmux: picker.tmux_detected(),
            hint,
            skip_kitty_and_sixel: set("WEZTERM_EXECUTABLE") || set("KONSOLE_VERSION"),
        }
    }
}

/// The question: XTVERSION (the terminal's name and version), then ratatui-image's query
/// (kitty graphics and its compression, device attributes for sixel, the cell size), which
/// ends with a status request that every terminal answers, last.
fn query_bytes(env: &TerminalEnv) -> String {
    let options = QueryStdioOptions {
        // Compressed kitty transfers: previews are small and encoded off the UI loop, so the
        // deflate costs little there and saves most of the bytes over ssh.
        kitty_compression: true,
        blacklist_protocols: if env.skip_kitty_and_sixel {
            vec![ProtocolType::Kitty, ProtocolType::Sixel]
        } else {
            Vec::new()
        },
        ..QueryStdioOptions::default()
    };
    let (start, escape, end) = Parser::tmux_start_escape_end(env.tmux);
    format!(
        "{start}{escape}[>0q{end}{}",
        Parser::query(env.tmux, options)
    )
}

/// What the terminal said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalAnswers {
    pub kitty: bool,
    pub kitty_compression: bool,
    pub sixel: bool,
    pub cell_size: Option<(u16, u16)>,
    /// XTVERSION's answer, e.g. `kitty(0.26.5)`.
    pub version: Option<String>,
}

/// Splits the terminal's input into its answers to the query and what the user typed.
#[derive(Default)]
pub struct AnswerReader {
    pending: Vec<u8>,
    pub answers: TerminalAnswers,
    /// The status answer came: the terminal has answered everything before it.
    pub done: bool,
}

impl AnswerReader {
    /// Takes in `bytes` read from the terminal and returns what of them the user typed.
    /// Bytes of a sequence not complete yet wait for the next call.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(bytes);
        let mut typed = Vec::new();
        let mut at = 0;
        while !self.done {
            let Some((len, kind)) = next_unit(&self.pending[at..]) else {
                break;
            };
            let unit = &self.pending[at..at + len];
            match kind {
                Unit::Answer => take_answer(unit, &mut self.answers, &mut self.done),
                Unit::Typed => typed.extend_from_slice(unit),
            }
            at += len;
        }
        self.pending.drain(..at);
        if self.done {
            // Typed after the last answer.
            typed.append(&mut self.pending);
        }
        typed
    }

    /// Whether the input ends with a lone Esc: the Esc key, unless more follows at once.
    fn lone_escape(&self) -> bool {
        self.pending == [ESC]
    }

    /// What is left when no more answers will come: typed, unless it is the start of one.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        let answer_start = matches!(rest.as_slice(), [ESC, b'_' | b'P' | b']', ..]);
        if answer_start { Vec::new() } else { rest }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Answer,
    Typed,
}

/// The length and kind of the first complete unit of terminal input in `buf` (an escape
/// sequence, or one character), or `None` when more bytes are needed to tell.
fn next_unit(buf: &[u8]) -> Option<(usize, Unit)> {
    let first = *buf.first()?;
    if first != ESC {
        let len = utf8_len(first);
        return (buf.len() >= len).then_some((len, Unit::Typed));
    }
    let second = *buf.get(1)?;
    match second {
        b'[' => {
            for (i, &byte) in buf.iter().enumerate().skip(2) {
                match byte {
                    0x20..=0x3f => {}
                    0x40..=0x7e => {
                        // Device attributes (`CSI ? … c`), the cell size (`CSI 6 ; h ; w t`)
                        // and the status (`CSI 0 n`) answer the query; the rest are keys.
                        let answer = (byte == b'c' && buf.get(2) == Some(&b'?'))
                            || byte == b't'
                            || byte == b'n';
                        let kind = if answer { Unit::Answer } else { Unit::Typed };
                        return Some((i + 1, kind));
                    }
                    // Not a sequence after all: the Esc key, then whatever this is.
                    _ => return Some((1, Unit::Typed)),
                }
            }
            None
        }
        // APC (kitty's answer), DCS (XTVERSION's), OSC: strings up to ST or BEL.
        b'_' | b'P' | b']' => {
            let end = buf
                .windows(2)
                .position(|w| w == [ESC, b'\\'])
                .map(|i| i + 2)
                .or_else(|| buf.iter().position(|&b| b == 0x07).map(|i| i + 1));
            match end {
                Some(end) => Some((end, Unit::Answer)),
                None if buf.len() > LONGEST_ANSWER => Some((buf.len(), Unit::Answer)),
                None => None,
            }
        }
        // SS3: F1–F4 and arrows in application mode.
        b'O' => (buf.len() >= 3).then_some((3, Unit::Typed)),
        // Alt and a character.
        _ => {
            let len = 1 + utf8_len(second);
            (buf.len() >= len).then_some((len, Unit::Typed))
        }
    }
}

/// The length of the UTF-8 character that starts with `byte` (1 for a stray byte).
fn utf8_len(byte: u8) -> usize {
    match byte {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn take_answer(unit: &[u8], answers: &mut TerminalAnswers, done: &mut bool) {
    if let Some(version) = unit
        .strip_prefix(b"\x1bP>|")
        .map(|rest| rest.strip_suffix(b"\x1b\\").unwrap_or(rest))
    {
        answers.version = Some(String::from_utf8_lossy(version).into_owned());
        return;
    }
    let mut parser = Parser::new();
    for &byte in unit {
        for response in parser.push(char::from(byte)) {
            match response {
                Response::Kitty => answers.kitty = true,
                Response::KittyCompression => answers.kitty_compression = true,
                Response::Sixel => answers.sixel = true,
                Response::CellSize(Some(size)) => answers.cell_size = Some(size),
                Response::Status => *done = true,
                _ => {}
            }
        }
    }
}

/// Whether a terminal that says it speaks kitty graphics draws ratatui-image's placements:
/// kitty before 0.28 does not. Other terminals, and a version that does not parse, are trusted.
pub fn draws_kitty_placeholders(version: Option<&str>) -> bool {
    let Some(numbers) = version
        .and_then(|v| v.strip_prefix("kitty("))
        .and_then(|v| v.strip_suffix(')'))
    else {
        return true;
    };
    let mut parts = numbers.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), patch) => {
            let patch = patch.and_then(Result::ok).unwrap_or(0);
            (major, minor, patch) >= KITTY_PLACEHOLDERS_SINCE
        }
        _ => true,
    }
}

/// The renderer for `choice` given the terminal's answers (`None`: it did not answer).
fn settle(choice: ImageProtocol, answers: Option<&TerminalAnswers>, env: &TerminalEnv) -> Renderer {
    // Without a cell size from the terminal, the window's pixel size over its cells.
    let font_size = answers
        .and_then(|a| a.cell_size)
        .map(FontSize::from)
        .or_else(|| {
            let window = crossterm::terminal::window_size().ok()?;
            (window.width > 0 && window.height > 0 && window.columns > 0 && window.rows > 0)
                .then(|| FontSize::new(window.width / window.columns, window.height / window.rows))
        });
    let answered = answers.and_then(|a| {
        if a.kitty && draws_kitty_placeholders(a.version.as_deref()) {
            Some(ProtocolType::Kitty)
        } else if a.sixel {
            Some(ProtocolType::Sixel)
        } else {
            None
        }
    });
    let protocol = match choice {
        ImageProtocol::Kitty => ProtocolType::Kitty,
        ImageProtocol::Sixel => ProtocolType::Sixel,
        ImageProtocol::Iterm2 => ProtocolType::Iterm2,
        // Pixel protocols need the cell size to draw at the right scale.
        ImageProtocol::Auto | ImageProtocol::Halfblocks | ImageProtocol::None => font_size
            .and(answered.or(env.hint))
            .unwrap_or(ProtocolType::Halfblocks),
    };
    Renderer {
        protocol,
        font_size: font_size.unwrap_or(FontSize::new(10, 20)),
        tmux: env.tmux,
        kitty_compress: answers.is_some_and(|a| a.kitty_compression),
        kitty_id: rand::random::<u32>().max(1),
        kitty_frame_pixels: KITTY_FRAME_PIXELS_MAX,
    }
}

/// Whether stdin has input within `wait`: `Some(true)` yes, `Some(false)` not yet, `None` the
/// terminal is gone (hung up, closed, or an error).
fn wait_for_input(stdin: &std::io::Stdin, wait: Duration) -> Option<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec::try_from(wait).ok();
    let mut fds = [PollFd::new(stdin, PollFlags::IN)];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(0) => Some(false),
        Ok(_) if fds[0].revents().contains(PollFlags::IN) => Some(true),
        Ok(_) => None,
        Err(rustix::io::Errno::INTR) => Some(false),
        Err(_) => None,
    }
}

/// The reader thread: reads stdin (never blocking past the deadline, and ending on EOF, an
/// error or a hang-up) until the status answer, passing on what the user typed meanwhile.
fn read_answers(choice: ImageProtocol, env: &TerminalEnv, news: &mpsc::UnboundedSender<QueryNews>) {
    let stdin = std::io::stdin();
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut reader = AnswerReader::default();
    let mut buf = [0u8; 1024];
    let send_typed = |typed: Vec<u8>| {
        if !typed.is_empty() {
            let _ = news.send(QueryNews::Typed(typed));
        }
    };
    while !reader.done {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = if reader.lone_escape() {
            left.min(ESC_ALONE_AFTER)
        } else {
            left
        };
        match wait_for_input(&stdin, wait) {
            Some(true) => {}
            Some(false) => {
                if reader.lone_escape() {
                    send_typed(reader.finish());
                }
                continue;
            }
            None => break,
        }
        match rustix::io::read(&stdin, &mut buf) {
            Ok(0) => break,
            Ok(read) => send_typed(reader.push(&buf[..read])),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => break,
        }
    }
    send_typed(reader.finish());
    let answers = reader.done.then_some(&reader.answers);
    tracing::info!(?answers, "the terminal's answer to the graphics query");
    let _ = news.send(QueryNews::Settled(settle(choice, answers, env)));
}
#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn image(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }))
    }

    #[test]
    fn halfblocks_fit_the_area_keeping_the_aspect_ratio() {
        let renderer = Renderer::fixed(ProtocolType::Halfblocks, FontSize::new(10, 20));
        // 512×512 in 40×30 cells = 40×60 half-block pixels: limited by the width, 40×40 → 40×20.
        let protocol = renderer
            .encode(&image(512, 512), Size::new(40, 30))
            .unwrap();
        assert_eq!(protocol.size(), Size::new(40, 20));
        // A wide image in a tall pane.
        let protocol = renderer.encode(&image(200, 50), Size::new(20, 30)).unwrap();
        assert_eq!(protocol.size(), Size::new(20, 3));
    }

    #[test]
    fn pixel_protocols_use_the_cell_size() {
        for protocol in [
            ProtocolType::Sixel,
            ProtocolType::Kitty,
            ProtocolType::Iterm2,
        ] {
            let renderer = Renderer::fixed(protocol, FontSize::new(10, 20));
            // 512×512 into 40×20 cells = 400×400 px: 400×400 → 40×20 cells.
            let encoded = renderer
                .encode(&image(512, 512), Size::new(40, 20))
                .unwrap();
            assert_eq!(encoded.size(), Size::new(40, 20), "{protocol:?}");
            // Small images are scaled up to the pane.
            let encoded = renderer.encode(&image(64, 64), Size::new(40, 20)).unwrap();
            assert_eq!(encoded.size(), Size::new(40, 20), "{protocol:?}");
        }
    }

    /// The transmission in the first cell of a kitty image rendered into `area`, after
    /// [`fill_kitty_cells`].
    fn kitty_transmission(protocol: &Protocol, area: Rect) -> String {
        let mut buf = Buffer::empty(area);
        ratatui::widgets::Widget::render(ratatui_image::Image::new(protocol), area, &mut buf);
        fill_kitty_cells(&mut buf, area);
        buf[(0, 0)].symbol().to_string()
    }

    #[test]
    fn kitty_streams_send_a_small_image_for_the_terminal_to_scale() {
        let fps = 4;
        let renderer =
            Renderer::fixed(ProtocolType::Kitty, FontSize::new(10, 20)).for_preview_rate(fps);
        let mut last = None;
        // A 512² preview in 40×20 cells of 10×20 px: the pane is 400×400 px.
        let protocol = renderer
            .encode_next(&image(512, 512), Size::new(40, 20), &mut last)
            .unwrap();
        assert_eq!(protocol.size(), Size::new(40, 20));
        let sent = kitty_transmission(&protocol, Rect::new(0, 0, 40, 20));
        // 128 KiB/s at 4 fps: 32 KiB of base64 a frame, 6,144 RGBA pixels: 78×78.
        assert!(sent.contains("a=T,U=1,c=40,r=20,"), "{}", &sent[..80]);
        assert!(sent.contains("s=78,v=78,"), "{}", &sent[..80]);
        assert!(
            sent.len() <= (KITTY_BYTES_PER_SECOND / fps) as usize + 1024,
            "{} bytes",
            sent.len()
        );
        // A small preview goes as it is, never scaled up: the terminal does that.
        let protocol = renderer
            .encode_next(&image(64, 32), Size::new(40, 20), &mut last)
            .unwrap();
        assert_eq!(protocol.size(), Size::new(40, 10));
        let sent = kitty_transmission(&protocol, Rect::new(0, 0, 40, 10));
        assert!(sent.contains("c=40,r=10,") && sent.contains("s=64,v=32,"));
        // Drawn again, the image is not sent again and the cell is left alone.
        let mut buf = Buffer::empty(Rect::new(0, 0, 40, 10));
        ratatui::widgets::Widget::render(ratatui_image::Image::new(&protocol), buf.area, &mut buf);
        fill_kitty_cells(&mut buf, Rect::new(0, 0, 40, 10));
        assert!(!buf[(0, 0)].symbol().contains("a=T"));
    }

    #[test]
    fn an_empty_area_is_an_error_not_a_panic() {
        let renderer = Renderer::fixed(ProtocolType::Sixel, FontSize::new(10, 20));
        assert!(renderer.encode(&image(8, 8), Size::new(0, 5)).is_err());
    }

    #[test]
    fn colours_are_rounded_and_small_moves_keep_the_last_colour() {
        let row = |values: [[u8; 3]; 3]| RgbImage::from_fn(3, 1, |x, _| Rgb(values[x as usize]));
        let first = steady_colours(row([[0, 254, 255], [3, 100, 100], [5, 200, 200]]), None);
        assert_eq!(first, row([[0, 255, 255], [0, 104, 104], [8, 200, 200]]));
        // Moves of 24 or less keep the old colour; a larger one takes the new.
        let next = steady_colours(
            row([[24, 232, 255], [0, 136, 104], [8, 200, 200]]),
            Some(&first),
        );
        assert_eq!(next, row([[0, 255, 255], [0, 136, 104], [8, 200, 200]]));
        // A frame of another size starts afresh.
        let other = steady_colours(RgbImage::from_pixel(2, 1, Rgb([16, 16, 16])), Some(&first));
        assert_eq!(other, RgbImage::from_pixel(2, 1, Rgb([16, 16, 16])));
    }

    #[test]
    fn halfblock_heights_are_whole_cells() {
        let renderer = Renderer::fixed(ProtocolType::Halfblocks, FontSize::new(10, 20));
        let mut last = None;
        // 100×33 into 50×20 cells (50×40 px): 50×17 rounds up to 50×18, 9 rows.
        let protocol = renderer
            .encode_next(&image(100, 33), Size::new(50, 20), &mut last)
            .unwrap();
        assert_eq!(protocol.size(), Size::new(50, 9));
        assert_eq!(last.map(|l| l.dimensions()), Some((50, 18)));
    }

    #[test]
    fn none_means_no_renderer_and_halfblocks_needs_no_terminal() {
        assert!(matches!(
            Renderer::detect(ImageProtocol::None),
            Detection::Known(None)
        ));
        let Detection::Known(Some(renderer)) = Renderer::detect(ImageProtocol::Halfblocks) else {
            panic!("half-blocks need no question");
        };
        assert_eq!(renderer.protocol(), ProtocolType::Halfblocks);
        assert_eq!(renderer.name(), "halfblocks");
    }

    /// kitty 0.26.5's answers to the query, as it sends them.
    const KITTY_0_26: &[u8] = b"\x1bP>|kitty(0.26.5)\x1b\\\x1b_Gi=31;OK\x1b\\\x1b_Gi=32;OK\x1b\\\x1b[?62;c\x1b[6;20;10t\x1b[0n";

    #[test]
    fn kitty_answers_are_read_and_keys_typed_among_them_are_kept_in_order() {
        let mut reader = AnswerReader::default();
        let mut typed = Vec::new();
        // The user types `j`, an arrow and `?` while the answers arrive, split anywhere.
        // Between two answers: a terminal writes each answer at once.
        let (head, tail) = KITTY_0_26.split_at(31);
        let stream = [b"j\x1b[".as_slice(), b"B", head, b"?", tail, b"q"].concat();
        for chunk in stream.chunks(3) {
            typed.extend(reader.push(chunk));
        }
        typed.extend(reader.finish());
        assert!(reader.done);
        assert_eq!(typed, b"j\x1b[B?q");
        assert_eq!(
            reader.answers,
            TerminalAnswers {
                kitty: true,
                kitty_compression: true,
                sixel: false,
                cell_size: Some((10, 20)),
                version: Some("kitty(0.26.5)".to_string()),
            }
        );
    }

    #[test]
    fn an_escape_sequence_cut_short_waits_for_the_rest() {
        let mut reader = AnswerReader::default();
        assert_eq!(reader.push(b"\x1b"), b"");
        assert!(reader.lone_escape());
        assert_eq!(reader.push(b"[6;2"), b"");
        assert_eq!(reader.push(b"0;10t\x1b_Gi=31;O"), b"");
        assert_eq!(reader.push(b"K\x1b\\x"), b"x");
        assert!(reader.answers.kitty);
        assert!(!reader.done);
        // A lone Esc that nothing follows is the key; a cut answer is dropped.
        reader.push(b"\x1b");
        assert_eq!(reader.finish(), b"\x1b");
        reader.push(b"\x1bP>|kit");
        assert_eq!(reader.finish(), b"");
    }

    #[test]
    fn kitty_before_0_28_gets_half_blocks_not_placeholder_boxes() {
        let env = TerminalEnv::default();
        let mut reader = AnswerReader::default();
        reader.push(KITTY_0_26);
        let old = settle(ImageProtocol::Auto, Some(&reader.answers), &env);
        assert_eq!(old.protocol(), ProtocolType::Halfblocks);
        // The same answers from a newer kitty, or from a terminal that does not say its
        // version, keep kitty graphics.
        for version in [Some("kitty(0.28.0)"), Some("kitty(0.39.1)"), None] {
            let answers = TerminalAnswers {
                version: version.map(str::to_string),
                ..reader.answers.clone()
            };
            let renderer = settle(ImageProtocol::Auto, Some(&answers), &env);
            assert_eq!(renderer.protocol(), ProtocolType::Kitty, "{version:?}");
            let size = renderer.font_size();
            assert_eq!((size.width, size.height), (10, 20));
        }
        // An old kitty that also speaks sixel would get sixel; asked for kitty, it gets kitty.
        let forced = settle(ImageProtocol::Kitty, Some(&reader.answers), &env);
        assert_eq!(forced.protocol(), ProtocolType::Kitty);
    }

    #[test]
    fn kitty_versions_are_compared_as_numbers() {
        assert!(!draws_kitty_placeholders(Some("kitty(0.26.5)")));
        assert!(!draws_kitty_placeholders(Some("kitty(0.27)")));
        assert!(draws_kitty_placeholders(Some("kitty(0.28.0)")));
        assert!(draws_kitty_placeholders(Some("kitty(0.100.0)")));
        assert!(draws_kitty_placeholders(Some("kitty(1.0.0)")));
        assert!(draws_kitty_placeholders(Some("ghostty 1.1.3")));
        assert!(draws_kitty_placeholders(Some("kitty(nightly)")));
        assert!(draws_kitty_placeholders(None));
    }

    #[test]
    fn sixel_terminals_get_sixel() {
        let mut reader = AnswerReader::default();
        // xterm -ti vt340: no kitty answer, sixel (4) in the device attributes.
        let typed =
            reader.push(b"\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;22c\x1b[6;20;10t\x1b[0n");
        assert!(typed.is_empty());
        let renderer = settle(
            ImageProtocol::Auto,
            Some(&reader.answers),
            &TerminalEnv::default(),
        );
        assert_eq!(renderer.protocol(), ProtocolType::Sixel);
    }
}
