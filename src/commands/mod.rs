//! The commands that act on a server from scripts and shells: `submit`, `cancel` and `queue`.
//! Each prints what it did in words, and its exit status says how it went (see [`Exit`]).

pub mod cancel;
pub mod download;
pub mod follow;
pub mod queue;
pub mod submit;

use std::process::ExitCode;

use crate::cli::URL_ENV;
use crate::comfy::server_url::ServerUrl;

/// Exit statuses, the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: the prompt was queued (and succeeded, with `--wait`), or the target was hit.
    Success,
    /// The prompt failed while running, or there was nothing to act on.
    Failed,
    /// The prompt was interrupted or deleted before it finished.
    Interrupted,
    /// Nothing happened: the server could not be reached or followed, the workflow or command
    /// was refused (invalid, read-only), or the outcome is unknown.
    NotDone,
    /// Ctrl-C: comfytop stopped waiting; the prompt goes on.
    StoppedWaiting,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Interrupted => 2,
            Self::NotDone => 3,
            Self::StoppedWaiting => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// The server to use: the argument, else `$COMFYUI_URL`, else the local default. A bad address
/// is a failure to reach it (exit 3), which scripts tell apart from the statuses of a prompt.
pub fn resolve_server(arg: Option<&str>) -> Result<ServerUrl, String> {
    let env = std::env::var(URL_ENV).ok();
    crate::cli::resolve_server(arg, env.as_deref())
}

/// Prints an error the way every command does.
fn fail(message: impl std::fmt::Display) {
    eprintln!("comfytop: {}", crate::text::sanitize(&message.to_string()));
}

/// Untrusted text as one safe terminal line.
fn clean(text: &str) -> String {
    crate::text::one_line(text).into_owned()
}
