//! Snapshots of the dashboard in the states a user meets, at 80x24 and 120x40, on fixed clocks.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::testing::{
    client_id, connected, http_body, posted_queue, replay, replay_each, transcript,
};
use crate::app::{ClickTarget, Event, Panel, Reply, State, update};
use crate::comfy::api::{History, QueueSnapshot};
use crate::comfy::connection::ConnEvent;
use crate::tracker::{TrackerCommand, TrackerInput};

use super::{draw, hit_test};

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn render(state: &mut State, width: u16, height: u16) -> String {
    update(state, state.now, Event::Resize { width, height });
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(state, frame)).unwrap();
    terminal.backend().to_string()
}

fn snapshot_sizes(name: &str, mut state: State) {
    for (w, h) in SIZES {
        let screen = render(&mut state, w, h);
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen);
    }
}

fn key(state: &mut State, code: KeyCode) {
    let now = state.now;
    update(
        state,
        now,
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
    );
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

fn idle() -> State {
    let mut state = connected("5f1c9a2e-comfytop", 0.0, History::default());
    update(&mut state, 5.0, Event::Tick);
    state
}

fn with_history() -> State {
    let history: History = http_body("get_history");
    let mut state = connected("5f1c9a2e-comfytop", 30.0, history);
    update(&mut state, 150.0, Event::Tick);
    state
}

fn reconnecting() -> State {
    let mut state = with_history();
    update(
        &mut state,
        160.0,
        Event::Conn(
            0,
            ConnEvent::Disconnected {
                reason: "connection refused (os error 111)".into(),
            },
        ),
    );
    update(
        &mut state,
        160.0,
        Event::Conn(
            0,
            ConnEvent::Reconnecting {
                attempt: 3,
                delay: Duration::from_secs(4),
            },
        ),
    );
    update(&mut state, 161.2, Event::Tick);
    state
}

fn running() -> State {
    let name = "c_full_run_legacy_previews";
    let mut state = connected(&client_id(name), 0.0, History::default());
    replay(&mut state, name, 1.0, 1.0);
    update(&mut state, 2.1, Event::Tick);
    state
}

fn other_client() -> State {
    let mut state = connected("5f1c9a2e-comfytop", 0.0, History::default());
    let mut snapshot = posted_queue("i_second_client_watching");
    snapshot.queue_running = std::mem::take(&mut snapshot.queue_pending);
    let mut more: QueueSnapshot = http_body("get_queue_running_and_pending");
    snapshot.queue_pending.append(&mut more.queue_pending);
    update(&mut state, 1.0, queue_reply(snapshot));
    for frame in transcript("i_second_client_watching__watcher") {
        if frame.t > 1.5 {
            break;
        }
        let t = 1.0 + frame.t;
        update(&mut state, t, Event::Conn(0, ConnEvent::Frame(frame)));
    }
    update(&mut state, 3.0, Event::Tick);
    state
}

/// The same prompt of another client, on a server with the comfytop bridge: its owner's
/// messages come relayed, as the bridge sends them.
fn relayed_client() -> State {
    use crate::comfy::binary::BinaryFrame;
    use crate::comfy::protocol::{Relayed, ServerMessage};
    use crate::comfy::{Decoded, RawFrame};
    let mut state = connected("5f1c9a2e-comfytop", 0.0, History::default());
    let watching = crate::bridge::BridgeLink::Watching {
        version: "1.0.0".into(),
    };
    update(&mut state, 0.5, Event::Reply(0, Reply::Bridge(watching)));
    let snapshot = posted_queue("i_second_client_watching");
    let owner = snapshot.queue_pending[0].client_id().unwrap().to_string();
    update(&mut state, 1.0, queue_reply(snapshot));
    for frame in transcript("i_second_client_watching__owner") {
        if frame.t > 1.5 {
            break;
        }
        let (raw, decoded) = match frame.decoded {
            Decoded::Message(m) if m.prompt_id().is_some() => {
                let relayed = ServerMessage::Relayed(Relayed {
                    owner: owner.clone(),
                    message: Box::new(m),
                });
                (RawFrame::Text(relayed.to_json()), Decoded::Message(relayed))
            }
            Decoded::Binary(b @ BinaryFrame::Preview(_)) => {
                let relayed = BinaryFrame::Relayed {
                    owner: owner.clone(),
                    frame: Box::new(b),
                };
                (RawFrame::Binary(relayed.encode()), Decoded::Binary(relayed))
            }
            // What the bridge does not relay: every client gets it anyway.
            _ => continue,
        };
        let t = 1.0 + frame.t;
        let frame = crate::comfy::connection::ReceivedFrame { t, raw, decoded };
        update(&mut state, t, Event::Conn(0, ConnEvent::Frame(frame)));
    }
    update(&mut state, 3.0, Event::Tick);
    state
}

fn error_detail() -> State {
    let name = "e_execution_error";
    let mut state = connected(&client_id(name), 0.0, History::default());
    replay(&mut state, name, 1.0, f64::INFINITY);
    update(&mut state, 4.0, Event::Tick);
    key(&mut state, KeyCode::BackTab);
    key(&mut state, KeyCode::Enter);
    assert!(state.ui.detail.is_some());
    state
}

#[test]
fn connected_and_idle() {
    snapshot_sizes("connected_idle", idle());
}

#[test]
fn empty_queue_with_history() {
    snapshot_sizes("empty_queue", with_history());
}

#[test]
fn a_wide_character_close_reason_fits_the_status_bar() {
    let mut state = with_history();
    let reason = "服务器正在维护中请稍后再试连接已经被对方关闭了谢谢您的耐心等待".repeat(2);
    update(
        &mut state,
        160.0,
        Event::Conn(0, ConnEvent::Disconnected { reason }),
    );
    for (w, h) in SIZES {
        // Used to loop for ever: the cut counted characters, the bar counts cells.
        let screen = render(&mut state, w, h);
        assert!(screen.contains("服务器"), "{screen}");
    }
}

#[test]
fn reconnecting_counts_down_and_names_the_error() {
    let mut state = reconnecting();
    let screen = render(&mut state, 120, 40);
    assert!(
        screen.contains("reconnecting in 3 s (attempt 3)"),
        "{screen}"
    );
    assert!(
        screen.contains("connection refused (os error 111)"),
        "{screen}"
    );
    snapshot_sizes("reconnecting", state);
}

#[test]
fn running_with_progress() {
    let mut state = running();
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("Slow Steps #1"), "{screen}");
    assert!(screen.contains("3/6"), "{screen}");
    snapshot_sizes("running", state);
}

