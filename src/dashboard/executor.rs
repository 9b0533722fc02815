//! The one place where the dashboard's [`Command`]s become effects: HTTP calls on tokio tasks
//! (their replies come back on a channel), the preview worker, the connection. The two that
//! need the terminal, which only the loop holds, are handed back to it as [`ForTheLoop`].

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::app::{Command, Reply};
use crate::comfy::connection::Connection;
use crate::comfy::http::ComfyClient;
use crate::comfy::protocol::PromptId;
use crate::control::{self, Access, ServerAction};
use crate::preview::{PreviewPipeline, save_without_overwriting};
use crate::session;

/// A command only the loop can carry out.
#[derive(Debug)]
pub(super) enum ForTheLoop {
    Quit,
    ShowFullSize {
        data: Bytes,
        caption: String,
        follow: Option<PromptId>,
    },
    /// Bytes for the terminal as they are (a bell, a notification).
    Write(Vec<u8>),
}

/// One watched server: its HTTP client and its WebSocket.
pub(super) struct ServerLink {
    pub client: ComfyClient,
    /// Our clientId there (the log stream is sent to it).
    pub client_id: String,
    pub connection: Connection,
    /// What may be done there: `--read-only`, or the server's config.
    pub access: Access,
}

/// Runs commands off the loop.
pub(super) struct Executor {
    /// In the order of [`crate::app::State::servers`]: a command's index picks its server.
    pub servers: Vec<ServerLink>,
    /// Replies, with the index of the server they come from.
    pub replies: mpsc::UnboundedSender<(usize, Reply)>,
    /// The preview worker, when previews are on.
    pub pipeline: Option<PreviewPipeline>,
    /// How a prompt's end is told, and to what kind of terminal.
    pub notify: crate::notify::NotifyMode,
    pub terminal: crate::notify::TerminalKind,
}

