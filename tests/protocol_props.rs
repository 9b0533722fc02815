//! The JSON message parser, transcripts and the tracker under property tests, with the checks
//! the fuzz targets make (`fuzz/checks/`): whatever arrives, nothing panics; what the message
//! parser accepts writes back to the same message; what a transcript reader reads writes back
//! to the same entries; and the tracker fed any sequence of inputs keeps its invariants.
//! Binary frames are in `binary_props.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use comfytop::comfy::protocol::{MessageError, ServerMessage};
use comfytop::comfy::transcript::{TranscriptReader, parse_entry};
use comfytop::comfy::{Decoded, RawFrame};
use comfytop::tracker::{Tracker, TrackerInput};

#[path = "../fuzz/checks/surfaces.rs"]
mod surfaces;
#[path = "../fuzz/checks/tracker_script.rs"]
mod tracker_script;

use tracker_script::{End, Entry, Event, Fetch, Graph, Item, Queue, Reply, Script, Step, Unasked};

/// `cases` cases; a failure is reported with its input, to go into `fuzz_regressions.rs`, and
/// not saved next to this file.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KINDS: &[&str] = &[
    "status",
    "feature_flags",
    "execution_start",
    "execution_cached",
    "executing",
    "executed",
    "progress",
    "progress_state",
    "execution_success",
    "execution_error",
    "execution_interrupted",
    "logs",
    "comfytop_bridge",
];

/// Field names the messages use, so random objects often have the right keys.
const KEYS: &[&str] = &[
    "type",
    "data",
    "owner",
    "prompt_id",
    "node",
    "display_node",
    "node_id",
    "node_type",
    "value",
    "max",
    "state",
    "timestamp",
    "nodes",
    "status",
    "exec_info",
    "queue_remaining",
    "sid",
    "output",
    "images",
    "filename",
    "subfolder",
    "executed",
    "exception_message",
    "exception_type",
    "traceback",
    "current_inputs",
    "current_outputs",
    "entries",
    "t",
    "m",
    "size",
    "cols",
    "rows",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..10).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KINDS).prop_map(str::to_string),
        prop::sample::select(&["1", "p1", "running", "finished", "error", "output", ""][..])
            .prop_map(str::to_string),
        ".{0,12}",
    ]
}

/// Any JSON value, its objects keyed mostly with the protocol's field names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn kind() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KINDS).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// `{"type": <a known type or any string>, "data": <any JSON>}`, sometimes without data, with
/// more fields, with data shaped like a bridge relay, or with a type that is not a string.
fn envelope() -> impl Strategy<Value = Value> {
    let relay =
        (string(), kind(), prop::option::of(json_value())).prop_map(|(owner, kind, data)| {
            let mut relay = json!({"owner": owner, "type": kind});
            if let Some(data) = data {
                relay["data"] = data;
            }
            relay
        });
    let data = prop_oneof![3 => json_value(), 1 => relay];
    let kind = prop_oneof![
        8 => kind().prop_map(Value::from),
        1 => json_value(),
    ];
    (
        kind,
        prop::option::of(data),
        prop::collection::vec((key(), json_value()), 0..2),
    )
        .prop_map(|(kind, data, extra)| {
            let mut envelope: Map<String, Value> = extra.into_iter().collect();
            envelope.insert("type".into(), kind);
            match data {
                Some(data) => envelope.insert("data".into(), data),
                None => envelope.remove("data"),
            };
            Value::Object(envelope)
        })
}

/// What a field of a known message holds, for well-formed messages.
#[derive(Clone, Copy, Debug)]
enum Field {
    Str,
    OptStr,
    Num,
    OptNum,
    U64,
    Bool,
    StrList,
    Object,
    Any,
    Status,
    Output,
    NodeStates,
    LogEntries,
    Size,
}

