//! The dashboard's event loop: terminal input, the WebSocket connection and HTTP replies merged
//! into one stream of [`Event`]s for [`app::update`]; the [`Command`]s it returns run on tokio
//! tasks whose replies come back as events. The screen is drawn only when the state says it
//! changed, at most [`MAX_FPS`] times a second, and timers run only when the state asks for one:
//! an idle dashboard sleeps.

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use color_eyre::eyre::{Context as _, Result, eyre};
use crossterm::event::{
    Event as TermEvent, EventStream, KeyEventKind, MouseButton, MouseEventKind,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use crate::app::{
    self, ClickTarget, Command, Event, Fetched, PreviewResults, PreviewSettings, Previews, State,
    Submitted,
};
use crate::comfy::api::PromptRequest;
use crate::comfy::connection::{ConnEvent, Connection, ConnectionConfig, new_client_id};
use crate::comfy::http::ComfyClient;
use crate::comfy::server_url::ServerUrl;
use crate::comfy::transcript::Recorder;
use crate::control::{self, Access};
use crate::preview::{
    DecodeLimits, Detection, ImageProtocol, PipelineConfig, PreviewPipeline, QueryNews, Renderer,
    save_without_overwriting, show_full_size,
};
use crate::session;
use crate::sim::{SimConfig, SimServer};
use crate::term::{self, Endings, TerminalGuard};
use crate::tracker::Tracker;
use crate::ui;

/// The most frames drawn per second; a burst of events in between is drawn once.
pub const MAX_FPS: u32 = 20;
const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(1000 / MAX_FPS as u64);

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub server: ServerUrl,
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

/// Runs the dashboard on a simulated server started in-process on a free loopback port, with
/// demo work flowing through it. `config.server` is replaced by the simulator's address.
pub async fn run_demo(mut config: DashboardConfig) -> Result<RunSummary> {
    let sim = SimServer::start(SimConfig {
        demo: true,
        ..SimConfig::default()
    })
    .await
    .wrap_err("cannot start the simulated server")?;
    config.server = ServerUrl::parse(&sim.url())?;
    let result = run_loop(config, true).await;
    sim.shutdown().await;
    result
}

/// What a finished run reports (also logged at exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub frames_drawn: u64,
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Quit,
    Signal(&'static str),
    InputClosed,
}

/// The dashboard clock: seconds since start on a monotonic clock, plus the wall clock at start.
struct Clock {
    start: Instant,
    epoch_ms_at_start: f64,
}

impl Clock {
    fn start() -> Self {
        let epoch_ms_at_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Self {
            start: Instant::now(),
            epoch_ms_at_start,
        }
    }

    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn instant_at(&self, t: f64) -> Instant {
        self.start + Duration::from_secs_f64(t.max(0.0))
    }
}

/// Runs commands off the loop; replies come back on a channel.
struct Executor {
    client: ComfyClient,
    access: Access,
    replies: mpsc::UnboundedSender<Fetched>,
}

impl Executor {
    fn run(&self, command: Command) {
        let client = self.client.clone();
        let replies = self.replies.clone();
        match command {
            Command::Fetch(fetch) => {
                tokio::spawn(async move {
                    let reply = session::run_fetch(&client, fetch.clone()).await;
                    let result = match reply.error {
                        None => Ok(reply.input),
                        Some(error) => {
                            tracing::warn!(%error, "fetch failed");
                            Err(error.to_string())
                        }
                    };
                    // The loop may be gone already (quitting): nothing to tell then.
                    let _ = replies.send(Fetched::Tracker {
                        command: fetch,
                        result,
                    });
                });
            }
            Command::FetchSystemStats => {
                tokio::spawn(async move {
                    let result = client.system_stats().await.map_err(|e| e.to_string());
                    let _ = replies.send(Fetched::SystemStats(result));
                });
            }
            Command::FetchOutput(image) => {
                tokio::spawn(async move {
                    let result = client
                        .view(&image)
                        .await
                        .map(|file| file.bytes)
                        .map_err(|e| e.to_string());
                    let _ = replies.send(Fetched::Output { image, result });
                });
            }
            Command::SaveOutput { image, data, dir } => {
                tokio::spawn(async move {
                    let bytes = match data {
                        Some(bytes) => Ok(bytes),
                        None => client
                            .view(&image)
                            .await
                            .map(|file| file.bytes)
                            .map_err(|e| e.to_string()),
                    };
                    let result = match bytes {
                        Ok(bytes) => tokio::task::spawn_blocking(move || {
                            save_without_overwriting(&dir, &image.filename, &bytes)
                                .map_err(|e| e.to_string())
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string())),
                        Err(error) => Err(error),
                    };
                    let _ = replies.send(Fetched::Saved(result));
                });
            }
            Command::Act(action) => {
                let access = self.access;
                tokio::spawn(async move {
                    let reply = act(&client, access, action).await;
                    let _ = replies.send(reply);
                });
            }
            // The loop runs these itself: they need the worker or the terminal.
            Command::SubmitPreview(_)
            | Command::ShowFullSize { .. }
            | Command::Reconnect
            | Command::Quit => {}
        }
    }
}

/// Runs a [`Command::Act`] once (never retried: a lost answer to a POST /prompt is reported as
/// such, not sent again) and words its reply for the dashboard.
pub async fn act(client: &ComfyClient, access: Access, action: control::Action) -> Fetched {
    let result = control::perform(client, access, &action)
        .await
        .map_err(|error| {
            tracing::warn!(%error, verb = action.verb(), "action failed");
            error.status_text()
        });
    Fetched::Acted { action, result }
}

/// Maps a terminal event to a dashboard event (the mouse through the layout's hit test).
fn translate(event: TermEvent, state: &State) -> Option<Event> {
    match event {
        // Some terminals report releases too; only presses and repeats act.
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => Some(Event::Key(key)),
        TermEvent::Key(_) | TermEvent::Paste(_) => None,
        TermEvent::Mouse(mouse) => {
            let panel_under = || {
                ui::hit_test(state, mouse.column, mouse.row).map(|t| match t {
                    ClickTarget::Panel(p) | ClickTarget::Row { panel: p, .. } => p,
                })
            };
            match mouse.kind {
                MouseEventKind::Down(MouseButton::Left) => {
                    ui::hit_test(state, mouse.column, mouse.row).map(Event::Click)
                }
                MouseEventKind::ScrollDown => Some(Event::Wheel {
                    panel: panel_under(),
                    down: true,
                }),
                MouseEventKind::ScrollUp => Some(Event::Wheel {
                    panel: panel_under(),
                    down: false,
                }),
                _ => None,
            }
        }
        TermEvent::Resize(width, height) => Some(Event::Resize { width, height }),
        TermEvent::FocusGained => Some(Event::Focus(true)),
        TermEvent::FocusLost => Some(Event::Focus(false)),
    }
}

/// Runs the dashboard until the user quits or a signal ends it. The terminal is restored on
/// every way out.
pub async fn run(config: DashboardConfig) -> Result<RunSummary> {
    run_loop(config, false).await
}

/// The full-size view decodes to at most this side: larger than any terminal shows.
const FULL_VIEW_MAX_SIDE: u32 = 4096;

/// The next terminal event, once crossterm reads the terminal; never before.
async fn next_input(input: Option<&mut EventStream>) -> Option<std::io::Result<TermEvent>> {
    match input {
        Some(input) => input.next().await,
        None => std::future::pending().await,
    }
}

/// The graphics query's next news while it runs; never after.
async fn next_query_news(
    query: Option<&mut mpsc::UnboundedReceiver<QueryNews>>,
) -> Option<QueryNews> {
    match query {
        Some(query) => query.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the preview worker has results; never without one.
async fn previews_ready(pipeline: Option<&PreviewPipeline>) {
    match pipeline {
        Some(pipeline) => pipeline.ready().await,
        None => std::future::pending().await,
    }
}

/// What the demo's own work asks for, in turn.
const DEMO_PROMPTS: &[&str] = &[
    "a paper boat on a mountain lake, morning fog, watercolor",
    "a lighthouse keeper's cabin in a snowstorm, warm windows",
    "koi pond seen from above, autumn leaves, ukiyo-e",
    "a tiny robot tending a bonsai, macro photo, soft light",
];
/// How often the demo queues a prompt of its own.
const DEMO_EVERY: Duration = Duration::from_secs(20);

/// In the demo, this comfytop queues work of its own now and then, with its own client id, so
/// every step of it shows live beside the simulated browser tabs' and script's prompts.
async fn queue_demo_work(
    client: ComfyClient,
    client_id: String,
    replies: mpsc::UnboundedSender<Fetched>,
) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0.. {
        let prompt = DEMO_PROMPTS[round % DEMO_PROMPTS.len()];
        let steps = 20 + (round as u32 % 3) * 4;
        let seed = rand::random::<u64>() >> 16;
        let request = PromptRequest {
            prompt: crate::sim::demo::text_to_image(prompt, seed, steps, 512, 512),
            client_id: Some(client_id.clone()),
            ..PromptRequest::default()
        };
        let result = match client.submit(&request).await {
            Ok(accepted) => Ok(Box::new(Submitted { request, accepted })),
            Err(error) => Err(error.to_string()),
        };
        if replies.send(Fetched::Submitted(result)).is_err() {
            return;
        }
        tokio::time::sleep(DEMO_EVERY).await;
    }
}

/// Tells the state the terminal's size, as a resize event would.
fn resize_to_terminal(guard: &TerminalGuard, state: &mut State, now: f64) {
    if let Ok(size) = guard.terminal.size() {
        app::update(
            state,
            now,
            Event::Resize {
                width: size.width,
                height: size.height,
            },
        );
    }
}

/// A socket event on its way to `update`: it restarts the transcript clock on a new socket and
/// goes into the recording.
fn take_conn_event(
    conn_event: ConnEvent,
    recorder: &mut Option<Recorder>,
    socket_opened: &mut Instant,
    state: &mut State,
    now: f64,
) -> Event {
    if let ConnEvent::Connected { .. } = &conn_event {
        *socket_opened = Instant::now();
    }
    if let (Some(file), ConnEvent::Frame(frame)) = (recorder.as_mut(), &conn_event) {
        let written = file.record(frame.t, &frame.raw);
        stop_recording_on_error(recorder, written, state, now);
    }
    Event::Conn(conn_event)
}

/// A recording that fails says so once and stops, rather than leave a transcript with holes.
fn stop_recording_on_error(
    recorder: &mut Option<Recorder>,
    written: std::io::Result<()>,
    state: &mut State,
    now: f64,
) {
    if let Err(error) = written {
        tracing::error!(%error, "recording failed");
        *recorder = None;
        app::update(
            state,
            now,
            Event::Problem(format!("recording stopped: {error}")),
        );
    }
}

async fn run_loop(config: DashboardConfig, demo: bool) -> Result<RunSummary> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(eyre!(
            "the dashboard needs a terminal; for plain output use `comfytop watch {}`",
            config.server
        ));
    }
    // First of all: from here on a signal or the terminal going away ends the dashboard,
    // whatever it is busy with.
    let mut endings = Endings::watch().wrap_err("cannot watch for signals")?;
    let mut recorder = match &config.record {
        Some(path) => Some(Recorder::append(path).wrap_err_with(|| {
            format!(
                "cannot open {} for recording; check that its folder exists and is writable",
                path.display()
            )
        })?),
        None => None,
    };
    // The transcript's clock: seconds since the current socket opened, as its frames carry.
    let mut socket_opened = Instant::now();
    let client_id = new_client_id();
    let client =
        ComfyClient::new(config.server.clone()).wrap_err("cannot set up the HTTP client")?;
    let (conn_tx, mut conn_rx) = mpsc::channel(1024);
    let connection = Connection::spawn(
        ConnectionConfig::new(config.server.clone(), client_id.clone()),
        conn_tx,
    );
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel();
    let demo_work = demo.then(|| {
        tokio::spawn(queue_demo_work(
            client.clone(),
            client_id.clone(),
            reply_tx.clone(),
        ))
    });
    let executor = Executor {
        client,
        access: config.access,
        replies: reply_tx,
    };

    let clock = Clock::start();
    let mut state = State::new(config.server.clone(), &client_id, clock.epoch_ms_at_start);
    state.server.tracker = Tracker::with_finished_kept(&client_id, config.finished_kept);
    state.access = config.access;
    let mut guard = TerminalGuard::enter(config.mouse).wrap_err("cannot set up the terminal")?;
    let previews_on = config.image_protocol != ImageProtocol::None;
    state.previews = Previews::new(
        PreviewSettings {
            enabled: previews_on,
            fps: config.preview_fps,
            save_dir: config.save_dir.clone(),
        },
        clock.start,
    );
    // The worker starts without a renderer: it gets one when the terminal has answered.
    let pipeline = if previews_on {
        Some(
            PreviewPipeline::spawn(PipelineConfig {
                renderer: None,
                fps: config.preview_fps,
                ..PipelineConfig::default()
            })
            .wrap_err("cannot start the preview worker")?,
        )
    } else {
        None
    };
    tracing::info!(server = %config.server, %client_id, "dashboard started");
    resize_to_terminal(&guard, &mut state, clock.now());

    // The terminal is asked about graphics once the first frame is out, so that nobody waits
    // for its answer. Until the answer, the query's reader owns stdin and passes on what the
    // user types; crossterm's reader starts after it.
    let mut to_ask = Some(config.image_protocol);
    let mut query = None;
    let mut query_over: Option<Option<Renderer>> = None;
    let mut renderer: Option<Renderer> = None;
    let mut input: Option<EventStream> = None;
    let mut typed: VecDeque<TermEvent> = VecDeque::new();
    // Socket events that waited while the full-size view was up; they go through the loop
    // before anything new.
    let mut held: VecDeque<ConnEvent> = VecDeque::new();
    let mut frames_drawn: u64 = 0;
    let mut last_draw: Option<Instant> = None;
    let exit = loop {
        if state.dirty && last_draw.is_none_or(|t| t.elapsed() >= MIN_FRAME_INTERVAL) {
            guard
                .terminal
                .draw(|frame| ui::draw(&state, frame))
                .wrap_err("cannot draw to the terminal")?;
            state.dirty = false;
            last_draw = Some(Instant::now());
            frames_drawn += 1;
            tracing::debug!(frame = frames_drawn, t = clock.now(), "frame drawn");
        }
        if let Some(choice) = to_ask.take() {
            match Renderer::detect(choice) {
                Detection::Known(known) => query_over = Some(known),
                Detection::Asking(news) => query = Some(news),
            }
        }
        if let Some(settled) = query_over.take() {
            query = None;
            tracing::info!(
                protocol = settled.as_ref().map_or("none", Renderer::name),
                "previews"
            );
            if let (Some(pipeline), Some(settled)) = (&pipeline, &settled) {
                pipeline.set_renderer(settled.clone());
            }
            renderer = settled;
            input = Some(EventStream::new());
            // A resize while the query ran went unseen.
            resize_to_terminal(&guard, &mut state, clock.now());
        }
        // Wake for a frame held back by the rate cap, or for a timer the state asked for.
        let draw_at = state
            .dirty
            .then(|| last_draw.map(|t| t + MIN_FRAME_INTERVAL))
            .flatten();
        let timer_at = [
            state.wakeup_at().map(|t| clock.instant_at(t)),
            state.previews.wake_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let deadline = match (draw_at, timer_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let event = if let Some(term_event) = typed.pop_front() {
            translate(term_event, &state)
        } else if let Some(conn_event) = held.pop_front() {
            let now = clock.now();
            Some(take_conn_event(
                conn_event,
                &mut recorder,
                &mut socket_opened,
                &mut state,
                now,
            ))
        } else {
            tokio::select! {
                term_event = next_input(input.as_mut()) => match term_event {
                    Some(Ok(term_event)) => translate(term_event, &state),
                    Some(Err(error)) => {
                        return Err(error).wrap_err("cannot read from the terminal");
                    }
                    None => break Exit::InputClosed,
                },
                Some(conn_event) = conn_rx.recv() => {
                    let now = clock.now();
                    Some(take_conn_event(conn_event, &mut recorder, &mut socket_opened, &mut state, now))
                }
                Some(reply) = reply_rx.recv() => {
                    // The answers the tracker used go into the transcript too, so a replay shows
                    // other clients' prompts as this view did.
                    if let (Some(file), Fetched::Tracker { result: Ok(input), .. }) =
                        (&mut recorder, &reply)
                    {
                        let t = socket_opened.elapsed().as_secs_f64();
                        let written = crate::watch::record_answer(file, t, input);
                        stop_recording_on_error(&mut recorder, written, &mut state, clock.now());
                    }
                    Some(Event::Fetched(reply))
                }
                () = previews_ready(pipeline.as_ref()) => pipeline
                    .as_ref()
                    .map(|p| Event::Preview(PreviewResults(p.take()))),
                news = next_query_news(query.as_mut()) => {
                    match news {
                        Some(QueryNews::Typed(bytes)) => typed.extend(term::typed_events(&bytes)),
                        Some(QueryNews::Settled(settled)) => query_over = Some(Some(settled)),
                        // The reader is gone without a word: no previews, but the keys work.
                        None => query_over = Some(None),
                    }
                    None
                }
                () = sleep => timer_at
                    .is_some_and(|at| at <= Instant::now())
                    .then_some(Event::Tick),
                reason = endings.next() => break Exit::Signal(reason),
            }
        };
        let Some(event) = event else {
            continue;
        };
        let mut full_size = None;
        for command in app::update(&mut state, clock.now(), event) {
            match command {
                Command::SubmitPreview(frame) => {
                    if let Some(pipeline) = &pipeline {
                        pipeline.submit(frame);
                    }
                }
                Command::ShowFullSize {
                    data,
                    caption,
                    follow,
                } => full_size = Some((data, caption, follow)),
                Command::Reconnect => connection.retry_now(),
                command => executor.run(command),
            }
        }
        let view = app::preview::view_for(&state, ui::preview_area(&state).map(|r| r.as_size()));
        if state.previews.state.want_view(view.clone())
            && let Some(pipeline) = &pipeline
        {
            pipeline.set_view(view);
        }
        if let Some((data, caption, follow)) = full_size {
            // viuer reads the key that ends the view: the event stream must not read it first.
            let had_input = input.take().is_some();
            let decode_full = |data: &[u8]| {
                crate::preview::decode(
                    data,
                    crate::comfy::binary::ImageFormat::Other,
                    DecodeLimits::default(),
                    FULL_VIEW_MAX_SIDE,
                )
            };
            // The socket's events wait here while the view is up; the followed prompt's newest
            // preview among them is shown as it comes.
            let mut newer = || {
                let mut newest = None;
                while let Ok(conn_event) = conn_rx.try_recv() {
                    if let Some(id) = &follow
                        && let Some(bytes) = app::preview::preview_of(&conn_event, id)
                    {
                        newest = Some(bytes);
                    }
                    held.push_back(conn_event);
                }
                newest.and_then(|bytes| decode_full(&bytes).ok().map(|d| d.image))
            };
            let shown = match decode_full(&data) {
                Ok(decoded) => show_full_size(
                    &mut guard.terminal,
                    &decoded.image,
                    &caption,
                    renderer.as_ref(),
                    &mut newer,
                )
                .map_err(|e| e.to_string()),
                Err(problem) => Err(problem.to_string()),
            };
            if had_input {
                input = Some(EventStream::new());
            }
            if let Some(pipeline) = &pipeline {
                pipeline.refresh();
            }
            if let Err(error) = shown {
                app::update(
                    &mut state,
                    clock.now(),
                    Event::Problem(format!("full-size view: {error}")),
                );
            }
            state.dirty = true;
        }
        if state.quitting {
            break Exit::Quit;
        }
    };
    drop(guard);
    if let Some(task) = demo_work {
        task.abort();
    }
    tracing::info!(?exit, frames_drawn, "dashboard closed");
    connection.close().await;
    Ok(RunSummary { frames_drawn })
}
