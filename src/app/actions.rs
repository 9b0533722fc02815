//! The server-control keys: which [`control::ServerAction`] a key means for what is selected, the y/n
//! confirmation in front of every destructive one, and the outcome line each leaves behind.
//!
//! Nothing here guesses at the server's state: a confirmed action becomes a [`Command::Act`], and
//! the queue changes on screen when the server's own events say so. The
//! one exception is a prompt the server accepted: its reply is fed to the tracker as
//! `Submitted`, so it shows in the queue at once.

use crate::comfy::api::FreeRequest;
use crate::control::{Access, Done, Owner, ServerAction};
use crate::format::short_id;
use crate::tracker::{Phase, PromptRecord, TrackerInput};

use super::event_log::LineKind;
use super::keys::{ControlKey, KeyAction};
use super::{Command, Confirm, Notice, NoticeKind, Overlay, Panel, State};

/// A control key: refuses when read-only, else asks for a confirmation (destructive actions) or
/// asks the runtime to act (requeues).
pub(super) fn on_control_key(state: &mut State, key: ControlKey, commands: &mut Vec<Command>) {
    state.dirty = true;
    if let Err(refusal) = state.access().check(&sample(key)) {
        notice(state, NoticeKind::Error, refusal.status_text());
        return;
    }
    let action = match plan(state, key) {
        Ok(action) => action,
        Err(why) => {
            notice(state, NoticeKind::Info, why);
            return;
        }
    };
    if key == ControlKey::RequeueElsewhere {
        let to = other_server(state, state.current, 1);
        let question = elsewhere_question(state, &action, to);
        state.ui.overlay = Some(Overlay::Confirm(Confirm {
            action,
            question,
            to: Some(to),
        }));
        return;
    }
    let ours = state.server().tracker.our_client_id().to_string();
    let question = action.question(|id| owner(state, id, &ours));
    match question {
        Some(question) => {
            state.ui.overlay = Some(Overlay::Confirm(Confirm {
                action,
                question,
                to: None,
            }));
        }
        None => act(state, action, commands),
    }
}

/// The server `step` places from `from` round the list, never the one shown.
fn other_server(state: &State, from: usize, step: isize) -> usize {
    let count = state.servers.len() as isize;
    let mut index = from as isize;
    for _ in 0..count {
        index = (index + step).rem_euclid(count);
        if index as usize != state.current {
            break;
        }
    }
    index as usize
}

fn elsewhere_question(state: &State, action: &ServerAction, to: usize) -> String {
    let from = match action {
        ServerAction::Requeue { from, .. } => short_id(from),
        _ => String::new(),
    };
    let target = &state.servers[to];
    let queue = target
        .tracker
        .queue_remaining()
        .map_or_else(String::new, |n| format!(" (queue {n})"));
    format!(
        "Queue {from}'s graph on {}{queue}? It is refused there if a node type is missing. [ ] another server",
        crate::text::one_line(&target.name)
    )
}

/// `[`/`]` while a requeue to another server is asked: the question names the next one.
pub(super) fn choose_other_server(state: &mut State, step: isize) {
    let Some(Overlay::Confirm(confirm)) = &state.ui.overlay else {
        return;
    };
    let Some(to) = confirm.to else {
        return;
    };
    let to = other_server(state, to, step);
    let question = elsewhere_question(state, &confirm.action, to);
    if let Some(Overlay::Confirm(confirm)) = &mut state.ui.overlay {
        confirm.to = Some(to);
        confirm.question = question;
    }
}

/// The answer to the confirmation that is up: yes acts (if it still applies), no leaves
/// everything as it was.
pub(super) fn answer(state: &mut State, yes: bool, commands: &mut Vec<Command>) {
    let Some(Overlay::Confirm(confirm)) = state.ui.overlay.take() else {
        return;
    };
    if yes
        && let Some(to) = confirm.to
        && (state.access == Access::ReadOnly || state.servers[to].read_only)
    {
        let name = crate::text::one_line(&state.servers[to].name).into_owned();
        notice(
            state,
            NoticeKind::Error,
            format!("{name} is read-only: nothing was requeued"),
        );
    } else if yes && let Some(to) = confirm.to {
        let what = match &confirm.action {
            ServerAction::Requeue { from, .. } => short_id(from),
            _ => String::new(),
        };
        let name = crate::text::one_line(&state.servers[to].name).into_owned();
        notice(
            state,
            NoticeKind::Info,
            format!("requeueing {what} on {name}…"),
        );
        commands.push(Command::RequeueTo {
            from: state.current,
            to,
            action: confirm.action,
        });
    } else if yes {
        let action = confirm.action;
        match still_applies(state, &action) {
            Ok(()) => act(state, action, commands),
            Err(why) => notice(state, NoticeKind::Info, why),
        }
    } else {
        notice(
            state,
            NoticeKind::Info,
            "cancelled: nothing was done".to_string(),
        );
    }
    state.dirty = true;
}