#[test]
fn another_clients_prompt_says_what_cannot_be_known() {
    let mut state = other_client();
    let screen = render(&mut state, 120, 40);
    // The recorded server has no bridge: say so, and how to get it.
    assert!(
        screen.contains("ComfyUI sends live detail only to the client that queued a"),
        "{screen}"
    );
    assert!(screen.contains("comfytop install-bridge"), "{screen}");
    snapshot_sizes("other_client", state);
}

#[test]
fn another_clients_prompt_seen_through_the_bridge_is_live() {
    let mut state = relayed_client();
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("│ bridge │"), "{screen}");
    assert!(
        screen.contains("queued by another client · via bridge"),
        "{screen}"
    );
    assert!(screen.contains("⇄ lab-i-owner"), "{screen}");
    assert!(screen.contains("nodes"), "{screen}");
    assert!(!screen.contains("install-bridge"), "{screen}");
    snapshot_sizes("relayed_client", state);
}

#[test]
fn error_detail_with_traceback() {
    let mut state = error_detail();
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("RuntimeError"), "{screen}");
    assert!(screen.contains("Traceback"), "{screen}");
    snapshot_sizes("error_detail", state);
}

#[test]
fn help_lists_every_key() {
    let mut state = idle();
    key(&mut state, KeyCode::Char('?'));
    let screen = render(&mut state, 120, 40);
    for binding in crate::app::keys::KeyTable::default().dashboard_help() {
        assert!(
            screen.contains(binding.help),
            "{} missing:\n{screen}",
            binding.help
        );
    }
    insta::assert_snapshot!("help_120x40", screen);
}

#[test]
fn event_log_panel() {
    let mut state = running();
    key(&mut state, KeyCode::Char('l'));
    insta::assert_snapshot!("event_log_120x40", render(&mut state, 120, 40));
}

#[test]
fn server_strings_never_put_escapes_on_screen() {
    let mut state = connected("me", 0.0, History::default());
    let mut snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
    if let Some(node) = snapshot.queue_running[0].prompt.nodes.get_mut("1") {
        node.title = Some("evil\u{1b}]0;owned\u{7}\u{1b}[2Jtitle\u{9b}31m".into());
    }
    update(&mut state, 1.0, queue_reply(snapshot));
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("eviltitle #1"), "{screen}");
    assert!(
        !screen.chars().any(|c| c.is_control() && c != '\n'),
        "{screen:?}"
    );
}