/// The fields of each known message type, and which are required.
fn fields(kind: &str) -> &'static [(&'static str, Field, bool)] {
    use Field::*;
    match kind {
        "status" => &[("status", Status, false), ("sid", OptStr, false)],
        "feature_flags" => &[
            ("supports_preview_metadata", Bool, false),
            ("max_upload_size", U64, false),
        ],
        "execution_start" | "execution_success" => {
            &[("prompt_id", Str, true), ("timestamp", OptNum, false)]
        }
        "execution_cached" => &[
            ("nodes", StrList, false),
            ("prompt_id", Str, true),
            ("timestamp", OptNum, false),
        ],
        "executing" => &[
            ("node", OptStr, false),
            ("display_node", OptStr, false),
            ("prompt_id", OptStr, false),
        ],
        "executed" => &[
            ("node", Str, true),
            ("display_node", OptStr, false),
            ("output", Output, false),
            ("prompt_id", OptStr, false),
        ],
        "progress" => &[
            ("value", Num, true),
            ("max", Num, true),
            ("prompt_id", OptStr, false),
            ("node", OptStr, false),
        ],
        "progress_state" => &[("prompt_id", Str, true), ("nodes", NodeStates, false)],
        "execution_error" => &[
            ("prompt_id", Str, true),
            ("node_id", OptStr, false),
            ("node_type", OptStr, false),
            ("executed", StrList, false),
            ("exception_message", Str, false),
            ("exception_type", Str, false),
            ("traceback", StrList, false),
            ("current_inputs", Object, false),
            ("current_outputs", Any, false),
            ("timestamp", OptNum, false),
        ],
        "execution_interrupted" => &[
            ("prompt_id", Str, true),
            ("node_id", OptStr, false),
            ("node_type", OptStr, false),
            ("executed", StrList, false),
            ("timestamp", OptNum, false),
        ],
        "logs" => &[("entries", LogEntries, false), ("size", Size, false)],
        _ => &[],
    }
}

fn field_value(field: Field) -> BoxedStrategy<Value> {
    let str_list = prop::collection::vec(string(), 0..4).prop_map(|l| json!(l));
    match field {
        Field::Str => string().prop_map(Value::from).boxed(),
        Field::OptStr => prop::option::of(string()).prop_map(|s| json!(s)).boxed(),
        Field::Num => number().boxed(),
        Field::OptNum => prop_oneof![Just(Value::Null), number()].boxed(),
        Field::U64 => any::<u64>().prop_map(Value::from).boxed(),
        Field::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Field::StrList => str_list.boxed(),
        Field::Object => prop::collection::vec((key(), json_value()), 0..3)
            .prop_map(|f| Value::Object(f.into_iter().collect()))
            .boxed(),
        Field::Any => json_value().boxed(),
        Field::Status => any::<u64>()
            .prop_map(|n| json!({"exec_info": {"queue_remaining": n}}))
            .boxed(),
        Field::Output => {
            let image = (
                string(),
                prop::option::of(string()),
                prop::option::of(string()),
            )
                .prop_map(|(filename, subfolder, folder)| {
                    let mut image = json!({"filename": filename});
                    if let Some(subfolder) = subfolder {
                        image["subfolder"] = json!(subfolder);
                    }
                    if let Some(folder) = folder {
                        image["type"] = json!(folder);
                    }
                    image
                });
            prop_oneof![
                Just(Value::Null),
                (
                    prop::collection::vec(image, 0..3),
                    prop::collection::vec((key(), json_value()), 0..3),
                )
                    .prop_map(|(images, other)| {
                        let mut output: Map<String, Value> = other.into_iter().collect();
                        output.insert("images".into(), json!(images));
                        Value::Object(output)
                    }),
            ]
            .boxed()
        }
        Field::NodeStates => {
            let state =
                prop::sample::select(&["pending", "running", "finished", "error", "someday"][..]);
            let node = (
                number(),
                number(),
                state,
                string(),
                prop::option::of(string()),
            )
                .prop_map(|(value, max, state, id, display)| {
                    json!({"value": value, "max": max, "state": state, "node_id": id,
                        "display_node_id": display, "parent_node_id": null})
                });
            prop::collection::btree_map(string(), node, 0..4)
                .prop_map(|nodes| json!(nodes))
                .boxed()
        }
        Field::LogEntries => prop::collection::vec((string(), string()), 0..4)
            .prop_map(|lines| {
                json!(
                    lines
                        .into_iter()
                        .map(|(t, m)| json!({"t": t, "m": m}))
                        .collect::<Vec<_>>()
                )
            })
            .boxed(),
        Field::Size => prop::option::of((any::<u32>(), any::<u32>()))
            .prop_map(|size| json!(size.map(|(cols, rows)| json!({"cols": cols, "rows": rows}))))
            .boxed(),
    }
}

