//! The dashboard per event at 120x40: `update` alone, and `update` + `draw` into a ratatui
//! `TestBackend` (one terminal, reused), for a progress frame of a running prompt with the queue
//! and history a server may hold, for a key press in a long history, and for a whole recorded
//! run. "update+draw" is the worst case of the event loop: every event drawn, then `Drawn`.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::{Map, Value, json};

use common::{CLIENT, NOW_MS, STEPS, history_json, owner, prompt_id, wire_item};

use comfytop::app::{Command, Event, Panel, Previews, Reply, State, update};
use comfytop::bridge::BridgeLink;
use comfytop::comfy::RawFrame;
use comfytop::comfy::api::{History, QueueItem, QueueSnapshot, SystemStats};
use comfytop::comfy::connection::{ConnEvent, ReceivedFrame};
use comfytop::comfy::protocol::FeatureFlags;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::comfy::transcript::TranscriptReader;
use comfytop::control::Access;
use comfytop::tracker::{FINISHED_KEPT, TrackerCommand, TrackerInput};
use comfytop::ui::{Memo, draw_with};

const REFERENCE: &str = comfytop::FIXTURES;
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;
/// Queued and finished prompts the server holds: a busy day, a big batch, and the issue's case.
const SIZES: [(usize, usize); 3] = [(40, 300), (500, 2_500), (2_000, 10_000)];
/// Seconds between two events on the dashboard clock.
const TICK: f64 = 0.05;

/// `/queue`: our prompt `finished` running, the next `pending` waiting.
fn queue(finished: usize, pending: usize) -> QueueSnapshot {
    let running = vec![wire_item(finished, CLIENT)];
    let waiting: Vec<Value> = (finished + 1..=finished + pending)
        .map(|n| wire_item(n, owner(n)))
        .collect();
    serde_json::from_value(json!({"queue_running": running, "queue_pending": waiting})).unwrap()
}

/// `/history` with `finished` entries, oldest first, one every 20 s; every 40th failed.
fn history(finished: usize) -> History {
    serde_json::from_str(&history_json(finished)).unwrap()
}

fn system_stats() -> SystemStats {
    let path = format!("{REFERENCE}/http/get_system_stats.json");
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    )
    .unwrap();
    serde_json::from_value(recorded["body"].clone()).unwrap()
}

fn frame_event(t: f64, raw: RawFrame) -> Event {
    let decoded = raw.decode();
    Event::Conn(0, ConnEvent::Frame(ReceivedFrame { t, raw, decoded }))
}

fn text_event(t: f64, text: String) -> Event {
    frame_event(t, RawFrame::Text(text))
}

fn queue_reply(snapshot: QueueSnapshot) -> Event {
    Event::Reply(
        0,
        Reply::Tracker {
            command: TrackerCommand::FetchQueue,
            result: Ok(TrackerInput::Queue(snapshot)),
        },
    )
}

/// A dashboard for `client_id` at 120x40 that keeps `kept` finished prompts, connected at `now`,
/// its first fetches answered with `queue`, `history`, the recorded `/system_stats` and no
/// bridge.
fn connected(
    client_id: &str,
    kept: usize,
    now: f64,
    queue: QueueSnapshot,
    history: History,
) -> State {
    let url = ServerUrl::parse("http://127.0.0.1:8188").unwrap();
    let mut state = State::new(url, client_id, NOW_MS as f64).with_settings(
        kept.max(FINISHED_KEPT),
        Access::ReadWrite,
        Previews::default(),
        true,
    );
    update(
        &mut state,
        now,
        Event::Resize {
            width: WIDTH,
            height: HEIGHT,
        },
    );
    update(
        &mut state,
        now,
        Event::Conn(0, ConnEvent::Connecting { attempt: 1 }),
    );
    let connected = ConnEvent::Connected {
        sid: Some(client_id.to_string()),
        features: Some(FeatureFlags::default()),
    };
    let stats = system_stats();
    for command in update(&mut state, now, Event::Conn(0, connected)) {
        let reply = match command {
            Command::Fetch(0, TrackerCommand::FetchQueue) => queue_reply(queue.clone()),
            Command::Fetch(0, command @ TrackerCommand::FetchHistory { .. }) => Event::Reply(
                0,
                Reply::Tracker {
                    command,
                    result: Ok(TrackerInput::History(history.clone())),
                },
            ),
            Command::FetchSystemStats(0) => Event::Reply(0, Reply::SystemStats(Ok(stats.clone()))),
            Command::JoinBridge(0) => Event::Reply(0, Reply::Bridge(BridgeLink::Absent)),
            _ => continue,
        };
        update(&mut state, now, reply);
    }
    state
}

