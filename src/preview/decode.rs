//! Reading and decoding preview images within limits. Nothing here panics on bad bytes: every
//! failure is a [`DecodeProblem`] that says why.

use std::hash::{DefaultHasher, Hasher};
use std::io::Cursor;

use image::{DynamicImage, ImageDecoder as _, ImageReader, Limits};

use crate::comfy::binary::ImageFormat;

/// What an image may cost before it is decoded at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Width × height, as the header claims it.
    pub max_pixels: u64,
    /// Size of the encoded bytes.
    pub max_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: 64_000_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why an image is not shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeProblem {
    #[error("{} is over the {} limit", human_bytes(*bytes), human_bytes(*limit))]
    TooManyBytes { bytes: usize, limit: usize },
    #[error("{width}×{height} px ({}) is over the {} limit", megapixels(u64::from(*width) * u64::from(*height)), megapixels(*limit))]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("cannot decode: {0}")]
    Unreadable(String),
}

impl DecodeProblem {
    /// A refusal (the image may be fine, it is only too big), as opposed to broken bytes.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Unreadable(_))
    }
}

/// What the header says, read without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// The format of the bytes (their signature), falling back to the declared one.
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

/// A decoded image, downscaled to fit `max_side` when it was larger.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub image: DynamicImage,
    pub probe: Probe,
}

/// A fingerprint of the encoded bytes, to skip a frame identical to the last one.
pub fn frame_hash(data: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(data);
    hasher.write_usize(data.len());
    hasher.finish()
}

/// Reads format and dimensions from the header and checks them against `limits`.
pub fn probe(
    data: &[u8],
    declared: ImageFormat,
    limits: DecodeLimits,
) -> Result<Probe, DecodeProblem> {
    let (reader, format) = sized_reader(data, declared, limits)?;
    let (width, height) = reader.into_dimensions().map_err(unreadable)?;
    checked(format, width, height, limits)
}

/// A reader for `data` when its size is within `limits`.
fn sized_reader(
    data: &[u8],
    declared: ImageFormat,
    limits: DecodeLimits,
) -> Result<(SliceReader<'_>, ImageFormat), DecodeProblem> {
    if data.len() > limits.max_bytes {
        return Err(DecodeProblem::TooManyBytes {
            bytes: data.len(),
            limit: limits.max_bytes,
        });
    }
    reader(data, declared)
}

/// The header's dimensions, if `limits` allow them.
fn checked(
    format: ImageFormat,
    width: u32,
    height: u32,
    limits: DecodeLimits,
) -> Result<Probe, DecodeProblem> {
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeProblem::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(DecodeProblem::Unreadable(format!(
            "the image is {width}×{height} px"
        )));
    }
    Ok(Probe {
        format,
        width,
        height,
    })
}

/// Decodes `data` (checking it as [`probe`] does), and downscales the result to fit in
/// `max_side`×`max_side` so that what is kept stays small whatever arrived.
pub fn decode(
    data: &[u8],
    declared: ImageFormat,
    limits: DecodeLimits,
    max_side: u32,
) -> Result<DecodedImage, DecodeProblem> {
    let (mut reader, format) = sized_reader(data, declared, limits)?;
    // Bounds what a decoder whose header lied may allocate.
    let mut decode_limits = Limits::default();
    decode_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decode_limits);
    // One decoder reads the header and then the pixels: the header is parsed once.
    let decoder = reader.into_decoder().map_err(unreadable)?;
    let (width, height) = decoder.dimensions();
    let probe = checked(format, width, height, limits)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    let max_side = max_side.max(1);
    if image.width() > max_side || image.height() > max_side {
        image = image.thumbnail(max_side, max_side);
    }
    // Terminals show 8 bits per channel; 16-bit PNGs would only double the memory.
    if image.color().bytes_per_pixel() > 4 {
        image = DynamicImage::ImageRgba8(image.into_rgba8());
    }
    Ok(DecodedImage { image, probe })
}

type SliceReader<'a> = ImageReader<Cursor<&'a [u8]>>;

fn reader(
    data: &[u8],
    declared: ImageFormat,
) -> Result<(SliceReader<'_>, ImageFormat), DecodeProblem> {
    let mut reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| DecodeProblem::Unreadable(e.to_string()))?;
    let format = match reader.format() {
        Some(image::ImageFormat::Jpeg) => ImageFormat::Jpeg,
        Some(image::ImageFormat::Png) => ImageFormat::Png,
        Some(other) => {
            return Err(DecodeProblem::Unreadable(format!(
                "{other:?} images are not supported (JPEG and PNG are)"
            )));
        }
        None => {
            // No known signature: trust the sender, and let the decoder say what is wrong.
            let guess = match declared {
                ImageFormat::Jpeg => image::ImageFormat::Jpeg,
                ImageFormat::Png => image::ImageFormat::Png,
                ImageFormat::Other => {
                    return Err(DecodeProblem::Unreadable(
                        "not a JPEG or PNG image".to_string(),
                    ));
                }
            };
            reader.set_format(guess);
            declared
        }
    };
    Ok((reader, format))
}

fn unreadable(error: image::ImageError) -> DecodeProblem {
    DecodeProblem::Unreadable(error.to_string())
}

pub(crate) fn human_bytes(bytes: usize) -> String {
    const KB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KB {
        format!("{bytes} B")
    } else if b < KB * KB {
        format!("{:.1} KB", b / KB)
    } else {
        format!("{:.1} MB", b / (KB * KB))
    }
}

fn megapixels(pixels: u64) -> String {
    format!("{:.0} MP", pixels as f64 / 1_000_000.0)
}