/// The data of a well-formed message of `kind`: its required fields, some of its optional
/// ones, and some the client does not know.
fn well_formed_data(kind: &'static str) -> BoxedStrategy<Value> {
    let mut parts: BoxedStrategy<Vec<(String, Value)>> = Just(Vec::new()).boxed();
    for &(name, field, required) in fields(kind) {
        let value = if required {
            field_value(field).prop_map(Some).boxed()
        } else {
            prop::option::of(field_value(field)).boxed()
        };
        parts = (parts, value)
            .prop_map(move |(mut parts, value)| {
                parts.extend(value.map(|v| (name.to_string(), v)));
                parts
            })
            .boxed();
    }
    let unknown = prop::collection::vec(("[a-z]{1,6}_x", json_value()), 0..2);
    (parts, unknown)
        .prop_map(|(parts, unknown)| Value::Object(unknown.into_iter().chain(parts).collect()))
        .boxed()
}

/// A well-formed message of any known type, sometimes relayed by the bridge.
fn well_formed_message() -> impl Strategy<Value = (&'static str, Value)> {
    let kinds = &KINDS[..KINDS.len() - 1];
    prop::sample::select(kinds)
        .prop_flat_map(|kind| {
            (
                Just(kind),
                well_formed_data(kind),
                prop::option::of(string()),
            )
        })
        .prop_map(|(kind, data, owner)| match owner {
            None => (kind, json!({"type": kind, "data": data})),
            Some(owner) => (
                kind,
                json!({"type": "comfytop_bridge",
                    "data": {"owner": owner, "type": kind, "data": data}}),
            ),
        })
}

/// One transcript line of any shape: any `t`, any kind, and any of the fields each kind reads.
fn transcript_line() -> impl Strategy<Value = String> {
    let t = prop_oneof![
        4 => (0.0f64..1e5).prop_map(Value::from),
        1 => number(),
        1 => json_value(),
    ];
    let kind = prop_oneof![
        prop::sample::select(&["text", "binary", "http"][..]).prop_map(Value::from),
        json_value(),
    ];
    let b64 = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::from(BASE64.encode(b))),
        1 => json_value(),
    ];
    let data = prop_oneof![envelope(), json_value()];
    let optional = (
        prop::option::of(data),
        prop::option::of(prop_oneof![".{0,40}".prop_map(Value::from), json_value()]),
        prop::option::of(prop_oneof![
            any::<u32>().prop_map(Value::from),
            json_value()
        ]),
        prop::option::of(b64),
        prop::option::of(prop_oneof![".{0,20}".prop_map(Value::from), json_value()]),
        prop::option::of(json_value()),
    );
    let record = (prop::option::of(t), prop::option::of(kind), optional).prop_map(
        |(t, kind, (data, text, event_type, b64, request, body))| {
            let fields = [
                ("t", t),
                ("kind", kind),
                ("data", data),
                ("text", text),
                ("event_type", event_type),
                ("b64", b64),
                ("request", request),
                ("body", body),
            ];
            let line: Map<String, Value> = fields
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect();
            Value::Object(line).to_string()
        },
    );
    prop_oneof![8 => record, 1 => ".{0,80}"]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn json_envelopes_never_panic_and_what_decodes_round_trips(envelope in envelope()) {
        let text = envelope.to_string();
        surfaces::json_message(text.as_bytes());
        // A type that is not a string is refused as such.
        if !envelope["type"].is_string() {
            prop_assert_eq!(ServerMessage::from_json(&text), Err(MessageError::NoType));
        }
    }

    #[test]
    fn any_text_never_panics_as_a_message(text in ".{0,200}") {
        surfaces::json_message(text.as_bytes());
    }

    #[test]
    fn well_formed_messages_decode_as_their_type_and_round_trip(
        (kind, envelope) in well_formed_message(),
    ) {
        let text = envelope.to_string();
        let message = ServerMessage::from_json(&text);
        let message = message.map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(message.unrelayed().0.kind(), kind);
        prop_assert_eq!(
            message.unrelayed().1,
            envelope["data"]["owner"].as_str()
        );
        surfaces::json_message(text.as_bytes());
    }

    #[test]
    fn transcript_lines_never_panic_and_what_reads_writes_back(line in transcript_line()) {
        surfaces::transcript(line.as_bytes());
        // A line is read the same with or without its line break.
        let with_break = format!("{line}\n");
        prop_assert_eq!(parse_entry(&line).ok(), parse_entry(&with_break).ok());
    }

    #[test]
    fn whole_transcripts_never_panic_and_read_back(
        lines in prop::collection::vec(
            prop_oneof![
                8 => transcript_line().prop_map(String::into_bytes),
                1 => Just(Vec::new()),
                1 => prop::collection::vec(any::<u8>(), 0..20),
            ],
            0..8,
        ),
        crlf in any::<bool>(),
    ) {
        let data = lines.join(if crlf { &b"\r\n"[..] } else { &b"\n"[..] });
        surfaces::transcript(&data);
    }
}

