//! The previews as the dashboard sees them: which image the pane shows, the keys that act on it
//! (`p`, `o`, `v`, `s`), and the results of the preview worker applied through the redraw cap.
//!
//! Pure like the rest of `app`: decoding and encoding run in the worker, `/view` fetches and
//! saving in the executor, the full-size view in the runtime; this only asks for them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::comfy::binary::BinaryFrame;
use crate::comfy::connection::ConnEvent;
use crate::comfy::protocol::{ImageRef, PromptId};
use crate::preview::{
    ImageCache, PreviewBatch, PreviewFrame, PreviewKey, PreviewPoll, PreviewState, View,
};

use super::actions::notice;
use super::event_log::LineKind;
use super::keys::KeyAction;
use super::{Command, NoticeKind, State};

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
    /// The same settings with nothing seen: for another server, whose prompts and outputs are
    /// not this one's (an output name means nothing across servers).
    pub fn fresh(&self) -> Self {
        Self {
            show: self.show,
            ..Self::new(self.settings.clone(), self.origin)
        }
    }

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
        .server()
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
/// nothing runs or our next prompt has sent none yet. Nothing while a prompt runs that sends
/// no previews (the server sends them only to the client that queued it).
pub fn key_on_view(state: &State) -> Option<PreviewKey> {
    let has_frames = |key: &PreviewKey| state.previews.state.slot(key).is_some();
    // Previews come for prompts this comfytop queued, or at least once came.
    let may_have_frames = |id: &PromptId| {
        let key = PreviewKey::Live(id.clone());
        let ours_running = state
            .server()
            .tracker
            .prompt(id)
            .is_some_and(|p| (p.ours || p.relayed) && !p.is_finished());
        (ours_running || has_frames(&key)).then_some(key)
    };
    if let Some(detail) = &state.ui.detail {
        return match selected_output(state) {
            Some((image, _, _)) => Some(PreviewKey::Output(image)),
            // A finished prompt without outputs has nothing worth the room.
            None => state
                .server()
                .tracker
                .prompt(&detail.prompt_id)
                .filter(|p| !p.is_finished())
                .and_then(|p| may_have_frames(&p.id)),
        };
    }
    let last = state
        .previews
        .last_live
        .clone()
        .map(PreviewKey::Live)
        .filter(has_frames);
    let Some(running) = state.server().tracker.running() else {
        return last;
    };
    // A preview belongs to its prompt: while one runs that sends none (another client's), an
    // earlier prompt's image beside it would read as its own.
    let running = may_have_frames(&running.id)?;
    match last {
        // Ours has just started: its predecessor's image (titled with its id) until its first.
        Some(last) if !has_frames(&running) => Some(last),
        _ => Some(running),
    }
}

/// Whether the preview pane is shown: `p` did not hide it, and it has something to show.
pub fn pane_wanted(state: &State) -> bool {
    state.ui.fleet.is_none() && state.previews.show && key_on_view(state).is_some()
}

