//! Previews end to end without a terminal: real frames from the reference transcripts through
//! decoding, limits, the worker, the redraw cap and the half-block pane.

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use comfytop::comfy::binary::{
    BinaryFrame, ImageFormat, PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA, PreviewImage,
};
use comfytop::preview::{
    Condition, DecodeLimits, DecodeProblem, LatestPerKey, PipelineConfig, PreviewFrame, PreviewKey,
    PreviewPane, PreviewPipeline, PreviewPoll, PreviewState, Renderer, View, Work, Worker, decode,
    frame_hash, probe,
};
use image::{DynamicImage, Rgb, RgbImage};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Size;
use ratatui_image::FontSize;
use ratatui_image::picker::ProtocolType;

const REFERENCE: &str = comfytop::FIXTURES;

/// Every preview frame (types 1 and 4) of every transcript, with its file name.
fn reference_previews() -> Vec<(String, u32, PreviewImage)> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir(format!("{REFERENCE}/transcripts")).unwrap();
    let mut paths: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
    {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["kind"] != "binary" {
                continue;
            }
            let event_type = record["event_type"].as_u64().unwrap() as u32;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(record["b64"].as_str().unwrap())
                .unwrap();
            if let BinaryFrame::Preview(image) = BinaryFrame::parse(Bytes::from(raw)).unwrap() {
                out.push((name.clone(), event_type, image));
            }
        }
    }
    out
}

fn reference_png() -> Bytes {
    Bytes::from(std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap())
}

fn halfblocks() -> Renderer {
    Renderer::fixed(ProtocolType::Halfblocks, FontSize::new(10, 20))
}

fn live(prompt: &str, data: Bytes, at: Instant) -> PreviewFrame {
    PreviewFrame {
        key: PreviewKey::Live(prompt.to_string()),
        node_id: Some("3".into()),
        format: ImageFormat::Jpeg,
        data,
        received_at: at,
    }
}

#[test]
fn every_reference_preview_frame_decodes() {
    let previews = reference_previews();
    let type1 = previews
        .iter()
        .filter(|(_, t, _)| *t == PREVIEW_IMAGE)
        .count();
    let type4 = previews
        .iter()
        .filter(|(_, t, _)| *t == PREVIEW_IMAGE_WITH_METADATA)
        .count();
    assert!(type1 > 0 && type4 > 0, "type 1: {type1}, type 4: {type4}");
    for (file, event_type, image) in &previews {
        let decoded = decode(&image.data, image.format, DecodeLimits::default(), 1024)
            .unwrap_or_else(|e| panic!("{file} type {event_type}: {e}"));
        assert_eq!(decoded.probe.format, ImageFormat::Jpeg, "{file}");
        assert!(
            decoded.image.width() >= 16 && decoded.image.height() >= 16,
            "{file}"
        );
        assert_eq!(
            (decoded.image.width(), decoded.image.height()),
            (decoded.probe.width, decoded.probe.height),
            "{file}: small frames are not rescaled"
        );
    }
}

#[test]
fn type_4_frames_name_their_prompt_and_type_1_frames_belong_to_the_running_one() {
    let now = Instant::now();
    for (file, event_type, image) in reference_previews() {
        let frame = PreviewFrame::live(&image, Some("running-prompt"), now).unwrap();
        if event_type == PREVIEW_IMAGE_WITH_METADATA {
            let meta = image.metadata.as_ref().unwrap();
            assert_eq!(
                frame.key,
                PreviewKey::Live(meta.prompt_id.clone()),
                "{file}"
            );
            assert!(frame.node_id.is_some(), "{file}");
        } else {
            assert_eq!(
                frame.key,
                PreviewKey::Live("running-prompt".into()),
                "{file}"
            );
            assert!(PreviewFrame::live(&image, None, now).is_none(), "{file}");
        }
    }
}

