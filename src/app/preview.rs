//! The previews as the dashboard sees them: which image the pane shows, the keys that act on it
//! (`p`, `o`, `v`, `s`), and the results of the preview worker applied through the redraw cap.
//!
//! Pure like the rest of `app`: decoding and encoding run in the worker, `/view` fetches and
//! saving in the executor, the full-size view in the runtime; this only asks for them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::comfy::binary::BinaryFrame;
use crate::comfy::protocol::{ImageRef, PromptId};
use crate::preview::{
    ImageCache, PreviewBatch, PreviewFrame, PreviewKey, PreviewPoll, PreviewState, View,
};

use super::{Command, State};

/// Output images kept after their `/view` fetch.
const OUTPUT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// How the previews are set up (from the command line).
#[derive(Debug, Clone)]
pub struct PreviewSettings {
    /// A graphics protocol is in use (`--image-protocol` is not `none`).
    pub enabled: bool,
    /// `--preview-fps`.
    pub fps: u32,
    /// `--save-dir`.
    pub save_dir: PathBuf,
}

impl Default for PreviewSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fps: 4,
            save_dir: PathBuf::from("."),
        }
    }
}

/// What the worker produced, as an event. Compared by what it says, not by the encoded pixels.
#[derive(Debug, Clone)]
pub struct PreviewResults(pub PreviewBatch);

impl PartialEq for PreviewResults {
    fn eq(&self, other: &Self) -> bool {
        let rendered = |b: &PreviewBatch| b.rendered.as_ref().map(|r| (r.key.clone(), r.hash));
        self.0.slots == other.0.slots && rendered(&self.0) == rendered(&other.0)
    }
}

/// The dashboard's preview state.
#[derive(Debug)]
pub struct Previews {
    pub settings: PreviewSettings,
    pub state: PreviewState,
    /// `p`: the pane is shown.
    pub show: bool,
    /// `o`: which of the detail prompt's outputs is shown.
    pub output_index: usize,
    /// The prompt whose preview was last seen: still shown after it finishes.
    pub last_live: Option<PromptId>,
    pub outputs: ImageCache,
    /// Outputs asked of `/view` and not back yet.
    pub fetching: Vec<ImageRef>,
    /// The outcome of the last `s` or `v`, for the status line.
    pub note: Option<String>,
    /// When a preview waiting for the redraw cap is due; the runtime wakes then.
    pub wake_at: Option<Instant>,
    /// The instant of dashboard clock 0: the limiter counts in `Instant`s.
    origin: Instant,
}

impl Previews {
    pub fn new(settings: PreviewSettings, origin: Instant) -> Self {
        Self {
            state: PreviewState::new(settings.enabled, settings.fps),
            settings,
            show: true,
            output_index: 0,
            last_live: None,
            outputs: ImageCache::new(OUTPUT_CACHE_BYTES),
            fetching: Vec::new(),
            note: None,
            wake_at: None,
            origin,
        }
    }

    /// The instant of dashboard time `now`.
    pub fn instant(&self, now: f64) -> Instant {
        self.origin + Duration::from_secs_f64(now.max(0.0))
    }
}

impl Default for Previews {
    fn default() -> Self {
        Self::new(PreviewSettings::default(), Instant::now())
    }
}

/// The output images of the prompt in the detail view, in node order.
pub fn detail_outputs(state: &State) -> Vec<ImageRef> {
    let Some(detail) = &state.ui.detail else {
        return Vec::new();
    };
    state
        .server
        .tracker
        .prompt(&detail.prompt_id)
        .map(|p| p.images().map(|(_, image)| image.clone()).collect())
        .unwrap_or_default()
}

/// The output shown in the detail view, if its prompt has any.
pub fn selected_output(state: &State) -> Option<(ImageRef, usize, usize)> {
    let outputs = detail_outputs(state);
    let count = outputs.len();
    let index = state.previews.output_index % count.max(1);
    outputs.into_iter().nth(index).map(|o| (o, index, count))
}

/// What the preview pane shows: in the detail view, the prompt's selected output (its live
/// preview while it runs); else the running prompt's newest preview, or the last one seen while
/// the running prompt has none (the server sends previews only to the client that queued it).
pub fn key_on_view(state: &State) -> Option<PreviewKey> {
    let has_frames = |key: &PreviewKey| state.previews.state.slot(key).is_some();
    // Previews come for prompts this comfytop queued, or at least once came.
    let may_have_frames = |id: &PromptId| {
        let key = PreviewKey::Live(id.clone());
        let ours_running = state
            .server
            .tracker
            .prompt(id)
            .is_some_and(|p| p.ours && !p.is_finished());
        (ours_running || has_frames(&key)).then_some(key)
    };
    if let Some(detail) = &state.ui.detail {
        return match selected_output(state) {
            Some((image, _, _)) => Some(PreviewKey::Output(image)),
            // A finished prompt without outputs has nothing worth the room.
            None => state
                .server
                .tracker
                .prompt(&detail.prompt_id)
                .filter(|p| !p.is_finished())
                .and_then(|p| may_have_frames(&p.id)),
        };
    }
    let running = state
        .server
        .tracker
        .running()
        .and_then(|p| may_have_frames(&p.id));
    let last = state
        .previews
        .last_live
        .clone()
        .map(PreviewKey::Live)
        .filter(has_frames);
    match (running, last) {
        (Some(running), Some(last)) if !has_frames(&running) => Some(last),
        (running, last) => running.or(last),
    }
}