/// A binary preview frame from the socket: to the worker, never decoded here.
/// One the comfytop bridge relayed from another client's prompt is taken the same way.
pub(super) fn on_binary(state: &mut State, frame: &BinaryFrame, commands: &mut Vec<Command>) {
    let BinaryFrame::Preview(image) = frame.unrelayed().0 else {
        return;
    };
    if !state.previews.settings.enabled {
        return;
    }
    let running = state.server().tracker.running().map(|p| p.id.clone());
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
    commands.push(Command::FetchOutput(state.current, image));
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

/// `o`: the next output of the prompt in the detail view. The main view shows no output to
/// step through, so it says where `o` works.
pub(super) fn next_output(state: &mut State) {
    if state.ui.detail.is_none() {
        let keys = &state.keys;
        let text = format!(
            "{} steps through a prompt's outputs in its details: {} opens them",
            keys.name(KeyAction::NextOutput),
            keys.name(KeyAction::Open)
        );
        notice(state, NoticeKind::Info, text);
        return;
    }
    let count = detail_outputs(state).len();
    if count > 1 {
        state.previews.output_index = (state.previews.output_index + 1) % count;
    } else {
        let text = if count == 1 {
            "this prompt has one output"
        } else {
            "this prompt has no outputs"
        };
        notice(state, NoticeKind::Info, text.to_string());
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
        PreviewKey::Live(id) => format!("preview of {}", crate::format::short_id(id)),
    };
    let follow = match key {
        PreviewKey::Live(id) => Some(id),
        PreviewKey::Output(_) => None,
    };
    commands.push(Command::ShowFullSize {
        data,
        caption,
        follow,
    });
}

/// The image of a preview frame in `event` if it belongs to `prompt_id`: what the full-size
/// view shows next while it follows that prompt. A frame without metadata (legacy previews)
/// belongs to the prompt running, which is the one followed.
pub fn preview_of(event: &ConnEvent, prompt_id: &str) -> Option<Bytes> {
    let ConnEvent::Frame(frame) = event else {
        return None;
    };
    let crate::comfy::Decoded::Binary(binary) = &frame.decoded else {
        return None;
    };
    let BinaryFrame::Preview(image) = binary.unrelayed().0 else {
        return None;
    };
    let frame = PreviewFrame::live(image, Some(prompt_id), Instant::now())?;
    (frame.key == PreviewKey::Live(prompt_id.to_string())).then_some(frame.data)
}

/// The output `s` saves: the one shown in the detail view, else the first of the prompt selected
/// in History; or why there is none.
fn output_to_save(state: &State) -> Result<(ImageRef, usize, usize), String> {
    if state.ui.detail.is_some() {
        return selected_output(state).ok_or_else(|| "this prompt has no output to save".into());
    }
    if state.ui.focus != super::Panel::History {
        let keys = &state.keys;
        return Err(format!(
            "{} saves an output of a finished prompt: select one in History ({})",
            keys.name(KeyAction::SaveOutput),
            keys.name(KeyAction::NextPanel)
        ));
    }
    let prompt = state
        .selected_history_row()
        .and_then(|i| state.history_row(i))
        .ok_or_else(|| "no finished prompt to save an output of".to_string())?;
    let outputs: Vec<&ImageRef> = prompt.images().map(|(_, image)| image).collect();
    match outputs.first() {
        Some(first) => Ok(((*first).clone(), 0, outputs.len())),
        None => Err(format!(
            "prompt {} has no output to save",
            crate::format::short_id(&prompt.id)
        )),
    }
}

/// `s`: saves the output shown in the detail view (or the first output of the prompt selected
/// in History) to `--save-dir`.
pub(super) fn save_output(state: &mut State, commands: &mut Vec<Command>) {
    let (image, index, count) = match output_to_save(state) {
        Ok(found) => found,
        Err(why) => {
            notice(state, NoticeKind::Info, why);
            return;
        }
    };
    let data = state.previews.outputs.get(&image);
    let name = crate::text::one_line(&image.filename).into_owned();
    let text = if count > 1 && state.ui.detail.is_none() {
        format!(
            "saving {name} ({} of {count}; {}, then {} picks another)…",
            index + 1,
            state.keys.name(KeyAction::Open),
            state.keys.name(KeyAction::NextOutput)
        )
    } else {
        format!("saving {name}…")
    };
    notice(state, NoticeKind::Done, text);
    commands.push(Command::SaveOutput {
        server: state.current,
        image,
        data,
        dir: state.previews.settings.save_dir.clone(),
    });
}

/// Where a save went, or why it failed: in the footer, whole however long (a path and an OS
/// error), and in the event log.
pub(super) fn on_saved(state: &mut State, result: Result<PathBuf, String>) {
    let (kind, notice_kind, text) = match result {
        Ok(path) => (
            LineKind::Message,
            NoticeKind::Done,
            format!(
                "saved to {}",
                crate::text::one_line(&path.display().to_string())
            ),
        ),
        Err(error) => (
            LineKind::Error,
            NoticeKind::Error,
            format!("not saved: {}", crate::text::one_line(&error)),
        ),
    };
    let now = state.now;
    state.server_mut().log.push(now, kind, text.clone());
    notice(state, notice_kind, text);
    state.dirty = true;
}

/// A key other than `s` and `v` puts the status line back.
pub(super) fn on_other_key(state: &mut State) {
    state.previews.note = None;
}

/// The pane's view for the worker: the key on view in a pane of `area` cells (`None`: hidden).
pub fn view_for(state: &State, area: Option<ratatui::layout::Size>) -> Option<View> {
    let area = area?;
    let key = key_on_view(state)?;
    Some(View { key, area })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::app::testing::{
        REFERENCE, client_id, connected, detail_with_two_outputs, http_body, replay, transcript,
    };
    use crate::app::{Event, Reply, update};
    use crate::comfy::api::History;
    use crate::comfy::binary::ImageFormat;
    use crate::preview::SlotUpdate;

    fn key(state: &mut State, c: char) -> Vec<Command> {
        let now = state.now;
        update(
            state,
            now,
            Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
        )
    }

    fn slot(key: PreviewKey, hash: u64, at: Instant) -> SlotUpdate {
        SlotUpdate {
            key,
            node_id: None,
            received_at: at,
            hash,
            bytes: 1,
            data: Bytes::from_static(b"x"),
            declared: ImageFormat::Jpeg,
            result: Ok(crate::preview::Probe {
                format: ImageFormat::Jpeg,
                width: 64,
                height: 64,
            }),
        }
    }

    #[test]
    fn a_preview_frame_goes_to_the_worker_tied_to_the_running_prompt() {
        let name = "c_full_run_legacy_previews";
        let mut state = connected(&client_id(name), 0.0, History::default());
        let commands = replay(&mut state, name, 0.0, f64::MAX);
        let submitted: Vec<&PreviewFrame> = commands
            .iter()
            .filter_map(|c| match c {
                Command::SubmitPreview(frame) => Some(frame),
                _ => None,
            })
            .collect();
        assert!(!submitted.is_empty());
        let prompt = state.history_rows()[0].id.clone();
        assert!(
            submitted
                .iter()
                .all(|f| f.key == PreviewKey::Live(prompt.clone()))
        );
        // After the run the pane keeps showing its last preview.
        assert_eq!(key_on_view(&state), Some(PreviewKey::Live(prompt)));
    }

    #[test]
    fn an_earlier_preview_is_not_shown_beside_another_clients_running_prompt() {
        let name = "c_full_run_legacy_previews";
        let mut state = connected(&client_id(name), 0.0, History::default());
        replay(&mut state, name, 0.0, f64::MAX);
        let ours = state.history_rows()[0].id.clone();
        assert_eq!(key_on_view(&state), Some(PreviewKey::Live(ours)));
        // Another client's prompt starts: it sends this comfytop no previews.
        let snapshot: crate::comfy::api::QueueSnapshot = http_body("get_queue_running_and_pending");
        let now = state.now + 1.0;
        update(
            &mut state,
            now,
            Event::Reply(
                0,
                Reply::Tracker {
                    command: crate::tracker::TrackerCommand::FetchQueue,
                    result: Ok(crate::tracker::TrackerInput::Queue(snapshot)),
                },
            ),
        );
        let running = state.server().tracker.running().unwrap();
        assert!(!running.ours);
        assert_eq!(key_on_view(&state), None);
        assert_eq!(crate::ui::preview_area(&state), None);
    }

    #[test]
    fn results_are_shown_at_most_at_the_capped_rate_and_idle_schedules_nothing() {
        let mut state = connected("me", 0.0, History::default());
        let key = PreviewKey::Live("p".into());
        let origin = state.previews.instant(0.0);
        let mut redraws = 0;
        // 100 results a second for 2 simulated seconds against the default cap of 4.
        for i in 0..200u64 {
            let now = 1.0 + i as f64 * 0.01;
            state.dirty = false;
            let batch = PreviewBatch {
                slots: vec![slot(key.clone(), i, origin + Duration::from_secs_f64(now))],
                rendered: None,
            };
            update(&mut state, now, Event::Preview(PreviewResults(batch)));
            if state.dirty {
                redraws += 1;
            } else {
                // Held back: a single wake-up within the cap's interval.
                let wake = state.previews.wake_at.unwrap();
                assert!(wake > state.previews.instant(now));
                assert!(wake <= state.previews.instant(now + 0.25));
            }
        }
        assert_eq!(redraws, 8);
        // The last result waits; the wake-up applies it, then nothing is scheduled.
        let wake = state.previews.wake_at.unwrap();
        let at = wake.duration_since(origin).as_secs_f64() + 0.001;
        state.dirty = false;
        update(&mut state, at, Event::Tick);
        assert!(state.dirty);
        assert_eq!(state.previews.wake_at, None);
        assert_eq!(
            state.previews.state.slot(&key).unwrap().condition,
            crate::preview::Condition::Ready {
                width: 64,
                height: 64
            }
        );
    }

    #[test]
    fn p_hides_and_shows_the_pane() {
        let name = "c_full_run_legacy_previews";
        let mut state = connected(&client_id(name), 0.0, History::default());
        replay(&mut state, name, 0.0, f64::MAX);
        assert!(crate::ui::preview_area(&state).is_some());
        state.dirty = false;
        key(&mut state, 'p');
        assert!(state.dirty);
        assert!(!state.previews.show);
        assert_eq!(crate::ui::preview_area(&state), None);
        key(&mut state, 'p');
        assert!(crate::ui::preview_area(&state).is_some());
    }

    #[test]
    fn an_output_is_fetched_once_when_shown_and_o_cycles_through_them() {
        let history: History = http_body("get_history");
        let listed = connected("me", 0.0, history);
        // Listed but not shown: nothing fetched.
        assert!(listed.previews.fetching.is_empty());
        let mut state = detail_with_two_outputs();
        let first = selected_output(&state).unwrap();
        assert_eq!(first.0.filename, "full_00003_.png");
        assert_eq!((first.1, first.2), (0, 2));
        assert_eq!(state.previews.fetching, vec![first.0.clone()]);
        // Asked once, however many events come by.
        let again = update(&mut state, 1.0, Event::Tick);
        assert!(
            !again
                .iter()
                .any(|c| matches!(c, Command::FetchOutput(_, _)))
        );

        let commands = key(&mut state, 'o');
        let second = selected_output(&state).unwrap();
        assert_eq!(second.0.filename, "ComfyUI_temp_otqca_00001_.png");
        // Fetched, and the worker told once the pane shows it.
        assert_eq!(commands, [Command::FetchOutput(0, second.0.clone())]);
        let now = state.now;
        assert!(matches!(
            update(&mut state, now, Event::Drawn).as_slice(),
            [Command::SetPreviewView(Some(view))]
                if view.key == crate::preview::PreviewKey::Output(second.0.clone())
        ));
        key(&mut state, 'o');
        assert_eq!(selected_output(&state).unwrap().0, first.0);
        // Leaving the detail view starts at the first output next time.
        key(&mut state, 'o');
        let now = state.now;
        update(
            &mut state,
            now,
            Event::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
        );
        assert_eq!(state.previews.output_index, 0);
    }

    #[test]
    fn a_fetched_output_is_cached_and_goes_to_the_worker() {
        let mut state = detail_with_two_outputs();
        let (image, _, _) = selected_output(&state).unwrap();
        let png = std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap();
        let commands = update(
            &mut state,
            1.0,
            Event::Reply(
                0,
                Reply::Output {
                    image: image.clone(),
                    result: Ok(Bytes::from(png.clone())),
                },
            ),
        );
        assert!(state.previews.outputs.contains(&image));
        assert!(state.previews.fetching.is_empty());
        match &commands[..] {
            [Command::SubmitPreview(frame)] => {
                assert_eq!(frame.key, PreviewKey::Output(image));
                assert_eq!(frame.format, ImageFormat::Png);
                assert_eq!(frame.data.len(), png.len());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s_saves_the_output_shown_and_says_where_it_went() {
        let mut state = detail_with_two_outputs();
        state.previews.settings.save_dir = PathBuf::from("/tmp/outputs");
        let (image, _, _) = selected_output(&state).unwrap();
        // Not fetched yet: the executor fetches it.
        let commands = key(&mut state, 's');
        assert_eq!(
            commands,
            vec![Command::SaveOutput {
                server: 0,
                image: image.clone(),
                data: None,
                dir: PathBuf::from("/tmp/outputs"),
            }]
        );
        // Cached: saved from the bytes at hand.
        update(
            &mut state,
            1.0,
            Event::Reply(
                0,
                Reply::Output {
                    image: image.clone(),
                    result: Ok(Bytes::from_static(b"png bytes")),
                },
            ),
        );
        let commands = key(&mut state, 's');
        assert!(matches!(
            &commands[..],
            [Command::SaveOutput { data: Some(d), .. }] if d.as_ref() == b"png bytes"
        ));
        update(
            &mut state,
            2.0,
            Event::Reply(
                0,
                Reply::Saved(Ok(PathBuf::from("/tmp/outputs/full_00003_-1.png"))),
            ),
        );
        assert_eq!(
            notice_text(&state),
            "saved to /tmp/outputs/full_00003_-1.png"
        );
        update(
            &mut state,
            3.0,
            Event::Reply(0, Reply::Saved(Err("disk full".into()))),
        );
        assert_eq!(notice_text(&state), "not saved: disk full");
        assert_eq!(state.ui.notice.as_ref().unwrap().kind, NoticeKind::Error);
        // The log keeps both.
        let logged: Vec<String> = state
            .server()
            .log
            .lines()
            .iter()
            .map(|l| l.text(&crate::describe::NoTitles).into_owned())
            .collect();
        assert!(
            logged
                .iter()
                .any(|l| l == "saved to /tmp/outputs/full_00003_-1.png")
        );
        assert!(logged.iter().any(|l| l == "not saved: disk full"));
    }

    fn notice_text(state: &State) -> &str {
        state.ui.notice.as_ref().map_or("", |n| n.text.as_str())
    }

    #[test]
    fn s_without_an_output_says_why_and_asks_nothing() {
        let mut state = connected("me", 0.0, History::default());
        assert!(key(&mut state, 's').is_empty());
        assert_eq!(
            notice_text(&state),
            "s saves an output of a finished prompt: select one in History (Tab)"
        );
    }

    #[test]
    fn s_in_the_main_view_saves_the_selected_history_rows_first_output() {
        let mut state = detail_with_two_outputs();
        state.previews.settings.save_dir = PathBuf::from("/tmp/outputs");
        let (image, _, _) = selected_output(&state).unwrap();
        let now = state.now;
        update(
            &mut state,
            now,
            Event::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
        );
        assert!(state.ui.detail.is_none());
        let commands = key(&mut state, 's');
        assert_eq!(
            commands,
            vec![Command::SaveOutput {
                server: 0,
                image,
                data: None,
                dir: PathBuf::from("/tmp/outputs"),
            }]
        );
        assert_eq!(
            notice_text(&state),
            "saving full_00003_.png (1 of 2; Enter, then o picks another)…"
        );
        // `o` has nothing to step through here, and says where it works.
        assert!(key(&mut state, 'o').is_empty());
        assert!(notice_text(&state).starts_with("o steps through"));
    }

    #[test]
    fn v_shows_the_cached_output_full_size() {
        let mut state = detail_with_two_outputs();
        let (image, _, _) = selected_output(&state).unwrap();
        assert!(key(&mut state, 'v').is_empty());
        update(
            &mut state,
            1.0,
            Event::Reply(
                0,
                Reply::Output {
                    image,
                    result: Ok(Bytes::from_static(b"png bytes")),
                },
            ),
        );
        assert_eq!(
            key(&mut state, 'v'),
            vec![Command::ShowFullSize {
                data: Bytes::from_static(b"png bytes"),
                caption: "full_00003_.png".into(),
                follow: None,
            }]
        );
    }

    /// `v` on a live preview follows its prompt: the view is told which, and the frames that
    /// come for it (and only those) are picked out of the socket's events.
    #[test]
    fn v_on_a_live_preview_follows_its_prompts_newer_frames() {
        let name = "c_full_run_legacy_previews";
        let mut state = connected(&client_id(name), 0.0, History::default());
        let frames = transcript(name);
        let (first, rest): (Vec<_>, Vec<_>) = frames.into_iter().partition(|f| f.t <= 1.2);
        for frame in first {
            let t = frame.t;
            update(&mut state, t, Event::Conn(0, ConnEvent::Frame(frame)));
        }
        let running = state.server().tracker.running().unwrap().id.clone();
        // The worker has its first frame: the pane has something to show.
        let origin = state.previews.instant(0.0);
        let mut slot = slot(PreviewKey::Live(running.clone()), 1, origin);
        slot.data = Bytes::from_static(b"jpeg");
        let batch = PreviewBatch {
            slots: vec![slot],
            rendered: None,
        };
        update(&mut state, 1.3, Event::Preview(PreviewResults(batch)));
        match &key(&mut state, 'v')[..] {
            [Command::ShowFullSize { follow, .. }] => assert_eq!(follow, &Some(running.clone())),
            other => panic!("{other:?}"),
        }
        let newer: Vec<Bytes> = rest
            .into_iter()
            .map(ConnEvent::Frame)
            .filter_map(|e| preview_of(&e, &running))
            .collect();
        assert!(!newer.is_empty(), "later previews of the run are followed");
        // Frames whose metadata names their prompt are followed for that prompt alone.
        let with_metadata: Vec<ConnEvent> = transcript("b_feature_flags_metadata_previews")
            .into_iter()
            .map(ConnEvent::Frame)
            .filter(|e| preview_of(e, "any").is_some() || preview_of(e, "other").is_some())
            .collect();
        let tagged: Vec<ConnEvent> = transcript("b_feature_flags_metadata_previews")
            .into_iter()
            .map(ConnEvent::Frame)
            .filter(|e| {
                matches!(e, ConnEvent::Frame(f)
                    if matches!(f.decoded, crate::comfy::Decoded::Binary(BinaryFrame::Preview(_))))
            })
            .collect();
        assert!(!tagged.is_empty());
        assert!(with_metadata.is_empty(), "each names its own prompt");
    }
}
