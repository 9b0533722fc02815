//! [`update`]: the only code that changes the dashboard's state.

use crossterm::event::KeyEvent;

use crate::comfy::Decoded;
use crate::comfy::binary::BinaryFrame;
use crate::comfy::connection::ConnEvent;
use crate::comfy::protocol::ServerMessage;
use crate::notify::NotifyMode;
use crate::tracker::{Outcome, TrackerCommand, TrackerInput};

use super::StatsSummary;
use super::event_log::LineKind;
use super::keys::{Context, KeyAction};
use super::{
    ClickTarget, Command, Detail, Event, FleetView, Link, LogSearch, LogStream, Overlay, Panel,
    Reply, Selection, ServerFlag, State, Submitted, detail, preview,
};

/// Rows the mouse wheel moves in text views.
const WHEEL_LINES: i64 = 3;

/// Applies `event`, which happened at `now` on the dashboard clock, and returns the work it calls
/// for. Sets `state.dirty` when what is on screen changed.
pub fn update(state: &mut State, now: f64, event: Event) -> Vec<Command> {
    state.now = now.max(state.now);
    if may_change_history(state, &event) {
        state.history_changes += 1;
    }
    let mut commands = Vec::new();
    let drawn = matches!(event, Event::Drawn);
    match event {
        Event::Key(key) => on_key(state, key, &mut commands),
        Event::Click(target) => on_click(state, target),
        Event::Wheel { panel, down } => on_wheel(state, panel, down),
        Event::Resize { width, height } => {
            state.ui.width = width;
            state.ui.height = height;
            state.dirty = true;
        }
        Event::Focus(focused) => {
            for server in &mut state.servers {
                server.stats.paused = !focused;
            }
        }
        // A timer: what it is due for is checked below, as after any event.
        Event::Tick => {}
        Event::Conn(server, event) if server < state.servers.len() => {
            on_connection(state, server, event, &mut commands);
        }
        Event::Reply(server, reply) if server < state.servers.len() => {
            on_reply(state, server, reply, &mut commands);
        }
        // From a server that is not watched: nothing to do.
        Event::Conn(..) | Event::Reply(..) => {}
        Event::Preview(results) => preview::on_results(state, results),
        Event::Problem(text) => problem(state, &text),
        Event::Drawn => state.dirty = false,
        Event::FullViewClosed { problem: shown } => {
            if let Some(text) = shown {
                problem(state, &text);
            }
            commands.push(Command::RedrawPreview);
            state.dirty = true;
        }
    }
    preview::poll(state);
    preview::fetch_output_on_view(state, &mut commands);
    // The server log panel stays up across a switch of server: the new one is asked too.
    if state.ui.show_log && state.ui.server_log_shown {
        let index = state.current;
        let log = &mut state.servers[index].server_log;
        if log.stream == LogStream::NotAsked {
            log.stream = LogStream::Asking;
            commands.push(Command::FollowServerLog(index));
        }
    }
    for index in 0..state.servers.len() {
        if let Some(due) = state.stats_due(index)
            && due <= state.now
        {
            state.servers[index].stats.in_flight = true;
            commands.push(Command::FetchSystemStats(index));
        }
        // A fetch that failed for good is asked again in a while, also from an idle server;
        // the queue is looked at now and then, which shows a socket gone deaf.
        let tracker = &mut state.servers[index].tracker;
        let fetches = tracker.on_timer(state.now);
        commands.extend(fetches.into_iter().map(|f| Command::Fetch(index, f)));
        if tracker.take_reopen() {
            commands.push(Command::Reopen(index));
        }
    }
    if state.redraw_at.is_some_and(|t| t <= state.now) {
        state.dirty = true;
    }
    state.redraw_at = state.next_redraw();
    // The worker is told what the pane shows once it is on screen. Working the layout out
    // after each frame, not after each event, spares it for the 15 or so events between two.
    if drawn {
        let view = preview::view_for(state, crate::ui::preview_area(state).map(|r| r.as_size()));
        if state.previews.state.want_view(view.clone()) {
            commands.push(Command::SetPreviewView(view));
        }
    }
    commands
}

