//! Acting on a server: every change comfytop can make (interrupt, delete, clear, submit, requeue,
//! free memory), the read-only guard in front of them, and the words that report how each went.
//! The dashboard keys and the `submit` / `cancel` commands all go through [`perform`].
//!
//! Safety rules kept here, once for everyone:
//! - cancelling the running prompt is always a targeted `POST /interrupt {"prompt_id"}`, which the
//!   server ignores unless that very prompt still runs;
//! - clearing the queue deletes exactly the prompts the user saw, so one queued after the
//!   confirmation is never hit;
//! - a submission carries an id chosen here, and is never sent twice: when its answer is lost,
//!   the error says it may or may not have been queued, and [`locate`] can find out.

use serde_json::Value;

use crate::comfy::api::{FreeRequest, HistoryEntry, PromptAccepted, PromptRequest, QueueItem};
use crate::comfy::api::{QueueSnapshot, describe_node_errors};
use crate::comfy::http::{ComfyClient, HttpError};
use crate::comfy::protocol::PromptId;
use crate::format::short_id;
use crate::text::one_line;
use crate::tracker::{Outcome, Tracker, TrackerInput, node_id_order};

/// Characters of a client id shown in sentences: enough that ids differing at their end
/// (`other-qa-6`, `other-qa-7`) or ours (`comfytop-` and a uuid's start) stay apart.
pub const CLIENT_ID_SHOWN: usize = 24;

/// One change to make on the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerAction {
    /// `POST /interrupt {"prompt_id"}`: stops that prompt if it is the one running, else nothing.
    Interrupt { prompt_id: PromptId },
    /// `POST /queue {"delete": ids}`: removes these pending prompts.
    Delete { prompt_ids: Vec<PromptId> },
    /// Empties the pending queue as the user saw it: a `delete` of exactly these ids rather than
    /// `{"clear": true}`, so a prompt queued after the confirmation is left alone.
    ClearPending { prompt_ids: Vec<PromptId> },
    /// `POST /prompt` of a new workflow.
    Submit(Box<PromptRequest>),
    /// `POST /prompt` of a finished or queued prompt's graph again (see
    /// [`crate::workflow::requeue_request`]). A request without a graph gets the graph and
    /// `extra_data` of `from`, fetched from the server when it is sent (nothing keeps graphs).
    Requeue {
        from: PromptId,
        request: Box<PromptRequest>,
        /// Give every seed input a new random value.
        new_seeds: bool,
    },
    /// `POST /free`.
    Free(FreeRequest),
}

impl ServerAction {
    /// A submission under an id chosen here (unless the request has one), so the prompt can be
    /// looked for when the server's answer is lost.
    pub fn submit(request: PromptRequest) -> Self {
        Self::Submit(Box::new(with_prompt_id(request)))
    }

    /// A requeue of `from`, under an id chosen here (unless the request has one).
    pub fn requeue(from: PromptId, request: PromptRequest) -> Self {
        Self::Requeue {
            from,
            request: Box::new(with_prompt_id(request)),
            new_seeds: false,
        }
    }

    /// A requeue of `from` under `our_client_id`, its graph fetched when it is sent.
    pub fn requeue_fetched(
        from: PromptId,
        our_client_id: &str,
        front: bool,
        new_seeds: bool,
    ) -> Self {
        let request = crate::workflow::requeue_request(
            &Value::Null,
            &Default::default(),
            our_client_id,
            front,
        );
        Self::Requeue {
            from,
            request: Box::new(with_prompt_id(request)),
            new_seeds,
        }
    }

    /// What cancelling `prompt_id` means where it is: interrupt it if it runs, delete it if it
    /// waits, nothing if it is in neither place (it finished, or was never there).
    pub fn cancel(prompt_id: &str, place: Place) -> Option<Self> {
        match place {
            Place::Running => Some(Self::Interrupt {
                prompt_id: prompt_id.to_string(),
            }),
            Place::Pending => Some(Self::Delete {
                prompt_ids: vec![prompt_id.to_string()],
            }),
            Place::NotQueued => None,
        }
    }

