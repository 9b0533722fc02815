//! The preview worker: newest frame per key in, encoded images out, off the UI loop.
//!
//! Both ends are latest-value slots, not queues. A frame replaces any older frame for its key
//! that is still waiting, and an update replaces any older update the UI has not taken yet, so a
//! burst of any size costs one frame per key. The worker decodes only the frame on view (other
//! keys get a header check, enough for their status line) and encodes it at most once per
//! redraw interval, plus once per view change (pane resized, another prompt selected).

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use image::RgbImage;
use ratatui::layout::Size;
use ratatui_image::protocol::Protocol;
use tokio::sync::Notify;

use super::decode::{DecodeLimits, DecodeProblem, DecodedImage, Probe, decode, frame_hash, probe};
use super::graphics::Renderer;
use super::rate::RedrawLimiter;
use super::{PreviewFrame, PreviewKey};
use crate::comfy::binary::ImageFormat;

/// How many keys keep their newest frame (for their status and for switching the view to them).
const KEYS_KEPT: usize = 16;

/// A map that keeps one value per key, the newest, and at most `capacity` keys (the least
/// recently written go first).
#[derive(Debug, Clone)]
pub struct LatestPerKey<K, V> {
    entries: VecDeque<(K, V)>,
    capacity: usize,
}

impl<K: PartialEq, V> LatestPerKey<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Stores `value` for `key`; returns the value it replaced or pushed out, if any.
    pub fn put(&mut self, key: K, value: V) -> Option<V> {
        let replaced = self
            .entries
            .iter()
            .position(|(k, _)| *k == key)
            .and_then(|i| self.entries.remove(i))
            .map(|(_, v)| v);
        self.entries.push_back((key, value));
        if self.entries.len() > self.capacity {
            return self.entries.pop_front().map(|(_, v)| v).or(replaced);
        }
        replaced
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.entries.remove(i).map(|(_, v)| v)
    }

    /// Takes every entry, oldest first.
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.entries.drain(..)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the UI shows: which key, in a pane of which size (cells).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub key: PreviewKey,
    pub area: Size,
}

/// The status of a key's newest frame, as the worker saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotUpdate {
    pub key: PreviewKey,
    pub node_id: Option<String>,
    pub received_at: Instant,
    pub hash: u64,
    /// Size of the encoded image.
    pub bytes: usize,
    /// The encoded bytes (shared, not copied): for a full-size view or saving. Empty when the
    /// image is over the byte limit: it is not kept.
    pub data: Bytes,
    pub declared: ImageFormat,
    /// What the header says, or why the image is not shown.
    pub result: Result<Probe, DecodeProblem>,
}

/// A frame encoded for the terminal at a pane size.
#[derive(Clone)]
pub struct Rendered {
    pub key: PreviewKey,
    /// The frame it shows (see [`frame_hash`]).
    pub hash: u64,
    /// The pane it was encoded for; the image itself may be smaller ([`Protocol::size`]).
    pub area: Size,
    pub protocol: Protocol,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("key", &self.key)
            .field("hash", &self.hash)
            .field("area", &self.area)
            .field("size", &self.protocol.size())
            .finish()
    }
}

/// What the worker produced since the UI last looked: the newest update per key and the newest
/// encoded image.
#[derive(Debug, Default, Clone)]
pub struct PreviewBatch {
    pub slots: Vec<SlotUpdate>,
    pub rendered: Option<Rendered>,
}

impl PreviewBatch {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.rendered.is_none()
    }
}

/// Counters, for tests and the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Frames submitted.
    pub received: u64,
    /// Frames replaced by a newer one for the same key before the worker took them.
    pub superseded: u64,
    /// Frames identical to the key's previous one.
    pub identical: u64,
    pub decoded: u64,
    pub encoded: u64,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// `None`: previews are off; frames still get their status, nothing is decoded.
    pub renderer: Option<Renderer>,
    pub limits: DecodeLimits,
    /// Decoded images are downscaled to fit this square: what is kept stays small.
    pub max_side: u32,
    /// Cap on new frames encoded per second for the view (`--preview-fps`).
    pub fps: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            renderer: None,
            limits: DecodeLimits::default(),
            max_side: 1024,
            fps: 4,
        }
    }
}

