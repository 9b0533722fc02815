//! The glue between one server's I/O and its tracker: which connection events the tracker
//! takes, and how its fetch commands become HTTP calls. Live `watch` and the dashboard share it.

use crate::comfy::Decoded;
use crate::comfy::connection::ConnEvent;
use crate::comfy::http::{ComfyClient, HttpError};
use crate::tracker::{HISTORY_FETCH, TrackerCommand, TrackerInput};

/// What the tracker makes of a connection event, if anything (connecting and backoff notices
/// only matter to the user; malformed frames carry nothing to track).
pub fn tracker_input(event: &ConnEvent) -> Option<TrackerInput> {
    match event {
        ConnEvent::Connected { sid, features } => Some(TrackerInput::Connected {
            sid: sid.clone(),
            features: features.clone(),
        }),
        ConnEvent::Disconnected { .. } => Some(TrackerInput::Disconnected),
        ConnEvent::Frame(frame) => match &frame.decoded {
            Decoded::Message(m) => Some(TrackerInput::Message(m.clone())),
            Decoded::Binary(b) => Some(TrackerInput::Binary(b.clone())),
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

/// Runs one tracker command against the server.
pub async fn run_fetch(client: &ComfyClient, command: TrackerCommand) -> FetchReply {
    let result = match &command {
        TrackerCommand::FetchQueue => client.queue().await.map(TrackerInput::Queue),
        TrackerCommand::FetchHistory { max_items } => client
            .history(Some((*max_items).min(HISTORY_FETCH * 16)), None)
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
            input: TrackerInput::FetchFailed(command),
            error: Some(error),
        },
    }
}
