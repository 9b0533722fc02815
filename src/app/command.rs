use crate::control;
use crate::tracker::TrackerCommand;

/// Work [`super::update`] asks the runtime to do. Each runs off the UI loop; its reply comes back
/// as an [`super::Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An HTTP fetch the tracker needs (`/queue`, `/history`, `/history/{id}`).
    Fetch(TrackerCommand),
    /// `GET /system_stats` for the status bar.
    FetchSystemStats,
    /// Change something on the server (confirmed first where it destroys); the reply comes
    /// back as [`super::Fetched::Acted`].
    Act(control::Action),
    /// Leave the dashboard.
    Quit,
}
