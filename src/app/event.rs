use crossterm::event::KeyEvent;

use super::Panel;
use crate::comfy::api::{PromptAccepted, PromptRequest, SystemStats};
use crate::comfy::connection::ConnEvent;
use crate::control;
use crate::tracker::{TrackerCommand, TrackerInput};

/// Everything that can change the dashboard's state. Nothing else reaches it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    /// A mouse click, already mapped to what is under the pointer.
    Click(ClickTarget),
    /// The mouse wheel over `panel` (`None`: outside every panel); `down` scrolls towards the end.
    Wheel {
        panel: Option<Panel>,
        down: bool,
    },
    Resize {
        width: u16,
        height: u16,
    },
    /// The terminal window gained or lost focus (where the terminal reports it).
    Focus(bool),
    /// A timer the state asked for (see [`super::State::wakeup_at`]).
    Tick,
    /// From the connection of server `.0` (its index in [`super::State::servers`]).
    Conn(usize, ConnEvent),
    /// The reply to a command for server `.0`.
    Reply(usize, Reply),
    /// The preview worker has results.
    Preview(super::preview::PreviewResults),
    /// Something went wrong outside the state (recording, say) that the user should see.
    Problem(String),
    /// The screen now shows the state (and the preview worker is told what the pane shows).
    Drawn,
    /// The full-size view is gone (the problem, when it could not be shown).
    FullViewClosed {
        problem: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickTarget {
    Panel(Panel),
    /// Row `index` of a panel's list (0 = the first item, not the first visible one).
    Row {
        panel: Panel,
        index: usize,
    },
}

/// The reply to a [`super::Command`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A tracker fetch: its reply as tracker input, or the error in words.
    Tracker {
        command: TrackerCommand,
        result: Result<TrackerInput, String>,
    },
    SystemStats(Result<SystemStats, String>),
    /// A prompt this comfytop posted (the demo's own work; later requeue and submit): the
    /// request and the server's acceptance, or the error in words.
    Submitted(Result<Box<Submitted>, String>),
    /// An output fetched through `/view` for the preview pane.
    Output {
        image: crate::comfy::protocol::ImageRef,
        result: Result<bytes::Bytes, String>,
    },
    /// Where `s` saved an output, or why it could not.
    Saved(Result<std::path::PathBuf, String>),
    /// The server's log backlog after subscribing, or why either failed.
    ServerLog(Result<crate::comfy::api::RawLogs, String>),
    /// What became of [`super::Command::JoinBridge`].
    Bridge(crate::bridge::BridgeLink),
    /// The reply to [`super::Command::Act`]: what was done, or the error as the status line
    /// says it.
    Acted {
        action: control::ServerAction,
        result: Result<control::Done, String>,
    },
}

/// A prompt the server accepted from this comfytop.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub request: PromptRequest,
    pub accepted: PromptAccepted,
}