fn problem(state: &mut State, text: &str) {
    let text = crate::text::one_line(text).into_owned();
    let now = state.now;
    state.server_mut().log.push(now, LineKind::Error, text);
    state.dirty = true;
}

/// A movement in a list or a text.
#[derive(Debug, Clone, Copy)]
enum Move {
    By(i64),
    Top,
    Bottom,
}

fn on_key(state: &mut State, key: KeyEvent, commands: &mut Vec<Command>) {
    if type_into_search(state, &key) {
        return;
    }
    // While offline any key retries at once; the retry key does only that. (In the fleet view
    // a key is about the fleet, not the server shown behind it.)
    if state.ui.fleet.is_none()
        && matches!(state.server().link, Link::Waiting { .. } | Link::Offline)
    {
        commands.push(Command::Reconnect(state.current));
        if state.ui.overlay.is_none()
            && state.keys.action(Context::Offline, &key) == Some(KeyAction::RetryNow)
        {
            return;
        }
    }
    let context = state.key_context();
    let Some(action) = state.keys.action(context, &key) else {
        return;
    };
    match (context, action) {
        (_, KeyAction::Quit) => {
            commands.push(Command::Quit);
            return;
        }
        (_, KeyAction::Yes) => return super::actions::answer(state, true, commands),
        (_, KeyAction::No) => return super::actions::answer(state, false, commands),
        (_, KeyAction::Control(control)) => {
            return super::actions::on_control_key(state, control, commands);
        }
        (Context::Help, action) => on_help_key(state, action),
        (Context::Confirm, KeyAction::NextServer) => super::actions::choose_other_server(state, 1),
        (Context::Confirm, KeyAction::PrevServer) => {
            super::actions::choose_other_server(state, -1);
        }
        (_, KeyAction::ToServer(n)) => switch_to(state, usize::from(n).saturating_sub(1)),
        (_, KeyAction::NextServer) => switch_by(state, 1),
        (_, KeyAction::PrevServer) => switch_by(state, -1),
        (Context::Fleet, action) => on_fleet_key(state, action),
        (_, action) => on_view_key(state, action, commands),
    }
    state.dirty = true;
}

/// While the server log's search is typed, keys go into it (Ctrl-C still quits): true when the
/// key was taken.
fn type_into_search(state: &mut State, key: &KeyEvent) -> bool {
    use crossterm::event::{KeyCode, KeyModifiers};
    let Some(search) = state.ui.log_search.as_mut().filter(|s| s.editing) else {
        return false;
    };
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return false;
    }
    match key.code {
        KeyCode::Char(c) => search.query.push(c),
        KeyCode::Backspace => {
            search.query.pop();
        }
        KeyCode::Enter => search.editing = false,
        KeyCode::Esc => state.ui.log_search = None,
        _ => return true,
    }
    state.ui.log_scroll = 0;
    state.dirty = true;
    true
}

/// Shows the server's log in the log panel, asking the server for it the first time.
fn show_server_log(state: &mut State, commands: &mut Vec<Command>) {
    state.ui.show_log = true;
    state.ui.server_log_shown = true;
    state.ui.memory_shown = false;
    state.ui.log_scroll = 0;
    let index = state.current;
    let log = &mut state.servers[index].server_log;
    if matches!(log.stream, LogStream::NotAsked | LogStream::Refused(_)) {
        log.stream = LogStream::Asking;
        commands.push(Command::FollowServerLog(index));
    }
}