#[test]
fn clicks_land_on_the_rows_drawn() {
    let mut state = connected("me", 0.0, History::default());
    update(
        &mut state,
        1.0,
        queue_reply(http_body("get_queue_running_and_pending")),
    );
    render(&mut state, 120, 40);
    // Wide layout: the queue is top left; its frame and header take two rows, the status bar one.
    assert_eq!(
        hit_test(&state, 5, 3),
        Some(ClickTarget::Row {
            panel: Panel::Queue,
            index: 0
        })
    );
    assert_eq!(
        hit_test(&state, 5, 5),
        Some(ClickTarget::Row {
            panel: Panel::Queue,
            index: 2
        })
    );
    // Four prompts: the queue panel is as tall as they need, its bottom line at row 7.
    assert_eq!(
        hit_test(&state, 5, 7),
        Some(ClickTarget::Panel(Panel::Queue))
    );
    assert_eq!(
        hit_test(&state, 5, 10),
        Some(ClickTarget::Panel(Panel::History))
    );
    assert_eq!(
        hit_test(&state, 100, 10),
        Some(ClickTarget::Panel(Panel::Progress))
    );
    assert_eq!(hit_test(&state, 5, 0), None);
}

#[test]
fn interrupt_confirmation_names_the_prompt_and_its_owner() {
    let mut state = other_client();
    key(&mut state, KeyCode::Char('c'));
    let screen = render(&mut state, 80, 24);
    assert!(screen.contains("Interrupt running prompt"), "{screen}");
    assert!(screen.contains("queued by client"), "{screen}");
    assert!(screen.contains("n  Esc no"), "{screen}");
    snapshot_sizes("confirm_interrupt", state);
}

#[test]
fn clear_confirmation_counts_other_clients_prompts() {
    let mut state = other_client();
    key(&mut state, KeyCode::Char('X'));
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("Delete all"), "{screen}");
    assert!(screen.contains("queued by other clients"), "{screen}");
    snapshot_sizes("confirm_clear", state);
}

#[test]
fn read_only_shows_in_the_status_bar_and_keys_say_so() {
    let mut state = other_client();
    state.access = crate::control::Access::ReadOnly;
    key(&mut state, KeyCode::Char('X'));
    let screen = render(&mut state, 80, 24);
    let lines: Vec<&str> = screen.lines().collect();
    assert!(lines[0].contains("read-only"), "{screen}");
    assert!(
        lines[lines.len() - 1].contains("comfytop is read-only"),
        "{screen}"
    );
    assert!(!screen.contains("Confirm"), "{screen}");
    snapshot_sizes("read_only_refusal", state);
}

/// With the preview pane beside it the detail view's text wraps narrower, so it is longer: `G`
/// must reach the end that is drawn, not the end of the text at full width.
#[test]
fn g_in_the_detail_view_reaches_the_last_line_beside_the_preview_pane() {
    let mut state = crate::app::testing::detail_with_two_outputs();
    update(
        &mut state,
        1.0,
        Event::Resize {
            width: 64,
            height: 16,
        },
    );
    let areas = super::Areas::of_state(&state);
    assert!(areas.preview.is_some(), "the pane is open");
    let text = areas.detail_text().unwrap();
    key(&mut state, KeyCode::Char('G'));
    let detail = state.ui.detail.clone().unwrap();
    let prompt = state.server().tracker.prompt(&detail.prompt_id).unwrap();
    let doc = crate::app::detail::lines(&state, prompt, usize::from(text.width));
    let rows = usize::from(text.height);
    assert!(doc.len() > rows, "long enough to scroll");
    assert_eq!(
        detail.scroll,
        doc.len() - rows,
        "G scrolls to the last page"
    );
    let screen = render(&mut state, 64, 16);
    // The last node's lines are drawn at the bottom of the text.
    let last_rows: Vec<&str> = screen.lines().rev().skip(2).take(2).collect();
    assert!(last_rows[0].contains("done"), "{screen}");
    assert!(last_rows[1].contains("SaveImage"), "{screen}");
    // One more `j` moves nothing: this is the end.
    let bottom = state.ui.detail.as_ref().unwrap().scroll;
    key(&mut state, KeyCode::Char('j'));
    assert_eq!(state.ui.detail.as_ref().unwrap().scroll, bottom);
}