/// The reply to a [`Command::Act`]: its outcome line, and what the server accepted fed to the
/// tracker.
pub(super) fn on_acted(
    state: &mut State,
    index: usize,
    action: ServerAction,
    result: Result<Done, String>,
    commands: &mut Vec<Command>,
) {
    state.dirty = true;
    let done = match result {
        Ok(done) => done,
        Err(error) => {
            let error = crate::text::one_line(&error).into_owned();
            let now = state.now;
            state.servers[index]
                .log
                .push(now, LineKind::Error, error.clone());
            notice(state, NoticeKind::Error, error);
            return;
        }
    };
    let text = done.status_text();
    let now = state.now;
    state.servers[index]
        .log
        .push(now, LineKind::Connection, text.clone());
    notice(state, NoticeKind::Done, text);
    // A delete or interrupt shows when the server's own status and execution messages say so
    // (ComfyUI announces the queue after every change); only a new prompt is shown at once, from
    // the server's acceptance.
    if let (
        Done::Queued { accepted, .. },
        ServerAction::Requeue { request, .. } | ServerAction::Submit(request),
    ) = (done, action)
    {
        let input = TrackerInput::Submitted {
            prompt_id: accepted.prompt_id,
            number: accepted.number,
            request: *request,
        };
        super::update::track(state, index, input, commands);
    }
}

fn act(state: &mut State, action: ServerAction, commands: &mut Vec<Command>) {
    let what = match &action {
        ServerAction::Interrupt { prompt_id } => format!("interrupting {}…", short_id(prompt_id)),
        ServerAction::Delete { .. } | ServerAction::ClearPending { .. } => "deleting…".to_string(),
        ServerAction::Submit(_) => "queueing…".to_string(),
        ServerAction::Requeue { from, .. } => format!("requeueing {}…", short_id(from)),
        ServerAction::Free(_) => "freeing memory…".to_string(),
    };
    notice(state, NoticeKind::Info, what);
    commands.push(Command::Act(state.current, action));
}

pub(super) fn notice(state: &mut State, kind: NoticeKind, text: String) {
    state.ui.notice = Some(Notice { text, kind });
}

/// An action of the kind `key` asks for, for the read-only refusal's words.
fn sample(key: ControlKey) -> ServerAction {
    match key {
        ControlKey::Cancel => ServerAction::Interrupt {
            prompt_id: String::new(),
        },
        ControlKey::Delete => ServerAction::Delete {
            prompt_ids: Vec::new(),
        },
        ControlKey::ClearPending => ServerAction::ClearPending {
            prompt_ids: Vec::new(),
        },
        ControlKey::Requeue
        | ControlKey::RequeueNewSeeds
        | ControlKey::RequeueFront
        | ControlKey::RequeueElsewhere => ServerAction::Requeue {
            from: String::new(),
            request: Box::default(),
            new_seeds: false,
        },
        ControlKey::Free => ServerAction::Free(FreeRequest::default()),
    }
}

