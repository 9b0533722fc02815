//! Which graphics protocol draws the previews, and encoding an image for it at a pane's size.

use std::io::IsTerminal;

use image::DynamicImage;
use image::imageops::FilterType;
use ratatui::layout::Size;
use ratatui_image::FontSize;
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

/// Encodes images for one terminal: the protocol, the size of a cell in pixels, and whether the
/// output passes through tmux. Cheap to clone and `Send`, so a worker thread can own one.
#[derive(Debug, Clone)]
pub struct Renderer {
    protocol: ProtocolType,
    font_size: FontSize,
    tmux: bool,
    kitty_compress: bool,
    /// One kitty image id for the whole session: each new frame replaces the last one in the
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
        let queried = if tty {
            Picker::from_query_stdio().ok()
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
        if area.width == 0 || area.height == 0 {
            return Err("the pane has no room".to_string());
        }
        let (cell_w, cell_h) = self.cell_pixels();
        let box_w = u32::from(area.width) * cell_w;
        let box_h = u32::from(area.height) * cell_h;
        // Downscale to the pane's pixel size before encoding: fewer pixels, fewer bytes.
        let filter = if image.width() > box_w || image.height() > box_h {
            FilterType::Triangle
        } else {
            FilterType::Nearest
        };
        let mut scaled = image.resize(box_w, box_h, filter);
        let cells = Size::new(
            cells_for(scaled.width(), cell_w, area.width),
            cells_for(scaled.height(), cell_h, area.height),
        );
        let encoded = match self.protocol {
            ProtocolType::Halfblocks => {
                quantize(&mut scaled, HALFBLOCK_COLOUR_STEP);
                Halfblocks::new(scaled, cells).map(Protocol::Halfblocks)
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

fn cells_for(pixels: u32, per_cell: u32, max: u16) -> u16 {
    let cells = pixels.div_ceil(per_cell).max(1);
    u16::try_from(cells).unwrap_or(u16::MAX).min(max)
}

/// Rounds every colour channel to a multiple of `step`.
fn quantize(image: &mut DynamicImage, step: u8) {
    let step = u16::from(step.max(1));
    let round = |c: u8| (((u16::from(c) + step / 2) / step) * step).min(255) as u8;
    let mut rgb = std::mem::take(image).into_rgb8();
    for pixel in rgb.pixels_mut() {
        for channel in &mut pixel.0 {
            *channel = round(*channel);
        }
    }
    *image = DynamicImage::ImageRgb8(rgb);
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
    fn quantize_rounds_to_the_step_and_keeps_the_ends() {
        let mut img = DynamicImage::ImageRgb8(RgbImage::from_fn(3, 1, |x, _| {
            Rgb([[0, 3, 5][x as usize], 254, 255])
        }));
        quantize(&mut img, 8);
        let rgb = img.to_rgb8();
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 255, 255]);
        assert_eq!(rgb.get_pixel(1, 0).0, [0, 255, 255]);
        assert_eq!(rgb.get_pixel(2, 0).0, [8, 255, 255]);
    }

    #[test]
    fn none_means_no_renderer_and_halfblocks_needs_no_terminal() {
        assert!(Renderer::detect(ImageProtocol::None).is_none());
        let renderer = Renderer::detect(ImageProtocol::Halfblocks).unwrap();
        assert_eq!(renderer.protocol(), ProtocolType::Halfblocks);
        assert_eq!(renderer.name(), "halfblocks");
    }
}
