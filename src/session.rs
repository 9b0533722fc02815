//! The glue between one server's I/O and its tracker: which connection events the tracker
//! takes, and how its fetch commands become HTTP calls. Live `watch` and the dashboard share it.

use std::path::Path;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr as _};

use crate::comfy::Decoded;
use crate::comfy::connection::ConnEvent;
use crate::comfy::http::{ComfyClient, HttpError};
use crate::comfy::transcript::Recorder;
use crate::tracker::{TrackerCommand, TrackerInput};

/// What the tracker makes of a connection event, if anything (connecting and backoff notices
/// only matter to the user; malformed frames carry nothing to track).
pub fn tracker_input(event: ConnEvent) -> Option<TrackerInput> {
    match event {
        ConnEvent::Connected { sid, features } => Some(TrackerInput::Connected { sid, features }),
        ConnEvent::Disconnected { .. } => Some(TrackerInput::Disconnected),
        ConnEvent::Frame(frame) => match frame.decoded {
            Decoded::Message(m) => Some(TrackerInput::Message(m)),
            Decoded::Binary(b) => Some(TrackerInput::Binary(b)),
            Decoded::Malformed { .. } => None,
        },
        ConnEvent::Connecting { .. }
        | ConnEvent::Reconnecting { .. }
        | ConnEvent::Quiet { .. }
        | ConnEvent::Resumed => None,
    }
}

/// The reply to one fetch: the tracker input to feed back, and the error when the call failed
/// (the input is then [`TrackerInput::FetchFailed`], so the tracker can ask again later).
#[derive(Debug)]
pub struct FetchReply {
    pub input: TrackerInput,
    pub error: Option<HttpError>,
}

/// Waits before each retry of a fetch that failed on the way (a timeout, a refused or reset
/// connection, a 5xx from a proxy or the server); after the last, the failure is reported.
pub const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// Whether asking again may help: the way to the server failed, not the answer's content.
pub fn worth_retrying(error: &HttpError) -> bool {
    match error {
        HttpError::Unreachable { .. } | HttpError::Timeout { .. } | HttpError::Request { .. } => {
            true
        }
        HttpError::Status { status, .. } => *status == 429 || *status >= 500,
        HttpError::PromptRejected { .. }
        | HttpError::NotComfy { .. }
        | HttpError::Decode { .. }
        | HttpError::Redirected { .. }
        | HttpError::Setup(_) => false,
    }
}

/// Runs one tracker command against the server, retrying with backoff ([`RETRY_DELAYS`]) while
/// the failure is worth retrying; the tracker hears of a failure only once all retries failed.
pub async fn run_fetch(client: &ComfyClient, command: TrackerCommand) -> FetchReply {
    run_fetch_with_retries(client, command, &RETRY_DELAYS).await
}

/// [`run_fetch`] with the waits between attempts given.
pub async fn run_fetch_with_retries(
    client: &ComfyClient,
    command: TrackerCommand,
    delays: &[Duration],
) -> FetchReply {
    let mut delays = delays.iter();
    loop {
        let reply = run_fetch_once(client, &command).await;
        match (&reply.error, delays.next()) {
            (Some(error), Some(delay)) if worth_retrying(error) => {
                tracing::debug!(%error, ?delay, "fetch failed; retrying");
                tokio::time::sleep(*delay).await;
            }
            _ => return reply,
        }
    }
}

async fn run_fetch_once(client: &ComfyClient, command: &TrackerCommand) -> FetchReply {
    let result = match command {
        TrackerCommand::FetchQueue => client.queue().await.map(TrackerInput::Queue),
        TrackerCommand::FetchHistory { max_items } => client
            .history(Some(*max_items), None)
            .await
            .map(TrackerInput::History),
        TrackerCommand::FetchHistoryItem(id) => {
            client
                .history_item(id)
                .await
                .map(|entry| TrackerInput::HistoryItem {
                    prompt_id: id.clone(),
                    entry,
                })
        }
    };
    match result {
        Ok(input) => FetchReply { input, error: None },
        Err(error) => FetchReply {
            input: TrackerInput::FetchFailed(command.clone()),
            error: Some(error),
        },
    }
}

/// Ends at `deadline`; never without one (a `select!` branch that waits for an optional timer).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The transcript `--record` appends to, opened with advice when it cannot be.
pub fn open_recording(path: Option<&Path>) -> Result<Option<Recorder>> {
    path.map(|path| {
        Recorder::append(path).wrap_err_with(|| {
            format!(
                "cannot open {} for recording; check that its folder exists and is writable",
                path.display()
            )
        })
    })
    .transpose()
}