/// What `key` means for what is on screen, or why it means nothing.
fn plan(state: &State, key: ControlKey) -> Result<ServerAction, String> {
    let tracker = &state.server().tracker;
    match key {
        ControlKey::Cancel => tracker
            .running()
            .map(|running| ServerAction::Interrupt {
                prompt_id: running.id.clone(),
            })
            .ok_or_else(|| "no prompt is running: nothing to cancel".to_string()),
        ControlKey::Delete => {
            let selected = selected(state)
                .filter(|_| state.ui.focus == Panel::Queue || state.ui.detail.is_some())
                .ok_or_else(|| "select a pending prompt in the queue to delete it".to_string())?;
            match selected.phase {
                Phase::Queued => Ok(ServerAction::Delete {
                    prompt_ids: vec![selected.id.clone()],
                }),
                Phase::Running => Err(format!(
                    "prompt {} is running, not pending: {} interrupts it",
                    short_id(&selected.id),
                    state.keys.name(KeyAction::Control(ControlKey::Cancel))
                )),
                Phase::Finished(_) => Err(format!(
                    "prompt {} has finished: nothing to delete",
                    short_id(&selected.id)
                )),
            }
        }
        ControlKey::ClearPending => {
            let prompt_ids: Vec<String> = tracker.pending().map(|p| p.id.clone()).collect();
            if prompt_ids.is_empty() {
                return Err("no prompt is pending: nothing to delete".to_string());
            }
            Ok(ServerAction::ClearPending { prompt_ids })
        }
        ControlKey::Requeue | ControlKey::RequeueNewSeeds | ControlKey::RequeueFront => {
            let selected = selected(state).ok_or_else(|| {
                "select a prompt in the queue or history to requeue it".to_string()
            })?;
            // The graph is fetched when the requeue is sent: the tracker keeps only a summary.
            Ok(ServerAction::requeue_fetched(
                selected.id.clone(),
                tracker.our_client_id(),
                key == ControlKey::RequeueFront,
                key == ControlKey::RequeueNewSeeds,
            ))
        }
        ControlKey::RequeueElsewhere if state.servers.len() < 2 => Err(
            "there is no other server to requeue on: name several on the command line, or --all"
                .to_string(),
        ),
        ControlKey::RequeueElsewhere => {
            let selected = selected(state).ok_or_else(|| {
                "select a prompt in the queue or history to requeue it elsewhere".to_string()
            })?;
            // The graph comes from this server, the client id is set for the other one.
            Ok(ServerAction::requeue_fetched(
                selected.id.clone(),
                "",
                false,
                false,
            ))
        }
        ControlKey::Free => Ok(ServerAction::Free(FreeRequest {
            unload_models: true,
            free_memory: true,
        })),
    }
}

/// The prompt the keys act on: the one in the detail view, else the focused panel's selection
/// (the running prompt for the progress panel).
fn selected(state: &State) -> Option<&PromptRecord> {
    if let Some(detail) = &state.ui.detail {
        return state.server().tracker.prompt(&detail.prompt_id);
    }
    match state.ui.focus {
        Panel::Queue => state.selected_queue_row().map(|i| state.queue_rows()[i]),
        Panel::History => state
            .selected_history_row()
            .and_then(|i| state.history_row(i)),
        Panel::Progress => state.server().tracker.running(),
        Panel::Log => None,
    }
}

fn owner(state: &State, prompt_id: &str, ours: &str) -> Owner {
    match state.server().tracker.prompt(prompt_id) {
        Some(prompt) if prompt.ours => Owner::Us,
        Some(prompt) => Owner::of(prompt.client_id.as_deref(), Some(ours)),
        None => Owner::Nobody,
    }
}