/// The `progress` frame of each step of `running`'s sampler.
fn progress_events(running: &str) -> Vec<Event> {
    (1..=STEPS)
        .map(|step| {
            text_event(
                1.0,
                format!(
                    r#"{{"type":"progress","data":{{"value":{step},"max":{STEPS},"prompt_id":"{running}","node":"3"}}}}"#
                ),
            )
        })
        .collect()
}

/// A dashboard whose server holds `pending` queued prompts and `finished` in its history, our
/// prompt running on its sampler.
struct Busy {
    state: State,
    feed: Feed,
}

/// The running prompt's progress frames, one after the other, each a tick later.
struct Feed {
    progress: Vec<Event>,
    step: usize,
    now: f64,
}

impl Feed {
    /// The next progress frame and when it arrives.
    fn next(&mut self) -> (f64, Event) {
        self.step = (self.step + 1) % self.progress.len();
        self.now += TICK;
        (self.now, self.progress[self.step].clone())
    }
}

impl Busy {
    fn new(pending: usize, finished: usize) -> Self {
        let mut state = connected(
            CLIENT,
            finished,
            1.0,
            queue(finished, pending),
            history(finished),
        );
        let running = prompt_id(finished);
        let live = [
            format!(
                r#"{{"type":"execution_start","data":{{"prompt_id":"{running}","timestamp":{NOW_MS}}}}}"#
            ),
            format!(
                r#"{{"type":"execution_cached","data":{{"nodes":[],"prompt_id":"{running}","timestamp":{NOW_MS}}}}}"#
            ),
            format!(
                r#"{{"type":"executing","data":{{"node":"3","display_node":"3","prompt_id":"{running}"}}}}"#
            ),
        ];
        for (i, text) in live.into_iter().enumerate() {
            update(&mut state, 1.1 + i as f64 * 0.01, text_event(0.1, text));
        }
        assert_eq!(state.queue_rows().len(), pending + 1);
        assert_eq!(state.history_rows().len(), finished);
        let running_now = state.server().tracker.running().map(|p| p.id.clone());
        assert_eq!(running_now.as_deref(), Some(running.as_str()));
        Self {
            state,
            feed: Feed {
                progress: progress_events(&running),
                step: 0,
                now: 2.0,
            },
        }
    }
}

/// A test terminal and what drawing keeps from frame to frame, as the dashboard's loop has.
struct Screen {
    terminal: Terminal<TestBackend>,
    memo: Memo,
}

fn terminal() -> Screen {
    Screen {
        terminal: Terminal::new(TestBackend::new(WIDTH, HEIGHT)).unwrap(),
        memo: Memo::default(),
    }
}

fn draw_once(screen: &mut Screen, state: &State) {
    let memo = &mut screen.memo;
    screen
        .terminal
        .draw(|frame| draw_with(state, memo, frame))
        .unwrap();
}

/// `update`, then the draw and `Drawn` the loop follows it with when the state changed.
fn update_and_draw(terminal: &mut Screen, state: &mut State, now: f64, event: Event) {
    black_box(update(state, now, event));
    if state.dirty {
        draw_once(terminal, state);
        update(state, now, Event::Drawn);
    }
}

fn label(pending: usize, finished: usize) -> String {
    format!("{pending} queued + {finished} history")
}

