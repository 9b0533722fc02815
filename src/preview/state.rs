//! What the UI keeps of the previews: a status per key and the encoded image on view, applied at
//! a capped rate. Pure: no threads, no I/O, a clock passed in.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use super::decode::{DecodeProblem, human_bytes};
use super::pipeline::{PreviewBatch, Rendered, SlotUpdate, View};
use super::rate::RedrawLimiter;
use super::{PreviewFrame, PreviewKey};
use crate::comfy::binary::ImageFormat;

/// How many keys keep a status line; the oldest are forgotten.
const SLOTS_KEPT: usize = 16;

/// Where a key's newest frame stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Submitted, not back from the worker yet.
    Decoding,
    /// Readable and within the limits.
    Ready { width: u32, height: u32 },
    /// Within reach but over a limit: a note, not an error.
    Refused(DecodeProblem),
    /// The bytes are not a readable image.
    Broken(DecodeProblem),
}

/// The newest frame of one key, as the status line tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    pub node_id: Option<String>,
    pub format: ImageFormat,
    pub bytes: usize,
    pub received_at: Instant,
    pub condition: Condition,
    /// The encoded bytes (shared with the frame): for the full-size view or saving. Empty for an
    /// image over the byte limit.
    pub data: Bytes,
}

impl SlotStatus {
    fn from_update(update: SlotUpdate) -> Self {
        let (format, condition) = match update.result {
            Ok(probe) => (
                probe.format,
                Condition::Ready {
                    width: probe.width,
                    height: probe.height,
                },
            ),
            Err(problem) if problem.is_refusal() => (update.declared, Condition::Refused(problem)),
            Err(problem) => (update.declared, Condition::Broken(problem)),
        };
        Self {
            node_id: update.node_id,
            format,
            bytes: update.bytes,
            received_at: update.received_at,
            condition,
            data: update.data,
        }
    }

    /// One line: `JPEG 512×512 · 41.2 KB · node 13 · just now`, `decoding…`, or the reason the
    /// image is not shown.
    pub fn describe(&self, now: Instant) -> String {
        let format = match self.format {
            ImageFormat::Jpeg => "JPEG",
            ImageFormat::Png => "PNG",
            ImageFormat::Other => "image",
        };
        let mut parts = match &self.condition {
            Condition::Decoding => vec!["decoding…".to_string()],
            Condition::Ready { width, height } => vec![format!("{format} {width}×{height}")],
            Condition::Refused(problem) => vec![format!("{format} not shown: {problem}")],
            Condition::Broken(problem) => vec![format!("{format} {problem}")],
        };
        parts.push(human_bytes(self.bytes));
        if let Some(node) = &self.node_id {
            parts.push(format!("node {node}"));
        }
        // As coarse as every other age on screen: a caption never asks for a redraw of its own.
        let age = now.saturating_duration_since(self.received_at);
        parts.push(crate::app::time::ago(age.as_secs_f64()));
        parts.join(" · ")
    }
}

/// What [`PreviewState::poll`] asks of the update loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewPoll {
    /// Nothing is waiting.
    Idle,
    /// New preview state was applied: redraw.
    Redraw,
    /// Something waits for the redraw cap: poll again at this time.
    WaitUntil(Instant),
}

/// The previews as the UI sees them.
#[derive(Debug)]
pub struct PreviewState {
    enabled: bool,
    slots: HashMap<PreviewKey, SlotStatus>,
    shown: Option<Rendered>,
    /// Results not applied yet: the newest per key, the newest image.
    incoming_slots: HashMap<PreviewKey, SlotUpdate>,
    incoming_render: Option<Rendered>,
    limiter: RedrawLimiter,
    view: Option<View>,
}

