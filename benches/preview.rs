//! Preview cost per frame: decode + resize + encode of a 512×512 JPEG (quality 95, as ComfyUI
//! sends them) for a 48×24-cell pane, per protocol, with a fixed cell size so no terminal is
//! needed. Before the timings it prints what each protocol writes to the terminal per frame.
//! Then the cost of writing a half-block pane that changed everywhere, with ratatui's crossterm
//! backend and with the dashboard's.

use std::hint::black_box;
use std::io::{Cursor, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use criterion::{Criterion, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, Rgb, RgbImage};
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui::widgets::Widget;
use ratatui::{Terminal, TerminalOptions, Viewport};
use ratatui_image::FontSize;
use ratatui_image::picker::ProtocolType;

use comfytop::comfy::binary::ImageFormat;
use comfytop::preview::{DecodeLimits, Renderer, decode};
use comfytop::term::ScreenBackend;

const PANE: Size = Size::new(48, 24);
const FONT: FontSize = FontSize::new(10, 20);
const PROTOCOLS: [(&str, ProtocolType); 3] = [
    ("halfblocks", ProtocolType::Halfblocks),
    ("sixel", ProtocolType::Sixel),
    ("kitty", ProtocolType::Kitty),
];

/// A 512×512 picture with smooth gradients and fine detail, like a mid-run preview; `phase`
/// shifts it a little, like the next sampling step.
fn jpeg_512(phase: f32) -> Vec<u8> {
    let image = RgbImage::from_fn(512, 512, |x, y| {
        let (fx, fy) = (x as f32 / 512.0, y as f32 / 512.0);
        let wave = ((fx * 23.0 + phase).sin() * (fy * 17.0 - phase).cos() * 0.5 + 0.5) * 255.0;
        let detail = ((x * 7 + y * 13) % 29) as f32 * 2.0;
        Rgb([
            (fx * 200.0 + detail) as u8,
            (wave * 0.8 + detail) as u8,
            (fy * 220.0 + phase * 10.0) as u8,
        ])
    });
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut Cursor::new(&mut jpeg), 95)
        .encode_image(&DynamicImage::ImageRgb8(image))
        .unwrap();
    jpeg
}

/// A terminal that only counts what it is sent.
struct ByteCounter(Arc<AtomicUsize>);

impl Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes a terminal receives to show `frames` one after the other in the pane, counted after
/// the first (which paints the empty pane), through ratatui's diff.
fn bytes_per_frame(renderer: &Renderer, frames: &[Vec<u8>]) -> usize {
    let counted = Arc::new(AtomicUsize::new(0));
    let mut terminal = Terminal::with_options(
        ScreenBackend::new(ByteCounter(Arc::clone(&counted))),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, PANE.width, PANE.height)),
        },
    )
    .unwrap();
    let mut written = 0;
    let mut last = None;
    for (i, jpeg) in frames.iter().enumerate() {
        let image = decode(jpeg, ImageFormat::Jpeg, DecodeLimits::default(), 1024).unwrap();
        let protocol = renderer.encode_next(&image.image, PANE, &mut last).unwrap();
        terminal
            .draw(|f| f.render_widget(ratatui_image::Image::new(&protocol), f.area()))
            .unwrap();
        let bytes = counted.swap(0, Ordering::Relaxed);
        if i > 0 {
            written += bytes;
        }
    }
    written / (frames.len() - 1).max(1)
}

const REFERENCE: &str = comfytop::FIXTURES;

