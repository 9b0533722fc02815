use std::path::PathBuf;

use bytes::Bytes;

use crate::comfy::protocol::ImageRef;
use crate::control;
use crate::preview::{PreviewFrame, View};
use crate::tracker::TrackerCommand;

/// Work [`super::update`] asks the runtime to do. Each runs off the UI loop; its reply comes back
/// as an [`super::Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An HTTP fetch the tracker of server `.0` needs (`/queue`, `/history`,
    /// `/history/{id}`). Every command for a server names it by its index in
    /// [`super::State::servers`]; its reply comes back with the same index.
    Fetch(usize, TrackerCommand),
    /// `GET /system_stats` for the status bar.
    FetchSystemStats(usize),
    /// Hand a preview frame or a fetched output to the preview worker.
    SubmitPreview(PreviewFrame),
    /// Tell the preview worker what the pane shows now (`None`: hidden).
    SetPreviewView(Option<View>),
    /// Draw the pane's image again (the full-size view wiped it).
    RedrawPreview,
    /// `GET /view` for an output the preview pane shows.
    FetchOutput(usize, ImageRef),
    /// Save an output into `dir` (from `data`, else a fresh `/view` fetch), never overwriting.
    SaveOutput {
        server: usize,
        image: ImageRef,
        data: Option<Bytes>,
        dir: PathBuf,
    },
    /// Show an image at the terminal's full size until a key is pressed, following newer
    /// previews of `follow`'s prompt while it is up (see [`super::preview::preview_of`]).
    ShowFullSize {
        data: Bytes,
        caption: String,
        follow: Option<crate::comfy::protocol::PromptId>,
    },
    /// Change something on the server (confirmed first where it destroys); the reply comes
    /// back as [`super::Reply::Acted`].
    Act(usize, control::ServerAction),
    /// Try the server again now instead of waiting out the backoff.
    Reconnect(usize),
    /// Close server `index`'s socket, which the server no longer sends to, and open another.
    Reopen(usize),
    /// Queue a prompt of server `from` on server `to`: its graph fetched from `from`, the node
    /// types checked on `to`; the reply comes back as `to`'s.
    RequeueTo {
        from: usize,
        to: usize,
        action: control::ServerAction,
    },
    /// Subscribe to server `.0`'s log stream and read its backlog.
    FollowServerLog(usize),
    /// Look for the comfytop bridge on server `.0` and register with it (after each connect).
    JoinBridge(usize),
    /// Tell the user a prompt ended (the bell and/or a desktop notification, as `--notify`
    /// says); the text says which and how.
    Notify(String),
    /// Leave the dashboard.
    Quit,
}