#[test]
fn the_output_png_from_view_decodes() {
    let png = reference_png();
    let decoded = decode(&png, ImageFormat::Png, DecodeLimits::default(), 1024).unwrap();
    assert_eq!(decoded.probe.format, ImageFormat::Png);
    assert!(decoded.image.width() > 0);
    // The signature wins over a wrong declaration.
    let as_jpeg = decode(&png, ImageFormat::Jpeg, DecodeLimits::default(), 1024).unwrap();
    assert_eq!(as_jpeg.probe.format, ImageFormat::Png);
}

#[test]
fn large_images_are_downscaled_to_the_kept_size() {
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(RgbImage::new(2000, 1000))
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let decoded = decode(&png, ImageFormat::Png, DecodeLimits::default(), 512).unwrap();
    assert_eq!((decoded.probe.width, decoded.probe.height), (2000, 1000));
    assert_eq!((decoded.image.width(), decoded.image.height()), (512, 256));
}

fn first_jpeg() -> Bytes {
    reference_previews().remove(0).2.data
}

#[test]
fn corrupt_bytes_give_a_reason_not_a_panic() {
    let jpeg = first_jpeg();
    let png = reference_png();
    let cases: Vec<(&str, Vec<u8>, ImageFormat)> = vec![
        ("empty", vec![], ImageFormat::Jpeg),
        (
            "garbage",
            b"definitely not an image".to_vec(),
            ImageFormat::Jpeg,
        ),
        (
            "unknown format",
            b"definitely not an image".to_vec(),
            ImageFormat::Other,
        ),
        (
            "jpeg cut in its header",
            jpeg[..40].to_vec(),
            ImageFormat::Jpeg,
        ),
        (
            "png cut in its header",
            png[..30].to_vec(),
            ImageFormat::Png,
        ),
        (
            "png cut in its data",
            png[..png.len() / 2].to_vec(),
            ImageFormat::Png,
        ),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            ImageFormat::Png,
        ),
    ];
    for (what, bytes, format) in cases {
        match decode(&bytes, format, DecodeLimits::default(), 1024) {
            Err(problem @ DecodeProblem::Unreadable(_)) => {
                assert!(!problem.is_refusal(), "{what}");
                assert!(
                    problem.to_string().starts_with("cannot decode: "),
                    "{what}: {problem}"
                );
                assert!(
                    problem.to_string().len() > "cannot decode: ".len(),
                    "{what}"
                );
            }
            other => panic!("{what}: expected unreadable, got {other:?}"),
        }
    }
}

#[test]
fn every_truncation_of_a_real_frame_is_handled() {
    // Decoders may recover a cut JPEG's scan (grey rows) but must never panic.
    let jpeg = first_jpeg();
    for len in 0..jpeg.len() {
        let _ = decode(
            &jpeg[..len],
            ImageFormat::Jpeg,
            DecodeLimits::default(),
            1024,
        );
    }
}

/// The reference PNG with its IHDR rewritten (valid CRC) to claim `width`×`height`: the header
/// alone must be enough to refuse it, before any pixel is allocated.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = reference_png().to_vec();
    // Signature (8), IHDR length (4), then "IHDR", width, height, 5 more bytes, CRC.
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn over_the_pixel_limit_is_a_note_read_from_the_header() {
    let huge = png_claiming(100_000, 100_000);
    let problem = probe(&huge, ImageFormat::Png, DecodeLimits::default()).unwrap_err();
    assert_eq!(
        problem,
        DecodeProblem::TooManyPixels {
            width: 100_000,
            height: 100_000,
            limit: 64_000_000
        }
    );
    assert!(problem.is_refusal());
    assert_eq!(
        problem.to_string(),
        "100000×100000 px (10000 MP) is over the 64 MP limit"
    );
    // Under the limit the header is accepted; the pixel data, made for other dimensions, is not.
    let fine = png_claiming(8000, 8000);
    assert!(probe(&fine, ImageFormat::Png, DecodeLimits::default()).is_ok());
    assert!(matches!(
        decode(&fine, ImageFormat::Png, DecodeLimits::default(), 1024),
        Err(DecodeProblem::Unreadable(_))
    ));
}

