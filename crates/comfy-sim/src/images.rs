//! Pictures the simulated nodes produce: the Lab test patterns, and procedural "generated" images
//! (landscapes, plasma, nebulae) whose palette comes from the prompt text and whose layout comes
//! from the seed, plus the denoising previews that converge on them. Everything is cheap: a
//! sampler step only mixes a precomputed target with noise at preview size.

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::imageops::{self, FilterType as Resample};
use image::{ImageEncoder, Rgb, RgbImage};

/// A batch of images, as an `IMAGE` output carries it.
pub(crate) type Batch = Vec<RgbImage>;

pub(crate) fn encode_jpeg(img: &RgbImage, quality: u8) -> Bytes {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for an RGB8 image of valid size.
    if JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .is_err()
    {
        out.clear();
    }
    Bytes::from(out)
}

/// PNG; `fast` is ComfyUI's compress level 1 (previews), otherwise level 4 (saved images).
pub(crate) fn encode_png(img: &RgbImage, fast: bool) -> Bytes {
    let mut out = Vec::new();
    let compression = if fast {
        CompressionType::Fast
    } else {
        CompressionType::Default
    };
    let encoder = PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive);
    if encoder
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .is_err()
    {
        out.clear();
    }
    Bytes::from(out)
}

/// Pillow's `ImageOps.contain`: the largest size that fits in `max`×`max`, aspect kept.
pub(crate) fn contain(img: &RgbImage, max: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let max = max.max(1);
    if w == 0 || h == 0 || (w.max(h) == max) {
        return img.clone();
    }
    let (nw, nh) = if w >= h {
        (
            max,
            ((h as f64 * max as f64 / w as f64).round() as u32).max(1),
        )
    } else {
        (
            ((w as f64 * max as f64 / h as f64).round() as u32).max(1),
            max,
        )
    };
    imageops::resize(img, nw, nh, Resample::Triangle)
}

pub(crate) fn solid(width: u32, height: u32, color: u32) -> RgbImage {
    let [_, r, g, b] = color.to_be_bytes();
    RgbImage::from_pixel(width, height, Rgb([r, g, b]))
}

// ---------------------------------------------------------------------------------------------
// Noise

fn hash(x: i32, y: i32, seed: u64) -> u32 {
    let mut h = (x as u32 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (y as u32 as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
        ^ seed.wrapping_mul(0x1656_67B1_9E37_79F9);
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 29;
    (h >> 32) as u32
}

fn unit(x: i32, y: i32, seed: u64) -> f32 {
    hash(x, y, seed) as f32 / u32::MAX as f32
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

fn value_noise(x: f32, y: f32, seed: u64) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (xi, yi) = (xf as i32, yf as i32);
    let (tx, ty) = (smooth(x - xf), smooth(y - yf));
    let a = unit(xi, yi, seed);
    let b = unit(xi + 1, yi, seed);
    let c = unit(xi, yi + 1, seed);
    let d = unit(xi + 1, yi + 1, seed);
    let top = a + (b - a) * tx;
    let bottom = c + (d - c) * tx;
    top + (bottom - top) * ty
}

fn fbm(x: f32, y: f32, seed: u64, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut norm) = (0.0, 0.5, 1.0, 0.0);
    for o in 0..octaves {
        sum += amp * value_noise(x * freq, y * freq, seed.wrapping_add(u64::from(o) * 7919));
        norm += amp;
        amp *= 0.5;
        freq *= 2.03;
    }
    sum / norm
}

// ---------------------------------------------------------------------------------------------
// Colour

type Color = [f32; 3];

fn rgb(hex: u32) -> Color {
    let [_, r, g, b] = hex.to_be_bytes();
    [
        f32::from(r) / 255.0,
        f32::from(g) / 255.0,
        f32::from(b) / 255.0,
    ]
}

fn mix(a: Color, b: Color, t: f32) -> Color {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn to_pixel(c: Color) -> Rgb<u8> {
    Rgb(c.map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8))
}

fn hsv(h: f32, s: f32, v: f32) -> Color {
    let h = (h.rem_euclid(1.0)) * 6.0;
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Palettes (dark to light) for words a prompt may contain.
const PALETTES: &[(&[&str], [u32; 5])] = &[
    (
        &["sunset", "dusk", "evening", "golden"],
        [0x2B1B3D, 0x6B2D5C, 0xD1495B, 0xF49D37, 0xFFD97D],
    ),
    (
        &["ocean", "sea", "water", "lake", "coast", "beach", "wave"],
        [0x03254C, 0x0B4F6C, 0x1B98A6, 0x7FD1C7, 0xE8F6F3],
    ),
    (
        &["forest", "jungle", "moss", "tree", "garden", "spring"],
        [0x0F2417, 0x1E4D2B, 0x3F7D3A, 0x8DB85A, 0xE3EBB0],
    ),
    (
        &["space", "galaxy", "nebula", "night", "star", "cosmic"],
        [0x05040F, 0x1B1446, 0x4B2A84, 0xB04FA8, 0xF6C1E8],
    ),
    (
        &["desert", "dune", "sand", "canyon", "mars"],
        [0x3B1F0E, 0x8C4A1E, 0xC97B3A, 0xE8B56B, 0xF8E3B6],
    ),
    (
        &["snow", "winter", "ice", "glacier", "frost", "arctic"],
        [0x1C2A3A, 0x3E5C76, 0x7FA7C9, 0xC6DCEC, 0xF7FBFF],
    ),
    (
        &["fire", "lava", "volcano", "ember", "dragon"],
        [0x1A0505, 0x5C0F0A, 0xB3260E, 0xF26B1D, 0xFFD23F],
    ),
    (
        &["neon", "cyberpunk", "city", "synthwave", "retro"],
        [0x0D0221, 0x261447, 0x7B2CBF, 0xFF2E88, 0x2DE2E6],
    ),
    (
        &["autumn", "fall", "harvest", "pumpkin"],
        [0x2E1A0F, 0x6B2F12, 0xB5541C, 0xE39B3B, 0xF3D7A4],
    ),
];

/// What kind of picture a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Landscape,
    Plasma,
    Nebula,
}

/// A procedural picture: everything a render needs, from the prompt and the seed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scene {
    seed: u64,
    palette: [Color; 5],
    style: Style,
    sun: (f32, f32),
}