impl PreviewState {
    /// `enabled`: a renderer exists (`--image-protocol` is not `none`); `fps`: the redraw cap.
    pub fn new(enabled: bool, fps: u32) -> Self {
        Self {
            enabled,
            slots: HashMap::new(),
            shown: None,
            incoming_slots: HashMap::new(),
            incoming_render: None,
            limiter: RedrawLimiter::per_second(fps),
            view: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records that `frame` went to the pipeline. Returns whether the screen changes: only a
    /// key's first frame does (it says "decoding…"); later ones keep showing the last image until
    /// the next is ready.
    pub fn note_submitted(&mut self, frame: &PreviewFrame) -> bool {
        if self.slots.contains_key(&frame.key) {
            return false;
        }
        self.evict_for_new_key();
        self.slots.insert(
            frame.key.clone(),
            SlotStatus {
                node_id: frame.node_id.clone(),
                format: frame.format,
                bytes: frame.data.len(),
                received_at: frame.received_at,
                condition: Condition::Decoding,
                data: frame.data.clone(),
            },
        );
        true
    }

    /// Takes what the pipeline produced. Nothing is shown until [`PreviewState::poll`] says so.
    pub fn offer(&mut self, batch: PreviewBatch) {
        for slot in batch.slots {
            self.incoming_slots.insert(slot.key.clone(), slot);
        }
        if batch.rendered.is_some() {
            self.incoming_render = batch.rendered;
        }
    }

    /// Applies what waits if a preview redraw is due at `now`.
    pub fn poll(&mut self, now: Instant) -> PreviewPoll {
        if self.incoming_slots.is_empty() && self.incoming_render.is_none() {
            return PreviewPoll::Idle;
        }
        if !self.limiter.try_acquire(now) {
            return match self.limiter.next_due() {
                Some(due) => PreviewPoll::WaitUntil(due),
                None => PreviewPoll::Idle,
            };
        }
        for (key, update) in self.incoming_slots.drain().collect::<Vec<_>>() {
            if !self.slots.contains_key(&key) {
                self.evict_for_new_key();
            }
            self.slots.insert(key, SlotStatus::from_update(update));
        }
        if let Some(rendered) = self.incoming_render.take() {
            self.shown = Some(rendered);
        }
        PreviewPoll::Redraw
    }

    /// Sets what the pane shows (`None`: hidden). Returns `true` when that differs from what the
    /// pipeline was last told: then pass the view on with [`super::PreviewPipeline::set_view`].
    pub fn want_view(&mut self, view: Option<View>) -> bool {
        if self.view == view {
            return false;
        }
        self.view = view;
        true
    }

    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    pub fn slot(&self, key: &PreviewKey) -> Option<&SlotStatus> {
        self.slots.get(key)
    }

    /// The encoded image for `key`, if the newest one that was drawn is for it.
    pub fn shown(&self, key: &PreviewKey) -> Option<&Rendered> {
        self.shown.as_ref().filter(|r| r.key == *key)
    }

    /// The status line for `key`.
    pub fn status_line(&self, key: &PreviewKey, now: Instant) -> Option<String> {
        self.slots.get(key).map(|slot| slot.describe(now))
    }

    /// Forgets a key (a prompt that left the history, an output evicted).
    pub fn forget(&mut self, key: &PreviewKey) {
        self.slots.remove(key);
        self.incoming_slots.remove(key);
        if self.shown.as_ref().is_some_and(|r| r.key == *key) {
            self.shown = None;
        }
    }

    fn evict_for_new_key(&mut self) {
        while self.slots.len() >= SLOTS_KEPT {
            let on_view = self.view.as_ref().map(|v| &v.key);
            let oldest = self
                .slots
                .iter()
                .filter(|(k, _)| Some(*k) != on_view)
                .min_by_key(|(_, s)| s.received_at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => {
                    self.slots.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(prompt: &str, at: Instant) -> PreviewFrame {
        PreviewFrame {
            key: PreviewKey::Live(prompt.to_string()),
            node_id: None,
            format: ImageFormat::Jpeg,
            data: Bytes::from_static(b"x"),
            received_at: at,
        }
    }

    #[test]
    fn only_a_key_first_frame_changes_the_screen() {
        let t0 = Instant::now();
        let mut state = PreviewState::new(true, 4);
        assert!(state.note_submitted(&frame("a", t0)));
        assert!(!state.note_submitted(&frame("a", t0)));
        let key = PreviewKey::Live("a".into());
        assert_eq!(
            state.status_line(&key, t0).unwrap(),
            "decoding… · 1 B · just now"
        );
    }

    #[test]
    fn old_keys_are_forgotten_but_not_the_one_on_view() {
        let t0 = Instant::now();
        let mut state = PreviewState::new(true, 4);
        let on_view = PreviewKey::Live("p0".into());
        state.want_view(Some(View {
            key: on_view.clone(),
            area: ratatui::layout::Size::new(10, 5),
        }));
        for i in 0..40u64 {
            state.note_submitted(&frame(
                &format!("p{i}"),
                t0 + std::time::Duration::from_secs(i),
            ));
        }
        assert_eq!(state.slots.len(), SLOTS_KEPT);
        assert!(state.slot(&on_view).is_some());
        assert!(state.slot(&PreviewKey::Live("p39".into())).is_some());
        assert!(state.slot(&PreviewKey::Live("p1".into())).is_none());
    }
}