fn small() -> impl Strategy<Value = u8> {
    0u8..10
}

fn ts() -> impl Strategy<Value = Option<u16>> {
    prop::option::of(any::<u16>())
}

fn nodes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(small(), 0..4)
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => (0u8..4, any::<bool>()).prop_map(|(remaining, sid)| Event::Status { remaining, sid }),
        1 => any::<bool>().prop_map(|previews| Event::FeatureFlags { previews }),
        1 => (small(), ts()).prop_map(|(prompt, ts)| Event::Start { prompt, ts }),
        1 => (small(), nodes()).prop_map(|(prompt, nodes)| Event::Cached { prompt, nodes }),
        3 => (prop::option::of(small()), prop::option::of(small()))
            .prop_map(|(prompt, node)| Event::Executing { prompt, node }),
        3 => (prop::option::of(small()), prop::option::of(small()), any::<u8>(), any::<u8>())
            .prop_map(|(prompt, node, value, max)| Event::Progress { prompt, node, value, max }),
        1 => (small(), prop::collection::vec((small(), 0u8..5, any::<u8>(), any::<u8>()), 0..4))
            .prop_map(|(prompt, nodes)| Event::ProgressState { prompt, nodes }),
        1 => (prop::option::of(small()), small(), 0u8..4)
            .prop_map(|(prompt, node, images)| Event::Executed { prompt, node, images }),
        2 => (small(), ts()).prop_map(|(prompt, ts)| Event::Success { prompt, ts }),
        1 => (small(), prop::option::of(small()), ts(), prop::bool::weighted(0.05)).prop_map(
            |(prompt, node, ts, runaway)| Event::Error { prompt, node, ts, runaway }
        ),
        1 => (small(), prop::option::of(small()), ts())
            .prop_map(|(prompt, node, ts)| Event::Interrupted { prompt, node, ts }),
        1 => (0u8..4).prop_map(|lines| Event::Logs { lines }),
        1 => any::<u8>().prop_map(|value| Event::Custom { value }),
    ]
}

fn graph() -> impl Strategy<Value = Graph> {
    prop::collection::vec((small(), small(), nodes(), any::<bool>()), 0..5)
        .prop_map(|nodes| Graph { nodes })
}

fn item() -> impl Strategy<Value = Item> {
    (
        small(),
        any::<i8>(),
        prop::option::of(any::<bool>()),
        graph(),
        nodes(),
        prop::option::of(any::<u16>()),
    )
        .prop_map(
            |(prompt, number, client, graph, outputs, create_time)| Item {
                prompt,
                number,
                client,
                graph,
                outputs,
                create_time,
            },
        )
}

fn queue() -> impl Strategy<Value = Queue> {
    (
        prop::collection::vec(item(), 0..2),
        prop::collection::vec(item(), 0..4),
    )
        .prop_map(|(running, pending)| Queue { running, pending })
}

