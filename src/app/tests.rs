//! `update` driven by the reference transcripts and by keys, asserting on state and commands.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::testing::{client_id, connected, replay, replay_each, system_stats, transcript, url};
use super::*;
use crate::comfy::api::{History, QueueSnapshot};
use crate::comfy::connection::ConnEvent;
use crate::comfy::connection::ReceivedFrame;
use crate::comfy::{Decoded, RawFrame};
use crate::describe::NoTitles;
use crate::tracker::{
    DEAF_AFTER, HISTORY_POLL, Outcome, Phase, QUEUE_POLL_EVERY, TrackerCommand, TrackerInput,
};

fn key(state: &mut State, code: KeyCode) -> Vec<Command> {
    let now = state.now;
    update(
        state,
        now,
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
    )
}

fn text_frame(json: &str) -> Event {
    let raw = RawFrame::Text(json.to_string());
    let decoded = raw.decode();
    Event::Conn(
        0,
        ConnEvent::Frame(ReceivedFrame {
            t: 0.0,
            raw,
            decoded,
        }),
    )
}

#[test]
fn connecting_joins_the_bridge_and_asks_for_queue_history_and_system_stats() {
    let mut state = State::new(url("http://x"), "me", 0.0);
    let commands = update(
        &mut state,
        1.0,
        Event::Conn(
            0,
            ConnEvent::Connected {
                sid: Some("me".into()),
                features: None,
            },
        ),
    );
    assert_eq!(
        commands,
        vec![
            Command::JoinBridge(0),
            Command::Fetch(0, TrackerCommand::FetchQueue),
            Command::Fetch(
                0,
                TrackerCommand::FetchHistory {
                    max_items: crate::tracker::HISTORY_FETCH
                }
            ),
            Command::FetchSystemStats(0),
        ]
    );
    assert_eq!(state.server().link, Link::Connected { since: 1.0 });
    assert!(state.dirty);
}

#[test]
fn a_full_run_ends_in_history_with_every_event_logged() {
    let name = "c_full_run_legacy_previews";
    let mut state = connected(&client_id(name), 0.0, History::default());
    replay(&mut state, name, 1.0, f64::INFINITY);
    let history = state.history_rows();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].phase, Phase::Finished(Outcome::Success));
    assert!(history[0].ours);
    assert!(state.queue_rows().is_empty());
    let log: Vec<String> = state
        .server()
        .log
        .lines()
        .iter()
        .map(|l| l.text(&state.server().tracker).into_owned())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("execution_success") && l.contains("647d7248")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains(" progress ") && l.contains("node 1 \"Slow Steps\" 3/6")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains("preview_image     jpeg")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("progress_text     node 1 \"Slow Steps\"")),
        "{log:#?}"
    );
}

#[test]
fn mid_run_the_running_prompt_leads_the_queue_and_a_clock_ticks() {
    let name = "c_full_run_legacy_previews";
    let mut state = connected(&client_id(name), 0.0, History::default());
    replay(&mut state, name, 1.0, 1.0);
    let rows = state.queue_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].phase, Phase::Running);
    assert!(rows[0].live);
    // A running prompt's elapsed time is on screen: a timer is due within a second.
    let wake = state.wakeup_at().unwrap();
    assert!(
        wake > state.now && wake <= state.now + 1.0,
        "{wake} {}",
        state.now
    );
    state.dirty = false;
    update(&mut state, wake, Event::Tick);
    assert!(state.dirty, "the tick redraws the clock");
}

