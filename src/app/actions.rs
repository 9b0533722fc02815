//! The server-control keys: which [`control::Action`] a key means for what is selected, the y/n
//! confirmation in front of every destructive one, and the outcome line each leaves behind.
//!
//! Nothing here guesses at the server's state: a confirmed action becomes a [`Command::Act`], and
//! the queue changes on screen when the server's own events (or a fetch of `/queue`) say so. The
//! one exception is a prompt the server accepted: its reply is fed to the tracker as
//! `Submitted`, so it shows in the queue at once.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::comfy::api::FreeRequest;
use crate::control::{Action, Done, Owner, short_id};
use crate::tracker::{Phase, PromptRecord, TrackerCommand, TrackerInput};
use crate::workflow::{randomize_seeds, requeue_request};

use super::event_log::LineKind;
use super::keymap::Control;
use super::{Command, Confirm, Notice, NoticeKind, Overlay, Panel, State};

/// A control key: refuses when read-only, else asks for a confirmation (destructive actions) or
/// asks the runtime to act (requeues).
pub(super) fn on_control_key(state: &mut State, key: Control, commands: &mut Vec<Command>) {
    state.dirty = true;
    if let Err(refusal) = state.access.check(&sample(key)) {
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
    let ours = state.server.tracker.our_client_id().to_string();
    let question = action.question(|id| owner(state, id, &ours));
    match question {
        Some(question) => {
            state.ui.overlay = Some(Overlay::Confirm(Confirm { action, question }));
        }
        None => act(state, action, commands),
    }
}

/// A key while a confirmation is up: y acts, n or Esc cancels, anything else is ignored (the
/// dialog is modal).
pub(super) fn on_confirm_key(state: &mut State, key: KeyEvent, commands: &mut Vec<Command>) {
    let Some(Overlay::Confirm(confirm)) = &state.ui.overlay else {
        return;
    };
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return;
    }
    match key.code {
        KeyCode::Char('y' | 'Y') => {
            let action = confirm.action.clone();
            state.ui.overlay = None;
            match still_applies(state, &action) {
                Ok(()) => act(state, action, commands),
                Err(why) => notice(state, NoticeKind::Info, why),
            }
        }
        KeyCode::Char('n' | 'N') | KeyCode::Esc => {
            state.ui.overlay = None;
            notice(
                state,
                NoticeKind::Info,
                "cancelled: nothing was done".to_string(),
            );
        }
        _ => return,
    }
    state.dirty = true;
}

/// The reply to a [`Command::Act`]: its outcome line, and what the server accepted fed to the
/// tracker.
pub(super) fn on_acted(
    state: &mut State,
    action: Action,
    result: Result<Done, String>,
    commands: &mut Vec<Command>,
) {
    state.dirty = true;
    let done = match result {
        Ok(done) => done,
        Err(error) => {
            let error = crate::text::one_line(&error).into_owned();
            state
                .server
                .log
                .push(state.now, LineKind::Error, error.clone());
            notice(state, NoticeKind::Error, error);
            return;
        }
    };
    let text = done.status_text();
    state
        .server
        .log
        .push(state.now, LineKind::Connection, text.clone());
    notice(state, NoticeKind::Done, text);
    match (done, action) {
        (
            Done::Queued { accepted, .. },
            Action::Requeue { request, .. } | Action::Submit(request),
        ) => {
            let input = TrackerInput::Submitted {
                prompt_id: accepted.prompt_id,
                number: accepted.number,
                request: *request,
            };
            let fetches = state.server.tracker.handle(state.now, input);
            commands.extend(fetches.into_iter().map(Command::Fetch));
        }
        // The server announces the new queue on its own; asking once more costs one small GET
        // and covers servers that stay quiet after a delete.
        (Done::Deleted { .. } | Done::Cleared { .. }, _) => {
            commands.push(Command::Fetch(TrackerCommand::FetchQueue));
        }
        _ => {}
    }
}

fn act(state: &mut State, action: Action, commands: &mut Vec<Command>) {
    let what = match &action {
        Action::Interrupt { prompt_id } => format!("interrupting {}…", short_id(prompt_id)),
        Action::Delete { .. } | Action::ClearPending { .. } => "deleting…".to_string(),
        Action::Submit(_) => "queueing…".to_string(),
        Action::Requeue { from, .. } => format!("requeueing {}…", short_id(from)),
        Action::Free(_) => "freeing memory…".to_string(),
    };
    notice(state, NoticeKind::Info, what);
    commands.push(Command::Act(action));
}

fn notice(state: &mut State, kind: NoticeKind, text: String) {
    state.ui.notice = Some(Notice { text, kind });
}