fn entry() -> impl Strategy<Value = Entry> {
    let end = prop_oneof![
        3 => Just(End::Success),
        1 => Just(End::Error),
        1 => Just(End::Interrupted),
        1 => any::<bool>().prop_map(|success| End::StatusOnly { success }),
        1 => Just(End::NoStatus),
    ];
    (
        item(),
        end,
        prop::option::of(small()),
        nodes(),
        nodes(),
        ts(),
        nodes(),
    )
        .prop_map(|(item, end, node, executed, cached, ts, images)| Entry {
            item,
            end,
            node,
            executed,
            cached,
            ts,
            images,
        })
}

fn tracker_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (any::<bool>(), any::<bool>())
            .prop_map(|(sid, features)| Step::Connected { sid, features }),
        1 => Just(Step::Disconnected),
        // Mostly JSON, which may decode; sometimes not even that.
        1 => prop_oneof![3 => envelope().prop_map(|e| e.to_string()), 1 => ".{0,40}"]
            .prop_map(Step::Text),
        8 => event().prop_map(Step::Event),
        2 => (any::<bool>(), event()).prop_map(|(ours, event)| Step::Relayed { ours, event }),
        1 => (small(), any::<u8>(), prop::option::of(any::<bool>()))
            .prop_map(|(node, text, relayed)| Step::ProgressText { node, text, relayed }),
        6 => (
            any::<u8>(),
            queue(),
            prop::collection::vec(entry(), 0..4),
            prop::option::of(entry()),
        )
            .prop_map(|(which, queue, history, entry)| Step::Answer {
                which,
                reply: Reply { queue, history, entry },
            }),
        1 => any::<u8>().prop_map(|which| Step::Fail { which }),
        2 => prop_oneof![
            queue().prop_map(Unasked::Queue),
            prop::collection::vec(entry(), 0..4).prop_map(Unasked::History),
            (small(), prop::option::of(entry()))
                .prop_map(|(prompt, entry)| Unasked::Item { prompt, entry }),
            prop_oneof![
                Just(Fetch::Queue),
                any::<u8>().prop_map(|max_items| Fetch::History { max_items }),
                small().prop_map(|prompt| Fetch::Item { prompt }),
            ]
            .prop_map(Unasked::Failed),
        ]
        .prop_map(Step::Unasked),
        1 => (small(), any::<i8>(), prop::option::of(any::<bool>()), graph()).prop_map(
            |(prompt, number, ours, graph)| Step::Submitted { prompt, number, ours, graph }
        ),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (
        any::<bool>(),
        prop_oneof![Just(None), (1u8..12).prop_map(Some)],
        prop::collection::vec((any::<u8>(), tracker_step()), 0..40),
    )
        .prop_map(|(answers_only, finished_kept, steps)| Script {
            answers_only,
            finished_kept,
            steps,
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_tracker_fed_any_inputs_never_panics_and_keeps_its_invariants(script in script()) {
        tracker_script::run(&script);
    }
}

fn fixture_transcripts() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(comfytop::FIXTURES).join("transcripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .map(|path| (path.display().to_string(), std::fs::read(&path).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 18, "transcripts missing");
    files
}

/// The recorded traffic (the fuzzers' seed corpus) passes every check.
#[test]
fn recorded_traffic_passes_the_fuzz_checks() {
    for (name, data) in fixture_transcripts() {
        surfaces::transcript(&data);
        let mut tracker = Tracker::new("recorder");
        for frame in TranscriptReader::new(&data[..]) {
            let frame = frame.unwrap_or_else(|e| panic!("{name}: {e}"));
            match &frame.raw {
                RawFrame::Text(text) => surfaces::json_message(text.as_bytes()),
                RawFrame::Binary(bytes) => surfaces::binary_frame(bytes),
            }
            let input = match frame.raw.decode() {
                Decoded::Message(m) => TrackerInput::Message(m),
                Decoded::Binary(b) => TrackerInput::Binary(b),
                Decoded::Malformed { error } => panic!("{name}: {error}"),
            };
            tracker_script::step(&mut tracker, frame.t, input);
        }
    }
}
