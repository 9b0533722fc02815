//! Snapshots of the dashboard in the states a user meets, at 80x24 and 120x40, on fixed clocks.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::app::testing::{client_id, connected, http_body, posted_queue, replay, transcript};
use crate::app::{ClickTarget, Event, Fetched, Panel, State, update};
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
    Event::Fetched(Fetched::Tracker {
        command: TrackerCommand::FetchQueue,
        result: Ok(TrackerInput::Queue(snapshot)),
    })
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
        Event::Conn(ConnEvent::Disconnected {
            reason: "connection refused (os error 111)".into(),
        }),
    );
    update(
        &mut state,
        160.0,
        Event::Conn(ConnEvent::Reconnecting {
            attempt: 3,
            delay: Duration::from_secs(4),
        }),
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
        update(&mut state, t, Event::Conn(ConnEvent::Frame(frame)));
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
        Event::Conn(ConnEvent::Disconnected { reason }),
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
    assert!(
        screen.contains("Live per-step detail exists only for prompts comfytop"),
        "{screen}"
    );
    snapshot_sizes("other_client", state);
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
    for binding in crate::app::keymap::BINDINGS {
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