/// A save that failed says why in full, however narrow the screen: the footer takes the rows the
/// message needs instead of cutting it.
#[test]
fn a_long_save_error_is_shown_whole_in_the_footer() {
    let error = "cannot create the directory /home/lab/comfy-outputs/2026/november: \
                 Permission denied (os error 13)";
    for (width, height) in [(40, 12), (80, 24)] {
        let mut state = idle();
        update(
            &mut state,
            6.0,
            Event::Reply(0, Reply::Saved(Err(error.into()))),
        );
        let screen = render(&mut state, width, height);
        // Compared without spaces: a path is broken where the line ends.
        let squeeze = |s: &str| s.split_whitespace().collect::<String>();
        let text = squeeze(&screen.replace('"', ""));
        assert!(
            text.contains(&squeeze(&format!("not saved: {error}"))),
            "{width}x{height}:\n{screen}"
        );
        if (width, height) == (40, 12) {
            insta::assert_snapshot!("save_error_40x12", screen);
        }
    }
}

/// Client ids are shown whole enough to tell `other-qa-6` from `other-qa-7`; another comfytop's
/// prompts read "comfytop", ours "you"; a prompt deleted from the queue is listed in History
/// but not counted as the server's.
#[test]
fn owners_read_apart_and_removed_prompts_are_counted_apart() {
    use crate::comfy::connection::{COMFYTOP_CLIENT_PREFIX, new_client_id};
    assert!(new_client_id().starts_with(COMFYTOP_CLIENT_PREFIX));
    let mut state = connected("comfytop-5f1c9a2e-ours", 0.0, History::default());
    let owned = || {
        let mut snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        let owners = [
            "comfytop-0b1d4c3e-9f00-4a5b-8c6d-123456789abc",
            "other-qa-6",
            "other-qa-7",
        ];
        for (item, owner) in snapshot.queue_pending.iter_mut().zip(owners) {
            item.extra_data
                .insert("client_id".into(), serde_json::json!(owner));
        }
        snapshot
    };
    let snapshot = owned();
    let pending: Vec<String> = snapshot
        .queue_pending
        .iter()
        .map(|item| item.prompt_id.clone())
        .collect();
    update(&mut state, 1.0, queue_reply(snapshot));
    let screen = render(&mut state, 120, 40);
    let queue_row = |id: &str| {
        screen
            .lines()
            .find(|l| l.contains(&id[..8]))
            .unwrap_or_default()
            .to_string()
    };
    let by: Vec<String> = pending.iter().map(|id| queue_row(id)).collect();
    assert!(by.iter().any(|row| row.contains(" comfytop ")), "{screen}");
    assert!(
        by.iter().any(|row| row.contains(" other-qa-6 ")),
        "{screen}"
    );
    assert!(
        by.iter().any(|row| row.contains(" other-qa-7 ")),
        "{screen}"
    );

    // One pending prompt is deleted: it leaves the queue with no history entry.
    let mut rest = owned();
    rest.queue_pending
        .retain(|item| item.prompt_id != pending[1]);
    update(&mut state, 2.0, queue_reply(rest));
    update(
        &mut state,
        2.0,
        Event::Reply(
            0,
            Reply::Tracker {
                command: TrackerCommand::FetchHistoryItem(pending[1].clone()),
                result: Ok(TrackerInput::HistoryItem {
                    prompt_id: pending[1].clone(),
                    entry: None,
                }),
            },
        ),
    );
    let screen = render(&mut state, 120, 40);
    assert!(screen.contains("History 0 · 1 removed"), "{screen}");
    assert!(
        queue_row_in(&screen, &pending[1]).contains("− removed"),
        "{screen}"
    );
    insta::assert_snapshot!("owners_and_removed_120x40", screen);
}

fn queue_row_in(screen: &str, id: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(&id[..8]))
        .unwrap_or_default()
        .to_string()
}