    /// The id a submission or requeue is sent under, once chosen.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::Submit(request) | Self::Requeue { request, .. } => request.prompt_id.as_deref(),
            _ => None,
        }
    }

    /// The y/n question to ask before a destructive action, naming what it will hit; `None`
    /// for actions that destroy nothing (submit, requeue). `owner` tells who queued a prompt.
    pub fn question(&self, owner: impl Fn(&str) -> Owner) -> Option<String> {
        let one = |id: &str| format!("prompt {}, queued by {}", short_id(id), owner(id).label());
        match self {
            Self::Interrupt { prompt_id } => Some(format!("Interrupt running {}?", one(prompt_id))),
            Self::Delete { prompt_ids } => Some(match prompt_ids.as_slice() {
                [id] => format!("Delete pending {}?", one(id)),
                ids => format!("Delete {} pending prompts?", ids.len()),
            }),
            Self::ClearPending { prompt_ids } => Some(match prompt_ids.as_slice() {
                [] => "There are no pending prompts to delete.".to_string(),
                [id] => format!(
                    "Delete the only pending prompt ({}, queued by {})?",
                    short_id(id),
                    owner(id).label()
                ),
                ids => {
                    let others = ids.iter().filter(|id| owner(id) != Owner::Us).count();
                    let whose = match others {
                        0 => "all queued by this comfytop".to_string(),
                        k if k == ids.len() => "all queued by other clients".to_string(),
                        k => format!("{k} queued by other clients"),
                    };
                    format!("Delete all {} pending prompts ({whose})?", ids.len())
                }
            }),
            Self::Free(request) => Some(match (request.unload_models, request.free_memory) {
                (true, true) => "Unload every model and free memory on the server?".to_string(),
                (true, false) => "Unload every model on the server?".to_string(),
                _ => "Free memory on the server?".to_string(),
            }),
            Self::Submit(_) | Self::Requeue { .. } => None,
        }
    }

    /// What the action does, as a refusal says it ("comfytop is read-only: it does not ...").
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Interrupt { .. } => "interrupt prompts",
            Self::Delete { .. } => "delete pending prompts",
            Self::ClearPending { .. } => "clear the queue",
            Self::Submit(_) => "submit prompts",
            Self::Requeue { .. } => "requeue prompts",
            Self::Free(_) => "free memory",
        }
    }
}

fn with_prompt_id(mut request: PromptRequest) -> PromptRequest {
    if request.prompt_id.is_none() {
        request.prompt_id = Some(uuid::Uuid::new_v4().to_string());
    }
    request
}

/// Whether comfytop may change anything on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    ReadWrite,
    /// `--read-only`: every action is refused.
    ReadOnly,
}

impl Access {
    pub fn from_read_only(read_only: bool) -> Self {
        if read_only {
            Self::ReadOnly
        } else {
            Self::ReadWrite
        }
    }

    /// `Err` with the refusal when `action` may not run.
    pub fn check(self, action: &ServerAction) -> Result<(), ActionError> {
        match self {
            Self::ReadWrite => Ok(()),
            Self::ReadOnly => Err(ActionError::ReadOnly {
                verb: action.verb(),
            }),
        }
    }
}

/// What an action did.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// The server took the interrupt; it stops the prompt only if that prompt still runs.
    InterruptSent {
        prompt_id: PromptId,
    },
    Deleted {
        prompt_ids: Vec<PromptId>,
    },
    Cleared {
        prompt_ids: Vec<PromptId>,
    },
    Queued {
        accepted: PromptAccepted,
        requeue_of: Option<PromptId>,
    },
    Freed(FreeRequest),
}

impl Done {
    /// One line for a status bar.
    pub fn status_text(&self) -> String {
        match self {
            Self::InterruptSent { prompt_id } => format!(
                "interrupt sent for prompt {} (it stops only if it still runs)",
                short_id(prompt_id)
            ),
            Self::Deleted { prompt_ids } => match prompt_ids.as_slice() {
                [one] => format!("deleted pending prompt {}", short_id(one)),
                many => format!("deleted {} pending prompts", many.len()),
            },
            Self::Cleared { prompt_ids } => match prompt_ids.len() {
                0 => "the queue had no pending prompts".to_string(),
                1 => "removed 1 pending prompt".to_string(),
                n => format!("removed {n} pending prompts"),
            },
            Self::Queued {
                accepted,
                requeue_of,
            } => {
                let mut text = match requeue_of {
                    Some(from) => format!(
                        "requeued {} as {}",
                        short_id(from),
                        short_id(&accepted.prompt_id)
                    ),
                    None => format!("queued prompt {}", short_id(&accepted.prompt_id)),
                };
                if !accepted.node_errors.is_empty() {
                    let lines = describe_node_errors(&accepted.node_errors);
                    text.push_str(&format!(
                        ", without outputs that failed validation: {}",
                        lines.join("; ")
                    ));
                }
                text
            }
            Self::Freed(request) => match (request.unload_models, request.free_memory) {
                (true, true) => "asked the server to unload models and free memory".to_string(),
                (true, false) => "asked the server to unload models".to_string(),
                _ => "asked the server to free memory".to_string(),
            },
        }
    }
}