#[test]
fn an_error_opens_in_the_detail_view_with_a_scrollable_traceback() {
    let name = "e_execution_error";
    let mut state = connected(&client_id(name), 0.0, History::default());
    state.ui.height = 24;
    replay(&mut state, name, 1.0, f64::INFINITY);
    key(&mut state, KeyCode::Tab);
    key(&mut state, KeyCode::Tab);
    assert_eq!(state.ui.focus, Panel::History);
    key(&mut state, KeyCode::Enter);
    let detail = state.ui.detail.clone().unwrap();
    let prompt = state.server().tracker.prompt(&detail.prompt_id).unwrap();
    let text = crate::ui::layout::Areas::of_state(&state)
        .detail_text()
        .unwrap();
    let (lines, _) = super::detail::page(&state, prompt, text);
    let rows = usize::from(text.height);
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert!(
        text.iter()
            .any(|l| l.starts_with("Error in LabRaiseError (2): RuntimeError")),
        "{text:#?}"
    );
    assert!(text.contains(&"Traceback"), "{text:#?}");
    assert!(lines.len() > rows, "long enough to scroll");

    key(&mut state, KeyCode::Char('G'));
    let bottom = state.ui.detail.as_ref().unwrap().scroll;
    assert_eq!(bottom, lines.len() - rows);
    key(&mut state, KeyCode::Char('k'));
    assert_eq!(state.ui.detail.as_ref().unwrap().scroll, bottom - 1);
    key(&mut state, KeyCode::Char('g'));
    assert_eq!(state.ui.detail.as_ref().unwrap().scroll, 0);
    key(&mut state, KeyCode::Esc);
    assert!(state.ui.detail.is_none());
}

#[test]
fn a_watcher_asks_for_the_queue_on_status_and_never_twice_at_once() {
    let name = "i_second_client_watching__watcher";
    let mut state = State::new(url("http://x"), "watcher", 0.0);
    update(
        &mut state,
        0.0,
        Event::Conn(
            0,
            ConnEvent::Connected {
                sid: None,
                features: None,
            },
        ),
    );
    let mut fetches = 0;
    for frame in transcript(name) {
        let commands = update(&mut state, frame.t, Event::Conn(0, ConnEvent::Frame(frame)));
        fetches += commands
            .iter()
            .filter(|c| **c == Command::Fetch(0, TrackerCommand::FetchQueue))
            .count();
    }
    // The connect's fetch is still in flight: statuses only mark one more as wanted.
    assert_eq!(fetches, 0);
    let commands = update(
        &mut state,
        5.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(QueueSnapshot::default())),
            },
        ),
    );
    assert_eq!(
        commands,
        vec![Command::Fetch(0, TrackerCommand::FetchQueue)]
    );
    // The text frames were broadcast and logged; nothing is running for this watcher.
    assert!(
        state
            .server()
            .log
            .lines()
            .iter()
            .any(|l| l.text(&NoTitles).contains("progress_text"))
    );
}

#[test]
fn another_clients_prompt_shows_without_live_detail() {
    let mut state = connected("watcher", 0.0, History::default());
    let snapshot: QueueSnapshot = super::testing::http_body("get_queue_running_and_pending");
    update(
        &mut state,
        2.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(snapshot)),
            },
        ),
    );
    let rows = state.queue_rows();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].phase, Phase::Running);
    assert!(!rows[0].ours && !rows[0].live);
    let numbers: Vec<f64> = rows[1..].iter().filter_map(|p| p.number).collect();
    assert_eq!(numbers, vec![-8.0, 6.0, 7.0]);
}

