//! Binary WebSocket frames: a big-endian u32 event type, then a type-specific payload.
//!
//! | type | payload |
//! |---|---|
//! | 1 | u32 image format (1 JPEG, 2 PNG), then the encoded image |
//! | 3 | u32 N, N bytes node id (UTF-8), then UTF-8 text |
//! | 4 | u32 M, M bytes JSON metadata, then the encoded image |
//! | `0x434D5442` ("CMTB") | u32 N, N bytes owner client id (UTF-8), then a whole frame of the types above |
//!
//! The last one never comes from ComfyUI itself: the comfytop bridge (a custom node, see
//! `assets/bridge/`) relays a copy of a frame the server sent to another client, with that
//! client's id.
//! Anything else is kept as [`BinaryFrame::Unknown`]. Parsing never panics: a frame that does not
//! fit its layout is a [`FrameError`] saying why.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub const PREVIEW_IMAGE: u32 = 1;
pub const TEXT: u32 = 3;
pub const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;
/// A frame the comfytop bridge relays from another client's prompt ("CMTB").
pub const RELAYED: u32 = 0x434D_5442;

#[derive(Debug, Clone, PartialEq)]
pub enum BinaryFrame {
    /// Types 1 and 4.
    Preview(PreviewImage),
    /// Type 3: progress text a node sends (broadcast to every socket).
    ProgressText { node_id: String, text: String },
    /// Any other event type, payload kept (without the 4 type bytes).
    Unknown { event_type: u32, payload: Bytes },
    /// A copy of a frame ComfyUI sent to the client `owner`, relayed by the comfytop bridge.
    Relayed {
        owner: String,
        frame: Box<BinaryFrame>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PreviewImage {
    pub format: ImageFormat,
    /// Present for type 4 only: ties the frame to its prompt and node.
    pub metadata: Option<PreviewMetadata>,
    /// The encoded image bytes (shares the frame's buffer).
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    /// A format code or mime type this client does not know; the bytes are kept.
    Other,
}

impl ImageFormat {
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => Self::Jpeg,
            2 => Self::Png,
            _ => Self::Other,
        }
    }

    pub fn from_mime(mime: &str) -> Self {
        match mime {
            "image/jpeg" | "image/jpg" => Self::Jpeg,
            "image/png" => Self::Png,
            _ => Self::Other,
        }
    }

    pub fn code(self) -> u32 {
        match self {
            Self::Jpeg => 1,
            Self::Png => 2,
            Self::Other => 0,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Other => "application/octet-stream",
        }
    }
}

/// The JSON header of a type-4 frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewMetadata {
    #[serde(default)]
    pub node_id: String,
    #[serde(default)]
    pub prompt_id: String,
    #[serde(default)]
    pub display_node_id: Option<String>,
    #[serde(default)]
    pub parent_node_id: Option<String>,
    #[serde(default)]
    pub real_node_id: Option<String>,
    #[serde(default)]
    pub image_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is {len} bytes, too short for {what}")]
    TooShort { len: usize, what: &'static str },
    #[error("{what} length {claimed} runs past the end of the frame ({available} bytes left)")]
    LengthPastEnd {
        what: &'static str,
        claimed: u64,
        available: usize,
    },
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: &'static str },
    #[error("preview metadata is not valid JSON: {0}")]
    BadMetadata(String),
    #[error("a relayed frame holds another relayed frame")]
    NestedRelay,
}

impl BinaryFrame {
    /// Parses one binary frame. Payload slices share `frame`'s buffer.
    pub fn parse(frame: Bytes) -> Result<Self, FrameError> {
        let mut buf = frame;
        let event_type = take_u32(&mut buf, "the event type")?;
        match event_type {
            PREVIEW_IMAGE => {
                let code = take_u32(&mut buf, "the image format")?;
                Ok(Self::Preview(PreviewImage {
                    format: ImageFormat::from_code(code),
                    metadata: None,
                    data: buf,
                }))
            }
            TEXT => {
                let node = take_prefixed(&mut buf, "the node id")?;
                let node_id = utf8(node, "the node id")?;
                let text = utf8(buf, "the progress text")?;
                Ok(Self::ProgressText { node_id, text })
            }
            PREVIEW_IMAGE_WITH_METADATA => {
                let json = take_prefixed(&mut buf, "the metadata")?;
                let metadata: PreviewMetadata = serde_json::from_slice(&json)
                    .map_err(|e| FrameError::BadMetadata(e.to_string()))?;
                Ok(Self::Preview(PreviewImage {
                    format: ImageFormat::from_mime(&metadata.image_type),
                    metadata: Some(metadata),
                    data: buf,
                }))
            }
            RELAYED => {
                let owner = take_prefixed(&mut buf, "the owner")?;
                let owner = utf8(owner, "the owner")?;
                match Self::parse(buf)? {
                    Self::Relayed { .. } => Err(FrameError::NestedRelay),
                    frame => Ok(Self::Relayed {
                        owner,
                        frame: Box::new(frame),
                    }),
                }
            }
            event_type => Ok(Self::Unknown {
                event_type,
                payload: buf,
            }),
        }
    }

    /// The frame itself, and whose prompt it came from when the bridge relayed it.
    pub fn unrelayed(&self) -> (&BinaryFrame, Option<&str>) {
        match self {
            Self::Relayed { owner, frame } => (frame, Some(owner)),
            frame => (frame, None),
        }
    }