impl Scene {
    pub(crate) fn new(prompt: &str, seed: u64) -> Self {
        let lower = prompt.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        let palette = PALETTES
            .iter()
            .find(|(words, _)| has(words))
            .map(|(_, p)| p.map(rgb))
            .unwrap_or_else(|| {
                // No keyword: a palette from the prompt's hash, around one hue.
                let h = hash(lower.len() as i32, 0, fnv(&lower)) as f32 / u32::MAX as f32;
                [
                    hsv(h, 0.7, 0.12),
                    hsv(h + 0.05, 0.65, 0.35),
                    hsv(h + 0.1, 0.55, 0.62),
                    hsv(h + 0.5, 0.35, 0.85),
                    hsv(h + 0.55, 0.12, 0.98),
                ]
            });
        let style = if has(&["space", "galaxy", "nebula", "cosmic"]) {
            Style::Nebula
        } else if has(&["abstract", "pattern", "plasma", "fractal", "psychedelic"]) {
            Style::Plasma
        } else {
            match seed % 5 {
                0 => Style::Plasma,
                _ => Style::Landscape,
            }
        };
        let sun = (0.2 + 0.6 * unit(1, 2, seed), 0.18 + 0.25 * unit(3, 4, seed));
        Self {
            seed,
            palette,
            style,
            sun,
        }
    }

    fn gradient(&self, t: f32) -> Color {
        let t = t.clamp(0.0, 1.0) * 4.0;
        let i = (t.floor() as usize).min(3);
        mix(self.palette[i], self.palette[i + 1], t - i as f32)
    }

    /// The colour at `(u, v)` in `[0, 1]²`, `v` downwards; `aspect` is width / height.
    fn color(&self, u: f32, v: f32, aspect: f32) -> Color {
        let s = self.seed;
        match self.style {
            Style::Plasma => {
                let (x, y) = (u * aspect * 6.0, v * 6.0);
                let a = unit(5, 6, s) * std::f32::consts::TAU;
                let warp = fbm(x * 0.35, y * 0.35, s, 3) * 4.0;
                let (wx, wy) = (x + warp, y - warp * 0.7);
                let w = (wx * 1.3 + a).sin()
                    + (wy * 1.7 - a).sin()
                    + ((wx + wy) * 0.9 + a * 0.5).sin()
                    + ((wx * wx + wy * wy).sqrt() * 1.6 - a).sin();
                // Folding the value gives the banded, psychedelic look of plasma art.
                let t = (w * 0.125 + 0.5) * 2.5;
                let folded = 1.0 - (t.fract() * 2.0 - 1.0).abs();
                self.gradient(folded * 0.85 + 0.1)
            }
            Style::Nebula => {
                let (x, y) = (u * aspect * 2.5, v * 2.5);
                let warp = fbm(x + 3.1, y + 1.7, s ^ 0xA5, 4);
                let cloud = fbm(x + warp * 1.8, y - warp * 1.3, s, 5);
                let glow = (cloud - 0.35).max(0.0) * 1.9;
                let mut c = self.gradient(glow * 0.9);
                // Stars: rare bright pixels on a fine grid.
                let (gx, gy) = ((u * aspect * 420.0) as i32, (v * 420.0) as i32);
                if hash(gx, gy, s ^ 0x57A2).is_multiple_of(997) {
                    c = mix(c, [1.0, 1.0, 1.0], 0.9);
                }
                c
            }
            Style::Landscape => {
                let horizon = 0.55;
                let (sx, sy) = self.sun;
                // Sky: dark at the top, light at the horizon, a glow around the sun.
                let mut c = mix(self.palette[1], self.palette[4], (v / horizon).powf(1.4));
                let d = (((u - sx) * aspect).powi(2) + (v - sy).powi(2)).sqrt();
                c = mix(c, self.palette[4], (0.09 - d).max(0.0) * 30.0);
                c = mix(c, self.palette[3], (0.35 - d).max(0.0) * 1.2);
                // Three ridges, far to near; far ones fade into the sky.
                for layer in 0..3u64 {
                    let l = layer as f32;
                    let base = 0.42 + l * 0.12;
                    let amp = 0.16 - l * 0.03;
                    let ridge = base
                        - amp
                            * fbm(
                                u * aspect * (2.0 + l * 1.5),
                                l * 10.0,
                                s.wrapping_add(layer),
                                5,
                            );
                    if v > ridge {
                        let rock = mix(self.palette[2], self.palette[0], l / 2.0);
                        let shade = fbm(u * aspect * 9.0, v * 9.0, s ^ layer, 3);
                        c = mix(
                            rock,
                            self.palette[3],
                            (2.0 - l) * 0.18 + (shade - 0.5) * 0.12,
                        );
                    }
                }
                c
            }
        }
    }