#[test]
fn unknown_message_types_reach_the_log() {
    let mut state = connected("me", 0.0, History::default());
    update(
        &mut state,
        1.0,
        text_frame(r#"{"type":"crystools.monitor","data":{"cpu_utilization":3.5}}"#),
    );
    let last = state.server().log.lines().back().unwrap();
    assert_eq!(last.kind, event_log::LineKind::Unknown);
    let text = last.text(&NoTitles);
    assert!(text.contains("crystools.monitor"), "{text}");
}

#[test]
fn preview_frames_redraw_only_when_the_log_shows_them() {
    let name = "c_full_run_legacy_previews";
    let preview = transcript(name)
        .into_iter()
        .find(|f| matches!(f.decoded, Decoded::Binary(_)))
        .unwrap();
    let mut state = connected(&client_id(name), 0.0, History::default());
    state.dirty = false;
    update(
        &mut state,
        1.0,
        Event::Conn(0, ConnEvent::Frame(preview.clone())),
    );
    assert!(!state.dirty);
    key(&mut state, KeyCode::Char('l'));
    state.dirty = false;
    update(&mut state, 1.0, Event::Conn(0, ConnEvent::Frame(preview)));
    assert!(state.dirty);
}

#[test]
fn idle_means_no_timer_but_the_slow_stats_refresh_and_looks_at_the_queue() {
    let mut state = connected("me", 0.0, History::default());
    assert_eq!(state.redraw_at, None, "nothing on screen moves by itself");
    assert_eq!(state.wakeup_at(), Some(STATS_INTERVAL_IDLE));
    state.dirty = false;
    let commands = update(&mut state, STATS_INTERVAL_IDLE - 1.0, Event::Tick);
    assert!(commands.is_empty());
    let commands = update(&mut state, STATS_INTERVAL_IDLE, Event::Tick);
    assert_eq!(commands, vec![Command::FetchSystemStats(0)]);
    // One stats fetch at a time: the look at the queue is next.
    assert_eq!(state.wakeup_at(), Some(QUEUE_POLL_EVERY));
    // The same numbers again: nothing to redraw.
    update(
        &mut state,
        STATS_INTERVAL_IDLE + 0.1,
        Event::Reply(0, Reply::SystemStats(Ok(system_stats()))),
    );
    assert!(!state.dirty);
    let commands = update(&mut state, QUEUE_POLL_EVERY, Event::Tick);
    let history = TrackerCommand::FetchHistory {
        max_items: HISTORY_POLL,
    };
    assert_eq!(
        commands,
        vec![
            Command::Fetch(0, TrackerCommand::FetchQueue),
            Command::Fetch(0, history.clone())
        ]
    );
    // The same queue and history again: nothing to redraw either.
    for (command, input) in [
        (
            TrackerCommand::FetchQueue,
            TrackerInput::Queue(QueueSnapshot::default()),
        ),
        (history, TrackerInput::History(History::default())),
    ] {
        update(
            &mut state,
            QUEUE_POLL_EVERY + 0.1,
            Event::Reply(
                0,
                Reply::Tracker {
                    command,
                    result: Ok(input),
                },
            ),
        );
        assert!(!state.dirty);
    }
}

#[test]
fn stats_pause_while_the_terminal_is_out_of_focus() {
    let mut state = connected("me", 0.0, History::default());
    update(&mut state, 1.0, Event::Focus(false));
    // Only the look at the queue goes on: what ends meanwhile is still told.
    assert_eq!(state.wakeup_at(), Some(QUEUE_POLL_EVERY));
    let commands = update(&mut state, 100.0, Event::Tick);
    assert!(
        commands.contains(&Command::Fetch(0, TrackerCommand::FetchQueue)),
        "{commands:?}"
    );
    assert!(!commands.contains(&Command::FetchSystemStats(0)));
    let commands = update(&mut state, 101.0, Event::Focus(true));
    assert_eq!(commands, vec![Command::FetchSystemStats(0)]);
}

#[test]
fn a_socket_found_deaf_is_reopened() {
    let mut state = connected("me", 0.0, History::default());
    update(&mut state, QUEUE_POLL_EVERY, Event::Tick);
    // A prompt runs that no status told of.
    let running: QueueSnapshot = serde_json::from_value(serde_json::json!({
        "queue_running": [[1, "p1", {}, {}, []]],
        "queue_pending": [],
    }))
    .unwrap();
    update(
        &mut state,
        QUEUE_POLL_EVERY + 0.1,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(running)),
            },
        ),
    );
    assert!(state.dirty, "the queue shows it at once");
    let deaf_at = QUEUE_POLL_EVERY + 0.1 + DEAF_AFTER;
    assert_eq!(state.server().tracker.timer_due_at(), Some(deaf_at));
    let commands = update(&mut state, deaf_at - 0.1, Event::Tick);
    assert!(!commands.contains(&Command::Reopen(0)), "{commands:?}");
    let commands = update(&mut state, deaf_at, Event::Tick);
    assert!(commands.contains(&Command::Reopen(0)), "{commands:?}");
}

