//! The WebSocket task: connect, negotiate feature flags, pass every frame on, notice dead
//! tunnels, and reconnect with backoff under the same clientId.
//!
//! INTERFACE SKETCH — to be implemented.

use std::time::Duration;

use tokio::sync::mpsc;

use super::protocol::FeatureFlags;
use super::server_url::ServerUrl;
use super::{Decoded, RawFrame};

/// Everything the connection task reports, in order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// A connection attempt starts (1 for the first).
    Connecting { attempt: u32 },
    /// The socket is open and the handshake is done: `sid` from the first `status`, the server's
    /// feature flags from its reply to ours (None if it did not answer in time).
    Connected {
        sid: Option<String>,
        features: Option<FeatureFlags>,
    },
    /// One data frame, in arrival order (including the handshake frames).
    Frame(ReceivedFrame),
    /// The socket is gone, and why, in words a user can act on.
    Disconnected { reason: String },
    /// The next attempt comes after `delay`.
    Reconnecting { attempt: u32, delay: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFrame {
    /// Seconds since this socket connected (the transcript clock).
    pub t: f64,
    pub raw: RawFrame,
    pub decoded: Decoded,
}

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub server: ServerUrl,
    pub client_id: String,
    /// Interval of WebSocket pings; a missing pong within `ping_timeout` drops the socket.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// Handle to the running task. Dropping it does not stop the task; call [`Connection::close`].
pub struct Connection {
    _events: std::marker::PhantomData<mpsc::Sender<ConnEvent>>,
}