/// The work the worker takes in one round.
#[derive(Debug, Default)]
pub struct Work {
    pub frames: Vec<PreviewFrame>,
    /// `Some` when the view changed: the new view (`None` = nothing shown).
    pub view: Option<Option<View>>,
    /// Encode the view again even if nothing changed (the terminal was cleared).
    pub refresh: bool,
}

/// The worker's state and logic, without the thread: tests drive it with their own clock.
pub struct Worker {
    config: PipelineConfig,
    known: LatestPerKey<PreviewKey, SlotUpdate>,
    view: Option<View>,
    /// The decoded image of the key on view, with the hash of its frame.
    decoded: Option<(PreviewKey, u64, DecodedImage)>,
    /// What was last encoded: key, frame hash, pane size.
    encoded: Option<(PreviewKey, u64, Size)>,
    /// The half-block pixels last encoded, to keep colours that barely moved.
    last_pixels: Option<RgbImage>,
    limiter: RedrawLimiter,
    stats: PipelineStats,
}

impl Worker {
    pub fn new(mut config: PipelineConfig) -> Self {
        let limiter = RedrawLimiter::per_second(config.fps);
        config.renderer = config.renderer.map(|r| r.for_preview_rate(config.fps));
        Self {
            config,
            known: LatestPerKey::new(KEYS_KEPT),
            view: None,
            decoded: None,
            encoded: None,
            last_pixels: None,
            limiter,
            stats: PipelineStats::default(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Encodes with `renderer` from now on (the terminal answered after the worker started).
    pub fn set_renderer(&mut self, renderer: Renderer) {
        self.config.renderer = Some(renderer.for_preview_rate(self.config.fps));
        self.last_pixels = None;
    }

    /// When a new frame for the view may be encoded next (`None`: now).
    pub fn next_encode_due(&self) -> Option<Instant> {
        self.limiter.next_due()
    }

    /// Whether `frame` would be encoded now or has to wait for the redraw interval.
    pub fn frame_is_due(&self, frame: &PreviewFrame, now: Instant) -> bool {
        let on_view = self.view.as_ref().is_some_and(|v| v.key == frame.key);
        !on_view || self.config.renderer.is_none() || self.limiter.is_due(now)
    }

    /// Handles one round of work and says what changed.
    pub fn step(&mut self, work: Work, now: Instant) -> PreviewBatch {
        let mut batch = PreviewBatch::default();
        let mut view_dirty = work.refresh;
        if let Some(view) = work.view
            && view != self.view
        {
            self.view = view;
            view_dirty = true;
        }
        let mut new_on_view = false;
        for frame in work.frames {
            let hash = frame_hash(&frame.data);
            if self.known.get(&frame.key).is_some_and(|k| k.hash == hash) {
                self.stats.identical += 1;
                continue;
            }
            let result = probe(&frame.data, frame.format, self.config.limits);
            let bytes = frame.data.len();
            let data = match result {
                Err(DecodeProblem::TooManyBytes { .. }) => Bytes::new(),
                _ => frame.data,
            };
            let update = SlotUpdate {
                result,
                key: frame.key,
                node_id: frame.node_id,
                received_at: frame.received_at,
                hash,
                bytes,
                data,
                declared: frame.format,
            };
            new_on_view |= self.view.as_ref().is_some_and(|v| v.key == update.key);
            self.known.put(update.key.clone(), update.clone());
            batch.slots.push(update);
        }
        if new_on_view || view_dirty {
            let rendered = self.render_view(&mut batch, view_dirty);
            if rendered.is_some() && new_on_view {
                self.limiter.record(now);
            }
            batch.rendered = rendered;
        }
        batch
    }

    /// Decodes (when the frame changed) and encodes the frame on view.
    fn render_view(&mut self, batch: &mut PreviewBatch, force: bool) -> Option<Rendered> {
        let renderer = self.config.renderer.clone()?;
        let view = self.view.clone()?;
        let slot = self.known.get(&view.key)?.clone();
        if slot.result.is_err() {
            return None;
        }
        if !force && self.encoded == Some((view.key.clone(), slot.hash, view.area)) {
            return None;
        }
        let have_decoded =
            matches!(&self.decoded, Some((k, h, _)) if *k == view.key && *h == slot.hash);
        if !have_decoded {
            self.decoded = None;
            self.stats.decoded += 1;
            let (limits, max_side) = (self.config.limits, self.config.max_side);
            let decoded = catch_unwind(AssertUnwindSafe(|| {
                decode(&slot.data, slot.declared, limits, max_side)
            }))
            .unwrap_or_else(|_| Err(DecodeProblem::Unreadable("the decoder failed".into())));
            match decoded {
                Ok(image) => self.decoded = Some((view.key.clone(), slot.hash, image)),
                Err(problem) => {
                    // The header was fine, the pixels were not: the slot says so.
                    let failed = SlotUpdate {
                        result: Err(problem),
                        ..slot
                    };
                    self.known.put(failed.key.clone(), failed.clone());
                    batch.slots.retain(|s| s.key != failed.key);
                    batch.slots.push(failed);
                    return None;
                }
            }
        }
        let (_, _, decoded) = self.decoded.as_ref()?;
        let last_pixels = &mut self.last_pixels;
        self.stats.encoded += 1;
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            renderer.encode_next(&decoded.image, view.area, last_pixels)
        }))
        .unwrap_or_else(|_| Err("the encoder failed".to_string()));
        self.encoded = Some((view.key.clone(), slot.hash, view.area));
        match encoded {
            Ok(protocol) => Some(Rendered {
                key: view.key,
                hash: slot.hash,
                area: view.area,
                protocol,
            }),
            Err(reason) => {
                tracing::debug!(%reason, "preview not encoded");
                None
            }
        }
    }
}

