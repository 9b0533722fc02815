//! Everything ComfyUI speaks, and nothing about the UI: message types, binary frames, the HTTP
//! client, the WebSocket connection task and transcripts.

pub mod api;
pub mod binary;
pub mod connection;
pub mod http;
pub mod protocol;
pub mod server_url;
mod string_cut;
pub mod transcript;

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