/// Why an action did not happen (or may not have).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("comfytop is read-only (--read-only): it does not {verb}")]
    ReadOnly { verb: &'static str },
    /// The submission's answer was lost: the server may have queued it. It is not sent again.
    #[error(
        "{source}\nThe prompt may or may not have been queued; it was not sent again. Check the \
         queue before submitting it again."
    )]
    MaybeQueued {
        prompt_id: Option<PromptId>,
        source: Box<HttpError>,
    },
    /// A requeue found nothing to send.
    #[error("cannot requeue prompt {}: {why}", short_id(.prompt_id))]
    NotRequeued { prompt_id: PromptId, why: String },
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl ActionError {
    /// One line for a status bar.
    pub fn status_text(&self) -> String {
        match self {
            Self::Http(HttpError::PromptRejected { rejection, .. }) => {
                let mut text = format!("rejected: {}", one_line(&rejection.error.message));
                let lines = describe_node_errors(&rejection.node_errors);
                if !lines.is_empty() {
                    text.push_str(": ");
                    text.push_str(&lines.join("; "));
                }
                text
            }
            Self::MaybeQueued { prompt_id, .. } => match prompt_id {
                Some(id) => format!(
                    "no answer from the server: prompt {} may or may not have been queued",
                    short_id(id)
                ),
                None => "no answer from the server: the prompt may or may not have been queued"
                    .to_string(),
            },
            other => one_line(&other.to_string()).into_owned(),
        }
    }
}

/// Runs `action` against the server, unless `access` refuses it. Nothing is retried.
pub async fn perform(
    client: &ComfyClient,
    access: Access,
    action: &ServerAction,
) -> Result<Done, ActionError> {
    access.check(action)?;
    match action {
        ServerAction::Interrupt { prompt_id } => {
            client.interrupt(Some(prompt_id)).await?;
            Ok(Done::InterruptSent {
                prompt_id: prompt_id.clone(),
            })
        }
        ServerAction::Delete { prompt_ids } => {
            if !prompt_ids.is_empty() {
                client.delete_queued(prompt_ids).await?;
            }
            Ok(Done::Deleted {
                prompt_ids: prompt_ids.clone(),
            })
        }
        ServerAction::ClearPending { prompt_ids } => {
            if !prompt_ids.is_empty() {
                client.delete_queued(prompt_ids).await?;
            }
            Ok(Done::Cleared {
                prompt_ids: prompt_ids.clone(),
            })
        }
        ServerAction::Submit(request) => queue(client, request, None).await,
        ServerAction::Requeue {
            from,
            request,
            new_seeds,
        } => {
            let request = with_graph_of(client, from, request, *new_seeds).await?;
            queue(client, &request, Some(from.clone())).await
        }
        ServerAction::Free(request) => {
            client.free(request.clone()).await?;
            Ok(Done::Freed(request.clone()))
        }
    }
}

/// The requeue request with `from`'s graph and `extra_data`, fetched now when it has none, and
/// new seeds when asked for.
async fn with_graph_of(
    client: &ComfyClient,
    from: &str,
    request: &PromptRequest,
    new_seeds: bool,
) -> Result<PromptRequest, ActionError> {
    let not_requeued = |why: &str| ActionError::NotRequeued {
        prompt_id: from.to_string(),
        why: why.to_string(),
    };
    let mut request = request.clone();
    if request.prompt.is_null() {
        let Some(item) = client.queued_prompt(from).await? else {
            return Err(not_requeued(
                "the server has it neither in its queue nor in its history any more",
            ));
        };
        let our_client_id = request.client_id.as_deref().unwrap_or_default();
        let fetched = crate::workflow::requeue_request(
            &item.prompt,
            &item.extra_data,
            our_client_id,
            request.front == Some(true),
        );
        request.prompt = fetched.prompt;
        request.extra_data = fetched.extra_data;
    }
    if request
        .prompt
        .as_object()
        .is_none_or(|graph| graph.is_empty())
    {
        return Err(not_requeued("its graph is empty"));
    }
    if new_seeds && crate::workflow::randomize_seeds(&mut request.prompt, &mut rand::rng()) == 0 {
        return Err(not_requeued(
            "it has no seed or noise_seed input to change (r requeues it as it is)",
        ));
    }
    Ok(request)
}

