//! The tracker at scale: a server with 2,000 prompts queued and 10,000 in its history (a tracker
//! told to keep them all). What a `/queue` refresh, a `/history` reply and a progress message
//! cost while that much is held, and the queries the panels make of it.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

use common::{CLIENT, NOW_MS, STEPS, decode_and_track, history_json, owner, prompt_id, wire_item};

use comfytop::comfy::RawFrame;
use comfytop::comfy::api::{History, QueueSnapshot};
use comfytop::tracker::{Tracker, TrackerInput};

const PENDING: usize = 2_000;
const FINISHED: usize = 10_000;
/// Rows of a list panel at 120x40, about.
const SCREEN_ROWS: usize = 38;

/// `/queue` with prompt `finished` running and the next `pending` waiting, as JSON text.
fn queue_json(finished: usize, pending: usize) -> String {
    let running: Vec<Value> = vec![wire_item(finished, owner(finished))];
    let waiting: Vec<Value> = (finished + 1..=finished + pending)
        .map(|n| wire_item(n, owner(n)))
        .collect();
    json!({"queue_running": running, "queue_pending": waiting}).to_string()
}

fn frame(text: String) -> RawFrame {
    RawFrame::Text(text)
}

/// The `progress` message of each step of the running prompt.
fn progress_frames(running: &str) -> Vec<RawFrame> {
    (1..=STEPS)
        .map(|step| {
            frame(format!(
                r#"{{"type":"progress","data":{{"value":{step},"max":{STEPS},"prompt_id":"{running}","node":"3"}}}}"#
            ))
        })
        .collect()
}

/// The `progress_state` message of each step of the running prompt.
fn progress_state_frames(running: &str) -> Vec<RawFrame> {
    (1..=STEPS)
        .map(|step| {
            frame(format!(
                r#"{{"type":"progress_state","data":{{"prompt_id":"{running}","nodes":{{"3":{{"value":{step},"max":{STEPS},"state":"running","node_id":"3","prompt_id":"{running}","display_node_id":"3","parent_node_id":null,"real_node_id":"3"}}}}}}}}"#
            ))
        })
        .collect()
}