/// At 40x10 the help does not fit: the movement keys scroll it, and every binding can be read.
#[test]
fn the_help_scrolls_on_a_small_screen_and_every_key_can_be_read() {
    let mut state = idle();
    render(&mut state, 40, 10);
    key(&mut state, KeyCode::Char('?'));
    let first = render(&mut state, 40, 10);
    assert!(!first.contains("wheel"), "{first}");
    let mut seen = first.clone();
    for _ in 0..60 {
        key(&mut state, KeyCode::Char('j'));
        seen.push_str(&render(&mut state, 40, 10));
    }
    let squeeze = |s: &str| s.split_whitespace().collect::<String>();
    // Screens are compared per row: a wrapped help text is read across its rows.
    let text: String = seen
        .lines()
        .map(|l| l.trim_matches('"').trim_matches('│'))
        .collect::<Vec<_>>()
        .join(" ");
    let text = squeeze(&text);
    for binding in crate::app::keys::KeyTable::default().dashboard_help() {
        assert!(text.contains(&squeeze(binding.help)), "{}", binding.help);
    }
    let last = render(&mut state, 40, 10);
    assert!(last.contains("wheel"), "{last}");
    key(&mut state, KeyCode::Char('g'));
    assert_eq!(render(&mut state, 40, 10), first);
    insta::assert_snapshot!("help_scrolled_40x10", last);
}

/// `l` in the detail view shows the event log under it at once.
#[test]
fn l_shows_the_event_log_under_the_detail_view() {
    let mut state = error_detail();
    let before = render(&mut state, 80, 24);
    assert!(!before.contains("Events"), "{before}");
    key(&mut state, KeyCode::Char('l'));
    let screen = render(&mut state, 80, 24);
    assert!(state.ui.detail.is_some());
    assert!(screen.contains("╭ Prompt "), "{screen}");
    assert!(screen.contains("╭ Events"), "{screen}");
}

/// A pending prompt's wait counts from the server's queue time when it sent one
/// (`extra_data.create_time`), and says it counts only since seen when it did not.
#[test]
fn a_pending_prompts_wait_counts_from_the_servers_queue_time_or_says_since_seen() {
    let mut snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
    assert!(snapshot.queue_pending.len() >= 2, "two pending prompts");
    let epoch_ms_at_zero = {
        let state = connected("5f1c9a2e-comfytop", 0.0, History::default());
        state.epoch_ms_at_zero
    };
    // The first was queued 90 s before this dashboard's clock started; the second says nothing.
    snapshot.queue_pending[0].extra_data.insert(
        "create_time".into(),
        serde_json::json!(epoch_ms_at_zero - 90_000.0),
    );
    snapshot.queue_pending[1].extra_data.remove("create_time");
    let (told, untold) = (
        snapshot.queue_pending[0].prompt_id.clone(),
        snapshot.queue_pending[1].prompt_id.clone(),
    );
    let mut state = connected("5f1c9a2e-comfytop", 0.0, History::default());
    update(&mut state, 10.0, queue_reply(snapshot));
    update(&mut state, 15.0, Event::Tick);
    let summary = |id: &str| {
        let prompt = state.server().tracker.prompt(id).unwrap();
        crate::app::detail::summary(&state, prompt)
    };
    assert!(
        summary(&told).contains("pending 1:45"),
        "{}",
        summary(&told)
    );
    assert!(!summary(&told).contains("since seen"));
    assert!(
        summary(&untold).contains("pending 0:05 since seen"),
        "{}",
        summary(&untold)
    );
    let screen = render(&mut state, 120, 40);
    let row = |id: &str| {
        screen
            .lines()
            .find(|l| l.contains(&id[..8]))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&told).contains(" 1:45"), "{screen}");
    assert!(row(&untold).contains("≥0:05"), "{screen}");
}

/// A client id longer than the "by" column is cut once, in its middle, keeping both ends.
#[test]
fn a_long_client_id_is_cut_once_in_the_middle_of_its_column() {
    let mut snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
    let long_id = "e4a0655c5df74b1e9c2af44c6e601d3a7b8c9d0e";
    snapshot.queue_pending[0]
        .extra_data
        .insert("client_id".into(), serde_json::json!(long_id));
    let prompt_id = snapshot.queue_pending[0].prompt_id.clone();
    let mut state = connected("5f1c9a2e-comfytop", 0.0, History::default());
    update(&mut state, 1.0, queue_reply(snapshot));
    let screen = render(&mut state, 120, 40);
    let row = screen
        .lines()
        .find(|l| l.contains(&prompt_id[..8]))
        .unwrap_or_default();
    assert_eq!(row.matches('…').count(), 1, "{screen}");
    assert!(row.contains("e4a06") && row.contains("9d0e"), "{screen}");
}