/// Shows server `index`'s dashboard (leaving the fleet view); a number past the last server
/// says so.
fn switch_to(state: &mut State, index: usize) {
    if index >= state.servers.len() {
        let text = match state.servers.len() {
            1 => "only one server is watched".to_string(),
            n => format!("there are {n} servers: 1 to {n}"),
        };
        super::actions::notice(state, super::NoticeKind::Info, text);
        return;
    }
    state.ui.fleet = None;
    if index == state.current {
        state.servers[index].flag = None;
        return;
    }
    state.current = index;
    state.servers[index].flag = None;
    // What was open is about the other server's prompts.
    state.ui.detail = None;
    state.ui.overlay = None;
    state.ui.queue = Selection::default();
    state.ui.history = Selection::default();
    state.ui.progress_scroll = None;
    state.previews = state.previews.fresh();
    // Its status and memory were read on the slow schedule of the servers not shown.
    let now = state.now;
    let stats = &mut state.servers[index].stats;
    stats.due_at = stats.due_at.map(|due| due.min(now));
}

/// The next (`step` 1) or previous (-1) server, round the list; in the fleet view it moves the
/// cursor instead.
fn switch_by(state: &mut State, step: isize) {
    let count = state.servers.len();
    if state.ui.fleet.is_some() {
        let order = state.fleet_order();
        if let Some(fleet) = &mut state.ui.fleet {
            let row = order.iter().position(|&i| i == fleet.selected).unwrap_or(0) as isize;
            let next = (row + step).rem_euclid(count as isize) as usize;
            fleet.selected = order.get(next).copied().unwrap_or(0);
        }
        return;
    }
    let next = (state.current as isize + step).rem_euclid(count as isize) as usize;
    switch_to(state, next);
}

/// A key in the fleet view: move along the rows (in their sorted order), open one, sort.
fn on_fleet_key(state: &mut State, action: KeyAction) {
    let order = state.fleet_order();
    let Some(fleet) = &mut state.ui.fleet else {
        return;
    };
    let row = order.iter().position(|&i| i == fleet.selected).unwrap_or(0);
    let last = order.len().saturating_sub(1);
    let to_row = |row: usize| order.get(row.min(last)).copied().unwrap_or(0);
    match action {
        KeyAction::Up => fleet.selected = to_row(row.saturating_sub(1)),
        KeyAction::Down => fleet.selected = to_row(row + 1),
        KeyAction::Top | KeyAction::PageUp => fleet.selected = to_row(0),
        KeyAction::Bottom | KeyAction::PageDown => fleet.selected = to_row(last),
        KeyAction::SortFleet => fleet.sort = fleet.sort.next(),
        // Back to the dashboard it was opened from.
        KeyAction::Back => {
            let index = state.current;
            switch_to(state, index);
        }
        KeyAction::Open => {
            let index = fleet.selected;
            switch_to(state, index);
        }
        KeyAction::Help => {
            state.ui.overlay = Some(Overlay::Help);
            state.ui.help_scroll = 0;
        }
        _ => {}
    }
}

/// The movement a key asks for, if it is one; a page is half the screen.
fn movement(action: KeyAction, height: u16) -> Option<Move> {
    let page = i64::from(height / 2).max(1);
    Some(match action {
        KeyAction::Up => Move::By(-1),
        KeyAction::Down => Move::By(1),
        KeyAction::PageUp => Move::By(-page),
        KeyAction::PageDown => Move::By(page),
        KeyAction::Top => Move::Top,
        KeyAction::Bottom => Move::Bottom,
        _ => return None,
    })
}

/// A key while the help is up: it closes, or scrolls when the screen is too small for it.
fn on_help_key(state: &mut State, action: KeyAction) {
    if let Some(m) = movement(action, state.ui.height) {
        scroll_help(state, m);
    } else if matches!(action, KeyAction::Help | KeyAction::Back) {
        state.ui.overlay = None;
    }
}

