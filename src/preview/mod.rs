//! Inline previews: live preview frames and finished outputs, drawn inside the dashboard.
//!
//! The pieces, in the order a frame meets them:
//!
//! 1. [`PreviewFrame`]: an encoded image (a WebSocket preview or an output fetched through
//!    `/view`) tied to a [`PreviewKey`].
//! 2. [`PreviewPipeline`]: a worker thread that keeps only the newest frame per key, reads headers,
//!    refuses images over the [`DecodeLimits`], decodes and downscales the frame on view, and
//!    encodes it for the terminal's graphics protocol at the pane's size. Nothing heavy runs on
//!    the UI loop.
//! 3. [`PreviewState`]: what the UI keeps (per-key status, the encoded image on view), applied at
//!    most `--preview-fps` times per second through a [`RedrawLimiter`].
//! 4. [`PreviewPane`]: a widget that draws it in any `Rect`.
//!
//! Around them: [`Renderer`] (protocol choice and terminal query), [`ImageCache`] (outputs
//! fetched through `/view`), [`save_without_overwriting`] and [`show_full_size`].

mod cache;
mod decode;
mod full_view;
mod graphics;
mod pipeline;
mod rate;
mod save;
mod state;
mod widget;

use std::time::Instant;

use bytes::Bytes;

use crate::comfy::binary::{ImageFormat, PreviewImage};
use crate::comfy::protocol::{ImageRef, NodeId, PromptId};

pub use cache::{ImageCache, view_url};
pub use decode::{DecodeLimits, DecodeProblem, DecodedImage, Probe, decode, frame_hash, probe};
pub use full_view::show_full_size;
pub use graphics::{Detection, ImageProtocol, QueryNews, Renderer};
pub use pipeline::{
    LatestPerKey, PipelineConfig, PipelineStats, PreviewBatch, PreviewPipeline, Rendered,
    SlotUpdate, View, Work, Worker,
};
pub use rate::RedrawLimiter;
pub use save::{candidate_names, safe_file_name, save_without_overwriting};
pub use state::{Condition, PreviewPoll, PreviewState, SlotStatus};
pub use widget::PreviewPane;

/// What a preview slot shows: the live preview of a prompt, or one of its finished outputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreviewKey {
    Live(PromptId),
    Output(ImageRef),
}

/// One encoded image on its way to the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewFrame {
    pub key: PreviewKey,
    /// The node that sent it (type-4 metadata), when known.
    pub node_id: Option<NodeId>,
    /// The format the sender declared; the bytes' own signature wins when they disagree.
    pub format: ImageFormat,
    pub data: Bytes,
    pub received_at: Instant,
}

impl PreviewFrame {
    /// A preview frame from the socket. Type 4 names its prompt; type 1 belongs to the prompt
    /// that runs (`running`), and is dropped (`None`) when nothing is known to run.
    pub fn live(image: &PreviewImage, running: Option<&str>, received_at: Instant) -> Option<Self> {
        let (prompt_id, node_id) = match &image.metadata {
            Some(meta) if !meta.prompt_id.is_empty() => {
                // The display node is the one the user sees in the graph (subgraphs).
                let node = meta
                    .display_node_id
                    .clone()
                    .filter(|id| !id.is_empty())
                    .or_else(|| Some(meta.node_id.clone()).filter(|id| !id.is_empty()));
                (meta.prompt_id.clone(), node)
            }
            _ => (running?.to_string(), None),
        };
        Some(Self {
            key: PreviewKey::Live(prompt_id),
            node_id,
            format: image.format,
            data: image.data.clone(),
            received_at,
        })
    }

    /// An output image fetched through `/view`.
    pub fn output(image: ImageRef, data: Bytes, received_at: Instant) -> Self {
        let format = match image.filename.rsplit('.').next() {
            Some(ext) if ext.eq_ignore_ascii_case("png") => ImageFormat::Png,
            Some(ext) if ext.eq_ignore_ascii_case("jpg") || ext.eq_ignore_ascii_case("jpeg") => {
                ImageFormat::Jpeg
            }
            _ => ImageFormat::Other,
        };
        Self {
            key: PreviewKey::Output(image),
            node_id: None,
            format,
            data,
            received_at,
        }
    }
}