#[test]
fn without_colours_the_screen_keeps_its_text_and_its_emphasis() {
    let colours = |state: &mut State| {
        update(
            state,
            state.now,
            Event::Resize {
                width: 100,
                height: 30,
            },
        );
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|frame| draw(state, frame)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let coloured = buffer
            .content()
            .iter()
            .filter(|c| {
                c.fg != ratatui::style::Color::Reset || c.bg != ratatui::style::Color::Reset
            })
            .count();
        let dim = buffer
            .content()
            .iter()
            .filter(|c| c.modifier.contains(ratatui::style::Modifier::DIM))
            .count();
        (terminal.backend().to_string(), coloured, dim)
    };
    let mut state = idle();
    let (text, coloured, _) = colours(&mut state);
    assert!(coloured > 0, "the theme has colours");
    state.ui.color = false;
    let (plain_text, plain_coloured, dim) = colours(&mut state);
    assert_eq!(plain_text, text, "the same text");
    assert_eq!(plain_coloured, 0, "no colour left");
    assert!(dim > 0, "grey text turns dim");
}

#[test]
fn the_server_log_panel_asks_once_shows_lines_and_says_when_refused() {
    use crate::comfy::api::RawLogs;
    use crate::comfy::protocol::LogEntry;
    let mut state = idle();
    let commands = update(
        &mut state,
        6.0,
        Event::Key(KeyEvent::new(KeyCode::Char('L'), KeyModifiers::NONE)),
    );
    assert_eq!(commands, vec![crate::app::Command::FollowServerLog(0)]);
    assert!(render(&mut state, 100, 30).contains("asking the server for its log"));
    let entry = |t: &str, m: &str| LogEntry {
        t: t.into(),
        m: m.into(),
    };
    let backlog = RawLogs {
        entries: vec![
            entry("2026-11-29T10:00:01.000", "got prompt\n"),
            entry(
                "2026-11-29T10:00:02.000",
                "Prompt executed in 1.20 seconds\n\x1b]52;c;AAAA\x07x",
            ),
        ],
        size: None,
    };
    update(
        &mut state,
        6.5,
        Event::Reply(0, Reply::ServerLog(Ok(backlog.clone()))),
    );
    let screen = render(&mut state, 100, 30);
    assert!(screen.contains("10:00:01 got prompt"), "{screen}");
    assert!(
        screen.contains("10:00:02 Prompt executed in 1.20 seconds"),
        "{screen}"
    );
    assert!(!screen.contains("52;c"), "{screen}");
    // The same backlog after a reconnect adds nothing.
    update(
        &mut state,
        7.0,
        Event::Reply(0, Reply::ServerLog(Ok(backlog))),
    );
    assert_eq!(state.server().server_log.lines.len(), 3);
    // Searched: only what matches, and the count.
    for c in "/GOT".chars() {
        key(&mut state, KeyCode::Char(c));
    }
    key(&mut state, KeyCode::Enter);
    let screen = render(&mut state, 100, 30);
    assert!(screen.contains("/GOT · 1 of 3 lines"), "{screen}");
    assert!(!screen.contains("executed"), "{screen}");
    // A server that says no: the panel says why, and L asks again.
    update(
        &mut state,
        8.0,
        Event::Reply(
            0,
            Reply::ServerLog(Err("GET /internal/logs/raw: 404".into())),
        ),
    );
    key(&mut state, KeyCode::Esc);
    let screen = render(&mut state, 100, 30);
    assert!(
        screen.contains("the server did not give its log: GET /internal/logs/raw: 404"),
        "{screen}"
    );
}

#[test]
fn the_memory_panel_shows_gauges_and_a_sparkline_and_refreshes_sooner_while_shown() {
    let mut state = idle();
    key(&mut state, KeyCode::Char('m'));
    assert!(state.ui.memory_shown && state.ui.show_log);
    assert_eq!(state.stats_interval(0), crate::app::STATS_INTERVAL_WATCHED);
    let mut stats = crate::app::testing::system_stats();
    for (i, free) in [20u64, 15, 10, 5].into_iter().enumerate() {
        stats.system.ram_free = free << 30;
        update(
            &mut state,
            10.0 + i as f64,
            Event::Reply(0, Reply::SystemStats(Ok(stats.clone()))),
        );
    }
    let screen = render(&mut state, 120, 40);
    let ram = screen
        .lines()
        .find(|line| line.starts_with("\"│ RAM "))
        .unwrap_or_default();
    assert!(ram.contains('█') && ram.contains('░'), "{screen}");
    assert_eq!(
        state.server().stats.history.len(),
        5,
        "one sample per answer"
    );
    // Rising use rises in the sparkline.
    let spark: String = ram
        .chars()
        .filter(|c| ('▁'..='█').contains(c) && *c != '█')
        .collect();
    assert!(!spark.is_empty(), "{ram}");
    key(&mut state, KeyCode::Char('m'));
    assert!(!state.ui.show_log);
    assert_eq!(state.stats_interval(0), crate::app::STATS_INTERVAL_IDLE);
}