/// A key in the panels or a prompt's details.
fn on_view_key(state: &mut State, action: KeyAction, commands: &mut Vec<Command>) {
    if !matches!(action, KeyAction::SaveOutput | KeyAction::FullSizeView) {
        preview::on_other_key(state);
    }
    if let Some(m) = movement(action, state.ui.height) {
        return move_in_view(state, m);
    }
    let ui = &mut state.ui;
    match action {
        KeyAction::Help => {
            ui.overlay = Some(Overlay::Help);
            ui.help_scroll = 0;
        }
        KeyAction::ToggleMemory if ui.show_log && ui.memory_shown => {
            ui.show_log = false;
            ui.memory_shown = false;
            if ui.focus == Panel::Log {
                ui.focus = Panel::Queue;
            }
        }
        KeyAction::ToggleMemory => {
            ui.show_log = true;
            ui.memory_shown = true;
            ui.server_log_shown = false;
            // Sooner than the schedule: the panel starts with a fresh sample.
            let index = state.current;
            let stats = &mut state.servers[index].stats;
            stats.due_at = stats.due_at.map(|due| due.min(state.now));
        }
        KeyAction::ToggleServerLog if ui.show_log && ui.server_log_shown => {
            ui.show_log = false;
            ui.server_log_shown = false;
            if ui.focus == Panel::Log {
                ui.focus = Panel::Queue;
            }
        }
        KeyAction::ToggleServerLog => show_server_log(state, commands),
        KeyAction::SearchLog => {
            show_server_log(state, commands);
            state.ui.log_search = Some(LogSearch {
                query: String::new(),
                editing: true,
            });
        }
        // From the server's log, `l` shows the events in its place.
        KeyAction::ToggleLog if ui.show_log && (ui.server_log_shown || ui.memory_shown) => {
            ui.server_log_shown = false;
            ui.memory_shown = false;
            ui.log_scroll = 0;
        }
        KeyAction::ToggleLog => {
            ui.show_log = !ui.show_log;
            ui.log_scroll = 0;
            if !ui.show_log && ui.focus == Panel::Log {
                ui.focus = Panel::Queue;
            }
        }
        KeyAction::NextPanel => cycle_focus(state, 1),
        KeyAction::PrevPanel => cycle_focus(state, -1),
        KeyAction::Back => {
            ui.detail = None;
            state.previews.output_index = 0;
        }
        KeyAction::Open => open_detail(state),
        KeyAction::ShowFleet if state.servers.len() > 1 => {
            state.ui.fleet = Some(FleetView {
                selected: state.current,
                ..FleetView::default()
            });
        }
        KeyAction::ShowFleet => {
            super::actions::notice(
                state,
                super::NoticeKind::Info,
                "the fleet view shows several servers: name them on the command line, or --all"
                    .to_string(),
            );
        }
        KeyAction::TogglePreview => preview::toggle_pane(state),
        KeyAction::NextOutput => preview::next_output(state),
        KeyAction::FullSizeView => preview::view_full_size(state, commands),
        KeyAction::SaveOutput => preview::save_output(state, commands),
        KeyAction::Up
        | KeyAction::Down
        | KeyAction::PageUp
        | KeyAction::PageDown
        | KeyAction::Top
        | KeyAction::Bottom
        | KeyAction::Quit
        | KeyAction::Control(_)
        | KeyAction::Yes
        | KeyAction::No
        | KeyAction::RetryNow
        | KeyAction::CloseFullView
        | KeyAction::NextServer
        | KeyAction::PrevServer
        | KeyAction::ToServer(_)
        | KeyAction::SortFleet => {}
    }
}

fn cycle_focus(state: &mut State, step: isize) {
    if state.ui.detail.is_some() {
        return;
    }
    let panels = state.ui.panels();
    let current = panels
        .iter()
        .position(|p| *p == state.ui.focus)
        .unwrap_or(0);
    let next = (current as isize + step).rem_euclid(panels.len() as isize) as usize;
    state.ui.focus = panels[next];
}

fn open_detail(state: &mut State) {
    let prompt_id = match state.ui.focus {
        Panel::Queue => state
            .selected_queue_row()
            .map(|i| state.queue_rows()[i].id.clone()),
        Panel::History => state
            .selected_history_row()
            .and_then(|i| history_id(state, i)),
        Panel::Progress => state.server().tracker.running().map(|p| p.id.clone()),
        Panel::Log => None,
    };
    if let Some(prompt_id) = prompt_id {
        state.previews.output_index = 0;
        state.ui.detail = Some(Detail {
            prompt_id,
            scroll: 0,
        });
    }
}

