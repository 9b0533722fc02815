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

/// Runs commands off the loop.
pub(super) struct Executor {
    pub client: ComfyClient,
    pub access: Access,
    pub replies: mpsc::UnboundedSender<Reply>,
    pub connection: Connection,
    /// The preview worker, when previews are on.
    pub pipeline: Option<PreviewPipeline>,
    /// How a prompt's end is told, and to what kind of terminal.
    pub notify: crate::notify::NotifyMode,
    pub terminal: crate::notify::TerminalKind,
}

impl Executor {
    pub fn run(&self, command: Command) -> Option<ForTheLoop> {
        let client = self.client.clone();
        let replies = self.replies.clone();
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
            Command::Reconnect => self.connection.retry_now(),
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
            Command::Fetch(fetch) => {
                tokio::spawn(async move {
                    let reply = session::run_fetch(&client, fetch.clone()).await;
                    let result = match reply.error {
                        None => Ok(reply.input),
                        Some(error) => {
                            tracing::warn!(%error, "fetch failed");
                            Err(error.to_string())
                        }
                    };
                    // The loop may be gone already (quitting): nothing to tell then.
                    let _ = replies.send(Reply::Tracker {
                        command: fetch,
                        result,
                    });
                });
            }
            Command::FetchSystemStats => {
                tokio::spawn(async move {
                    let result = client.system_stats().await.map_err(|e| e.to_string());
                    let _ = replies.send(Reply::SystemStats(result));
                });
            }
            Command::FetchOutput(image) => {
                tokio::spawn(async move {
                    let result = client
                        .view(&image)
                        .await
                        .map(|file| file.bytes)
                        .map_err(|e| e.to_string());
                    let _ = replies.send(Reply::Output { image, result });
                });
            }
            Command::SaveOutput { image, data, dir } => {
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
                    let _ = replies.send(Reply::Saved(result));
                });
            }
            Command::Act(action) => {
                let access = self.access;
                tokio::spawn(async move {
                    let reply = act(&client, access, action).await;
                    let _ = replies.send(reply);
                });
            }
        }
        None
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
