//! Inputs that once made a fuzz target (`fuzz/`) or a property test (`protocol_props.rs`) fail,
//! run through the same checks (`fuzz/checks/`), so what they found stays fixed.

use comfytop::comfy::api::History;
use comfytop::comfy::protocol::ServerMessage;
use comfytop::tracker::{HISTORY_FETCH, HISTORY_POLL, Tracker, TrackerCommand, TrackerInput};

#[path = "../fuzz/checks/surfaces.rs"]
mod surfaces;
#[path = "../fuzz/checks/tracker_script.rs"]
mod tracker_script;

use tracker_script::{Queue, Reply, Script, Step, Unasked};

/// A tracker keeping fewer finished prompts than a `/history` poll asks for (`--history` below
/// 8) panicked on its first `/history` answer: the next poll's size was clamped to
/// `HISTORY_POLL..=finished_kept`, and `clamp` panics when its minimum is above its maximum. The
/// dashboard and `watch` died right after connecting.
#[test]
fn a_history_answer_with_fewer_finished_kept_than_a_poll_does_not_panic() {
    // `tracker_sequence`, minimized: the 13 bytes f6 31 00 11 60 ff ff d2 d2 9f 9f 40 40.
    tracker_script::run(&Script {
        answers_only: false,
        finished_kept: Some(0),
        steps: vec![(96, Step::Unasked(Unasked::History(vec![])))],
    });
    // `protocol_props`: the answer to the fetch a connect asks for.
    tracker_script::run(&Script {
        answers_only: true,
        finished_kept: Some(1),
        steps: vec![
            (
                0,
                Step::Connected {
                    sid: false,
                    features: false,
                },
            ),
            (
                0,
                Step::Answer {
                    which: 31,
                    reply: Reply {
                        queue: Queue {
                            running: vec![],
                            pending: vec![],
                        },
                        history: vec![],
                        entry: None,
                    },
                },
            ),
        ],
    });

    // And as a session sees it: the polls after the first answer ask for no more than are kept.
    let status = |remaining: u64| {
        let text = format!(
            r#"{{"type":"status","data":{{"status":{{"exec_info":{{"queue_remaining":{remaining}}}}}}}}}"#
        );
        TrackerInput::Message(ServerMessage::from_json(&text).unwrap())
    };
    for kept in [1, 3, 7, 8, 9, 500] {
        let mut tracker = Tracker::with_finished_kept("me", kept);
        let connected = TrackerInput::Connected {
            sid: None,
            features: None,
        };
        let asked = tracker.handle(0.0, connected);
        assert!(
            asked.contains(&TrackerCommand::FetchHistory {
                max_items: HISTORY_FETCH
            }),
            "{asked:?}"
        );
        tracker.handle(0.1, TrackerInput::History(History::default()));
        let asked = tracker.handle(0.2, status(1));
        let poll = HISTORY_POLL.min(u32::try_from(kept).unwrap());
        assert!(
            asked.contains(&TrackerCommand::FetchHistory { max_items: poll }),
            "keeping {kept}: {asked:?}"
        );
    }
}

/// Not a bug in comfytop: serde_json reads floats fast rather than exactly, so a float written
/// back with the fewest digits that name it can read back one unit in the last place off. The
/// round-trip check allows for that (`surfaces::nearly_equal`); this input, from
/// `protocol_props`, is one such float.
#[test]
fn a_float_one_unit_off_after_a_round_trip_is_the_same_message() {
    surfaces::json_message(
        br#"{"data":{"a_x":{"type":[-3.894726051318714e242]}},"type":"feature_flags"}"#,
    );
}