const FULL_RUN: &str = "c_full_run_legacy_previews";
const FULL_RUN_ID: &str = "647d7248-af64-42c7-a02f-e276bf58c802";

/// The full run followed live to its end, under the server's other history (without its own
/// entry, which the recording made after the fact).
fn full_run_finished() -> State {
    let history: History = http_body("get_history");
    let others = History(
        history
            .0
            .into_iter()
            .filter(|(id, _)| id != FULL_RUN_ID)
            .collect(),
    );
    let mut state = connected(&client_id(FULL_RUN), 0.0, others);
    replay(&mut state, FULL_RUN, 1.0, f64::INFINITY);
    update(&mut state, 5.0, Event::Tick);
    // Selected in the History panel (the others finished later, so it is near the end).
    let index = state
        .history_rows()
        .iter()
        .position(|p| p.id == FULL_RUN_ID)
        .unwrap();
    state.ui.focus = Panel::History;
    state.ui.history = crate::app::Selection {
        id: Some(FULL_RUN_ID.to_string()),
        index,
    };
    state
}

/// The History row of prompt `id`: its short id in the prompt column, near the left edge (the
/// preview pane's title may name it too).
fn history_row_in(screen: &str, id: &str) -> String {
    let short = &id[..8];
    screen
        .lines()
        .find(|line| line.find(short).is_some_and(|at| at < 40))
        .unwrap_or_else(|| panic!("no row for {short}:\n{screen}"))
        .to_string()
}

#[test]
fn history_rows_name_the_slowest_node_within_the_panel() {
    let mut state = full_run_finished();
    // Half of 120 columns: no room for a column, so it takes the word "success".
    let screen = render(&mut state, 120, 40);
    let row = history_row_in(&screen, FULL_RUN_ID);
    assert!(row.contains("│✓ Slow S… 100% 647d7248"), "{row}");
    // Prompts seen only through the history keep their words.
    assert!(screen.contains("│✓ success      677599a4"), "{screen}");
    assert!(!screen.contains("slowest"), "{screen}");
    // The whole width: a column of its own.
    let screen = render(&mut state, 80, 24);
    assert!(screen.contains("slowest"), "{screen}");
    let row = history_row_in(&screen, FULL_RUN_ID);
    assert!(row.contains("Slow Steps 100%"), "{row}");
    assert!(row.contains("✓ success"), "{row}");
    snapshot_sizes("history_slowest_node", state);
}

#[test]
fn details_say_where_the_time_went() {
    let mut state = full_run_finished();
    key(&mut state, KeyCode::Enter);
    let detail = state.ui.detail.clone().expect("the detail view is open");
    assert_eq!(detail.prompt_id, FULL_RUN_ID);
    let screen = render(&mut state, 120, 40);
    assert!(
        screen.contains("Where the time went · 1.8 s in 5 nodes"),
        "{screen}"
    );
    assert!(
        screen.contains("◆ 1 cached, no time: EmptyImage (5)"),
        "{screen}"
    );
    snapshot_sizes("time_went_detail", state);
}

#[test]
fn details_of_a_prompt_without_live_node_events_invent_no_times() {
    let state = crate::app::testing::detail_with_two_outputs();
    let detail = state.ui.detail.clone().unwrap();
    let prompt = state.server().tracker.prompt(&detail.prompt_id).unwrap();
    assert!(!prompt.live);
    let doc = crate::app::detail::lines(&state, prompt, 100);
    assert!(
        doc.iter().all(|l| !l.text.contains("Where the time went")),
        "{doc:#?}"
    );
}

/// The lines of `prompt`'s details at 100 columns, and where "Where the time went" is.
fn details_text(state: &State, prompt: &crate::tracker::PromptRecord) -> (Vec<String>, usize) {
    let doc = crate::app::detail::lines(state, prompt, 100);
    let text: Vec<String> = doc.into_iter().map(|l| l.text).collect();
    let at = text
        .iter()
        .position(|l| l == "Where the time went")
        .unwrap_or_else(|| panic!("{text:#?}"));
    (text, at)
}