/// The type-1 preview frames of the reference run, in order (consecutive sampling steps).
fn reference_run_frames() -> Vec<Vec<u8>> {
    let path = format!("{REFERENCE}/transcripts/c_full_run_legacy_previews.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["kind"] == "binary" && record["event_type"] == 1)
        .filter_map(|record| {
            let b64 = record["b64"].as_str()?;
            let frame = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            // Event type and image format: 8 bytes before the JPEG.
            Some(frame.get(8..)?.to_vec())
        })
        .collect()
}

fn preview_frame(c: &mut Criterion) {
    let jpeg = jpeg_512(0.0);
    let steps: Vec<Vec<u8>> = (0..6).map(|i| jpeg_512(i as f32 * 0.05)).collect();
    eprintln!(
        "512×512 JPEG q95: {} bytes; pane {}×{} cells, cell {}×{} px",
        jpeg.len(),
        PANE.width,
        PANE.height,
        FONT.width,
        FONT.height
    );
    for (name, protocol) in PROTOCOLS {
        let renderer = Renderer::fixed(protocol, FONT);
        eprintln!(
            "{name}: {} bytes to the terminal per new frame",
            bytes_per_frame(&renderer, &steps)
        );
    }

    let run = reference_run_frames();
    if run.len() > 1 {
        for (name, protocol) in PROTOCOLS {
            let renderer = Renderer::fixed(protocol, FONT);
            eprintln!(
                "{name}: {} bytes per new frame over the {} previews of the reference run",
                bytes_per_frame(&renderer, &run),
                run.len()
            );
        }
    }

    c.bench_function("decode 512x512 jpeg", |b| {
        b.iter(|| {
            decode(
                black_box(&jpeg),
                ImageFormat::Jpeg,
                DecodeLimits::default(),
                1024,
            )
            .unwrap()
        })
    });
    for (name, protocol) in PROTOCOLS {
        let renderer = Renderer::fixed(protocol, FONT);
        c.bench_function(&format!("decode+resize+encode 512x512 jpeg/{name}"), |b| {
            b.iter(|| {
                let image = decode(
                    black_box(&jpeg),
                    ImageFormat::Jpeg,
                    DecodeLimits::default(),
                    1024,
                )
                .unwrap();
                renderer.encode(&image.image, PANE).unwrap()
            })
        });
    }

    // A live stream as the preview worker runs it: each frame the next sampling step, encoded
    // against the one before (half-blocks keep the colours that barely moved).
    let decoded: Vec<_> = steps
        .iter()
        .map(|jpeg| decode(jpeg, ImageFormat::Jpeg, DecodeLimits::default(), 1024).unwrap())
        .collect();
    for (name, protocol) in PROTOCOLS {
        let renderer = Renderer::fixed(protocol, FONT);
        let mut last = None;
        let mut step = 0;
        c.bench_function(&format!("resize+encode next step/{name}"), |b| {
            b.iter(|| {
                step = (step + 1) % decoded.len();
                renderer
                    .encode_next(black_box(&decoded[step].image), PANE, &mut last)
                    .unwrap()
            })
        });
        let mut last = None;
        let mut step = 0;
        c.bench_function(&format!("decode+resize+encode next step/{name}"), |b| {
            b.iter(|| {
                step = (step + 1) % steps.len();
                let image = decode(
                    black_box(&steps[step]),
                    ImageFormat::Jpeg,
                    DecodeLimits::default(),
                    1024,
                )
                .unwrap();
                renderer.encode_next(&image.image, PANE, &mut last).unwrap()
            })
        });
    }
}

/// Writing one frame of a half-block pane in which every cell changed (two sampling steps
/// apart), with ratatui's crossterm backend and with the dashboard's.
fn writing_a_changed_pane(c: &mut Criterion) {
    let renderer = Renderer::fixed(ProtocolType::Halfblocks, FONT);
    let area = Rect::new(0, 0, PANE.width, PANE.height);
    let [before, after] = [0.0, 0.6].map(|phase| {
        let image = decode(
            &jpeg_512(phase),
            ImageFormat::Jpeg,
            DecodeLimits::default(),
            1024,
        )
        .unwrap();
        let protocol = renderer.encode(&image.image, PANE).unwrap();
        let mut buffer = Buffer::empty(area);
        ratatui_image::Image::new(&protocol).render(area, &mut buffer);
        buffer
    });
    let changed = before.diff(&after).len();
    eprintln!(
        "half-block pane {}×{}: {changed} cells changed",
        PANE.width, PANE.height
    );
    let mut sink = Vec::with_capacity(1 << 20);
    c.bench_function("write a changed half-block pane/crossterm backend", |b| {
        b.iter(|| {
            sink.clear();
            let mut backend = CrosstermBackend::new(&mut sink);
            backend
                .draw(before.diff(black_box(&after)).into_iter())
                .unwrap();
        })
    });
    c.bench_function("write a changed half-block pane/comfytop backend", |b| {
        b.iter(|| {
            sink.clear();
            let mut backend = ScreenBackend::new(&mut sink);
            backend
                .draw(before.diff(black_box(&after)).into_iter())
                .unwrap();
        })
    });
}

criterion_group!(benches, preview_frame, writing_a_changed_pane);
criterion_main!(benches);