/// Moves in the detail view when it is open, else in the focused panel.
fn move_in_view(state: &mut State, m: Move) {
    if state.ui.detail.is_some() {
        scroll_detail(state, m);
    } else {
        move_in_panel(state, state.ui.focus, m);
    }
}

fn move_in_panel(state: &mut State, panel: Panel, m: Move) {
    match panel {
        Panel::Queue => {
            let ids: Vec<String> = state.queue_rows().iter().map(|p| p.id.clone()).collect();
            move_selection(&mut state.ui.queue, &ids, m);
        }
        Panel::History => {
            // By index: a history of thousands is not listed for a key press.
            let Some(current) = state.selected_history_row() else {
                return;
            };
            let new = apply(m, current, state.history_len());
            let id = if new > 0 {
                history_id(state, new)
            } else {
                None
            };
            state.ui.history.index = new;
            state.ui.history.id = id;
        }
        Panel::Progress => {
            let Some(running) = state.server().tracker.running() else {
                return;
            };
            let len = running.nodes_in_order().len();
            let current = state.progress_scroll_for(&running.id);
            let new = apply(m, current, len);
            state.ui.progress_scroll = Some((running.id.clone(), new));
        }
        Panel::Log => {
            // The log counts up from its newest line.
            let len = if state.ui.server_log_shown {
                let query = state.ui.log_search.as_ref().map(|s| s.query.as_str());
                state.server().server_log.matching(query).count()
            } else {
                state.server().log.len()
            };
            let from_top = len.saturating_sub(1).saturating_sub(state.ui.log_scroll);
            let new = apply(m, from_top, len);
            state.ui.log_scroll = len.saturating_sub(1).saturating_sub(new);
        }
    }
}

/// Where `m` leads from `current` in a list of `len` rows.
fn apply(m: Move, current: usize, len: usize) -> usize {
    let last = len.saturating_sub(1);
    match m {
        Move::By(d) => (current as i64 + d).clamp(0, last as i64) as usize,
        Move::Top => 0,
        Move::Bottom => last,
    }
}

/// The id of History's row `index`.
fn history_id(state: &State, index: usize) -> Option<String> {
    state.history_row(index).map(|p| p.id.clone())
}

/// Moves a selection; at the first row it follows the top of the list again (the running
/// prompt, the newest finished one).
fn move_selection(selection: &mut Selection, ids: &[String], m: Move) {
    let Some(current) = selection.resolve(ids.iter().map(String::as_str)) else {
        return;
    };
    let new = apply(m, current, ids.len());
    selection.index = new;
    selection.id = (new > 0).then(|| ids[new].clone());
}

fn scroll_help(state: &mut State, m: Move) {
    let Some(help) = crate::ui::layout::Areas::of_state(state).help(state) else {
        return;
    };
    state.ui.help_scroll = apply(m, help.scroll, help.max_scroll + 1);
}

fn scroll_detail(state: &mut State, m: Move) {
    let Some(detail) = &state.ui.detail else {
        return;
    };
    let Some(prompt) = state.server().tracker.prompt(&detail.prompt_id) else {
        return;
    };
    let Some(text) = crate::ui::layout::Areas::of_state(state).detail_text() else {
        return;
    };
    let (_, max) = detail::page(state, prompt, text);
    let current = detail.scroll.min(max);
    let new = match m {
        Move::By(d) => (current as i64 + d).clamp(0, max as i64) as usize,
        Move::Top => 0,
        Move::Bottom => max,
    };
    if let Some(detail) = &mut state.ui.detail {
        detail.scroll = new;
    }
}