#[test]
fn details_of_a_run_whose_events_came_together_time_no_node() {
    // The full run's events held up on the way and handled a microsecond apart.
    let mut state = connected(&client_id(FULL_RUN), 0.0, History::default());
    for (i, frame) in transcript(FULL_RUN).into_iter().enumerate() {
        update(
            &mut state,
            5.0 + i as f64 * 1e-6,
            Event::Conn(0, ConnEvent::Frame(frame)),
        );
    }
    let prompt = state.server().tracker.prompt(FULL_RUN_ID).unwrap();
    assert!(prompt.is_finished() && prompt.has_node_timings());
    let (text, at) = details_text(&state, prompt);
    assert!(
        text[at + 1].starts_with("  The nodes' events arrived within 50 ms"),
        "{text:#?}"
    );
    assert!(!text.iter().any(|l| l.contains('%')), "{text:#?}");
}

#[test]
fn details_of_a_fully_cached_run_say_that_nothing_ran() {
    let name = "d_same_prompt_cached";
    let mut state = connected(&client_id(name), 0.0, History::default());
    replay(&mut state, name, 1.0, f64::INFINITY);
    let prompt = state.server().tracker.finished().next().unwrap();
    let (text, at) = details_text(&state, prompt);
    assert!(
        text[at + 1].starts_with("  ◆ every node was cached, none ran (6): "),
        "{text:#?}"
    );
}

/// Drawn with what earlier frames kept and drawn from nothing, the screen is the same after
/// every step: prompts queued, run and finished, the selection moved in both lists, the focus
/// moved, the terminal resized, and a step of a run read minutes later, when ages change.
#[test]
fn drawing_with_what_earlier_frames_kept_shows_what_drawing_from_nothing_does() {
    let name = "g_queue_and_delete";
    let mut state = connected(&client_id(name), 0.0, History::default());
    let mut memo = super::Memo::default();
    let (mut kept, mut fresh) = (
        Terminal::new(TestBackend::new(120, 40)).unwrap(),
        Terminal::new(TestBackend::new(120, 40)).unwrap(),
    );
    let mut compare = |state: &State, step: &str| {
        let area = ratatui::layout::Rect::new(0, 0, state.ui.width, state.ui.height);
        for terminal in [&mut kept, &mut fresh] {
            terminal.resize(area).unwrap();
        }
        kept.draw(|frame| super::draw_with(state, &mut memo, frame))
            .unwrap();
        fresh.draw(|frame| draw(state, frame)).unwrap();
        assert_eq!(
            kept.backend().buffer(),
            fresh.backend().buffer(),
            "after {step}"
        );
    };
    update(
        &mut state,
        0.0,
        Event::Resize {
            width: 120,
            height: 40,
        },
    );
    compare(&state, "the start");

    // Another client's prompts, one running and three waiting: a row down in the queue.
    let waiting: QueueSnapshot = http_body("get_queue_running_and_pending");
    update(&mut state, 0.5, queue_reply(waiting));
    compare(&state, "another client's queue");
    assert!(state.queue_rows().len() >= 3);
    key(&mut state, KeyCode::Char('j'));
    compare(&state, "j in the queue");

    let mut last_step = None;
    replay_each(&mut state, name, 1.0, f64::INFINITY, |state, frame| {
        if matches!(
            frame.decoded,
            crate::comfy::Decoded::Message(crate::comfy::protocol::ServerMessage::Progress(_))
        ) {
            last_step = Some(frame.clone());
        }
        compare(state, &format!("the frame at {:.3}", frame.t));
    });
    assert!(state.history_len() >= 3, "prompts ended");

    // The queue, the progress, History.
    for (code, step) in [
        (KeyCode::Tab, "Tab"),
        (KeyCode::Tab, "Tab again"),
        (KeyCode::Char('j'), "j in History"),
        (KeyCode::Char('j'), "j again"),
        (KeyCode::Char('k'), "k"),
    ] {
        key(&mut state, code);
        compare(&state, step);
    }
    let now = state.now;
    update(
        &mut state,
        now,
        Event::Resize {
            width: 80,
            height: 24,
        },
    );
    compare(&state, "a resize");
    let step = last_step.expect("the run has steps");
    update(
        &mut state,
        now + 121.0,
        Event::Conn(0, ConnEvent::Frame(step)),
    );
    compare(&state, "a step two minutes later");
    update(&mut state, now + 240.0, Event::Tick);
    compare(&state, "four minutes later");
}