async fn queue(
    client: &ComfyClient,
    request: &PromptRequest,
    requeue_of: Option<PromptId>,
) -> Result<Done, ActionError> {
    match client.submit(request).await {
        Ok(accepted) => Ok(Done::Queued {
            accepted,
            requeue_of,
        }),
        Err(error) if may_have_arrived(&error) => Err(ActionError::MaybeQueued {
            prompt_id: request.prompt_id.clone(),
            source: Box::new(error),
        }),
        Err(error) => Err(error.into()),
    }
}

/// Whether a failed POST may still have been acted on by the server: anything but a refused
/// connection or a clear refusal.
fn may_have_arrived(error: &HttpError) -> bool {
    match error {
        // A redirect to a sign-in page is the proxy's answer: nothing reached ComfyUI.
        HttpError::Unreachable { .. }
        | HttpError::Setup(_)
        | HttpError::PromptRejected { .. }
        | HttpError::Redirected { .. } => false,
        // A proxy that gave up waiting may have passed the request on.
        HttpError::Status { status, .. } => (502..=504).contains(status),
        HttpError::Timeout { .. }
        | HttpError::Request { .. }
        | HttpError::NotComfy { .. }
        | HttpError::Decode { .. } => true,
    }
}

/// Where a prompt is in a queue snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Running,
    Pending,
    NotQueued,
}

impl Place {
    pub fn in_queue(snapshot: &QueueSnapshot, prompt_id: &str) -> Self {
        if snapshot
            .queue_running
            .iter()
            .any(|i| i.prompt_id == prompt_id)
        {
            Self::Running
        } else if snapshot
            .queue_pending
            .iter()
            .any(|i| i.prompt_id == prompt_id)
        {
            Self::Pending
        } else {
            Self::NotQueued
        }
    }
}

/// Where the server has a prompt, as `/queue` and `/history` tell.
#[derive(Debug, Clone, PartialEq)]
pub enum Located {
    Running(Box<QueueItem>),
    /// `position` counts from 1 in run order.
    Pending {
        item: Box<QueueItem>,
        position: usize,
        of: usize,
    },
    Finished(Box<HistoryEntry>),
    /// In neither: never queued, deleted, or its history was cleared.
    Unknown,
}

impl Located {
    pub fn place(&self) -> Place {
        match self {
            Self::Running(_) => Place::Running,
            Self::Pending { .. } => Place::Pending,
            Self::Finished(_) | Self::Unknown => Place::NotQueued,
        }
    }
}

/// Looks for a prompt in the queue, then in the history.
pub async fn locate(client: &ComfyClient, prompt_id: &str) -> Result<Located, HttpError> {
    let snapshot = client.queue().await?;
    if let Some(found) = locate_in_queue(&snapshot, prompt_id) {
        return Ok(found);
    }
    Ok(match client.history_item(prompt_id).await? {
        Some(entry) => Located::Finished(Box::new(entry)),
        None => Located::Unknown,
    })
}

/// The prompt's place in a queue snapshot, if it is there.
pub fn locate_in_queue(snapshot: &QueueSnapshot, prompt_id: &str) -> Option<Located> {
    if let Some(item) = snapshot
        .queue_running
        .iter()
        .find(|i| i.prompt_id == prompt_id)
    {
        return Some(Located::Running(Box::new(item.clone())));
    }
    let pending = snapshot.pending_in_run_order();
    let of = pending.len();
    pending
        .into_iter()
        .enumerate()
        .find(|(_, i)| i.prompt_id == prompt_id)
        .map(|(index, item)| Located::Pending {
            item: Box::new(item.clone()),
            position: index + 1,
            of,
        })
}