#[test]
fn over_the_byte_limit_is_a_note_before_anything_is_read() {
    let limits = DecodeLimits {
        max_bytes: 100,
        ..DecodeLimits::default()
    };
    let jpeg = first_jpeg();
    let problem = probe(&jpeg, ImageFormat::Jpeg, limits).unwrap_err();
    assert!(matches!(
        problem,
        DecodeProblem::TooManyBytes { limit: 100, .. }
    ));
    assert!(problem.is_refusal());
}

#[test]
fn the_worker_reports_refusals_and_broken_frames_per_key() {
    let t0 = Instant::now();
    let mut worker = Worker::new(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    });
    let view = View {
        key: PreviewKey::Live("broken".into()),
        area: Size::new(20, 10),
    };
    let batch = worker.step(
        Work {
            frames: vec![
                live("huge", Bytes::from(png_claiming(100_000, 100_000)), t0),
                live(
                    "broken",
                    Bytes::from_static(b"\xff\xd8\xff\xe0 not really"),
                    t0,
                ),
            ],
            view: Some(Some(view)),
            refresh: false,
        },
        t0,
    );
    let mut state = PreviewState::new(true, 4);
    state.offer(batch);
    assert_eq!(state.poll(t0), PreviewPoll::Redraw);
    let huge = state.slot(&PreviewKey::Live("huge".into())).unwrap();
    assert!(matches!(huge.condition, Condition::Refused(_)), "{huge:?}");
    assert!(
        state
            .status_line(&PreviewKey::Live("huge".into()), t0)
            .unwrap()
            .contains("not shown: 100000×100000 px"),
    );
    let broken = state.slot(&PreviewKey::Live("broken".into())).unwrap();
    assert!(
        matches!(broken.condition, Condition::Broken(_)),
        "{broken:?}"
    );
}

/// `n` different frames: the same JPEG with a counter after its end marker (decoders ignore it).
fn distinct_frames(n: usize) -> Vec<Bytes> {
    let jpeg = first_jpeg();
    (0..n)
        .map(|i| {
            let mut bytes = jpeg.to_vec();
            bytes.extend_from_slice(&(i as u64).to_be_bytes());
            Bytes::from(bytes)
        })
        .collect()
}

#[test]
fn a_burst_keeps_one_frame_per_key() {
    let mut slot = LatestPerKey::new(8);
    for (i, frame) in distinct_frames(1000).into_iter().enumerate() {
        slot.put("prompt", (i, frame));
        assert_eq!(slot.len(), 1);
    }
    assert_eq!(slot.get(&"prompt").map(|(i, _)| *i), Some(999));
}

#[test]
fn a_burst_through_the_pipeline_shows_the_newest_frame() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let pipeline = PreviewPipeline::spawn(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    })
    .unwrap();
    let key = PreviewKey::Live("p".into());
    pipeline.set_view(Some(View {
        key: key.clone(),
        area: Size::new(32, 16),
    }));
    let frames = distinct_frames(1000);
    let last_hash = frame_hash(frames.last().unwrap());
    let start = Instant::now();
    for data in frames {
        pipeline.submit(live("p", data, start));
        // Memory stays flat: at most one frame waits per key, however fast they come.
        assert!(pipeline.waiting() <= 1);
    }
    // The newest frame reaches the screen; stale ones were dropped on the way.
    let mut state = PreviewState::new(true, 4);
    let mut redraws = 0;
    runtime.block_on(async {
        let wait = async {
            loop {
                pipeline.ready().await;
                state.offer(pipeline.take());
                // Applied at most 4 times per second, as the dashboard would.
                loop {
                    match state.poll(Instant::now()) {
                        PreviewPoll::Redraw => redraws += 1,
                        PreviewPoll::WaitUntil(t) => tokio::time::sleep_until(t.into()).await,
                        PreviewPoll::Idle => break,
                    }
                }
                if state.shown(&key).is_some_and(|r| r.hash == last_hash) {
                    return;
                }
            }
        };
        // A safety net against a hang, not a timing assertion.
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap();
    });
    let stats = pipeline.stats();
    assert_eq!(stats.received, 1000);
    assert!(stats.decoded < 1000, "{stats:?}");
    assert!(stats.superseded > 0, "{stats:?}");
    assert!(redraws >= 1);
    let status = state.slot(&key).unwrap();
    assert!(
        matches!(status.condition, Condition::Ready { .. }),
        "{status:?}"
    );
}