/// A binary preview frame from the socket: to the worker, never decoded here.
pub(super) fn on_binary(state: &mut State, frame: &BinaryFrame, commands: &mut Vec<Command>) {
    let BinaryFrame::Preview(image) = frame else {
        return;
    };
    if !state.previews.settings.enabled {
        return;
    }
    let running = state.server.tracker.running().map(|p| p.id.clone());
    let at = state.previews.instant(state.now);
    let Some(frame) = PreviewFrame::live(image, running.as_deref(), at) else {
        return;
    };
    if let PreviewKey::Live(id) = &frame.key {
        state.previews.last_live = Some(id.clone());
    }
    if state.previews.state.note_submitted(&frame) && state.previews.show {
        state.dirty = true;
    }
    commands.push(Command::SubmitPreview(frame));
}

/// Results from the worker: kept, and shown when the redraw cap allows.
pub(super) fn on_results(state: &mut State, results: PreviewResults) {
    state.previews.state.offer(results.0);
}

/// Applies waiting preview results if a redraw is due, else notes when it will be. Called after
/// every event: a wake-up is scheduled only while a result waits.
pub(super) fn poll(state: &mut State) {
    let now = state.previews.instant(state.now);
    state.previews.wake_at = match state.previews.state.poll(now) {
        PreviewPoll::Idle => None,
        PreviewPoll::Redraw => {
            state.dirty = true;
            None
        }
        PreviewPoll::WaitUntil(at) => Some(at),
    };
}

/// Asks `/view` for the output on view when it is neither cached nor on its way.
pub(super) fn fetch_output_on_view(state: &mut State, commands: &mut Vec<Command>) {
    if !state.previews.settings.enabled || !state.previews.show {
        return;
    }
    let Some(PreviewKey::Output(image)) = key_on_view(state) else {
        return;
    };
    let previews = &mut state.previews;
    if previews.outputs.contains(&image)
        || previews.fetching.contains(&image)
        || previews
            .state
            .slot(&PreviewKey::Output(image.clone()))
            .is_some()
    {
        return;
    }
    previews.fetching.push(image.clone());
    commands.push(Command::FetchOutput(image));
}

/// The reply of a `/view` fetch for the pane: cached and handed to the worker.
pub(super) fn on_output(
    state: &mut State,
    image: ImageRef,
    result: Result<Bytes, String>,
    commands: &mut Vec<Command>,
) {
    state.previews.fetching.retain(|i| *i != image);
    match result {
        Ok(bytes) => {
            state.previews.outputs.insert(image.clone(), bytes.clone());
            let at = state.previews.instant(state.now);
            let frame = PreviewFrame::output(image, bytes, at);
            state.previews.state.note_submitted(&frame);
            commands.push(Command::SubmitPreview(frame));
        }
        Err(error) => {
            state.previews.note = Some(format!(
                "cannot fetch {}: {}",
                crate::text::one_line(&image.filename),
                crate::text::one_line(&error)
            ));
        }
    }
    state.dirty = true;
}

/// `p`: shows or hides the pane.
pub(super) fn toggle_pane(state: &mut State) {
    state.previews.show = !state.previews.show;
}

/// `o`: the next output of the prompt in the detail view.
pub(super) fn next_output(state: &mut State) {
    let count = detail_outputs(state).len();
    if count > 1 {
        state.previews.output_index = (state.previews.output_index + 1) % count;
    }
}

/// `v`: the full-size view of what the pane shows, from the bytes at hand.
pub(super) fn view_full_size(state: &mut State, commands: &mut Vec<Command>) {
    let Some(key) = key_on_view(state) else {
        state.previews.note = Some("no image to show".to_string());
        return;
    };
    let data = match &key {
        PreviewKey::Output(image) => state.previews.outputs.get(image),
        PreviewKey::Live(_) => None,
    }
    .or_else(|| {
        state
            .previews
            .state
            .slot(&key)
            .map(|s| s.data.clone())
            .filter(|d| !d.is_empty())
    });
    let Some(data) = data else {
        state.previews.note = Some("no image to show yet".to_string());
        return;
    };
    let caption = match &key {
        PreviewKey::Output(image) => crate::text::one_line(&image.filename).into_owned(),
        PreviewKey::Live(id) => format!("preview of {}", super::event_log::short_id(id)),
    };
    commands.push(Command::ShowFullSize { data, caption });
}

/// `s`: saves the output shown in the detail view to `--save-dir`.
pub(super) fn save_output(state: &mut State, commands: &mut Vec<Command>) {
    let Some((image, _, _)) = selected_output(state) else {
        state.previews.note = Some("no output to save (open a finished prompt)".to_string());
        return;
    };
    let data = state.previews.outputs.get(&image);
    state.previews.note = Some(format!(
        "saving {}…",
        crate::text::one_line(&image.filename)
    ));
    commands.push(Command::SaveOutput {
        image,
        data,
        dir: state.previews.settings.save_dir.clone(),
    });
}

/// Where a save went, or why it failed.
pub(super) fn on_saved(state: &mut State, result: Result<PathBuf, String>) {
    state.previews.note = Some(match result {
        Ok(path) => format!("saved to {}", path.display()),
        Err(error) => format!("not saved: {}", crate::text::one_line(&error)),
    });
    state.dirty = true;
}

/// The pane's view for the worker: the key on view in a pane of `area` cells (`None`: hidden).
pub fn view_for(state: &State, area: Option<ratatui::layout::Size>) -> Option<View> {
    let area = area?;
    let key = key_on_view(state)?;
    Some(View { key, area })
}