fn progress_frame(c: &mut Criterion) {
    let mut terminal = terminal();
    let mut group = c.benchmark_group("dashboard 120x40 progress frame");
    group.throughput(Throughput::Elements(1));
    for (pending, finished) in SIZES {
        let mut busy = Busy::new(pending, finished);
        let name = label(pending, finished);

        draw_once(&mut terminal, &busy.state);
        let screen = terminal.terminal.backend().to_string();
        assert!(screen.contains(&format!("{pending} pending")), "{screen}");
        assert!(screen.contains(&format!("History {finished}")), "{screen}");

        group.bench_function(format!("update/{name}"), |b| {
            b.iter_batched(
                || busy.feed.next(),
                |(now, event)| update(&mut busy.state, now, event),
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("update+draw/{name}"), |b| {
            b.iter_batched(
                || busy.feed.next(),
                |(now, event)| update_and_draw(&mut terminal, &mut busy.state, now, event),
                BatchSize::SmallInput,
            );
        });
        group.bench_function(format!("draw/{name}"), |b| {
            b.iter(|| draw_once(&mut terminal, &busy.state));
        });
    }
    group.finish();
}

/// j and k in turn with the History panel focused, each followed by a draw.
fn history_keys(c: &mut Criterion) {
    let mut terminal = terminal();
    let mut group = c.benchmark_group("dashboard 120x40 key in History");
    group.throughput(Throughput::Elements(1));
    for (pending, finished) in [SIZES[0], SIZES[2]] {
        let mut busy = Busy::new(pending, finished);
        busy.state.ui.focus = Panel::History;
        let mut down = false;
        group.bench_function(format!("update+draw/{}", label(pending, finished)), |b| {
            b.iter_batched(
                || {
                    down = !down;
                    busy.feed.now += TICK;
                    let code = if down { KeyCode::Down } else { KeyCode::Up };
                    (
                        busy.feed.now,
                        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
                    )
                },
                |(now, event)| update_and_draw(&mut terminal, &mut busy.state, now, event),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// The panels' rows as `draw` and `update` list them.
fn rows(c: &mut Criterion) {
    let mut group = c.benchmark_group("dashboard rows");
    for (pending, finished) in [SIZES[0], SIZES[2]] {
        let busy = Busy::new(pending, finished);
        let name = label(pending, finished);
        group.bench_function(format!("queue_rows()/{name}"), |b| {
            b.iter(|| black_box(&busy.state).queue_rows().len());
        });
        group.bench_function(format!("history_rows()/{name}"), |b| {
            b.iter(|| black_box(&busy.state).history_rows().len());
        });
    }
    group.finish();
}

/// What `/queue` said right after the scenario's accepted POSTs: all of them pending.
fn posted_queue(name: &str) -> QueueSnapshot {
    let path = format!("{REFERENCE}/transcripts/{name}.meta.json");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut pending: Vec<QueueItem> = Vec::new();
    for action in meta["actions"].as_array().unwrap() {
        if action["method"] != "POST" || action["path"] != "/prompt" || action["status"] != 200 {
            continue;
        }
        let body = &action["body"];
        let mut extra: Map<String, Value> =
            body["extra_data"].as_object().cloned().unwrap_or_default();
        if let Some(client) = body["client_id"].as_str() {
            extra.insert("client_id".into(), json!(client));
        }
        let response = &action["response"];
        let item = json!([
            response["number"],
            response["prompt_id"],
            body["prompt"],
            extra,
            []
        ]);
        pending.push(serde_json::from_value(item).unwrap());
    }
    QueueSnapshot {
        queue_running: Vec::new(),
        queue_pending: pending,
    }
}

/// A recorded run (49 frames: status, execution, progress, previews, progress text, outputs)
/// replayed into a dashboard that has 300 prompts in its history, every frame drawn.
fn transcript(c: &mut Criterion) {
    let name = "c_full_run_legacy_previews";
    let path = format!("{REFERENCE}/transcripts/{name}.jsonl");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let frames: Vec<(f64, Event)> = TranscriptReader::new(&text[..])
        .map(|f| f.unwrap())
        .map(|f| (f.t, frame_event(f.t, f.raw)))
        .collect();
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{REFERENCE}/transcripts/{name}.meta.json")).unwrap(),
    )
    .unwrap();
    let client = meta["connections"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let posted = posted_queue(name);
    let finished = 300;
    let background = history(finished);
    let start = 1.0;
    let fresh = || {
        let state = connected(
            &client,
            finished,
            start,
            QueueSnapshot::default(),
            background.clone(),
        );
        (state, frames.clone(), Some(posted.clone()))
    };
    let replay = |terminal: Option<&mut Screen>,
                  (mut state, frames, mut queue): (
        State,
        Vec<(f64, Event)>,
        Option<QueueSnapshot>,
    )| {
        let mut terminal = terminal;
        for (t, event) in frames {
            let now = start + t;
            let commands = update(&mut state, now, event);
            // The first `/queue` fetch is answered with the prompt the scenario posted.
            if commands.contains(&Command::Fetch(0, TrackerCommand::FetchQueue))
                && let Some(snapshot) = queue.take()
            {
                update(&mut state, now, queue_reply(snapshot));
            }
            if let Some(terminal) = terminal.as_mut()
                && state.dirty
            {
                draw_once(terminal, &state);
                update(&mut state, now, Event::Drawn);
            }
        }
        state
    };

    // The run ends with the prompt in history.
    let state = replay(None, fresh());
    assert_eq!(state.history_rows().len(), finished + 1);

    let mut terminal = terminal();
    let mut group = c.benchmark_group("dashboard 120x40 recorded run");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.sample_size(30);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function(format!("{name} update"), |b| {
        b.iter_batched(fresh, |input| replay(None, input), BatchSize::SmallInput);
    });
    group.bench_function(format!("{name} update+draw"), |b| {
        b.iter_batched(
            fresh,
            |input| replay(Some(&mut terminal), input),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, progress_frame, history_keys, rows, transcript);
criterion_main!(benches);