#[test]
fn a_reconnect_countdown_ticks_each_second_and_shows_the_last_error() {
    let mut state = connected("me", 0.0, History::default());
    update(
        &mut state,
        10.0,
        Event::Conn(
            0,
            ConnEvent::Disconnected {
                reason: "connection refused\u{1b}[2J".into(),
            },
        ),
    );
    assert_eq!(
        state.server().last_error.as_deref(),
        Some("connection refused")
    );
    update(
        &mut state,
        10.5,
        Event::Conn(
            0,
            ConnEvent::Reconnecting {
                attempt: 2,
                delay: Duration::from_millis(2500),
            },
        ),
    );
    assert_eq!(
        state.server().link,
        Link::Waiting {
            attempt: 2,
            retry_at: 13.0
        }
    );
    // 2.5 s left reads "3 s" until 2 s are left.
    assert_eq!(state.wakeup_at(), Some(11.0));
    assert!(!state.server().tracker.is_connected());
}

#[test]
fn tab_cycles_the_shown_panels_and_the_log_joins_when_shown() {
    let mut state = State::new(url("http://x"), "me", 0.0);
    let mut seen = vec![state.ui.focus];
    for _ in 0..3 {
        key(&mut state, KeyCode::Tab);
        seen.push(state.ui.focus);
    }
    assert_eq!(
        seen,
        vec![Panel::Queue, Panel::Progress, Panel::History, Panel::Queue]
    );
    key(&mut state, KeyCode::Char('l'));
    key(&mut state, KeyCode::BackTab);
    assert_eq!(state.ui.focus, Panel::Log);
    key(&mut state, KeyCode::Char('l'));
    assert_eq!(
        state.ui.focus,
        Panel::Queue,
        "hiding the log moves focus off it"
    );
}

#[test]
fn help_opens_on_question_mark_and_swallows_keys_until_closed() {
    let mut state = State::new(url("http://x"), "me", 0.0);
    key(&mut state, KeyCode::Char('?'));
    assert_eq!(state.ui.overlay, Some(Overlay::Help));
    key(&mut state, KeyCode::Tab);
    assert_eq!(state.ui.focus, Panel::Queue);
    key(&mut state, KeyCode::Esc);
    assert_eq!(state.ui.overlay, None);
    assert_eq!(key(&mut state, KeyCode::Char('q')), vec![Command::Quit]);
}

#[test]
fn the_selection_stays_on_its_prompt_while_the_queue_changes() {
    let mut state = connected("watcher", 0.0, History::default());
    let mut snapshot: QueueSnapshot = super::testing::http_body("get_queue_running_and_pending");
    let fetched = |s: QueueSnapshot| {
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(s)),
            },
        )
    };
    update(&mut state, 1.0, fetched(snapshot.clone()));
    key(&mut state, KeyCode::Char('j'));
    key(&mut state, KeyCode::Char('j'));
    let chosen = state.queue_rows()[2].id.clone();
    assert_eq!(state.ui.queue.id.as_deref(), Some(chosen.as_str()));
    // The front prompt (number -8) leaves the queue: the chosen one moves up a row.
    snapshot.queue_pending.retain(|p| p.number != -8.0);
    update(&mut state, 2.0, fetched(snapshot));
    let row = state.selected_queue_row().unwrap();
    assert_eq!(state.queue_rows()[row].id, chosen);
    assert_eq!(row, 1);
}

