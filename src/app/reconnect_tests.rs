//! Keys while offline retry at once, and a stalled socket shows in the status bar.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::testing::connected;
use super::*;
use crate::comfy::api::History;
use crate::comfy::connection::ConnEvent;

fn press(state: &mut State, code: KeyCode) -> Vec<Command> {
    let now = state.now;
    update(
        state,
        now,
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
    )
}

fn waiting() -> State {
    let mut state = connected("me", 0.0, History::default());
    update(
        &mut state,
        10.0,
        Event::Conn(
            0,
            ConnEvent::Disconnected {
                reason: "connection refused".into(),
            },
        ),
    );
    update(
        &mut state,
        10.0,
        Event::Conn(
            0,
            ConnEvent::Reconnecting {
                attempt: 4,
                delay: Duration::from_secs(5),
            },
        ),
    );
    state
}

fn status_bar(state: &State) -> String {
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal
        .draw(|frame| crate::ui::draw(state, frame))
        .unwrap();
    terminal.backend().to_string()
}

#[test]
fn r_while_waiting_retries_now_and_requeues_nothing() {
    let mut state = waiting();
    assert_eq!(
        press(&mut state, KeyCode::Char('r')),
        vec![Command::Reconnect(0)]
    );
    assert!(state.ui.overlay.is_none());
}

#[test]
fn any_key_while_waiting_retries_and_still_does_its_own_work() {
    let mut state = waiting();
    assert_eq!(
        press(&mut state, KeyCode::Down),
        vec![Command::Reconnect(0)]
    );
    assert_eq!(
        press(&mut state, KeyCode::Char('q')),
        vec![Command::Reconnect(0), Command::Quit]
    );
}

#[test]
fn keys_while_connected_do_not_reconnect() {
    let mut state = connected("me", 0.0, History::default());
    assert!(!press(&mut state, KeyCode::Char('r')).contains(&Command::Reconnect(0)));
    assert!(!press(&mut state, KeyCode::Down).contains(&Command::Reconnect(0)));
}

#[test]
fn the_offline_banner_says_how_to_retry() {
    let state = waiting();
    assert!(status_bar(&state).contains("r retries now"));
}

#[test]
fn a_quiet_socket_shows_how_long_nothing_came_until_data_resumes() {
    let mut state = connected("me", 0.0, History::default());
    update(
        &mut state,
        20.0,
        Event::Conn(
            0,
            ConnEvent::Quiet {
                silent_for: Duration::from_millis(15_200),
            },
        ),
    );
    assert!(state.dirty);
    let screen = status_bar(&state);
    assert!(screen.contains("no data for 15 s"), "{screen}");
    update(
        &mut state,
        25.0,
        Event::Conn(
            0,
            ConnEvent::Quiet {
                silent_for: Duration::from_millis(20_200),
            },
        ),
    );
    assert!(status_bar(&state).contains("no data for 20 s"));
    update(&mut state, 26.0, Event::Conn(0, ConnEvent::Resumed));
    let screen = status_bar(&state);
    assert!(!screen.contains("no data"), "{screen}");
    assert!(screen.contains("● connected"), "{screen}");
}
