//! Several servers in one state: events reach their own server, keys switch, the fleet view
//! sorts and the server bar flags what happened out of sight.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::comfy::api::{History, QueueSnapshot};
use crate::comfy::connection::ConnEvent;
use crate::tracker::{TrackerCommand, TrackerInput};

use super::testing::{EPOCH_MS, transcript, url};
use super::{Command, Event, FleetSort, Link, Reply, ServerFlag, ServerState, State, update};

fn three_servers() -> State {
    let servers = ["http://a:1", "http://b:2", "http://c:3"]
        .into_iter()
        .map(|u| ServerState::new(url(u), None, "comfytop-us"))
        .collect();
    let mut state = State::new(url("http://a:1"), "comfytop-us", EPOCH_MS).with_servers(servers);
    state.ui.width = 120;
    state.ui.height = 40;
    for index in 0..3 {
        update(
            &mut state,
            1.0,
            Event::Conn(
                index,
                ConnEvent::Connected {
                    sid: None,
                    features: None,
                },
            ),
        );
        for reply in [
            Reply::Tracker {
                command: TrackerCommand::FetchQueue,
                result: Ok(TrackerInput::Queue(QueueSnapshot::default())),
            },
            Reply::Tracker {
                command: TrackerCommand::FetchHistory { max_items: 64 },
                result: Ok(TrackerInput::History(History::default())),
            },
        ] {
            update(&mut state, 1.0, Event::Reply(index, reply));
        }
    }
    state
}

fn press(state: &mut State, c: char) -> Vec<Command> {
    update(
        state,
        2.0,
        Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
    )
}

#[test]
fn several_servers_open_on_the_fleet_and_keys_switch_between_them() {
    let mut state = three_servers();
    assert!(state.ui.fleet.is_some() && state.ui.server_bar);
    press(&mut state, '2');
    assert_eq!((state.current, state.ui.fleet), (1, None));
    press(&mut state, ']');
    press(&mut state, ']');
    assert_eq!(state.current, 0, "] goes round");
    press(&mut state, '[');
    assert_eq!(state.current, 2);
    press(&mut state, '9');
    assert_eq!(state.current, 2, "no server 9");
    assert!(
        state
            .ui
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("1 to 3"))
    );
    press(&mut state, '0');
    assert_eq!(state.ui.fleet.map(|f| f.selected), Some(2));
    press(&mut state, 'j');
    assert_eq!(
        state.ui.fleet.map(|f| f.selected),
        Some(2),
        "the last row stays"
    );
    press(&mut state, 'k');
    let enter = KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE);
    update(&mut state, 2.0, Event::Key(enter));
    assert_eq!((state.current, state.ui.fleet), (1, None));
    // A control key acts on the server shown.
    let commands = press(&mut state, 'u');
    assert!(
        commands
            .iter()
            .all(|c| !matches!(c, Command::Act(i, _) if *i != 1)),
        "{commands:?}"
    );
}

#[test]
fn each_server_keeps_its_own_events_and_one_out_of_sight_is_flagged() {
    let mut state = three_servers();
    press(&mut state, '1');
    // A whole recorded run on server 3 while server 1 is shown.
    let mut fetches = Vec::new();
    for frame in transcript("c_full_run_legacy_previews") {
        fetches.extend(update(
            &mut state,
            3.0 + frame.t,
            Event::Conn(2, ConnEvent::Frame(frame)),
        ));
    }
    assert!(
        fetches
            .iter()
            .all(|c| !matches!(c, Command::Fetch(i, _) if *i != 2)),
        "{fetches:?}"
    );
    assert_eq!(state.servers[2].tracker.finished().count(), 1);
    assert_eq!(state.servers[0].tracker.finished().count(), 0);
    assert_eq!(state.servers[2].flag, Some(ServerFlag::Finished));
    assert_eq!(state.servers[0].flag, None);
    update(
        &mut state,
        9.0,
        Event::Conn(
            1,
            ConnEvent::Disconnected {
                reason: "gone".into(),
            },
        ),
    );
    assert_eq!(state.servers[1].flag, Some(ServerFlag::Failed));
    assert_eq!(state.servers[1].link, Link::Offline);
    assert!(matches!(state.servers[0].link, Link::Connected { .. }));
    // Looking at it clears the flag.
    press(&mut state, '3');
    assert_eq!(state.servers[2].flag, None);

    // The fleet sorts by state: the server in trouble first.
    press(&mut state, '0');
    press(&mut state, 's');
    press(&mut state, 's');
    assert_eq!(state.ui.fleet.map(|f| f.sort), Some(FleetSort::State));
    assert_eq!(state.fleet_order(), [1, 0, 2]);
}

#[test]
fn t_asks_which_other_server_and_brackets_change_it() {
    let mut state = three_servers();
    press(&mut state, '1');
    let mut t = 0.0;
    for frame in transcript("c_full_run_legacy_previews") {
        t = 3.0 + frame.t;
        update(&mut state, t, Event::Conn(0, ConnEvent::Frame(frame)));
    }
    // The history panel, its one prompt selected.
    let tab = KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE);
    update(&mut state, t, Event::Key(tab));
    update(&mut state, t, Event::Key(tab));
    press(&mut state, 'T');
    let to = |state: &State| match &state.ui.overlay {
        Some(super::Overlay::Confirm(confirm)) => confirm.to,
        _ => None,
    };
    assert_eq!(to(&state), Some(1));
    press(&mut state, ']');
    assert_eq!(to(&state), Some(2));
    press(&mut state, ']');
    assert_eq!(to(&state), Some(1), "never the server shown");
    let commands = press(&mut state, 'y');
    assert!(
        matches!(
            commands.as_slice(),
            [Command::RequeueTo { from: 0, to: 1, .. }]
        ),
        "{commands:?}"
    );
    // With one server there is nowhere else.
    let mut alone = State::new(url("http://a:1"), "comfytop-us", EPOCH_MS);
    press(&mut alone, 'T');
    assert!(alone.ui.overlay.is_none());
}

#[test]
fn the_server_log_panel_asks_each_server_it_is_switched_to() {
    let mut state = three_servers();
    press(&mut state, '1');
    assert_eq!(press(&mut state, 'L'), vec![Command::FollowServerLog(0)]);
    let commands = press(&mut state, ']');
    assert!(
        commands.contains(&Command::FollowServerLog(1)),
        "{commands:?}"
    );
    // Once asked, not again.
    press(&mut state, '[');
    assert!(!press(&mut state, ']').contains(&Command::FollowServerLog(1)));
}

#[test]
fn the_log_backlog_goes_before_lines_the_stream_brought_first() {
    use crate::comfy::protocol::LogEntry;
    let entry = |t: &str, m: &str| LogEntry {
        t: t.into(),
        m: m.into(),
    };
    let mut log = super::ServerLog::default();
    // The stream's first line can come before the backlog's answer.
    log.add(&[entry("10:00:05", "streamed")], false);
    log.add(
        &[entry("10:00:01", "older"), entry("10:00:05", "streamed")],
        true,
    );
    let texts: Vec<&str> = log.lines.iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(texts, ["older", "streamed"]);
}