#[test]
fn a_click_selects_the_row_and_focuses_its_panel() {
    let mut state = connected("watcher", 0.0, History::default());
    let snapshot: QueueSnapshot = super::testing::http_body("get_queue_running_and_pending");
    update(
        &mut state,
        1.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(snapshot)),
            },
        ),
    );
    state.ui.focus = Panel::History;
    update(
        &mut state,
        2.0,
        Event::Click(ClickTarget::Row {
            panel: Panel::Queue,
            index: 3,
        }),
    );
    assert_eq!(state.ui.focus, Panel::Queue);
    assert_eq!(state.selected_queue_row(), Some(3));
    update(
        &mut state,
        2.0,
        Event::Wheel {
            panel: Some(Panel::Queue),
            down: false,
        },
    );
    assert_eq!(state.selected_queue_row(), Some(2));
}

#[test]
fn a_failed_fetch_is_logged_and_handed_back_to_the_tracker() {
    let mut state = State::new(url("http://x"), "me", 0.0);
    update(
        &mut state,
        0.0,
        Event::Conn(
            0,
            ConnEvent::Connected {
                sid: None,
                features: None,
            },
        ),
    );
    // A status while the first fetch is out asks for another after it.
    update(
        &mut state,
        0.1,
        text_frame(r#"{"type":"status","data":{"status":{"exec_info":{"queue_remaining":1}}}}"#),
    );
    let commands = update(
        &mut state,
        0.2,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Err("timed out".into()),
            },
        ),
    );
    assert_eq!(
        commands,
        vec![Command::Fetch(0, TrackerCommand::FetchQueue)]
    );
    let last = state.server().log.lines().back().unwrap();
    assert_eq!(last.text(&NoTitles), "GET /queue failed: timed out");
}

#[test]
fn history_ages_change_together_once_a_minute() {
    let history: History = super::testing::http_body("get_history");
    let mut state = connected("me", 0.0, history);
    let labels = |state: &State| -> Vec<String> {
        state
            .history_rows()
            .iter()
            .filter_map(|p| state.finished_ago(p))
            .map(time::ago_in_column)
            .collect()
    };
    // Half an hour after the recordings every age reads in minutes. The prompts ended at
    // different seconds, yet their labels all move at the dashboard's next whole minute: one
    // frame a minute, not one for each prompt.
    update(&mut state, 1830.0, Event::Tick);
    let shown = labels(&state);
    assert!(
        shown.len() > 1 && shown.iter().all(|l| l.ends_with("m ago")),
        "{shown:?}"
    );
    assert_eq!(state.redraw_at, Some(1860.0));
    update(&mut state, 1859.5, Event::Tick);
    assert_eq!(labels(&state), shown);
    update(&mut state, 1860.0, Event::Tick);
    let next = labels(&state);
    assert!(
        next.iter().zip(&shown).all(|(a, b)| a != b),
        "{shown:?} then {next:?}"
    );
    assert_eq!(state.redraw_at, Some(1920.0));
}

#[test]
fn hours_old_ages_wake_the_screen_at_the_first_of_their_changes() {
    let history: History = super::testing::http_body("get_history");
    let mut state = connected("me", 0.0, history);
    // Two and a half hours on, every label reads in hours and changes at an hour boundary of
    // its own, none in the next minute.
    update(&mut state, 9030.0, Event::Tick);
    let ages_now = 9000.0;
    let changes: Vec<f64> = state
        .history_rows()
        .iter()
        .filter_map(|p| state.finished_ago(p))
        .map(|ago| ages_now + (time::ago_changes_in(ago) / 60.0).ceil() * 60.0)
        .collect();
    assert!(
        changes.len() > 1 && changes.iter().all(|&t| t > ages_now + 60.0),
        "{changes:?}"
    );
    let first = changes.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(state.redraw_at, Some(first));
}