#[test]
fn identical_frames_are_skipped() {
    let t0 = Instant::now();
    let mut worker = Worker::new(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    });
    let view = View {
        key: PreviewKey::Live("p".into()),
        area: Size::new(16, 8),
    };
    let jpeg = first_jpeg();
    let first = worker.step(
        Work {
            frames: vec![live("p", jpeg.clone(), t0)],
            view: Some(Some(view.clone())),
            refresh: false,
        },
        t0,
    );
    assert!(first.rendered.is_some());
    let again = worker.step(
        Work {
            frames: vec![live("p", jpeg.clone(), t0 + Duration::from_secs(1))],
            ..Work::default()
        },
        t0 + Duration::from_secs(1),
    );
    assert!(again.is_empty());
    assert_eq!(worker.stats().identical, 1);
    assert_eq!(worker.stats().decoded, 1);
    // A new pane size re-encodes without decoding again.
    let resized = worker.step(
        Work {
            view: Some(Some(View {
                area: Size::new(8, 4),
                ..view
            })),
            ..Work::default()
        },
        t0 + Duration::from_secs(2),
    );
    let rendered = resized.rendered.unwrap();
    assert!(rendered.protocol.size().width <= 8 && rendered.protocol.size().height <= 4);
    assert_eq!(worker.stats().decoded, 1);
    assert_eq!(worker.stats().encoded, 2);
}

#[test]
fn a_thousand_frames_on_a_simulated_clock_draw_at_most_the_cap() {
    // 1,000 frames 2 ms apart (2 simulated seconds) at --preview-fps 4: the worker encodes each
    // (the worst case), the state applies at most one per 250 ms and holds only the newest.
    let t0 = Instant::now();
    let mut worker = Worker::new(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    });
    let mut state = PreviewState::new(true, 4);
    let view = View {
        key: PreviewKey::Live("p".into()),
        area: Size::new(8, 4),
    };
    assert!(state.want_view(Some(view.clone())));
    assert!(!state.want_view(Some(view.clone())));
    let frames = distinct_frames(1000);
    let last_hash = frame_hash(frames.last().unwrap());
    let mut redraws = 0;
    let mut wake_at = None;
    for (i, data) in frames.into_iter().enumerate() {
        let now = t0 + Duration::from_millis(2 * i as u64);
        let view_change = (i == 0).then(|| Some(view.clone()));
        state.offer(worker.step(
            Work {
                frames: vec![live("p", data, now)],
                view: view_change,
                refresh: false,
            },
            now,
        ));
        // The dashboard polls on each event, and on the wake-up it was asked for.
        if wake_at.is_none_or(|t| now >= t) || i == 999 {
            match state.poll(now) {
                PreviewPoll::Redraw => {
                    redraws += 1;
                    wake_at = None;
                }
                PreviewPoll::WaitUntil(t) => wake_at = Some(t),
                PreviewPoll::Idle => wake_at = None,
            }
        }
    }
    // The last frame is applied when its wake-up comes.
    if let Some(t) = wake_at {
        assert_eq!(state.poll(t), PreviewPoll::Redraw);
        redraws += 1;
    }
    // 2 s at 4 per second: at most 9 (0, 250, …, 2000 ms).
    assert!(redraws <= 9, "{redraws} redraws");
    assert!(redraws >= 8, "{redraws} redraws");
    assert_eq!(
        state.shown(&PreviewKey::Live("p".into())).map(|r| r.hash),
        Some(last_hash)
    );
    assert_eq!(state.poll(t0 + Duration::from_secs(10)), PreviewPoll::Idle);
}