/// An action of the kind `key` asks for, for the read-only refusal's words.
fn sample(key: Control) -> Action {
    match key {
        Control::Cancel => Action::Interrupt {
            prompt_id: String::new(),
        },
        Control::Delete => Action::Delete {
            prompt_ids: Vec::new(),
        },
        Control::ClearPending => Action::ClearPending {
            prompt_ids: Vec::new(),
        },
        Control::Requeue | Control::RequeueNewSeeds | Control::RequeueFront => Action::Requeue {
            from: String::new(),
            request: Box::default(),
        },
        Control::Free => Action::Free(FreeRequest::default()),
    }
}

/// What `key` means for what is on screen, or why it means nothing.
fn plan(state: &State, key: Control) -> Result<Action, String> {
    let tracker = &state.server.tracker;
    match key {
        Control::Cancel => tracker
            .running()
            .map(|running| Action::Interrupt {
                prompt_id: running.id.clone(),
            })
            .ok_or_else(|| "no prompt is running: nothing to cancel".to_string()),
        Control::Delete => {
            let selected = selected(state)
                .filter(|_| state.ui.focus == Panel::Queue || state.ui.detail.is_some())
                .ok_or_else(|| "select a pending prompt in the queue to delete it".to_string())?;
            match selected.phase {
                Phase::Queued => Ok(Action::Delete {
                    prompt_ids: vec![selected.id.clone()],
                }),
                Phase::Running => Err(format!(
                    "prompt {} is running, not pending: c interrupts it",
                    short_id(&selected.id)
                )),
                Phase::Finished(_) => Err(format!(
                    "prompt {} has finished: nothing to delete",
                    short_id(&selected.id)
                )),
            }
        }
        Control::ClearPending => {
            let prompt_ids: Vec<String> = tracker.pending().map(|p| p.id.clone()).collect();
            if prompt_ids.is_empty() {
                return Err("no prompt is pending: nothing to delete".to_string());
            }
            Ok(Action::ClearPending { prompt_ids })
        }
        Control::Requeue | Control::RequeueNewSeeds | Control::RequeueFront => {
            let selected = selected(state).ok_or_else(|| {
                "select a prompt in the queue or history to requeue it".to_string()
            })?;
            if selected.prompt.as_object().is_none_or(|g| g.is_empty()) {
                return Err(format!(
                    "the graph of prompt {} is not known yet: try again in a moment",
                    short_id(&selected.id)
                ));
            }
            let mut request = requeue_request(
                &selected.prompt,
                &selected.extra_data,
                tracker.our_client_id(),
                key == Control::RequeueFront,
            );
            if key == Control::RequeueNewSeeds
                && randomize_seeds(&mut request.prompt, &mut rand::rng()) == 0
            {
                return Err(format!(
                    "prompt {} has no seed or noise_seed input to change: r requeues it as it is",
                    short_id(&selected.id)
                ));
            }
            Ok(Action::requeue(selected.id.clone(), request))
        }
        Control::Free => Ok(Action::Free(FreeRequest {
            unload_models: true,
            free_memory: true,
        })),
    }
}

/// The prompt the keys act on: the one in the detail view, else the focused panel's selection
/// (the running prompt for the progress panel).
fn selected(state: &State) -> Option<&PromptRecord> {
    if let Some(detail) = &state.ui.detail {
        return state.server.tracker.prompt(&detail.prompt_id);
    }
    match state.ui.focus {
        Panel::Queue => state.selected_queue_row().map(|i| state.queue_rows()[i]),
        Panel::History => state
            .selected_history_row()
            .map(|i| state.history_rows()[i]),
        Panel::Progress => state.server.tracker.running(),
        Panel::Log => None,
    }
}

fn owner(state: &State, prompt_id: &str, ours: &str) -> Owner {
    match state.server.tracker.prompt(prompt_id) {
        Some(prompt) if prompt.ours => Owner::Us,
        Some(prompt) => Owner::of(prompt.client_id.as_deref(), Some(ours)),
        None => Owner::Nobody,
    }
}

/// Whether a confirmed action still makes sense as the tracker sees the server now: a prompt that
/// finished (or started) while the question was up is left alone, and the user is told.
fn still_applies(state: &State, action: &Action) -> Result<(), String> {
    let tracker = &state.server.tracker;
    let phase = |id: &str| tracker.prompt(id).map(|p| p.phase.clone());
    match action {
        Action::Interrupt { prompt_id } => match phase(prompt_id) {
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
        Action::Delete { prompt_ids } => match prompt_ids.as_slice() {
            [id] => match phase(id) {
                Some(Phase::Queued) => Ok(()),
                Some(Phase::Running) => Err(format!(
                    "prompt {} started running meanwhile: nothing was deleted (c interrupts it)",
                    short_id(id)
                )),
                _ => Err(format!(
                    "prompt {} is no longer pending: nothing was deleted",
                    short_id(id)
                )),
            },
            _ => Ok(()),
        },
        // Exactly the prompts shown are deleted; the server skips any that left the queue.
        Action::ClearPending { .. } | Action::Free(_) | Action::Submit(_) => Ok(()),
        Action::Requeue { .. } => Ok(()),
    }
}
