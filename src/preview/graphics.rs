//! Which graphics protocol draws the previews, and encoding an image for it at a pane's size.

use std::io::IsTerminal;

use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};
use ratatui::layout::Size;
use ratatui_image::FontSize;
use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::picker::{Capability, Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::protocol::halfblocks::Halfblocks;
use ratatui_image::protocol::iterm2::Iterm2;
use ratatui_image::protocol::kitty::Kitty;
use ratatui_image::protocol::sixel::Sixel;

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
}

impl Renderer {
    /// Picks the renderer for `choice`. `Auto` asks the terminal (kitty, sixel, iTerm2 and the
    /// cell size; tmux passthrough where ratatui-image supports it) and falls back to half-blocks
    /// when it does not answer or stdio is not a terminal. An explicit protocol still asks for the
    /// cell size. `None` means previews are off.
    ///
    /// The query reads the terminal's answer from stdin: call it before the event stream starts.
    pub fn detect(choice: ImageProtocol) -> Option<Self> {
        let forced = match choice {
            ImageProtocol::None => return None,
            ImageProtocol::Halfblocks => return Some(Self::from_picker(&Picker::halfblocks())),
            ImageProtocol::Auto => None,
            ImageProtocol::Kitty => Some(ProtocolType::Kitty),
            ImageProtocol::Sixel => Some(ProtocolType::Sixel),
            ImageProtocol::Iterm2 => Some(ProtocolType::Iterm2),
        };
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        // Compressed kitty transfers: previews are small and encoded off the UI loop, so the
        // deflate costs little there and saves most of the bytes over ssh.
        let options = QueryStdioOptions {
            kitty_compression: true,
            ..QueryStdioOptions::default()
        };
        let queried = if tty {
            let timeout = options.timeout;
            let asked = std::time::Instant::now();
            let picker = Picker::from_query_stdio_with_options(options).ok();
            // A query that ran into its timeout gets a fallback picker, not an error: time tells.
            if asked.elapsed() >= timeout {
                release_query_reader();
            }
            picker
        } else {
            None
        };
        let mut picker = queried.unwrap_or_else(Picker::halfblocks);
        if let Some(protocol) = forced {
            picker.set_protocol_type(protocol);
        }
        Some(Self::from_picker(&picker))
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
        }
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
        // Downscale to the pane's pixel size before encoding: fewer pixels, fewer bytes.
        let filter = if image.width() > width || image.height() > height {
            FilterType::Triangle
        } else {
            FilterType::Nearest
        };
        let scaled = image.resize_exact(width, height, filter);
        let cells = Size::new(
            cells_for(width, cell_w, area.width),
            cells_for(height, cell_h, area.height),
        );
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

/// A query that timed out leaves its reader thread blocked on stdin, where it would swallow the
/// user's first key. Inside tmux the query went to an outer terminal that may not be there (a
/// detached session); tmux itself answers a plain status request, which ends that read.
fn release_query_reader() {
    use std::io::Write as _;
    let mut stdout = std::io::stdout();
    if stdout
        .write_all(b"\x1b[5n")
        .and_then(|()| stdout.flush())
        .is_ok()
    {
        // Give the answer time to arrive and be read by that thread, not by the event stream.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
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
        assert!(Renderer::detect(ImageProtocol::None).is_none());
        let renderer = Renderer::detect(ImageProtocol::Halfblocks).unwrap();
        assert_eq!(renderer.protocol(), ProtocolType::Halfblocks);
        assert_eq!(renderer.name(), "halfblocks");
    }
}