/// A connected tracker holding `queue` and `history`, the running prompt live on its sampler.
fn loaded(queue: &QueueSnapshot, history: &History, kept: usize) -> Tracker {
    let mut tracker = Tracker::with_finished_kept(CLIENT, kept);
    tracker.handle(
        0.0,
        TrackerInput::Connected {
            sid: Some(CLIENT.to_string()),
            features: None,
        },
    );
    tracker.handle(0.1, TrackerInput::Queue(queue.clone()));
    tracker.handle(0.2, TrackerInput::History(history.clone()));
    if let Some(running) = queue.queue_running.first() {
        let id = &running.prompt_id;
        for (i, text) in [
            format!(r#"{{"type":"execution_start","data":{{"prompt_id":"{id}","timestamp":{NOW_MS}}}}}"#),
            format!(r#"{{"type":"execution_cached","data":{{"nodes":[],"prompt_id":"{id}","timestamp":{NOW_MS}}}}}"#),
            format!(r#"{{"type":"executing","data":{{"node":"3","display_node":"3","prompt_id":"{id}"}}}}"#),
        ]
        .into_iter()
        .enumerate()
        {
            decode_and_track(&mut tracker, 0.3 + i as f64 * 0.01, &frame(text));
        }
    }
    tracker
}

struct Fixture {
    queue_text: String,
    history_text: String,
    queue: QueueSnapshot,
    history: History,
    running: String,
}

fn fixture() -> Fixture {
    let queue_text = queue_json(FINISHED, PENDING);
    let history_text = history_json(FINISHED);
    let queue: QueueSnapshot = serde_json::from_str(&queue_text).unwrap();
    let history: History = serde_json::from_str(&history_text).unwrap();
    assert_eq!(queue.queue_pending.len(), PENDING);
    assert_eq!(history.len(), FINISHED);
    let running = queue.queue_running[0].prompt_id.clone();
    Fixture {
        queue_text,
        history_text,
        queue,
        history,
        running,
    }
}

fn replies(c: &mut Criterion) {
    let f = fixture();
    eprintln!(
        "/queue reply: {} KB; /history reply: {} KB",
        f.queue_text.len() / 1024,
        f.history_text.len() / 1024
    );
    let mut tracker = loaded(&f.queue, &f.history, FINISHED);
    assert_eq!(tracker.pending().count(), PENDING);
    assert_eq!(tracker.finished().count(), FINISHED);
    assert!(tracker.running().is_some());

    let mut group = c.benchmark_group("tracker 2000 queued + 10000 history");
    group.sample_size(20);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("apply /queue 2000 (unchanged, held)", |b| {
        b.iter_batched(
            || f.queue.clone(),
            |queue| tracker.handle(1.0, TrackerInput::Queue(queue)),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("apply /queue 2000 (into an empty tracker)", |b| {
        b.iter_batched(
            || {
                (
                    Tracker::with_finished_kept(CLIENT, FINISHED),
                    f.queue.clone(),
                )
            },
            |(mut fresh, queue)| {
                fresh.handle(1.0, TrackerInput::Queue(queue));
                fresh
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("apply /history 10000 (all known, held)", |b| {
        b.iter_batched(
            || f.history.clone(),
            |history| tracker.handle(1.0, TrackerInput::History(history)),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("apply /history 10000 (into an empty tracker)", |b| {
        b.iter_batched(
            || {
                (
                    Tracker::with_finished_kept(CLIENT, FINISHED),
                    f.history.clone(),
                )
            },
            |(mut fresh, history)| {
                fresh.handle(1.0, TrackerInput::History(history));
                fresh
            },
            BatchSize::LargeInput,
        );
    });
    // Every apply above ends by dropping the reply it was given: this much of it is that.
    group.bench_function("drop /queue 2000 (for comparison)", |b| {
        b.iter_batched(|| f.queue.clone(), drop, BatchSize::LargeInput);
    });
    group.bench_function("drop /history 10000 (for comparison)", |b| {
        b.iter_batched(|| f.history.clone(), drop, BatchSize::LargeInput);
    });
    // Off the UI loop (the HTTP task), but part of what one refresh costs.
    group.bench_function("parse /queue 2000 JSON", |b| {
        b.iter(|| serde_json::from_str::<QueueSnapshot>(black_box(&f.queue_text)).unwrap());
    });
    group.bench_function("parse /history 10000 JSON", |b| {
        b.iter(|| serde_json::from_str::<History>(black_box(&f.history_text)).unwrap());
    });
    group.finish();
}

fn progress(c: &mut Criterion) {
    let f = fixture();
    let progress = progress_frames(&f.running);
    let progress_state = progress_state_frames(&f.running);
    let only_running = QueueSnapshot {
        queue_running: f.queue.queue_running.clone(),
        queue_pending: Vec::new(),
    };
    let cases = [
        (
            "nothing else held",
            loaded(&only_running, &History::default(), FINISHED),
        ),
        (
            "2000 queued + 10000 history",
            loaded(&f.queue, &f.history, FINISHED),
        ),
    ];

    let mut group = c.benchmark_group("tracker decode+track per frame");
    group.throughput(Throughput::Elements(1));
    for (name, mut tracker) in cases {
        for (kind, frames) in [("progress", &progress), ("progress_state", &progress_state)] {
            let mut step = 0usize;
            let mut now = 1.0;
            group.bench_function(format!("{kind}, {name}"), |b| {
                b.iter(|| {
                    step = (step + 1) % frames.len();
                    now += 0.001;
                    decode_and_track(&mut tracker, now, &frames[step]);
                });
            });
        }
    }
    group.finish();
}

fn queries(c: &mut Criterion) {
    let f = fixture();
    let tracker = loaded(&f.queue, &f.history, FINISHED);
    let mut group = c.benchmark_group("tracker queries, 2000 queued + 10000 history");
    group.bench_function("running()", |b| {
        b.iter(|| black_box(&tracker).running().map(|p| p.id.len()));
    });
    group.bench_function("pending() first screen", |b| {
        b.iter(|| black_box(&tracker).pending().take(SCREEN_ROWS).count());
    });
    group.bench_function("pending() all 2000", |b| {
        b.iter(|| black_box(&tracker).pending().count());
    });
    group.bench_function("finished() first screen", |b| {
        b.iter(|| black_box(&tracker).finished().take(SCREEN_ROWS).count());
    });
    group.bench_function("finished() all 10000", |b| {
        b.iter(|| black_box(&tracker).finished().count());
    });
    let id = prompt_id(FINISHED / 2);
    group.bench_function("prompt(id)", |b| {
        b.iter(|| black_box(&tracker).prompt(black_box(&id)).is_some());
    });
    group.finish();
}

criterion_group!(benches, replies, progress, queries);
criterion_main!(benches);