/// A 16×16 image in four quadrants: red, green, blue, white.
fn quadrants_png() -> Bytes {
    let image = RgbImage::from_fn(16, 16, |x, y| match (x < 8, y < 8) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    });
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    Bytes::from(png)
}

fn render_pane(
    state: &PreviewState,
    key: Option<&PreviewKey>,
    width: u16,
    height: u16,
) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| frame.render_widget(PreviewPane::new(state, key), frame.area()))
        .unwrap();
    terminal
}

#[test]
fn halfblocks_render_a_known_image_into_the_pane() {
    let t0 = Instant::now();
    let key = PreviewKey::Live("p".into());
    let mut worker = Worker::new(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    });
    let mut state = PreviewState::new(true, 4);
    let view = View {
        key: key.clone(),
        area: Size::new(12, 6),
    };
    let mut frame = live("p", quadrants_png(), t0);
    frame.format = ImageFormat::Png;
    assert!(state.note_submitted(&frame));
    let decoding = render_pane(&state, Some(&key), 12, 6);
    insta::assert_snapshot!("decoding", format!("{:?}", decoding.backend().buffer()));
    state.offer(worker.step(
        Work {
            frames: vec![frame],
            view: Some(Some(view)),
            refresh: false,
        },
        t0,
    ));
    assert_eq!(state.poll(t0), PreviewPoll::Redraw);
    let terminal = render_pane(&state, Some(&key), 12, 6);
    let buffer = terminal.backend().buffer();
    // 12×6 cells hold 12×12 half-block pixels: the 16×16 image becomes 12×12, centred.
    let cell = |x: u16, y: u16| buffer.cell((x, y)).unwrap().clone();
    use ratatui::style::Color;
    assert_eq!(cell(0, 0).bg, Color::Rgb(255, 0, 0));
    assert_eq!(cell(11, 0).bg, Color::Rgb(0, 255, 0));
    assert_eq!(cell(0, 5).bg, Color::Rgb(0, 0, 255));
    assert_eq!(cell(11, 5).bg, Color::Rgb(255, 255, 255));
    insta::assert_snapshot!("quadrants", format!("{buffer:?}"));
    assert_eq!(
        state
            .status_line(&key, t0 + Duration::from_secs(3))
            .unwrap(),
        format!(
            "PNG 16×16 · {} B · node 3 · just now",
            quadrants_png().len()
        )
    );
}

#[test]
fn the_pane_says_why_there_is_no_image() {
    let t0 = Instant::now();
    let key = PreviewKey::Live("p".into());
    let text = |state: &PreviewState, key: Option<&PreviewKey>| {
        let terminal = render_pane(state, key, 60, 3);
        let buffer = terminal.backend().buffer();
        (0..3)
            .map(|y| {
                (0..60)
                    .map(|x| buffer.cell((x, y)).unwrap().symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let off = PreviewState::new(false, 4);
    assert!(text(&off, Some(&key)).contains("previews off"));
    let mut state = PreviewState::new(true, 4);
    assert!(text(&state, Some(&key)).contains("waiting for a preview"));
    assert!(text(&state, None).contains("no preview"));
    let mut worker = Worker::new(PipelineConfig {
        renderer: Some(halfblocks()),
        ..PipelineConfig::default()
    });
    state.offer(worker.step(
        Work {
            frames: vec![
                live("p", Bytes::from_static(b"not an image"), t0),
                live("huge", Bytes::from(png_claiming(100_000, 100_000)), t0),
            ],
            view: Some(Some(View {
                key: key.clone(),
                area: Size::new(60, 3),
            })),
            refresh: false,
        },
        t0,
    ));
    state.poll(t0);
    assert!(text(&state, Some(&key)).contains("⚠ cannot decode"));
    let huge = PreviewKey::Live("huge".into());
    assert!(text(&state, Some(&huge)).contains("not shown: 100000×100000 px"));
}