fn on_click(state: &mut State, target: ClickTarget) {
    // A confirmation is answered with y or n, not dismissed by a stray click.
    if matches!(state.ui.overlay, Some(Overlay::Confirm(_))) {
        return;
    }
    if state.ui.overlay.take().is_some() {
        state.dirty = true;
        return;
    }
    if state.ui.detail.is_some() {
        return;
    }
    match target {
        ClickTarget::Panel(panel) => state.ui.focus = panel,
        ClickTarget::Row { panel, index } => {
            state.ui.focus = panel;
            let id = match panel {
                Panel::Queue => state.queue_rows().get(index).map(|p| p.id.clone()),
                Panel::History => history_id(state, index),
                Panel::Progress | Panel::Log => None,
            };
            if let Some(id) = id {
                let selection = match panel {
                    Panel::Queue => &mut state.ui.queue,
                    _ => &mut state.ui.history,
                };
                selection.index = index;
                selection.id = (index > 0).then_some(id);
            }
        }
    }
    state.dirty = true;
}

fn on_wheel(state: &mut State, panel: Option<Panel>, down: bool) {
    if state.ui.overlay.is_some() {
        return;
    }
    if state.ui.detail.is_some() {
        scroll_detail(
            state,
            Move::By(if down { WHEEL_LINES } else { -WHEEL_LINES }),
        );
    } else if let Some(panel) = panel {
        let lines = match panel {
            Panel::Queue | Panel::History => 1,
            Panel::Progress | Panel::Log => WHEEL_LINES,
        };
        move_in_panel(state, panel, Move::By(if down { lines } else { -lines }));
    } else {
        return;
    }
    state.dirty = true;
}

fn on_connection(state: &mut State, index: usize, event: ConnEvent, commands: &mut Vec<Command>) {
    let now = state.now;
    let shown = index == state.current;
    let visible = shown || state.ui.fleet.is_some();
    let server = &mut state.servers[index];
    match &event {
        ConnEvent::Frame(frame) => {
            server.log.frame(now, frame, &server.tracker);
            if let Decoded::Message(ServerMessage::Logs(logs)) = &frame.decoded {
                server.server_log.add(&logs.entries, false);
            }
            // Preview images change nothing on screen yet, unless the log shows them.
            let is_preview = matches!(
                &frame.decoded,
                Decoded::Binary(b)
                    if matches!(b.unrelayed().0, BinaryFrame::Preview(_) | BinaryFrame::Unknown { .. })
            );
            if visible && (state.ui.show_log || !is_preview) {
                state.dirty = true;
            }
        }
        other => {
            server.log.connection(now, other, &server.url);
            server.quiet_for = match other {
                ConnEvent::Quiet { silent_for } => Some(*silent_for),
                _ => None,
            };
            match other {
                ConnEvent::Connecting { attempt } => {
                    server.link = Link::Connecting { attempt: *attempt };
                }
                ConnEvent::Connected { .. } => {
                    server.link = Link::Connected { since: now };
                    server.last_error = None;
                    server.stats.due_at = Some(now);
                    // A registration with the bridge ends with the socket it was made for.
                    server.bridge = crate::bridge::BridgeLink::Unknown;
                    commands.push(Command::JoinBridge(index));
                    // A restarted server forgot the subscription; asking again is harmless.
                    if server.server_log.stream == LogStream::Streaming {
                        commands.push(Command::FollowServerLog(index));
                    }
                }
                ConnEvent::Disconnected { reason } => {
                    if !shown {
                        server.flag = Some(ServerFlag::Failed);
                    }
                    server.link = Link::Offline;
                    server.last_error = Some(crate::text::one_line(reason).into_owned());
                    server.stats.due_at = None;
                }
                ConnEvent::Reconnecting { attempt, delay } => {
                    server.link = Link::Waiting {
                        attempt: *attempt,
                        retry_at: now + delay.as_secs_f64(),
                    };
                }
                ConnEvent::Frame(_) | ConnEvent::Quiet { .. } | ConnEvent::Resumed => {}
            }
            state.dirty = true;
        }
    }
    // A preview image goes to the worker, never decoded here; only the shown server's.
    if shown
        && let ConnEvent::Frame(frame) = &event
        && let Decoded::Binary(binary) = &frame.decoded
    {
        preview::on_binary(state, binary, commands);
    }
    if let Some(input) = crate::session::tracker_input(event) {
        track(state, index, input, commands);
    }
}