/// Why a prompt id, or the beginning of one, names no single prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// No id is it or starts with it.
    NoMatch,
    /// Several ids start with it: these, sorted.
    Ambiguous(Vec<PromptId>),
}

/// The one id among `ids` that is `prefix`, or else the only one that starts with it, so the
/// short ids the dashboard and `queue` show can be typed back.
pub fn resolve_prefix<'a>(
    prefix: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<PromptId, PrefixError> {
    if prefix.is_empty() {
        return Err(PrefixError::NoMatch);
    }
    let mut matches: Vec<&str> = Vec::new();
    for id in ids {
        if id == prefix {
            return Ok(id.to_string());
        }
        if id.starts_with(prefix) && !matches.contains(&id) {
            matches.push(id);
        }
    }
    match matches.as_slice() {
        [] => Err(PrefixError::NoMatch),
        [one] => Ok(one.to_string()),
        many => {
            let mut ids: Vec<PromptId> = many.iter().map(|id| id.to_string()).collect();
            ids.sort();
            Err(PrefixError::Ambiguous(ids))
        }
    }
}

/// How a finished prompt ended, read from its history entry the way the tracker reads it.
pub fn history_outcome(prompt_id: &str, entry: &HistoryEntry) -> Outcome {
    let mut tracker = Tracker::new("");
    tracker.handle(
        0.0,
        TrackerInput::HistoryItem {
            prompt_id: prompt_id.to_string(),
            entry: Some(entry.clone()),
        },
    );
    tracker
        .prompt(prompt_id)
        .and_then(|p| p.outcome().cloned())
        .unwrap_or(Outcome::Unknown)
}

/// Who queued a prompt, as far as this client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// This comfytop (its events come to us).
    Us,
    /// Another client, by its id.
    Client(String),
    /// Queued without a client id.
    Nobody,
}

impl Owner {
    /// `ours` is this process's client id, if it has one.
    pub fn of(client_id: Option<&str>, ours: Option<&str>) -> Self {
        match client_id {
            Some(id) if Some(id) == ours => Self::Us,
            Some(id) if !id.is_empty() => Self::Client(id.to_string()),
            _ => Self::Nobody,
        }
    }

    /// "this comfytop", "client 1a2b3c4d" or "no client id".
    pub fn label(&self) -> String {
        match self {
            Self::Us => "this comfytop".to_string(),
            Self::Client(id) => format!("client {}", client_id_label(id)),
            Self::Nobody => "no client id".to_string(),
        }
    }
}

/// [`Owner::label`] of a client id.
pub fn owner_label(client_id: Option<&str>, ours: Option<&str>) -> String {
    Owner::of(client_id, ours).label()
}

/// A client id, safe to print, whole up to [`CLIENT_ID_SHOWN`] characters (then cut with `…`).
pub fn client_id_label(id: &str) -> String {
    let id = one_line(id);
    if id.chars().count() <= CLIENT_ID_SHOWN {
        return id.into_owned();
    }
    let mut cut: String = id.chars().take(CLIENT_ID_SHOWN - 1).collect();
    cut.push('…');
    cut
}

/// A queued prompt's output node ids, in node order.
pub fn output_nodes(item: &QueueItem) -> Vec<&str> {
    let mut nodes: Vec<&str> = item.outputs_to_execute.iter().map(String::as_str).collect();
    nodes.sort_by(|a, b| node_id_order(a, b));
    nodes
}

