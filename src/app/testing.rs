//! Test helpers: the recorded ComfyUI transcripts (the fixtures) turned into dashboard events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Map, Value, json};

use crate::comfy::Decoded;
use crate::comfy::api::{History, QueueItem, QueueSnapshot, SystemStats};
use crate::comfy::connection::{ConnEvent, ReceivedFrame};
use crate::comfy::protocol::FeatureFlags;
use crate::comfy::server_url::ServerUrl;
use crate::comfy::transcript::{TranscriptFrame, TranscriptReader};
use crate::tracker::{TrackerCommand, TrackerInput};

use super::{Command, Event, Panel, Reply, Selection, State, update};

pub const REFERENCE: &str = crate::FIXTURES;

/// Wall clock at dashboard clock 0 in the tests: shortly before the reference recordings, so
/// their server timestamps read as a few seconds after the start.
pub const EPOCH_MS: f64 = 1_795_828_739_000.0;

/// The frames of a transcript, with their times.
pub fn transcript(name: &str) -> Vec<ReceivedFrame> {
    let path = format!("{REFERENCE}/transcripts/{name}.jsonl");
    TranscriptReader::open(path.as_ref())
        .unwrap()
        .map(|frame| {
            let TranscriptFrame { t, raw } = frame.unwrap();
            let decoded = raw.decode();
            assert!(
                !matches!(decoded, Decoded::Malformed { .. }),
                "{name}: {decoded:?}"
            );
            ReceivedFrame { t, raw, decoded }
        })
        .collect()
}

fn meta(name: &str) -> Value {
    let path = format!("{REFERENCE}/transcripts/{name}.meta.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn url(text: &str) -> ServerUrl {
    ServerUrl::parse(text).unwrap()
}

/// The client id of a scenario's first connection.
pub fn client_id(name: &str) -> String {
    meta(name)["connections"][0]["client_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What `/queue` would have said right after the scenario's accepted POSTs: all of them pending.
pub fn posted_queue(name: &str) -> QueueSnapshot {
    let meta = meta(name);
    let mut pending = Vec::new();
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
        pending.push(QueueItem {
            number: action["response"]["number"].as_f64().unwrap(),
            prompt_id: action["response"]["prompt_id"]
                .as_str()
                .unwrap()
                .to_string(),
            prompt: crate::comfy::api::PromptGraph::from_value(&body["prompt"]),
            extra_data: extra,
            outputs_to_execute: Vec::new(),
        });
    }
    QueueSnapshot {
        queue_running: Vec::new(),
        queue_pending: pending,
    }
}

/// The `body` of a recorded HTTP reply, typed. Read straight from the text, so maps keep the
/// server's order (history is in completion order).
pub fn http_body<T: serde::de::DeserializeOwned>(name: &str) -> T {
    #[derive(serde::Deserialize)]
    struct Recorded<T> {
        body: T,
    }
    let path = format!("{REFERENCE}/http/{name}.json");
    let recorded: Recorded<T> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    recorded.body
}

pub fn system_stats() -> SystemStats {
    http_body("get_system_stats")
}

/// A dashboard for `client_id` whose connection came up at `now`, with the replies to its first
/// fetches given: an empty queue and `history`, the recorded `/system_stats`, and no bridge.
pub fn connected(client_id: &str, now: f64, history: History) -> State {
    let mut state = State::new(url("http://127.0.0.1:8188"), client_id, EPOCH_MS);
    state.ui.width = 120;
    state.ui.height = 40;
    update(
        &mut state,
        now,
        Event::Conn(0, ConnEvent::Connecting { attempt: 1 }),
    );
    let commands = update(
        &mut state,
        now,
        Event::Conn(
            0,
            ConnEvent::Connected {
                sid: Some(client_id.to_string()),
                features: Some(FeatureFlags::default()),
            },
        ),
    );
    for command in commands {
        let reply = match command {
            Command::Fetch(0, TrackerCommand::FetchQueue) => Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(QueueSnapshot::default())),
            },
            Command::Fetch(0, c @ TrackerCommand::FetchHistory { .. }) => Reply::Tracker {
                command: c,
                result: Ok(TrackerInput::History(history.clone())),
            },
            Command::FetchSystemStats(0) => Reply::SystemStats(Ok(system_stats())),
            // The recorded server had no comfytop bridge.
            Command::JoinBridge(0) => Reply::Bridge(crate::bridge::BridgeLink::Absent),
            other => panic!("unexpected first command {other:?}"),
        };
        update(&mut state, now, Event::Reply(0, reply));
    }
    state
}

/// Feeds a transcript's frames at `start + t` up to `until` (transcript clock), answering the
/// first `/queue` fetch with the scenario's posted prompts. Returns the commands asked for.
pub fn replay(state: &mut State, name: &str, start: f64, until: f64) -> Vec<Command> {
    replay_each(state, name, start, until, |_, _| {})
}

/// [`replay`], calling `after` with the state and each frame once the frame (and the reply it
/// drew) is applied.
pub fn replay_each(
    state: &mut State,
    name: &str,
    start: f64,
    until: f64,
    mut after: impl FnMut(&mut State, &ReceivedFrame),
) -> Vec<Command> {
    let mut queue = Some(posted_queue(name));
    let mut all = Vec::new();
    for frame in transcript(name) {
        if frame.t > until {
            break;
        }
        let now = start + frame.t;
        let applied = frame.clone();
        let commands = update(state, now, Event::Conn(0, ConnEvent::Frame(frame)));
        for command in &commands {
            if *command == Command::Fetch(0, TrackerCommand::FetchQueue)
                && let Some(snapshot) = queue.take()
            {
                update(
                    state,
                    now,
                    Event::Reply(
                        0,
                        Reply::Tracker {
                            command: TrackerCommand::FetchQueue,
                            result: Ok(TrackerInput::Queue(snapshot)),
                        },
                    ),
                );
            }
        }
        after(state, &applied);
        all.extend(commands);
    }
    all
}

/// A dashboard in the detail view of a finished prompt with two outputs.
pub fn detail_with_two_outputs() -> State {
    let history: History = http_body("get_history");
    let mut state = connected("me", 0.0, history);
    let rows = state.history_rows();
    let index = rows
        .iter()
        .position(|p| p.id == "07d2da80-c728-4ec0-8ca9-76659deb85fc")
        .unwrap();
    let id = rows[index].id.clone();
    state.ui.focus = Panel::History;
    state.ui.history = Selection {
        id: Some(id),
        index,
    };
    let now = state.now;
    update(
        &mut state,
        now,
        Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    state
}