#[test]
fn a_prompt_this_comfytop_queued_is_ours_and_pending_at_once() {
    use crate::comfy::api::{PromptAccepted, PromptRequest};
    let mut state = connected("me", 0.0, History::default());
    let request = PromptRequest {
        prompt: serde_json::json!({"1": {"class_type": "SaveImage", "inputs": {}}}),
        client_id: Some("me".into()),
        ..Default::default()
    };
    let accepted = PromptAccepted {
        prompt_id: "p-1".into(),
        number: 7.0,
        node_errors: Default::default(),
    };
    update(
        &mut state,
        1.0,
        Event::Reply(
            0,
            Reply::Submitted(Ok(Box::new(Submitted { request, accepted }))),
        ),
    );
    let rows = state.queue_rows();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ours);
    assert_eq!(rows[0].number, Some(7.0));
    assert_eq!(rows[0].node_title("1"), Some("SaveImage"));
    assert_eq!(
        state.server().log.lines().back().unwrap().text(&NoTitles),
        "queued p-1 as #7"
    );
    update(
        &mut state,
        2.0,
        Event::Reply(0, Reply::Submitted(Err("HTTP 400".into()))),
    );
    assert_eq!(
        state.server().log.lines().back().unwrap().text(&NoTitles),
        "POST /prompt failed: HTTP 400"
    );
}

/// History is drawn and moved through by page and by index, without listing every row: the
/// pages and the moves agree with the whole list, with and without prompts deleted from the
/// queue among the rows (they are merged in by when they ended).
#[test]
fn history_pages_and_moves_agree_with_the_whole_list() {
    let history: History = super::testing::http_body("get_history");
    let mut state = connected("me", 0.0, history);
    state.ui.focus = Panel::History;
    let check = |state: &mut State| {
        let ids: Vec<String> = state.history_rows().iter().map(|p| p.id.clone()).collect();
        assert_eq!(state.history_len(), ids.len());
        for offset in 0..=ids.len() {
            for len in [1, 2, 10] {
                let page: Vec<String> = state
                    .history_page(offset, len)
                    .iter()
                    .map(|p| p.id.clone())
                    .collect();
                let end = (offset + len).min(ids.len());
                assert_eq!(page, ids[offset.min(end)..end], "page {offset}+{len}");
            }
        }
        key(state, KeyCode::Home);
        for (index, id) in ids.iter().enumerate() {
            assert_eq!(state.selected_history_row(), Some(index));
            if index > 0 {
                assert_eq!(state.ui.history.id.as_ref(), Some(id));
            }
            key(state, KeyCode::Char('j'));
        }
        // Past the end it stays on the last row.
        assert_eq!(state.selected_history_row(), Some(ids.len() - 1));
    };
    check(&mut state);

    // A waiting prompt is deleted: it joins History apart from the server's entries.
    let queue_reply = |snapshot: QueueSnapshot| {
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(snapshot)),
            },
        )
    };
    let snapshot: QueueSnapshot = super::testing::http_body("get_queue_running_and_pending");
    let pending: Vec<String> = snapshot
        .queue_pending
        .iter()
        .map(|item| item.prompt_id.clone())
        .collect();
    update(&mut state, 1.0, queue_reply(snapshot.clone()));
    let mut rest = snapshot;
    rest.queue_pending
        .retain(|item| item.prompt_id != pending[1]);
    update(&mut state, 2.0, queue_reply(rest));
    for id in &pending[1..2] {
        update(
            &mut state,
            2.0,
            Event::Reply(
                0,
                Reply::Tracker {
                    command: TrackerCommand::FetchHistoryItem(id.clone()),
                    result: Ok(TrackerInput::HistoryItem {
                        prompt_id: id.clone(),
                        entry: None,
                    }),
                },
            ),
        );
    }
    assert_eq!(state.server().tracker.removed_count(), 1);
    check(&mut state);
}

