//! Everything ComfyUI speaks, and nothing about the UI: message types, binary frames, the HTTP
//! client, the WebSocket connection task, transcripts, and [`text`], which makes the server's
//! strings safe to print.

pub mod api;
pub mod binary;
pub mod connection;
pub mod http;
pub mod protocol;
pub mod server_url;
mod string_cut;
pub mod text;
pub mod tls;
pub mod transcript;

/// The recorded ComfyUI 0.3.64 traffic (transcripts, HTTP bodies, workflows) that the tests and
/// benches of the workspace replay. It lives in the repository, so a clone alone builds and
/// passes its tests.
#[doc(hidden)]
pub const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/comfyui-0.3.64"
);

use bytes::Bytes;

use binary::BinaryFrame;
use protocol::ServerMessage;

/// One WebSocket data frame as it arrived, before decoding.
#[derive(Debug, Clone, PartialEq)]
pub enum RawFrame {
    Text(String),
    Binary(Bytes),
}

/// What one frame decodes to. Decoding never fails: a frame that does not fit its layout becomes
/// [`Decoded::Malformed`] with the reason, and the connection goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Message(ServerMessage),
    Binary(BinaryFrame),
    Malformed { error: String },
}

impl RawFrame {
    pub fn decode(&self) -> Decoded {
        match self {
            Self::Text(text) => match ServerMessage::from_json(text) {
                Ok(m) => Decoded::Message(m),
                Err(e) => Decoded::Malformed {
                    error: e.to_string(),
                },
            },
            Self::Binary(bytes) => match BinaryFrame::parse(bytes.clone()) {
                Ok(f) => Decoded::Binary(f),
                Err(e) => Decoded::Malformed {
                    error: e.to_string(),
                },
            },
        }
    }
}