    pub(crate) fn render(&self, width: u32, height: u32) -> RgbImage {
        let aspect = width.max(1) as f32 / height.max(1) as f32;
        RgbImage::from_fn(width, height, |x, y| {
            let u = (x as f32 + 0.5) / width.max(1) as f32;
            let v = (y as f32 + 0.5) / height.max(1) as f32;
            to_pixel(self.color(u, v, aspect))
        })
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One sampler preview: the target seen through noise, coarse early and sharp late.
/// `progress` runs from just above 0 to 1.
pub(crate) fn denoise_preview(target: &RgbImage, progress: f32, noise_seed: u64) -> RgbImage {
    const CELL: u32 = 4;
    let (w, h) = target.dimensions();
    let progress = progress.clamp(0.0, 1.0);
    let block = (1.0 + 15.0 * (1.0 - progress).powi(2)).round() as u32;
    let noise = (1.0 - progress).powf(1.6);
    let keep = 1.0 - noise;
    // Latent-like noise in 4×4 cells, computed once per cell.
    let cols = w.div_ceil(CELL);
    let cells: Vec<[f32; 3]> = (0..cols * h.div_ceil(CELL))
        .map(|i| {
            let (cx, cy) = ((i % cols) as i32, (i / cols) as i32);
            [0u64, 1, 2].map(|c| unit(cx, cy, noise_seed.wrapping_add(c)) * 255.0 * noise)
        })
        .collect();
    let mut out = RgbImage::new(w, h);
    for y in 0..h {
        let by = ((y / block) * block + block / 2).min(h.saturating_sub(1));
        for x in 0..w {
            let bx = ((x / block) * block + block / 2).min(w.saturating_sub(1));
            let base = target.get_pixel(bx, by).0;
            let n = cells[((y / CELL) * cols + x / CELL) as usize];
            let px: [u8; 3] = std::array::from_fn(|c| {
                (f32::from(base[c]) * keep + n[c] + 0.5).clamp(0.0, 255.0) as u8
            });
            out.put_pixel(x, y, Rgb(px));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Lab test patterns

/// `LabSlowSteps` output: a diagonal colour ramp from the seed.
pub(crate) fn lab_pattern(seed: u64, width: u32, height: u32) -> RgbImage {
    let hue = unit(7, 7, seed);
    RgbImage::from_fn(width, height, |x, y| {
        let u = x as f32 / width.max(1) as f32;
        let v = y as f32 / height.max(1) as f32;
        to_pixel(hsv(hue + u * 0.3, 0.7 - v * 0.4, 0.55 + v * 0.45))
    })
}

/// `LabSlowSteps` preview at `step` of `steps`: rows filled in so far, grey noise below.
pub(crate) fn lab_progress(final_image: &RgbImage, seed: u64, step: u64, steps: u64) -> RgbImage {
    let (w, h) = final_image.dimensions();
    let filled = (h as u64 * step / steps.max(1)) as u32;
    RgbImage::from_fn(w, h, |x, y| {
        if y < filled {
            *final_image.get_pixel(x, y)
        } else {
            let n = (unit(x as i32, y as i32, seed ^ step) * 120.0 + 60.0) as u8;
            Rgb([n, n, n])
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Error reports

/// `str(tensor)` of an image batch (shape `[B, H, W, 3]`, values in 0..1) as torch prints it:
/// summarised to 3 items on each side of a long dimension, 4 decimals.
pub(crate) fn tensor_repr(batch: &[RgbImage]) -> String {
    const EDGE: usize = 3;
    let channels =
        |img: &RgbImage, x: u32, y: u32| img.get_pixel(x, y).0.map(|c| f32::from(c) / 255.0);
    let all_whole = batch.iter().all(|img| {
        img.pixels()
            .all(|p| p.0.iter().all(|&c| c == 0 || c == 255))
    });
    let number = |v: f32| {
        if all_whole {
            format!("{v:.0}.")
        } else {
            format!("{v:.4}")
        }
    };
    // Indices to print along a dimension of `len` items; `None` stands for "...".
    let picks = |len: usize| -> Vec<Option<usize>> {
        if len > 2 * EDGE {
            (0..EDGE)
                .map(Some)
                .chain(std::iter::once(None))
                .chain((len - EDGE..len).map(Some))
                .collect()
        } else {
            (0..len).map(Some).collect()
        }
    };
    let join = |parts: Vec<String>, dim: usize, indent: usize| {
        parts.join(&format!(
            ",{}{}",
            "\n".repeat(dim - 1),
            " ".repeat(indent + 1)
        ))
    };
    let batch_parts: Vec<String> = picks(batch.len())
        .into_iter()
        .map(|b| {
            let Some(b) = b else { return "...".to_string() };
            let img = &batch[b];
            let rows: Vec<String> = picks(img.height() as usize)
                .into_iter()
                .map(|y| {
                    let Some(y) = y else { return "...".to_string() };
                    let cols: Vec<String> = picks(img.width() as usize)
                        .into_iter()
                        .map(|x| match x {
                            None => "...".to_string(),
                            Some(x) => {
                                let c = channels(img, x as u32, y as u32);
                                format!("[{}, {}, {}]", number(c[0]), number(c[1]), number(c[2]))
                            }
                        })
                        .collect();
                    format!("[{}]", join(cols, 2, 9))
                })
                .collect();
            format!("[{}]", join(rows, 3, 8))
        })
        .collect();
    format!("tensor([{}])", join(batch_parts, 4, 7))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_decode_back() {
        let img = Scene::new("a lighthouse at sunset", 42).render(48, 32);
        let png = encode_png(&img, true);
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back, img);
        let jpeg = encode_jpeg(&img, 95);
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(image::load_from_memory(&jpeg).unwrap().width(), 48);
    }

    #[test]
    fn contain_fits_the_box_keeping_aspect() {
        let img = solid(96, 48, 0xFF8800);
        assert_eq!(contain(&img, 64).dimensions(), (64, 32));
        assert_eq!(contain(&img, 96).dimensions(), (96, 48));
        assert_eq!(contain(&solid(10, 20, 0), 40).dimensions(), (20, 40));
        assert_eq!(solid(1, 1, 0xFF8800).get_pixel(0, 0).0, [0xFF, 0x88, 0x00]);
    }

    #[test]
    fn scenes_depend_on_prompt_and_seed_and_previews_converge() {
        let a = Scene::new("misty forest", 1).render(32, 32);
        let b = Scene::new("misty forest", 2).render(32, 32);
        let c = Scene::new("ocean waves", 1).render(32, 32);
        assert_eq!(a, Scene::new("misty forest", 1).render(32, 32));
        assert_ne!(a, b);
        assert_ne!(a, c);
        let distance = |p: &RgbImage| -> u64 {
            p.pixels()
                .zip(a.pixels())
                .map(|(x, y)| {
                    x.0.iter()
                        .zip(y.0)
                        .map(|(&m, n)| u64::from(m.abs_diff(n)))
                        .sum::<u64>()
                })
                .sum()
        };
        let early = distance(&denoise_preview(&a, 0.1, 9));
        let late = distance(&denoise_preview(&a, 0.9, 9));
        assert!(late < early, "{late} !< {early}");
        assert_eq!(denoise_preview(&a, 1.0, 9), a);
    }

    #[test]
    fn tensor_text_looks_like_torch() {
        let img = RgbImage::from_pixel(8, 8, Rgb([255, 255, 255]));
        let text = tensor_repr(&[img]);
        assert!(
            text.starts_with("tensor([[[[1., 1., 1.],\n          [1., 1., 1.],"),
            "{text}"
        );
        assert!(text.contains("\n\n         ...,\n\n         [["), "{text}");
        assert!(text.ends_with("]]]])"), "{text}");
        let img = RgbImage::from_pixel(2, 1, Rgb([174, 80, 57]));
        assert_eq!(
            tensor_repr(&[img]),
            "tensor([[[[0.6824, 0.3137, 0.2235],\n          [0.6824, 0.3137, 0.2235]]]])"
        );
    }
}
