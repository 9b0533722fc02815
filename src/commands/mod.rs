//! The commands that act on a server from scripts and shells: `submit`, `cancel` and `queue`.
//! Each prints what it did in words, and its exit status says how it went (see [`Exit`]).

pub mod cancel;
pub mod download;
pub mod follow;
pub mod queue;
pub mod submit;

use std::process::ExitCode;

use crate::comfy::http::{ComfyClient, HttpError};

/// Exit statuses, the same for every command (`submit`, `cancel`, `queue`, `watch`, `replay`).
/// [`EXIT_STATUS_HELP`] says the same in words; keep the two together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: the prompt was queued (and succeeded, with `--wait`), or the target was hit.
    Success,
    /// The prompt failed while running (or its outputs could not be saved), there was nothing to
    /// act on, or a replayed transcript had bad lines.
    Failed,
    /// The command line is wrong (clap uses this status too): an unknown option, a bad URL,
    /// arguments that do not go together.
    Usage,
    /// The prompt was interrupted, or deleted from the queue, while comfytop watched.
    Interrupted,
    /// The prompt is gone and nobody knows how it ended: it left the queue while the connection
    /// was down (a server restart), or the server kept no record of it.
    Lost,
    /// Nothing happened: the server could not be reached or is not ComfyUI, the workflow or
    /// command was refused (invalid, read-only), or following it had to stop.
    NotDone,
    /// Ctrl-C: comfytop stopped waiting; the prompt goes on.
    StoppedWaiting,
}

/// The exit status table, as `--help` shows it.
pub const EXIT_STATUS_HELP: &str = "\
Exit status (the same for every command):
    0  success: queued (with --wait: succeeded), cancelled, shown
    1  failed: the prompt failed while running or its outputs could not be saved; nothing to
       cancel; a replayed transcript had bad lines
    2  usage: a bad command line (unknown option, bad URL, arguments that do not go together)
    3  interrupted or deleted while comfytop watched
    4  lost: the prompt left the queue while the connection was down (a server restart), or the
       server kept no record of how it ended
    5  not done: server unreachable or not ComfyUI, workflow refused, read-only, or following it
       had to stop
  130  stopped waiting (Ctrl-C); the prompt goes on";

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Interrupted => 3,
            Self::Lost => 4,
            Self::NotDone => 5,
            Self::StoppedWaiting => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// When a call failed in a way another kind of server would answer (a 404, 405 or 501 to a POST,
/// HTML or no JSON), asks `GET /queue`, which every ComfyUI answers with JSON, and gives the
/// error that says the server does not look like ComfyUI, as `queue` says it. `None` when it
/// does look like ComfyUI, or the call failed for another reason.
async fn not_comfy(client: &ComfyClient, error: &HttpError) -> Option<HttpError> {
    match error {
        HttpError::NotComfy { .. } | HttpError::Decode { .. } => {}
        // Proxies answer 502 to 504 while ComfyUI behind them is down: that says nothing about
        // what the server is.
        HttpError::Status { status, .. } if !(502..=504).contains(status) => {}
        _ => return None,
    }
    match client.queue().await {
        Err(not_comfy @ HttpError::NotComfy { .. }) => Some(not_comfy),
        _ => None,
    }
}

/// Prints an error the way every command does.
fn fail(message: impl std::fmt::Display) {
    eprintln!("comfytop: {}", crate::text::sanitize(&message.to_string()));
}

/// Untrusted text as one safe terminal line.
fn clean(text: &str) -> String {
    crate::text::one_line(text).into_owned()
}