/// The class types of a queued prompt's output nodes, in node order, each once.
pub fn output_classes(item: &QueueItem) -> Vec<String> {
    let mut classes: Vec<String> = Vec::new();
    for node in output_nodes(item) {
        let class = item
            .prompt
            .get(node)
            .map(|n| one_line(&n.class_type).into_owned())
            .unwrap_or_else(|| "?".to_string());
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes
}

/// How many nodes a queued prompt has.
pub fn node_count(item: &QueueItem) -> usize {
    item.prompt.node_count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REFERENCE: &str = crate::FIXTURES;

    fn http_body<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{REFERENCE}/http/{name}.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(v["body"].clone()).unwrap()
    }

    #[test]
    fn a_unique_beginning_of_an_id_names_it_and_an_ambiguous_one_lists_the_candidates() {
        let ids = [
            "24434a9c-0000-4000-8000-000000000001",
            "24434a9c-1111-4000-8000-000000000002",
            "9f00aa11-2222-4000-8000-000000000003",
        ];
        assert_eq!(
            resolve_prefix("9f00aa11", ids),
            Ok(ids[2].to_string()),
            "the 8 characters shown"
        );
        assert_eq!(resolve_prefix("9", ids), Ok(ids[2].to_string()));
        assert_eq!(resolve_prefix(ids[0], ids), Ok(ids[0].to_string()));
        assert_eq!(
            resolve_prefix("24434a9c", ids),
            Err(PrefixError::Ambiguous(vec![
                ids[0].to_string(),
                ids[1].to_string()
            ]))
        );
        assert_eq!(resolve_prefix("24434a9c-1", ids), Ok(ids[1].to_string()));
        assert_eq!(resolve_prefix("ffff", ids), Err(PrefixError::NoMatch));
        assert_eq!(resolve_prefix("", ids), Err(PrefixError::NoMatch));
        // An id that is itself a prefix of another is still named exactly.
        assert_eq!(resolve_prefix("ab", ["abc", "ab"]), Ok("ab".to_string()));
    }

    #[test]
    fn cancel_interrupts_what_runs_and_deletes_what_waits() {
        let snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        let running = snapshot.queue_running[0].prompt_id.clone();
        let pending = snapshot.queue_pending[0].prompt_id.clone();
        assert_eq!(
            ServerAction::cancel(&running, Place::in_queue(&snapshot, &running)),
            Some(ServerAction::Interrupt {
                prompt_id: running.clone()
            })
        );
        assert_eq!(
            ServerAction::cancel(&pending, Place::in_queue(&snapshot, &pending)),
            Some(ServerAction::Delete {
                prompt_ids: vec![pending.clone()]
            })
        );
        assert_eq!(
            ServerAction::cancel("gone", Place::in_queue(&snapshot, "gone")),
            None
        );
    }

    #[test]
    fn pending_positions_follow_run_order_not_heap_order() {
        let snapshot: QueueSnapshot = http_body("get_queue_running_and_pending");
        // The front item (-8) is listed first on the wire and runs first.
        let order: Vec<&str> = snapshot
            .pending_in_run_order()
            .iter()
            .map(|i| i.prompt_id.as_str())
            .collect();
        let last = *order.last().unwrap();
        let Some(Located::Pending { position, of, .. }) = locate_in_queue(&snapshot, last) else {
            panic!()
        };
        assert_eq!((position, of), (order.len(), order.len()));
    }

    #[test]
    fn read_only_refuses_every_action_and_says_so() {
        let actions = [
            ServerAction::Interrupt {
                prompt_id: "p".into(),
            },
            ServerAction::Delete {
                prompt_ids: vec!["p".into()],
            },
            ServerAction::ClearPending { prompt_ids: vec![] },
            ServerAction::submit(PromptRequest::default()),
            ServerAction::requeue("p".into(), PromptRequest::default()),
            ServerAction::Free(FreeRequest::default()),
        ];
        for action in &actions {
            assert!(Access::ReadWrite.check(action).is_ok());
            let refusal = Access::ReadOnly.check(action).unwrap_err();
            let text = refusal.to_string();
            assert!(text.starts_with("comfytop is read-only"), "{text}");
            assert!(text.contains(action.verb()), "{text}");
        }
    }

    #[test]
    fn submissions_get_an_id_before_they_are_sent() {
        let action = ServerAction::submit(PromptRequest::default());
        let id = action.prompt_id().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        let given = PromptRequest {
            prompt_id: Some("mine".into()),
            ..PromptRequest::default()
        };
        assert_eq!(
            ServerAction::requeue("x".into(), given).prompt_id(),
            Some("mine")
        );
    }

    #[test]
    fn only_answers_that_may_have_arrived_count_as_maybe_queued() {
        let server = "http://box".to_string();
        let call = "POST /prompt".to_string();
        let unreachable = HttpError::Unreachable {
            call: call.clone(),
            server: server.clone(),
            reason: "refused".into(),
        };
        let timeout = HttpError::Timeout {
            call: call.clone(),
            server: server.clone(),
            after: std::time::Duration::from_secs(15),
        };
        let gateway = HttpError::Status {
            call: call.clone(),
            server: server.clone(),
            status: 504,
            body_excerpt: String::new(),
            credentials_sent: String::new(),
        };
        let forbidden = HttpError::Status {
            call,
            server,
            status: 403,
            body_excerpt: String::new(),
            credentials_sent: String::new(),
        };
        assert!(!may_have_arrived(&unreachable));
        assert!(!may_have_arrived(&forbidden));
        assert!(may_have_arrived(&timeout));
        assert!(may_have_arrived(&gateway));
    }

    #[test]
    fn status_texts_name_what_was_hit() {
        let accepted: PromptAccepted = http_body("post_prompt_partially_valid");
        let text = Done::Queued {
            accepted,
            requeue_of: Some("1234567890".into()),
        }
        .status_text();
        assert!(text.starts_with("requeued 12345678 as 780c74a5"), "{text}");
        assert!(
            text.contains("node 3 (ImageScale): input 'upscale_method'"),
            "{text}"
        );
        let text = Done::Cleared {
            prompt_ids: vec!["a".into(), "b".into()],
        }
        .status_text();
        assert_eq!(text, "removed 2 pending prompts");

        let rejection: crate::comfy::api::PromptRejected =
            http_body("post_prompt_invalid_bad_inputs");
        let error = ActionError::Http(HttpError::PromptRejected {
            server: "http://box".into(),
            rejection: Box::new(rejection),
        });
        let text = error.status_text();
        assert!(
            text.starts_with("rejected: Prompt outputs failed validation: node 1 (LabSlowSteps)"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn owners_and_ids_are_short_and_printable() {
        assert_eq!(owner_label(Some("me"), Some("me")), "this comfytop");
        assert_eq!(
            owner_label(Some("abcdef0123456789"), Some("me")),
            "client abcdef0123456789"
        );
        assert_eq!(owner_label(Some("other-qa-7"), None), "client other-qa-7");
        assert_eq!(
            owner_label(Some("comfytop-5f1c9a2e-0b1d-4c3e-9f00-123456789abc"), None),
            "client comfytop-5f1c9a2e-0b1d-…"
        );
        assert_eq!(owner_label(None, Some("me")), "no client id");
        assert_eq!(short_id("\u{1b}[2Jabcdefghij"), "abcdefgh");
    }

    #[test]
    fn questions_name_what_will_be_hit_and_whose_it_is() {
        let owner = |id: &str| match id {
            "mine0000-1" => Owner::Us,
            _ => Owner::Client("web-ui-42".into()),
        };
        let ask = |action: ServerAction| action.question(owner);
        assert_eq!(
            ask(ServerAction::Interrupt {
                prompt_id: "abcdef0123".into()
            })
            .unwrap(),
            "Interrupt running prompt abcdef01, queued by client web-ui-42?"
        );
        assert_eq!(
            ask(ServerAction::Delete {
                prompt_ids: vec!["mine0000-1".into()]
            })
            .unwrap(),
            "Delete pending prompt mine0000, queued by this comfytop?"
        );
        let ids = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ask(ServerAction::ClearPending {
                prompt_ids: ids(&["mine0000-1", "x", "y"])
            })
            .unwrap(),
            "Delete all 3 pending prompts (2 queued by other clients)?"
        );
        assert_eq!(
            ask(ServerAction::ClearPending {
                prompt_ids: ids(&["mine0000-1"])
            })
            .unwrap(),
            "Delete the only pending prompt (mine0000, queued by this comfytop)?"
        );
        assert_eq!(ask(ServerAction::submit(PromptRequest::default())), None);
    }

    #[test]
    fn history_entries_read_as_outcomes() {
        for (name, label) in [
            ("get_history_id_success", "success"),
            ("get_history_id_error", "error"),
            ("get_history_id_interrupted", "interrupted"),
        ] {
            let history: crate::comfy::api::History = http_body(name);
            let (id, entry) = history.iter().next().unwrap();
            assert_eq!(history_outcome(id, entry).label(), label, "{name}");
        }
    }

    #[test]
    fn output_classes_come_from_the_output_nodes() {
        let item: QueueItem = serde_json::from_value(json!([
            3, "p", {"1": {"class_type": "KSampler"}, "2": {"class_type": "SaveImage"},
                     "3": {"class_type": "SaveImage"}},
            {"client_id": "c"}, ["2", "3", "9"]
        ]))
        .unwrap();
        assert_eq!(output_classes(&item), ["SaveImage", "?"]);
        assert_eq!(node_count(&item), 3);
    }
}