/// Whether `event` may change what History shows. A running prompt's steps and previews, most
/// of what a busy server sends, do not: the prompt is not in History until it ends. Nor do the
/// preview worker's images, or a timer (the ages it may change are read in whole minutes; see
/// [`State::history_version`]).
fn may_change_history(state: &State, event: &Event) -> bool {
    match event {
        Event::Drawn | Event::Preview(_) | Event::Tick => false,
        Event::Conn(server, ConnEvent::Frame(frame)) => {
            let step_of = match &frame.decoded {
                Decoded::Binary(_) => return false,
                Decoded::Message(ServerMessage::Progress(m)) => m.prompt_id.as_deref(),
                Decoded::Message(ServerMessage::ProgressState(m)) => Some(m.prompt_id.as_str()),
                _ => return true,
            };
            // ComfyUI sends no step after a prompt's end; if a custom node did, it would touch
            // a prompt in History.
            step_of.is_some_and(|id| {
                state
                    .servers
                    .get(*server)
                    .and_then(|s| s.tracker.prompt(id))
                    .is_some_and(|p| p.is_finished())
            })
        }
        _ => true,
    }
}

/// Feeds server `index`'s tracker and turns the fetches it asks for into commands.
pub(super) fn track(
    state: &mut State,
    index: usize,
    input: TrackerInput,
    commands: &mut Vec<Command>,
) {
    let is_history = matches!(input, TrackerInput::History(_));
    let now = state.now;
    let server = &mut state.servers[index];
    let fetches = server.tracker.handle(now, input);
    commands.extend(
        fetches
            .into_iter()
            .map(|fetch| Command::Fetch(index, fetch)),
    );
    notify_ends(state, index, commands);
    if is_history {
        state.servers[index].backlog_read = true;
    }
}

/// A notification for each prompt that finished or failed since the last step, if it is one
/// the user cares about: queued by this comfytop (or any, with `--notify-all`), not part of the
/// history already there at the start, and never notified before. Whose a prompt is can be
/// unknown when it ends (its live events came before the queue or history said who queued
/// it): it waits until that is known.
fn notify_ends(state: &mut State, index: usize, commands: &mut Vec<Command>) {
    let shown = index == state.current;
    let notify = state.notify;
    let server = &mut state.servers[index];
    let news = server.tracker.take_finished_news();
    for item in news {
        // Until the first `/history` reply is read, what it recovers is the backlog, over
        // before comfytop came; a prompt seen ending live in that time is news all the same.
        if !server.backlog_read && item.recovered {
            continue;
        }
        let ended = match item.outcome {
            Outcome::Success => "finished",
            Outcome::Error(_) => "failed",
            _ => continue,
        };
        if !shown && !item.revised {
            let flag = if ended == "failed" {
                ServerFlag::Failed
            } else {
                ServerFlag::Finished
            };
            server.flag = server.flag.max(Some(flag));
        }
        if notify.mode != NotifyMode::Off {
            server.notify_waiting.push_back((item.id, ended));
        }
    }
    let waiting = std::mem::take(&mut server.notify_waiting);
    for (id, ended) in waiting {
        let Some(record) = server.tracker.prompt(&id) else {
            continue;
        };
        if record.owner_unknown() && !notify.all_prompts {
            if server.notify_waiting.len() < NOTIFY_WAITING_MAX {
                server.notify_waiting.push_back((id, ended));
            }
            continue;
        }
        if !(record.ours || notify.all_prompts) || !server.notified.first_time(&id) {
            continue;
        }
        let took = record
            .duration()
            .map(|secs| format!(" after {}", super::time::duration(secs)))
            .unwrap_or_default();
        commands.push(Command::Notify(format!(
            "prompt {} {ended} on {}{took}",
            crate::format::short_id(&id),
            server.label
        )));
    }
}