/// Whether a confirmed action still makes sense as the tracker sees the server now: a prompt that
/// finished (or started) while the question was up is left alone, and the user is told.
fn still_applies(state: &State, action: &ServerAction) -> Result<(), String> {
    let tracker = &state.server().tracker;
    let phase = |id: &str| tracker.prompt(id).map(|p| p.phase.clone());
    match action {
        ServerAction::Interrupt { prompt_id } => match phase(prompt_id) {
            Some(Phase::Running) => Ok(()),
            Some(Phase::Finished(outcome)) => Err(format!(
                "prompt {} already finished ({}): nothing was interrupted",
                short_id(prompt_id),
                outcome.label()
            )),
            _ => Err(format!(
                "prompt {} is no longer running: nothing was interrupted",
                short_id(prompt_id)
            )),
        },
        ServerAction::Delete { prompt_ids } => match prompt_ids.as_slice() {
            [id] => match phase(id) {
                Some(Phase::Queued) => Ok(()),
                Some(Phase::Running) => Err(format!(
                    "prompt {} started running meanwhile: nothing was deleted ({} interrupts it)",
                    short_id(id),
                    state.keys.name(KeyAction::Control(ControlKey::Cancel))
                )),
                _ => Err(format!(
                    "prompt {} is no longer pending: nothing was deleted",
                    short_id(id)
                )),
            },
            _ => Ok(()),
        },
        // Exactly the prompts shown are deleted; the server skips any that left the queue.
        ServerAction::ClearPending { .. } | ServerAction::Free(_) | ServerAction::Submit(_) => {
            Ok(())
        }
        ServerAction::Requeue { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use serde_json::json;

    use super::super::testing::{connected, http_body};
    use super::super::{Command, Event, Overlay, Panel, Reply, State, update};
    use crate::comfy::api::{FreeRequest, History, PromptAccepted, QueueSnapshot};
    use crate::control::{Access, Done, ServerAction};
    use crate::tracker::{Phase, TrackerCommand, TrackerInput};

    const US: &str = "5f1c9a2e-comfytop";
    const RUNNING: &str = "c2faa6db-62e2-4918-a1c0-285915b3a878";
    /// The pending prompts in run order; the second is ours.
    const PENDING: [&str; 3] = [
        "dd848e16-f739-420a-9a6d-3f66461a7fba",
        "2f97d7a2-c4d8-458e-8420-ab54ea05e405",
        "24acff7a-ec9a-4640-b3fb-cc26423fef10",
    ];
    const FINISHED: &str = "647d7248-af64-42c7-a02f-e276bf58c802";

    /// A prompt of another client running, three pending (one ours), and one finished whose
    /// extra_data carries more than a client id.
    pub(crate) fn busy() -> State {
        let mut history: History = http_body("get_history_id_success");
        history.0[0]
            .1
            .prompt
            .extra_data
            .insert("extra_pnginfo".into(), json!({"workflow": {"nodes": []}}));
        let mut state = connected(US, 0.0, history);
        let mut snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        for item in &mut snapshot.queue_pending {
            if item.prompt_id == PENDING[1] {
                item.extra_data.insert("client_id".into(), json!(US));
            }
        }
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
        let ids: Vec<&str> = state.queue_rows().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, [RUNNING, PENDING[0], PENDING[1], PENDING[2]]);
        state
    }

    fn press(state: &mut State, code: KeyCode) -> Vec<Command> {
        let now = state.now;
        update(
            state,
            now,
            Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        )
    }

    fn question(state: &State) -> &str {
        match &state.ui.overlay {
            Some(Overlay::Confirm(confirm)) => &confirm.question,
            other => panic!("no confirmation: {other:?}"),
        }
    }

    fn notice(state: &State) -> &str {
        state.ui.notice.as_ref().map_or("", |n| n.text.as_str())
    }

    fn acted(commands: Vec<Command>) -> ServerAction {
        match commands.as_slice() {
            [Command::Act(0, action)] => action.clone(),
            other => panic!("expected one action: {other:?}"),
        }
    }

    #[test]
    fn c_asks_naming_the_running_prompt_and_its_owner_then_interrupts_it() {
        let mut state = busy();
        assert!(press(&mut state, KeyCode::Char('c')).is_empty());
        assert_eq!(
            question(&state),
            "Interrupt running prompt c2faa6db, queued by client lab-g-2ba58b69?"
        );
        let action = acted(press(&mut state, KeyCode::Char('y')));
        assert_eq!(
            action,
            ServerAction::Interrupt {
                prompt_id: RUNNING.into()
            }
        );
        assert_eq!(state.ui.overlay, None);
    }

    #[test]
    fn a_prompt_that_finished_before_the_yes_is_not_interrupted() {
        let mut state = busy();
        press(&mut state, KeyCode::Char('c'));
        let frame = crate::comfy::RawFrame::Text(
            json!({"type": "execution_success",
                   "data": {"prompt_id": RUNNING, "timestamp": 1_795_828_750_000u64}})
            .to_string(),
        );
        let decoded = frame.decode();
        update(
            &mut state,
            2.0,
            Event::Conn(
                0,
                crate::comfy::connection::ConnEvent::Frame(
                    crate::comfy::connection::ReceivedFrame {
                        t: 2.0,
                        raw: frame,
                        decoded,
                    },
                ),
            ),
        );
        assert!(matches!(
            state.server().tracker.prompt(RUNNING).unwrap().phase,
            Phase::Finished(_)
        ));
        // Still asking: the dialog stays until answered.
        question(&state);
        let commands = press(&mut state, KeyCode::Char('y'));
        assert!(
            !commands.iter().any(|c| matches!(c, Command::Act(_, _))),
            "{commands:?}"
        );
        assert_eq!(
            notice(&state),
            "prompt c2faa6db already finished (success): nothing was interrupted"
        );
    }

    #[test]
    fn d_deletes_only_the_selected_pending_prompt_after_a_yes() {
        let mut state = busy();
        press(&mut state, KeyCode::Char('j'));
        press(&mut state, KeyCode::Char('j'));
        assert!(press(&mut state, KeyCode::Delete).is_empty());
        assert_eq!(
            question(&state),
            "Delete pending prompt 2f97d7a2, queued by this comfytop?"
        );
        // n cancels and does nothing.
        assert!(press(&mut state, KeyCode::Char('n')).is_empty());
        assert_eq!(state.ui.overlay, None);
        assert_eq!(notice(&state), "cancelled: nothing was done");

        press(&mut state, KeyCode::Char('d'));
        let action = acted(press(&mut state, KeyCode::Char('y')));
        assert_eq!(
            action,
            ServerAction::Delete {
                prompt_ids: vec![PENDING[1].into()]
            }
        );
    }

    #[test]
    fn d_on_the_running_prompt_or_outside_the_queue_explains_and_asks_nothing() {
        let mut state = busy();
        assert!(press(&mut state, KeyCode::Char('d')).is_empty());
        assert_eq!(state.ui.overlay, None);
        assert_eq!(
            notice(&state),
            "prompt c2faa6db is running, not pending: c interrupts it"
        );
        press(&mut state, KeyCode::Tab);
        press(&mut state, KeyCode::Tab);
        assert_eq!(state.ui.focus, Panel::History);
        assert!(press(&mut state, KeyCode::Char('d')).is_empty());
        assert_eq!(state.ui.overlay, None);
    }

    #[test]
    fn x_counts_other_clients_prompts_and_deletes_exactly_those_shown() {
        let mut state = busy();
        assert!(press(&mut state, KeyCode::Char('X')).is_empty());
        assert_eq!(
            question(&state),
            "Delete all 3 pending prompts (2 queued by other clients)?"
        );
        let action = acted(press(&mut state, KeyCode::Char('y')));
        assert_eq!(
            action,
            ServerAction::ClearPending {
                prompt_ids: PENDING.iter().map(|s| s.to_string()).collect()
            }
        );
    }

    #[test]
    fn u_frees_memory_after_a_yes_and_esc_cancels() {
        let mut state = busy();
        press(&mut state, KeyCode::Char('u'));
        assert_eq!(
            question(&state),
            "Unload every model and free memory on the server?"
        );
        assert!(press(&mut state, KeyCode::Esc).is_empty());
        assert_eq!(state.ui.overlay, None);
        press(&mut state, KeyCode::Char('u'));
        assert_eq!(
            acted(press(&mut state, KeyCode::Char('y'))),
            ServerAction::Free(FreeRequest {
                unload_models: true,
                free_memory: true
            })
        );
    }

    #[test]
    fn the_dialog_is_modal() {
        let mut state = busy();
        press(&mut state, KeyCode::Char('X'));
        let before = state.ui.clone();
        for code in [
            KeyCode::Char('j'),
            KeyCode::Tab,
            KeyCode::Char('q'),
            KeyCode::Char('d'),
            KeyCode::Enter,
            KeyCode::Char('?'),
        ] {
            assert!(press(&mut state, code).is_empty(), "{code:?}");
        }
        assert_eq!(state.ui, before);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(update(&mut state, 1.0, Event::Key(ctrl_c)), [Command::Quit]);
    }

    fn history_focus(state: &mut State) {
        press(state, KeyCode::Tab);
        press(state, KeyCode::Tab);
        assert_eq!(state.ui.focus, Panel::History);
    }

    fn requeued(action: &ServerAction) -> &crate::comfy::api::PromptRequest {
        match action {
            ServerAction::Requeue { from, request, .. } => {
                assert_eq!(from, FINISHED);
                request
            }
            other => panic!("{other:?}"),
        }
    }

    fn new_seeds(action: &ServerAction) -> bool {
        matches!(
            action,
            ServerAction::Requeue {
                new_seeds: true,
                ..
            }
        )
    }

    #[test]
    fn r_requeues_under_our_client_id_and_fetches_the_graph_when_sent() {
        let mut state = busy();
        history_focus(&mut state);
        let action = acted(press(&mut state, KeyCode::Char('r')));
        let request = requeued(&action);
        // The tracker keeps no graph: the action fetches it (with extra_data) when it runs.
        assert!(request.prompt.is_null(), "{:?}", request.prompt);
        assert_eq!(request.extra_data, None);
        assert_eq!(request.client_id.as_deref(), Some(US));
        assert_eq!(request.front, None);
        assert!(request.prompt_id.is_some(), "sent under an id of ours");
        assert!(!new_seeds(&action));

        let action = acted(press(&mut state, KeyCode::Char('F')));
        assert_eq!(requeued(&action).front, Some(true));
        assert!(!new_seeds(&action));
    }

    #[test]
    fn shift_r_asks_for_new_seeds() {
        let mut state = busy();
        history_focus(&mut state);
        let action = acted(press(&mut state, KeyCode::Char('R')));
        assert!(requeued(&action).prompt.is_null());
        assert!(new_seeds(&action));
    }

    #[test]
    fn an_accepted_requeue_shows_in_the_queue_at_once_as_ours() {
        let mut state = busy();
        history_focus(&mut state);
        let action = acted(press(&mut state, KeyCode::Char('r')));
        let new_id = action.prompt_id().unwrap().to_string();
        let accepted = PromptAccepted {
            prompt_id: new_id.clone(),
            number: 9.0,
            node_errors: Default::default(),
        };
        update(
            &mut state,
            3.0,
            Event::Reply(
                0,
                Reply::Acted {
                    action,
                    result: Ok(Done::Queued {
                        accepted,
                        requeue_of: Some(FINISHED.into()),
                    }),
                },
            ),
        );
        let record = state.server().tracker.prompt(&new_id).unwrap();
        assert!(record.ours);
        assert_eq!(record.phase, Phase::Queued);
        assert!(state.queue_rows().iter().any(|p| p.id == new_id));
        assert_eq!(
            notice(&state),
            format!("requeued 647d7248 as {}", &new_id[..8])
        );
    }

    #[test]
    fn a_server_error_is_the_outcome_and_changes_nothing() {
        let mut state = busy();
        let rows = state.queue_rows().len();
        let commands = update(
            &mut state,
            3.0,
            Event::Reply(
                0,
                Reply::Acted {
                    action: ServerAction::Delete {
                        prompt_ids: vec![PENDING[0].into()],
                    },
                    result: Err("POST /queue failed: HTTP 500".into()),
                },
            ),
        );
        assert!(commands.is_empty(), "nothing retried: {commands:?}");
        assert_eq!(notice(&state), "POST /queue failed: HTTP 500");
        assert_eq!(state.queue_rows().len(), rows);
    }

    #[test]
    fn a_done_delete_waits_for_the_server_to_say_what_the_queue_is() {
        let mut state = busy();
        let commands = update(
            &mut state,
            3.0,
            Event::Reply(
                0,
                Reply::Acted {
                    action: ServerAction::Delete {
                        prompt_ids: vec![PENDING[0].into()],
                    },
                    result: Ok(Done::Deleted {
                        prompt_ids: vec![PENDING[0].into()],
                    }),
                },
            ),
        );
        assert!(commands.is_empty(), "{commands:?}");
        // Not removed on a guess: the server's status message will say.
        assert_eq!(
            state.server().tracker.prompt(PENDING[0]).unwrap().phase,
            Phase::Queued
        );
        assert_eq!(notice(&state), "deleted pending prompt dd848e16");
    }

    #[test]
    fn read_only_refuses_every_key_and_says_so() {
        let mut state = busy();
        state.access = Access::ReadOnly;
        for code in ['c', 'd', 'X', 'r', 'R', 'F', 'u'].map(KeyCode::Char) {
            assert!(press(&mut state, code).is_empty(), "{code:?}");
            assert_eq!(state.ui.overlay, None, "{code:?}");
            assert!(
                notice(&state).starts_with("comfytop is read-only (--read-only): it does not"),
                "{code:?}: {}",
                notice(&state)
            );
        }
        history_focus(&mut state);
        press(&mut state, KeyCode::Char('r'));
        assert_eq!(
            notice(&state),
            "comfytop is read-only (--read-only): it does not requeue prompts"
        );
    }

    #[test]
    fn nothing_to_act_on_says_so() {
        let mut state = connected(US, 0.0, History::default());
        for (key, text) in [
            ('c', "no prompt is running: nothing to cancel"),
            ('X', "no prompt is pending: nothing to delete"),
            ('r', "select a prompt in the queue or history to requeue it"),
        ] {
            assert!(press(&mut state, KeyCode::Char(key)).is_empty());
            assert_eq!(state.ui.overlay, None);
            assert_eq!(notice(&state), text);
        }
    }
}