struct Inbox {
    frames: LatestPerKey<PreviewKey, PreviewFrame>,
    view: Option<Option<View>>,
    refresh: bool,
    renderer: Option<Renderer>,
    closed: bool,
    received: u64,
    superseded: u64,
}

#[derive(Default)]
struct Outbox {
    slots: HashMap<PreviewKey, SlotUpdate>,
    rendered: Option<Rendered>,
    stats: PipelineStats,
}

struct Shared {
    inbox: Mutex<Inbox>,
    wake_worker: Condvar,
    outbox: Mutex<Outbox>,
    wake_ui: Notify,
}

/// Handle to the preview worker thread. Dropping it stops the thread.
pub struct PreviewPipeline {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl PreviewPipeline {
    pub fn spawn(config: PipelineConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox {
                frames: LatestPerKey::new(KEYS_KEPT),
                view: None,
                refresh: false,
                renderer: None,
                closed: false,
                received: 0,
                superseded: 0,
            }),
            wake_worker: Condvar::new(),
            outbox: Mutex::new(Outbox::default()),
            wake_ui: Notify::new(),
        });
        let worker_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("comfytop-preview".into())
            .spawn(move || run(&worker_shared, Worker::new(config)))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands a frame to the worker. Never blocks on decoding: a frame still waiting for the
    /// same key is replaced, and then the worker is not woken: it knows a frame waits there
    /// (it was woken for the first, or waits for the frame's turn) and takes the newest.
    pub fn submit(&self, frame: PreviewFrame) {
        let mut inbox = lock(&self.shared.inbox);
        inbox.received += 1;
        let replaced = inbox.frames.put(frame.key.clone(), frame).is_some();
        if replaced {
            inbox.superseded += 1;
        }
        drop(inbox);
        if !replaced {
            self.shared.wake_worker.notify_one();
        }
    }

    /// Says what the UI shows now (`None`: the pane is hidden).
    pub fn set_view(&self, view: Option<View>) {
        lock(&self.shared.inbox).view = Some(view);
        self.shared.wake_worker.notify_one();
    }

    /// Encodes the view again, for a terminal that was cleared (back from the full-size view).
    pub fn refresh(&self) {
        lock(&self.shared.inbox).refresh = true;
        self.shared.wake_worker.notify_one();
    }

    /// Encodes with `renderer` from now on, the view included.
    pub fn set_renderer(&self, renderer: Renderer) {
        let mut inbox = lock(&self.shared.inbox);
        inbox.renderer = Some(renderer);
        inbox.refresh = true;
        drop(inbox);
        self.shared.wake_worker.notify_one();
    }

    /// Frames waiting for the worker (at most one per key).
    pub fn waiting(&self) -> usize {
        lock(&self.shared.inbox).frames.len()
    }

    /// Waits until the worker has something for the UI. Cancel-safe, for `tokio::select!`.
    pub async fn ready(&self) {
        loop {
            let notified = self.shared.wake_ui.notified();
            if self.has_output() {
                return;
            }
            notified.await;
        }
    }

    fn has_output(&self) -> bool {
        let outbox = lock(&self.shared.outbox);
        !outbox.slots.is_empty() || outbox.rendered.is_some()
    }

    /// Takes what the worker produced since the last call.
    pub fn take(&self) -> PreviewBatch {
        let mut outbox = lock(&self.shared.outbox);
        PreviewBatch {
            slots: outbox.slots.drain().map(|(_, v)| v).collect(),
            rendered: outbox.rendered.take(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        let mut stats = lock(&self.shared.outbox).stats;
        let inbox = lock(&self.shared.inbox);
        stats.received = inbox.received;
        stats.superseded = inbox.superseded;
        stats
    }
}

impl Drop for PreviewPipeline {
    fn drop(&mut self) {
        lock(&self.shared.inbox).closed = true;
        self.shared.wake_worker.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(shared: &Shared, mut worker: Worker) {
    loop {
        let Some(work) = next_work(shared, &worker) else {
            return;
        };
        if let Some(renderer) = lock(&shared.inbox).renderer.take() {
            worker.set_renderer(renderer);
        }
        let batch = worker.step(work, Instant::now());
        let mut outbox = lock(&shared.outbox);
        outbox.stats = worker.stats();
        if batch.is_empty() {
            continue;
        }
        for slot in batch.slots {
            outbox.slots.insert(slot.key.clone(), slot);
        }
        if batch.rendered.is_some() {
            outbox.rendered = batch.rendered;
        }
        drop(outbox);
        shared.wake_ui.notify_one();
    }
}

/// Blocks until there is work that may run now; `None` when the pipeline is closed. A frame for
/// the view that is not due yet stays in its slot (where newer frames replace it) and the wait
/// ends when it is due: the only timer, and only while such a frame waits.
fn next_work(shared: &Shared, worker: &Worker) -> Option<Work> {
    let mut inbox = lock(&shared.inbox);
    loop {
        if inbox.closed {
            return None;
        }
        let now = Instant::now();
        let mut work = Work {
            view: inbox.view.take(),
            refresh: std::mem::take(&mut inbox.refresh),
            frames: Vec::new(),
        };
        // Frames whose turn has not come go back into the slot, in order.
        let mut held = Vec::new();
        for (key, frame) in inbox.frames.drain() {
            if worker.frame_is_due(&frame, now) || work.view.is_some() {
                work.frames.push(frame);
            } else {
                held.push((key, frame));
            }
        }
        let waiting = !held.is_empty();
        for (key, frame) in held {
            inbox.frames.put(key, frame);
        }
        if !work.frames.is_empty() || work.view.is_some() || work.refresh {
            return Some(work);
        }
        inbox = match worker.next_encode_due().filter(|_| waiting) {
            Some(due) => {
                let timeout = due.saturating_duration_since(now);
                shared
                    .wake_worker
                    .wait_timeout(inbox, timeout)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => shared
                .wake_worker
                .wait(inbox)
                .unwrap_or_else(PoisonError::into_inner),
        };
    }
}