    /// The frame's event type as on the wire.
    pub fn event_type(&self) -> u32 {
        match self {
            Self::Preview(p) if p.metadata.is_some() => PREVIEW_IMAGE_WITH_METADATA,
            Self::Preview(_) => PREVIEW_IMAGE,
            Self::ProgressText { .. } => TEXT,
            Self::Unknown { event_type, .. } => *event_type,
            Self::Relayed { .. } => RELAYED,
        }
    }

    /// Encodes the frame as the server sends it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u32(self.event_type());
        match self {
            Self::Preview(p) => {
                match &p.metadata {
                    Some(meta) => {
                        let json = serde_json::to_vec(meta).unwrap_or_default();
                        out.put_u32(json.len() as u32);
                        out.put_slice(&json);
                    }
                    None => out.put_u32(p.format.code()),
                }
                out.put_slice(&p.data);
            }
            Self::ProgressText { node_id, text } => {
                out.put_u32(node_id.len() as u32);
                out.put_slice(node_id.as_bytes());
                out.put_slice(text.as_bytes());
            }
            Self::Unknown { payload, .. } => out.put_slice(payload),
            Self::Relayed { owner, frame } => {
                out.put_u32(owner.len() as u32);
                out.put_slice(owner.as_bytes());
                out.put_slice(&frame.encode());
            }
        }
        out.freeze()
    }
}

fn take_u32(buf: &mut Bytes, what: &'static str) -> Result<u32, FrameError> {
    if buf.remaining() < 4 {
        return Err(FrameError::TooShort {
            len: buf.remaining(),
            what,
        });
    }
    Ok(buf.get_u32())
}

fn take_prefixed(buf: &mut Bytes, what: &'static str) -> Result<Bytes, FrameError> {
    let claimed = take_u32(buf, what)?;
    let len = claimed as usize;
    if len > buf.remaining() {
        return Err(FrameError::LengthPastEnd {
            what,
            claimed: u64::from(claimed),
            available: buf.remaining(),
        });
    }
    Ok(buf.split_to(len))
}

fn utf8(bytes: Bytes, what: &'static str) -> Result<String, FrameError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::BadUtf8 { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frame_round_trips() {
        let frame = BinaryFrame::ProgressText {
            node_id: "12".into(),
            text: "step 1/6 (seed 101)".into(),
        };
        assert_eq!(BinaryFrame::parse(frame.encode()), Ok(frame));
    }

    #[test]
    fn length_past_end_says_so() {
        let mut raw = BytesMut::new();
        raw.put_u32(TEXT);
        raw.put_u32(100);
        raw.put_slice(b"1");
        let err = BinaryFrame::parse(raw.freeze()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the node id length 100 runs past the end of the frame (1 bytes left)"
        );
    }

    #[test]
    fn empty_and_short_frames_are_errors() {
        assert!(BinaryFrame::parse(Bytes::new()).is_err());
        assert!(BinaryFrame::parse(Bytes::from_static(&[0, 0, 0, 1, 0])).is_err());
    }

    #[test]
    fn relayed_frame_round_trips_and_unwraps() {
        let inner = BinaryFrame::Preview(PreviewImage {
            format: ImageFormat::Jpeg,
            metadata: None,
            data: Bytes::from_static(b"\xff\xd8jpeg"),
        });
        let relayed = BinaryFrame::Relayed {
            owner: "browser-tab".into(),
            frame: Box::new(inner.clone()),
        };
        let wire = relayed.encode();
        // The layout the bridge writes: type, owner length, owner, then the frame as sent.
        assert_eq!(&wire[..4], b"CMTB");
        assert_eq!(&wire[4..8], &11u32.to_be_bytes());
        assert_eq!(&wire[8..19], b"browser-tab");
        assert_eq!(wire.slice(19..), inner.encode());
        let parsed = BinaryFrame::parse(wire).unwrap();
        assert_eq!(parsed, relayed);
        assert_eq!(parsed.unrelayed(), (&inner, Some("browser-tab")));
        assert_eq!(inner.unrelayed(), (&inner, None));
    }

    #[test]
    fn a_relay_inside_a_relay_and_a_short_owner_are_errors() {
        let once = BinaryFrame::Relayed {
            owner: "a".into(),
            frame: Box::new(BinaryFrame::ProgressText {
                node_id: "1".into(),
                text: "x".into(),
            }),
        };
        let mut twice = BytesMut::new();
        twice.put_u32(RELAYED);
        twice.put_u32(1);
        twice.put_slice(b"b");
        twice.put_slice(&once.encode());
        assert_eq!(
            BinaryFrame::parse(twice.freeze()),
            Err(FrameError::NestedRelay)
        );
        let mut short = BytesMut::new();
        short.put_u32(RELAYED);
        short.put_u32(50);
        short.put_slice(b"abc");
        assert!(matches!(
            BinaryFrame::parse(short.freeze()),
            Err(FrameError::LengthPastEnd {
                what: "the owner",
                ..
            })
        ));
    }

    #[test]
    fn unknown_type_keeps_payload() {
        let f = BinaryFrame::parse(Bytes::from_static(&[0, 0, 0, 9, 1, 2])).unwrap();
        assert_eq!(
            f,
            BinaryFrame::Unknown {
                event_type: 9,
                payload: Bytes::from_static(&[1, 2])
            }
        );
    }
}
