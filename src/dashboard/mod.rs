//! The dashboard's event loop: terminal input, the WebSocket connection and HTTP replies merged
//! into one stream of [`Event`]s for [`app::update`]; the [`Command`]s it returns run on tokio
//! tasks whose replies come back as events. The screen is drawn only when the state says it
//! changed, at most [`MAX_FPS`] times a second ([`INPUT_FPS`] while the user acts), and timers
//! run only when the state asks for one: an idle dashboard sleeps.

mod event_loop;
mod executor;

use std::path::{Path, PathBuf};

use color_eyre::eyre::{Result, WrapErr as _, eyre};
use tokio::sync::mpsc;

use crate::app::Reply;
use crate::comfy::http::ComfyClient;
use crate::comfy::server_url::ServerUrl;
use crate::control::Access;
use crate::preview::ImageProtocol;

pub use executor::act;

/// Preview redraws per second unless `--preview-fps` or the config says otherwise.
pub const DEFAULT_PREVIEW_FPS: u32 = 4;

/// The most frames drawn per second for what the server says; a burst of events in between is
/// drawn once. Four keeps gauges and counters moving, as often as a preview changes by default,
/// and each frame drawn costs CPU here and bytes on the wire.
pub const MAX_FPS: u32 = 4;

/// The most frames drawn per second while the user acts (keys, clicks, resizes): what they do
/// shows at once.
pub const INPUT_FPS: u32 = 30;

/// One server the dashboard watches.
#[derive(Debug, Clone)]
pub struct WatchedServer {
    pub url: ServerUrl,
    /// Its name in the config, when it was named.
    pub name: Option<String>,
    /// The clientId to connect with (see [`crate::identity`]), and why it is not the kept one
    /// when it is not.
    pub client_id: String,
    pub client_id_note: Option<String>,
    /// `read_only = true` in its config entry.
    pub read_only: bool,
}

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// At least one; the first is shown first.
    pub servers: Vec<WatchedServer>,
    /// Capture the mouse (clicks select, the wheel scrolls).
    pub mouse: bool,
    /// Append every received frame to this transcript file.
    pub record: Option<PathBuf>,
    /// `--image-protocol`.
    pub image_protocol: ImageProtocol,
    /// `--preview-fps`: the most preview redraws per second.
    pub preview_fps: u32,
    /// `--save-dir`: where `s` saves outputs.
    pub save_dir: PathBuf,
    /// Whether the keys may change anything on the server (`--read-only`).
    pub access: Access,
    /// `--history`: finished prompts kept in memory.
    pub finished_kept: usize,
    /// `--color` (and `NO_COLOR`): colours on screen.
    pub color: bool,
    /// The keys, with the config's overrides.
    pub keys: crate::app::keys::KeyTable,
    /// `--notify`, `--notify-all`.
    pub notify: crate::notify::NotifyFor,
}

/// Sends tracing output to `path` (the level from `COMFYTOP_LOG`, default `info`; `debug` adds a
/// line per frame drawn). Nothing else may write to the terminal while the dashboard is up.
pub fn log_to_file(path: &Path) -> Result<()> {
    let file = std::fs::File::create(path)
        .wrap_err_with(|| format!("cannot write the log file {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMFYTOP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| eyre!("cannot set up logging: {e}"))
}

/// What a finished run reports (also logged at exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub frames_drawn: u64,
    /// The longest one event took in `update` and the commands it asked for, and the longest
    /// one frame took to draw and reach the terminal: how long the screen could not react.
    pub longest_update: std::time::Duration,
    pub longest_draw: std::time::Duration,
}

/// Runs the dashboard until the user quits or a signal ends it. The terminal is restored on
/// every way out.
pub async fn run(config: DashboardConfig) -> Result<RunSummary> {
    run_loop(config, |_| None).await
}

/// What a task that works beside the loop (the demo's own prompts) is given: the loop's HTTP
/// client, its client id, and the way to hand the loop what it queued.
// Only the demo's work reads it; a build without the simulator makes one and drops it.
#[cfg_attr(not(feature = "demo"), allow(dead_code))]
pub(crate) struct Beside {
    pub client: ComfyClient,
    pub client_id: String,
    /// Replies for the first server (index 0).
    pub replies: mpsc::UnboundedSender<(usize, Reply)>,
}

/// Runs the dashboard with `start_beside` started next to it once its client exists.
pub(crate) async fn run_loop(
    config: DashboardConfig,
    start_beside: impl FnOnce(Beside) -> Option<tokio::task::JoinHandle<()>>,
) -> Result<RunSummary> {
    event_loop::run(config, start_beside).await
}