/// Prompts that ended while who queued them is not known yet, kept at most.
const NOTIFY_WAITING_MAX: usize = 256;

fn on_reply(state: &mut State, index: usize, reply: Reply, commands: &mut Vec<Command>) {
    let now = state.now;
    match reply {
        Reply::Tracker { command, result } => {
            let input = match result {
                Ok(input) => input,
                Err(error) => {
                    let what = match &command {
                        TrackerCommand::FetchQueue => "/queue".to_string(),
                        TrackerCommand::FetchHistory { .. } => "/history".to_string(),
                        TrackerCommand::FetchHistoryItem(id) => {
                            format!("/history/{}", crate::format::short_id(id))
                        }
                    };
                    state.servers[index].log.push(
                        now,
                        LineKind::Error,
                        format!("GET {what} failed: {}", crate::text::one_line(&error)),
                    );
                    TrackerInput::FetchFailed(command)
                }
            };
            track(state, index, input, commands);
            // A look at the queue that found it as it was (most of them, while idle) changes
            // nothing on screen.
            state.dirty |= !state.servers[index].tracker.last_input_changed_nothing();
        }
        Reply::Submitted(Ok(submitted)) => {
            let Submitted { request, accepted } = *submitted;
            state.servers[index].log.push(
                now,
                LineKind::Connection,
                format!(
                    "queued {} as #{}",
                    crate::format::short_id(&accepted.prompt_id),
                    accepted.number
                ),
            );
            track(
                state,
                index,
                TrackerInput::Submitted {
                    prompt_id: accepted.prompt_id,
                    number: accepted.number,
                    request,
                },
                commands,
            );
            state.dirty = true;
        }
        Reply::Submitted(Err(error)) => {
            state.servers[index].log.push(
                now,
                LineKind::Error,
                format!("POST /prompt failed: {}", crate::text::one_line(&error)),
            );
            state.dirty = true;
        }
        // An output fetched for a server no longer shown is nothing to show.
        Reply::Output { image, result } if index == state.current => {
            preview::on_output(state, image, result, commands);
        }
        Reply::Output { .. } => {}
        Reply::Saved(result) => preview::on_saved(state, result),
        Reply::ServerLog(result) => {
            let log = &mut state.servers[index].server_log;
            match result {
                Ok(backlog) => {
                    log.stream = LogStream::Streaming;
                    log.add(&backlog.entries, true);
                }
                Err(error) => {
                    log.stream = LogStream::Refused(crate::text::one_line(&error).into_owned());
                }
            }
            state.dirty = true;
        }
        Reply::Bridge(link) => {
            let server = &mut state.servers[index];
            server.log.bridge(now, &link, &server.url);
            server.bridge = link;
            state.dirty = true;
        }
        Reply::Acted { action, result } => {
            super::actions::on_acted(state, index, action, result, commands);
        }
        Reply::SystemStats(result) => {
            let interval = state.stats_interval(index);
            let server = &mut state.servers[index];
            let connected = matches!(server.link, Link::Connected { .. });
            let stats = &mut server.stats;
            stats.in_flight = false;
            stats.due_at = connected.then_some(now + interval);
            match result {
                Ok(latest) => {
                    stats
                        .history
                        .push_back(super::MemorySample::of(now, &latest));
                    while stats.history.len() > super::MEMORY_SAMPLES_KEPT {
                        stats.history.pop_front();
                    }
                    if index == state.current && state.ui.memory_shown {
                        state.dirty = true;
                    }
                    let summary = StatsSummary::of(&latest);
                    if stats.summary.as_ref() != Some(&summary) || stats.error.is_some() {
                        state.dirty = true;
                    }
                    stats.summary = Some(summary);
                    stats.latest = Some(latest);
                    stats.error = None;
                }
                Err(error) => {
                    let error = crate::text::one_line(&error).into_owned();
                    if stats.error.as_ref() != Some(&error) {
                        state.dirty = true;
                    }
                    stats.error = Some(error);
                }
            }
        }
    }
}