impl Executor {
    pub fn run(&self, command: Command) -> Option<ForTheLoop> {
        let replies = self.replies.clone();
        // A command for a server that is not watched does nothing.
        let link = |index: usize| self.servers.get(index);
        match command {
            Command::Quit => return Some(ForTheLoop::Quit),
            Command::ShowFullSize {
                data,
                caption,
                follow,
            } => {
                return Some(ForTheLoop::ShowFullSize {
                    data,
                    caption,
                    follow,
                });
            }
            Command::RequeueTo { from, to, action } => {
                let source = link(from)?.client.clone();
                let target = link(to)?;
                let (client, client_id, access) = (
                    target.client.clone(),
                    target.client_id.clone(),
                    target.access,
                );
                tokio::spawn(async move {
                    let reply = requeue_to(&source, &client, &client_id, access, action).await;
                    let _ = replies.send((to, reply));
                });
            }
            Command::FollowServerLog(index) => {
                let link = link(index)?;
                let (client, client_id) = (link.client.clone(), link.client_id.clone());
                tokio::spawn(async move {
                    let result = match client.subscribe_logs(&client_id, true).await {
                        Ok(()) => client.logs_raw().await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = replies.send((index, Reply::ServerLog(result)));
                });
            }
            Command::JoinBridge(index) => {
                let link = link(index)?;
                let (client, client_id) = (link.client.clone(), link.client_id.clone());
                tokio::spawn(async move {
                    let joined = crate::bridge::join(&client, &client_id).await;
                    let _ = replies.send((index, Reply::Bridge(joined)));
                });
            }
            Command::Reconnect(index) => {
                if let Some(link) = link(index) {
                    link.connection.retry_now();
                }
            }
            Command::Reopen(index) => {
                if let Some(link) = link(index) {
                    link.connection.reopen();
                }
            }
            Command::Notify(text) => {
                let bytes = crate::notify::bytes(self.notify, &self.terminal, "comfytop", &text);
                return (!bytes.is_empty()).then_some(ForTheLoop::Write(bytes));
            }
            Command::SubmitPreview(frame) => {
                if let Some(pipeline) = &self.pipeline {
                    pipeline.submit(frame);
                }
            }
            Command::SetPreviewView(view) => {
                if let Some(pipeline) = &self.pipeline {
                    pipeline.set_view(view);
                }
            }
            Command::RedrawPreview => {
                if let Some(pipeline) = &self.pipeline {
                    pipeline.refresh();
                }
            }
            Command::Fetch(index, fetch) => {
                let client = link(index)?.client.clone();
                tokio::spawn(async move {
                    let reply = session::run_fetch(&client, fetch.clone()).await;
                    let result = match reply.error {
                        None => Ok(reply.input),
                        Some(error) => {
                            tracing::warn!(%error, ?fetch, "fetch failed");
                            Err(error.to_string())
                        }
                    };
                    // The loop may be gone already (quitting): nothing to tell then.
                    let _ = replies.send((
                        index,
                        Reply::Tracker {
                            command: fetch,
                            result,
                        },
                    ));
                });
            }
            Command::FetchSystemStats(index) => {
                let client = link(index)?.client.clone();
                tokio::spawn(async move {
                    let result = client.system_stats().await.map_err(|e| e.to_string());
                    let _ = replies.send((index, Reply::SystemStats(result)));
                });
            }
            Command::FetchOutput(index, image) => {
                let client = link(index)?.client.clone();
                tokio::spawn(async move {
                    let result = client
                        .view(&image)
                        .await
                        .map(|file| file.bytes)
                        .map_err(|e| e.to_string());
                    let _ = replies.send((index, Reply::Output { image, result }));
                });
            }
            Command::SaveOutput {
                server: index,
                image,
                data,
                dir,
            } => {
                let client = link(index)?.client.clone();
                tokio::spawn(async move {
                    let bytes = match data {
                        Some(bytes) => Ok(bytes),
                        None => client
                            .view(&image)
                            .await
                            .map(|file| file.bytes)
                            .map_err(|e| e.to_string()),
                    };
                    let result = match bytes {
                        Ok(bytes) => tokio::task::spawn_blocking(move || {
                            save_without_overwriting(&dir, &image.filename, &bytes)
                                .map_err(|e| e.to_string())
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string())),
                        Err(error) => Err(error),
                    };
                    let _ = replies.send((index, Reply::Saved(result)));
                });
            }
            Command::Act(index, action) => {
                let client = link(index)?.client.clone();
                let access = link(index)?.access;
                tokio::spawn(async move {
                    let reply = act(&client, access, action).await;
                    let _ = replies.send((index, reply));
                });
            }
        }
        None
    }
}

/// A requeue on another server: the graph fetched from `source`, set to come back to our id on
/// `target`, refused when `target` lacks a node type it uses; then posted as any requeue.
async fn requeue_to(
    source: &ComfyClient,
    target: &ComfyClient,
    client_id: &str,
    access: Access,
    action: ServerAction,
) -> Reply {
    let ServerAction::Requeue {
        from,
        request,
        new_seeds,
    } = &action
    else {
        return act(target, access, action).await;
    };
    let prepared = async {
        let item = source
            .queued_prompt(from)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "not requeued: {} has it neither in its queue nor in its history any more",
                    source.server()
                )
            })?;
        let mut fetched =
            crate::workflow::requeue_request(&item.prompt, &item.extra_data, client_id, false);
        fetched.prompt_id.clone_from(&request.prompt_id);
        let types = crate::placement::node_types(&fetched.prompt);
        let missing = crate::placement::missing_node_types(target, &types)
            .await
            .map_err(|e| e.to_string())?;
        if !missing.is_empty() {
            return Err(format!(
                "not requeued: {} lacks {}",
                target.server(),
                crate::text::one_line(&missing.join(", "))
            ));
        }
        Ok(ServerAction::Requeue {
            from: from.clone(),
            request: Box::new(fetched),
            new_seeds: *new_seeds,
        })
    }
    .await;
    match prepared {
        Ok(ready) => act(target, access, ready).await,
        Err(error) => Reply::Acted {
            action,
            result: Err(error),
        },
    }
}

/// Runs a [`Command::Act`] once (never retried: a lost answer to a POST /prompt is reported as
/// such, not sent again) and words its reply for the dashboard.
pub async fn act(client: &ComfyClient, access: Access, action: ServerAction) -> Reply {
    let result = control::perform(client, access, &action)
        .await
        .map_err(|error| {
            tracing::warn!(%error, verb = action.verb(), "action failed");
            error.status_text()
        });
    Reply::Acted { action, result }
}