#[test]
fn a_history_fetch_that_failed_for_good_is_asked_again_by_a_timer_on_an_idle_server() {
    let mut state = connected("watcher", 0.0, History::default());
    let failed = TrackerCommand::FetchHistory { max_items: 8 };
    update(
        &mut state,
        15.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: failed,
                result: Err("no answer within 15 s".into()),
            },
        ),
    );
    let due = 15.0 + crate::tracker::RETRY_FAILED_AFTER;
    // The loop is woken for it, with no status to come from the idle server.
    assert!(state.wakeup_at().is_some_and(|at| at <= due));
    let asks_history = |commands: &[Command]| {
        commands
            .iter()
            .any(|c| matches!(c, Command::Fetch(0, TrackerCommand::FetchHistory { .. })))
    };
    assert!(!asks_history(&update(&mut state, due - 0.5, Event::Tick)));
    assert!(asks_history(&update(&mut state, due, Event::Tick)));
}

/// The notifications among `commands`.
fn notifications(commands: &[Command]) -> Vec<&str> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Notify(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_prompt_ending_live_before_the_first_history_reply_notifies_and_the_backlog_does_not() {
    let name = "c_full_run_legacy_previews";
    let notify = crate::notify::NotifyFor {
        mode: crate::notify::NotifyMode::Both,
        all_prompts: true,
    };
    let mut state = State::new(url("http://127.0.0.1:8188"), &client_id(name), 0.0)
        .with_keys_and_notify(keys::KeyTable::default(), notify);
    let connecting = update(
        &mut state,
        0.0,
        Event::Conn(
            0,
            ConnEvent::Connected {
                sid: Some(client_id(name)),
                features: None,
            },
        ),
    );
    let history_fetch = connecting
        .into_iter()
        .find_map(|c| match c {
            Command::Fetch(0, fetch @ TrackerCommand::FetchHistory { .. }) => Some(fetch),
            _ => None,
        })
        .unwrap();

    // The whole run comes and goes while the first `/history` is on its way.
    let live = replay(&mut state, name, 1.0, f64::INFINITY);
    assert_eq!(
        notifications(&live),
        vec!["prompt 647d7248 finished on http://127.0.0.1:8188 after 1.8 s"]
    );

    // The reply holds that prompt and nine older ones: none of them is news.
    let history: History = super::testing::http_body("get_history");
    assert!(history.0.iter().any(|(id, _)| id.starts_with("647d7248")));
    let read = update(
        &mut state,
        20.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: history_fetch,
                result: Ok(TrackerInput::History(history)),
            },
        ),
    );
    assert_eq!(notifications(&read), Vec::<&str>::new());
    assert!(state.server().backlog_read);
    assert!(state.history_rows().len() >= 10);
}

#[test]
fn only_events_that_may_change_history_move_its_version() {
    let name = "c_full_run_legacy_previews";
    let mut state = connected(&client_id(name), 0.0, History::default());
    let mut moved = Vec::new();
    let mut last_step = None;
    let mut before = state.history_version();
    replay_each(&mut state, name, 1.0, f64::INFINITY, |state, frame| {
        let kind = match &frame.decoded {
            Decoded::Message(m) => m.kind().to_string(),
            Decoded::Binary(_) => "binary".to_string(),
            Decoded::Malformed { .. } => "malformed".to_string(),
        };
        if state.history_version() != before {
            moved.push(kind.clone());
        }
        before = state.history_version();
        if kind == "progress" {
            // The same step again, after the prompt ended, would touch a prompt in History.
            last_step = Some(frame.clone());
        }
    });
    assert!(
        moved.contains(&"execution_success".to_string()),
        "{moved:?}"
    );
    assert!(
        !moved
            .iter()
            .any(|k| k == "progress" || k == "progress_state" || k == "binary"),
        "{moved:?}"
    );
    let before = state.history_version();
    let now = state.now;
    update(&mut state, now, Event::Tick);
    update(&mut state, now, Event::Drawn);
    assert_eq!(state.history_version(), before, "a timer and a frame drawn");
    let late = last_step.unwrap();
    update(&mut state, now, Event::Conn(0, ConnEvent::Frame(late)));
    assert_ne!(
        state.history_version(),
        before,
        "a step of a prompt that ended"
    );
}
