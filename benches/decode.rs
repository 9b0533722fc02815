//! Decode + track throughput: what comfytop spends per frame before anything is drawn.

#[path = "common/mod.rs"]
mod common;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use comfytop::comfy::RawFrame;
use comfytop::comfy::transcript::TranscriptReader;
use comfytop::tracker::Tracker;

use common::decode_and_track;

const REFERENCE: &str = comfytop::FIXTURES;
const PROMPT: &str = "647d7248-af64-42c7-a02f-e276bf58c802";
const STEPS: u32 = 200;

/// A 200-step sampler as an owner sees it: per step a `progress_state`, a `progress`, a
/// type-1 JPEG preview (1.3 KB, as recorded) and a type-3 progress text.
fn sampler_frames() -> Vec<RawFrame> {
    let mut frames = vec![RawFrame::Text(format!(
        r#"{{"type":"execution_start","data":{{"prompt_id":"{PROMPT}","timestamp":1795828739977}}}}"#
    ))];
    for step in 1..=STEPS {
        frames.push(RawFrame::Text(format!(
            r#"{{"type":"progress_state","data":{{"prompt_id":"{PROMPT}","nodes":{{"1":{{"value":{step},"max":{STEPS},"state":"running","node_id":"1","prompt_id":"{PROMPT}","display_node_id":"1","parent_node_id":null,"real_node_id":"1"}}}}}}}}"#
        )));
        frames.push(RawFrame::Text(format!(
            r#"{{"type":"progress","data":{{"value":{step},"max":{STEPS},"prompt_id":"{PROMPT}","node":"1"}}}}"#
        )));
        let mut preview = BytesMut::new();
        preview.put_u32(1);
        preview.put_u32(1);
        preview.put_slice(&[0xAB; 1300]);
        frames.push(RawFrame::Binary(preview.freeze()));
        let text = format!("step {step}/{STEPS} (seed 1)");
        let mut progress_text = BytesMut::new();
        progress_text.put_u32(3);
        progress_text.put_u32(1);
        progress_text.put_slice(b"1");
        progress_text.put_slice(text.as_bytes());
        frames.push(RawFrame::Binary(progress_text.freeze()));
    }
    frames
}

fn transcript_frames(name: &str) -> Vec<(f64, RawFrame)> {
    let path = format!("{REFERENCE}/transcripts/{name}.jsonl");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    TranscriptReader::new(&text[..])
        .map(|f| f.map(|f| (f.t, f.raw)).unwrap())
        .collect()
}

fn progress(c: &mut Criterion) {
    let frames = sampler_frames();
    let mut group = c.benchmark_group("decode+track");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("200-step sampler frames", |b| {
        b.iter_batched_ref(
            || Tracker::new("bench"),
            |tracker| {
                for (i, raw) in frames.iter().enumerate() {
                    decode_and_track(tracker, i as f64 * 0.01, raw);
                }
            },
            BatchSize::SmallInput,
        );
    });
    let progress_only: Vec<&RawFrame> = frames
        .iter()
        .filter(|f| matches!(f, RawFrame::Text(t) if t.starts_with(r#"{"type":"progress","#)))
        .collect();
    group.throughput(Throughput::Elements(progress_only.len() as u64));
    group.bench_function("progress messages", |b| {
        b.iter_batched_ref(
            || Tracker::new("bench"),
            |tracker| {
                for (i, raw) in progress_only.iter().enumerate() {
                    decode_and_track(tracker, i as f64 * 0.01, raw);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn whole_transcript(c: &mut Criterion) {
    let name = "c_full_run_legacy_previews";
    let frames = transcript_frames(name);
    let raw_file = Bytes::from(
        std::fs::read(format!("{REFERENCE}/transcripts/{name}.jsonl")).unwrap_or_default(),
    );
    let mut group = c.benchmark_group("transcript");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("c_full_run_legacy_previews decode+track", |b| {
        b.iter_batched_ref(
            || Tracker::new("lab-c-54413bc8"),
            |tracker| {
                for (t, raw) in &frames {
                    decode_and_track(tracker, *t, raw);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("c_full_run_legacy_previews read+decode+track", |b| {
        b.iter_batched_ref(
            || Tracker::new("lab-c-54413bc8"),
            |tracker| {
                for frame in TranscriptReader::new(&raw_file[..]).flatten() {
                    decode_and_track(tracker, frame.t, &frame.raw);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, progress, whole_transcript);
criterion_main!(benches);
