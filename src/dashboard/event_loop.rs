//! The loop itself. Each turn it draws when the state changed (at most [`MAX_FPS`] times a
//! second, [`INPUT_FPS`] while the user acts), waits for the next thing to happen (a key, a
//! socket event, an HTTP reply, the preview worker, a timer the state asked for, a signal),
//! feeds it to [`app::update`] and hands every command that comes out to the [`Executor`]. It
//! changes the state only through `update`.
//!
//! Until the frame-rate cap allows the next frame, the loop does not wake for socket events or
//! the preview worker's results: they wait in their channel and outbox and are applied just
//! before the frame, each socket event at the time it came. Anything else that wakes the loop
//! first has the socket events that came before it applied, so `update` sees everything in the
//! order it came.

use std::collections::VecDeque;
use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use color_eyre::eyre::{Context as _, Result, eyre};
use crossterm::event::{
    Event as TermEvent, EventStream, KeyEventKind, MouseButton, MouseEventKind,
};
use futures_util::StreamExt as _;
use ratatui::layout::Rect;
use tokio::sync::mpsc;

use super::executor::{Executor, ForTheLoop, ServerLink};
use super::{Beside, DashboardConfig, INPUT_FPS, MAX_FPS, RunSummary};
use crate::app::{
    self, ClickTarget, Event, PreviewResults, PreviewSettings, Previews, Reply, ServerState, State,
};
use crate::comfy::binary::ImageFormat;
use crate::comfy::connection::{ConnEvent, Connection, ConnectionConfig, TaggedEvent};
use crate::comfy::http::ComfyClient;
use crate::comfy::transcript::Recorder;
use crate::preview::{
    DecodeLimits, Detection, ImageProtocol, PipelineConfig, PreviewPipeline, QueryNews, Renderer,
    show_full_size,
};
use crate::term::{self, Endings, TerminalGuard};
use crate::tracker::TrackerInput;
use crate::ui;

const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(1000 / MAX_FPS as u64);
const MIN_INPUT_FRAME_INTERVAL: Duration = Duration::from_millis(1000 / INPUT_FPS as u64);

/// Socket events that can wait for a frame: as many as their channel holds. Past that, the
/// socket's worker waits for the loop.
const SOCKET_CHANNEL: usize = 1024;

/// The full-size view decodes to at most this side: larger than any terminal shows.
const FULL_VIEW_MAX_SIDE: u32 = 4096;

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

    /// The dashboard time of `instant`.
    fn at(&self, instant: Instant) -> f64 {
        instant.saturating_duration_since(self.start).as_secs_f64()
    }

    fn instant_at(&self, t: f64) -> Instant {
        self.start + Duration::from_secs_f64(t.max(0.0))
    }
}

/// The transcript being written (`--record`), and its clock: seconds since the current socket
/// opened, as its frames carry.
struct Recording {
    file: Option<Recorder>,
    socket_opened: Instant,
}

impl Recording {
    fn open(path: Option<&Path>) -> Result<Self> {
        Ok(Self {
            file: crate::session::open_recording(path)?,
            socket_opened: Instant::now(),
        })
    }

    /// A socket event that came `at`, on its way to `update`: a new socket restarts the clock,
    /// a frame goes into the file. The problem, when writing failed.
    fn take(&mut self, event: &ConnEvent, at: Instant) -> Option<String> {
        if let ConnEvent::Connected { .. } = event {
            self.socket_opened = at;
        }
        let (Some(file), ConnEvent::Frame(frame)) = (self.file.as_mut(), event) else {
            return None;
        };
        let written = file.record(frame.t, &frame.raw);
        self.stop_on_error(written)
    }

    /// The answer in `reply` if it is one to record (see [`Recording::take_answer`]).
    fn answer_in(&self, reply: &Reply) -> Option<TrackerInput> {
        match (&self.file, reply) {
            (
                Some(_),
                Reply::Tracker {
                    result: Ok(input), ..
                },
            ) => Some(input.clone()),
            _ => None,
        }
    }

    /// The answers the tracker used go into the transcript too, so a replay shows other
    /// clients' prompts as this view did.
    fn take_answer(&mut self, input: &TrackerInput) -> Option<String> {
        let file = self.file.as_mut()?;
        let t = self.socket_opened.elapsed().as_secs_f64();
        let written = crate::watch::record_answer(file, t, input);
        self.stop_on_error(written)
    }

    /// A recording that fails says so once and stops, rather than leave a transcript with
    /// holes.
    fn stop_on_error(&mut self, written: std::io::Result<()>) -> Option<String> {
        let error = written.err()?;
        tracing::error!(%error, "recording failed");
        self.file = None;
        Some(format!("recording stopped: {error}"))
    }
}

/// The terminal's input. The terminal is asked about graphics once the first frame is out, so
/// that nobody waits for its answer; until the answer, the query's reader owns stdin and
/// passes on what the user types, and crossterm's reader starts after it.
struct TerminalInput {
    to_ask: Option<ImageProtocol>,
    query: Option<mpsc::UnboundedReceiver<QueryNews>>,
    /// The query's outcome, to be put in place.
    settled: Option<Option<Renderer>>,
    renderer: Option<Renderer>,
    stream: Option<TerminalEvents>,
    /// Keys the query's reader passed on.
    typed: VecDeque<TermEvent>,
}

/// What ended one wait of the loop.
enum Arrived {
    Terminal(Option<std::io::Result<TermEvent>>),
    Socket(TaggedEvent),
    Reply(usize, Reply),
    Previews,
    Query(Option<QueryNews>),
    /// The sleep ended; the timer it was for, if any.
    Timer(Option<Instant>),
    Ending(&'static str),
}

/// What one wait of the loop brought.
// Made and taken once per turn of the loop: boxing the event would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Woke {
    /// A socket event, applied at the time it came.
    Socket(TaggedEvent),
    Reply(usize, Reply),
    Event(Event),
    Nothing,
    Exit(Exit),
}

struct Dashboard {
    state: State,
    clock: Clock,
    guard: TerminalGuard,
    /// What drawing keeps from frame to frame.
    drawn: ui::Memo,
    executor: Executor,
    conn_rx: mpsc::Receiver<TaggedEvent>,
    reply_rx: mpsc::UnboundedReceiver<(usize, Reply)>,
    endings: Endings,
    recording: Recording,
    input: TerminalInput,
    /// Socket events that waited while the full-size view was up; they go through the loop
    /// before anything new.
    held: VecDeque<TaggedEvent>,
    /// Problems the loop itself ran into (a recording that failed), for `update` next.
    problems: VecDeque<String>,
    frames_drawn: u64,
    last_draw: Option<Instant>,
    /// The user did something since the last frame: the next one comes sooner.
    user_acted: bool,
    longest_update: Duration,
    longest_draw: Duration,
    alarm: Alarm,
}

/// The loop's one timer, kept from turn to turn and moved only when its time changes. A new
/// timer each turn would wake the runtime's worker to take note of it, at every event.
struct Alarm {
    sleep: Pin<Box<tokio::time::Sleep>>,
    at: Option<Instant>,
}

impl Alarm {
    fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(Self::never())),
            at: None,
        }
    }

    /// A time that does not come: moving a timer later costs nothing.
    fn never() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
    }

    fn set(&mut self, at: Option<Instant>) {
        if at != self.at {
            self.at = at;
            let when = at.map_or_else(Self::never, tokio::time::Instant::from_std);
            self.sleep.as_mut().reset(when);
        }
    }

    /// Ends at the time set; never when none is.
    async fn ring(&mut self) {
        match self.at {
            Some(_) => self.sleep.as_mut().await,
            None => std::future::pending().await,
        }
    }
}

pub(super) async fn run(
    config: DashboardConfig,
    start_beside: impl FnOnce(Beside) -> Option<tokio::task::JoinHandle<()>>,
) -> Result<RunSummary> {
    let Some(first) = config.servers.first() else {
        return Err(eyre!("no server to watch"));
    };
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(eyre!(
            "the dashboard needs a terminal; for plain output use `comfytop watch {}`",
            first.url
        ));
    }
    // First of all: from here on a signal or the terminal going away ends the dashboard,
    // whatever it is busy with.
    let endings = Endings::watch().wrap_err("cannot watch for signals")?;
    let recording = Recording::open(config.record.as_deref())?;
    // Every server's socket events come through one channel, marked with the server's index.
    let (conn_tx, conn_rx) = mpsc::channel(SOCKET_CHANNEL);
    let mut links = Vec::with_capacity(config.servers.len());
    for (index, server) in config.servers.iter().enumerate() {
        let client =
            ComfyClient::new(server.url.clone()).wrap_err("cannot set up the HTTP client")?;
        let connection = Connection::spawn_tagged(
            ConnectionConfig::new(server.url.clone(), server.client_id.clone()),
            index,
            conn_tx.clone(),
        );
        let access = if server.read_only {
            crate::control::Access::ReadOnly
        } else {
            config.access
        };
        links.push(ServerLink {
            client,
            client_id: server.client_id.clone(),
            connection,
            access,
        });
    }
    drop(conn_tx);
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let beside = start_beside(Beside {
        client: links[0].client.clone(),
        client_id: first.client_id.clone(),
        replies: reply_tx.clone(),
    });

    let clock = Clock::start();
    let previews_on = config.image_protocol != ImageProtocol::None;
    let previews = Previews::new(
        PreviewSettings {
            enabled: previews_on,
            fps: config.preview_fps,
            save_dir: config.save_dir.clone(),
        },
        clock.start,
    );
    let servers = config
        .servers
        .iter()
        .map(|s| ServerState {
            read_only: s.read_only,
            ..ServerState::new(s.url.clone(), s.name.clone(), &s.client_id)
        })
        .collect();
    let mut state = State::new(first.url.clone(), &first.client_id, clock.epoch_ms_at_start)
        .with_servers(servers)
        .with_settings(config.finished_kept, config.access, previews, config.color)
        .with_keys_and_notify(config.keys.clone(), config.notify);
    let notes: Vec<String> = config
        .servers
        .iter()
        .filter_map(|s| {
            s.client_id_note
                .as_ref()
                .map(|note| format!("{}: {note}", s.url))
        })
        .collect();
    if !notes.is_empty() {
        state.ui.notice = Some(app::Notice {
            text: notes.join("; "),
            kind: app::NoticeKind::Info,
        });
    }
    let guard = TerminalGuard::enter(config.mouse).wrap_err("cannot set up the terminal")?;
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
    for server in &config.servers {
        tracing::info!(server = %server.url, client_id = %server.client_id, "watching");
    }
    let mut dashboard = Dashboard {
        state,
        clock,
        guard,
        executor: Executor {
            servers: links,
            replies: reply_tx,
            pipeline,
            notify: config.notify.mode,
            terminal: crate::notify::TerminalKind::from_env(),
        },
        conn_rx,
        reply_rx,
        endings,
        recording,
        input: TerminalInput {
            to_ask: Some(config.image_protocol),
            query: None,
            settled: None,
            renderer: None,
            stream: None,
            typed: VecDeque::new(),
        },
        held: VecDeque::new(),
        problems: VecDeque::new(),
        frames_drawn: 0,
        last_draw: None,
        user_acted: false,
        longest_update: Duration::ZERO,
        longest_draw: Duration::ZERO,
        alarm: Alarm::new(),
        drawn: ui::Memo::default(),
    };
    dashboard.resize_to_terminal();
    let exit = dashboard.run_until_exit().await;
    let Dashboard {
        guard,
        executor,
        frames_drawn,
        longest_update,
        longest_draw,
        ..
    } = dashboard;
    drop(guard);
    if let Some(task) = beside {
        task.abort();
    }
    let exit = exit?;
    tracing::info!(
        ?exit,
        frames_drawn,
        longest_update_ms = longest_update.as_secs_f64() * 1000.0,
        longest_draw_ms = longest_draw.as_secs_f64() * 1000.0,
        "dashboard closed"
    );
    for link in executor.servers {
        link.connection.close().await;
    }
    Ok(RunSummary {
        frames_drawn,
        longest_update,
        longest_draw,
    })
}

impl Dashboard {
    async fn run_until_exit(&mut self) -> Result<Exit> {
        loop {
            if let Some(exit) = self.draw_when_due()? {
                return Ok(exit);
            }
            self.settle_graphics_query();
            let exit = match self.next().await? {
                Woke::Socket(tagged) => self.apply_socket_event(tagged),
                // The socket events that came before anything else go first.
                Woke::Reply(index, reply) => self
                    .take_socket_events()
                    .or_else(|| self.apply_reply(index, reply)),
                Woke::Event(event) => self.take_socket_events().or_else(|| self.apply(event)),
                Woke::Nothing => continue,
                Woke::Exit(exit) => return Ok(exit),
            };
            if let Some(exit) = exit {
                return Ok(exit);
            }
        }
    }

    /// Feeds `event` to `update` now and runs what it asks for.
    fn apply(&mut self, event: Event) -> Option<Exit> {
        self.apply_at(self.clock.now(), event)
    }

    /// A socket event to `update` at the time it came (never before what was applied already),
    /// through the recording.
    fn apply_socket_event(&mut self, tagged: TaggedEvent) -> Option<Exit> {
        let TaggedEvent { tag, at, event } = tagged;
        // `--record` follows one server (the command line allows it with one only).
        if tag == 0
            && let Some(problem) = self.recording.take(&event, at)
        {
            self.problems.push_back(problem);
        }
        let now = self.clock.at(at).max(self.state.now);
        self.apply_at(now, Event::Conn(tag, event))
    }

    /// An HTTP reply to `update`, through the recording. An answer is written once the tracker
    /// has seen it: a look at the queue or history that changed nothing (most of those the
    /// timer asks for) teaches a replay nothing either.
    fn apply_reply(&mut self, index: usize, reply: Reply) -> Option<Exit> {
        let answer = (index == 0)
            .then(|| self.recording.answer_in(&reply))
            .flatten();
        let exit = self.apply(Event::Reply(index, reply));
        if let Some(answer) = answer
            && !self.state.servers[0].tracker.last_input_changed_nothing()
            && let Some(problem) = self.recording.take_answer(&answer)
        {
            self.problems.push_back(problem);
        }
        exit
    }

    /// Applies the socket events that have come: those held by the full-size view first. At
    /// most a channel's worth, so that a flood cannot hold the loop up.
    fn take_socket_events(&mut self) -> Option<Exit> {
        for _ in 0..SOCKET_CHANNEL {
            let tagged = self
                .held
                .pop_front()
                .or_else(|| self.conn_rx.try_recv().ok())?;
            if let Some(exit) = self.apply_socket_event(tagged) {
                return Some(exit);
            }
        }
        None
    }

    /// Applies what the preview worker has finished, if anything.
    fn take_previews(&mut self) -> Option<Exit> {
        let batch = self.executor.pipeline.as_ref()?.take();
        if batch.is_empty() {
            return None;
        }
        self.apply(Event::Preview(PreviewResults(batch)))
    }

    /// Feeds `event` to `update` at dashboard time `now` and runs what it asks for.
    fn apply_at(&mut self, now: f64, event: Event) -> Option<Exit> {
        let started = Instant::now();
        self.user_acted |= matches!(
            event,
            Event::Key(_) | Event::Click(_) | Event::Wheel { .. } | Event::Resize { .. }
        );
        if let Event::Resize { width, height } = event {
            self.fit_terminal(width, height);
        }
        let commands = app::update(&mut self.state, now, event);
        let mut full_size = None;
        for command in commands {
            match self.executor.run(command) {
                Some(ForTheLoop::Quit) => return Some(Exit::Quit),
                Some(ForTheLoop::ShowFullSize {
                    data,
                    caption,
                    follow,
                }) => full_size = Some((data, caption, follow)),
                Some(ForTheLoop::Write(bytes)) => {
                    let backend = self.guard.terminal.backend_mut();
                    if let Err(e) = backend.write_all(&bytes).and_then(|()| backend.flush()) {
                        tracing::warn!(error = %e, "cannot write a notification");
                    }
                }
                None => {}
            }
        }
        // The full-size view below waits for a key by design: it is not counted.
        self.longest_update = self.longest_update.max(started.elapsed());
        let (data, caption, follow) = full_size?;
        let problem = self.show_full_size(&data, &caption, follow.as_deref());
        // A resize while the view was up went unseen.
        self.resize_to_terminal();
        self.apply(Event::FullViewClosed { problem })
    }

    /// Draws when the state changed and the frame-rate cap allows.
    fn draw_when_due(&mut self) -> Result<Option<Exit>> {
        let too_soon = self
            .last_draw
            .is_some_and(|t| t.elapsed() < self.frame_interval());
        if !self.state.dirty || too_soon {
            return Ok(None);
        }
        if let Some(exit) = self.take_socket_events().or_else(|| self.take_previews()) {
            return Ok(Some(exit));
        }
        let started = Instant::now();
        self.guard
            .terminal
            .draw(|frame| ui::draw_with(&self.state, &mut self.drawn, frame))
            .wrap_err("cannot draw to the terminal")?;
        self.longest_draw = self.longest_draw.max(started.elapsed());
        self.last_draw = Some(Instant::now());
        self.user_acted = false;
        self.frames_drawn += 1;
        tracing::debug!(
            frame = self.frames_drawn,
            t = self.clock.now(),
            "frame drawn"
        );
        Ok(self.apply(Event::Drawn))
    }

    /// The least time between two frames now.
    fn frame_interval(&self) -> Duration {
        if self.user_acted {
            MIN_INPUT_FRAME_INTERVAL
        } else {
            MIN_FRAME_INTERVAL
        }
    }

    /// Starts the graphics query, and puts its outcome in place once it is known.
    fn settle_graphics_query(&mut self) {
        if let Some(choice) = self.input.to_ask.take() {
            match Renderer::detect(choice) {
                Detection::Known(known) => self.input.settled = Some(known),
                Detection::Asking(news) => self.input.query = Some(news),
            }
        }
        let Some(settled) = self.input.settled.take() else {
            return;
        };
        self.input.query = None;
        tracing::info!(
            protocol = settled.as_ref().map_or("none", Renderer::name),
            "previews"
        );
        if let (Some(pipeline), Some(settled)) = (&self.executor.pipeline, &settled) {
            pipeline.set_renderer(settled.clone());
        }
        self.input.renderer = settled;
        self.input.stream = Some(TerminalEvents::start());
        // A resize while the query ran went unseen.
        self.resize_to_terminal();
    }

    /// Sizes the terminal's viewport (fixed: see `TerminalGuard`) to a resize it reported.
    fn fit_terminal(&mut self, width: u16, height: u16) {
        let area = Rect::new(0, 0, width, height);
        let terminal = &mut self.guard.terminal;
        if terminal.get_frame().area() != area
            && let Err(error) = terminal.resize(area)
        {
            tracing::warn!(%error, "cannot resize the terminal's buffers");
        }
    }

    /// Tells the state and the viewport the terminal's size, as a resize event would.
    fn resize_to_terminal(&mut self) {
        if let Ok(size) = self.guard.terminal.size() {
            self.apply(Event::Resize {
                width: size.width,
                height: size.height,
            });
        }
    }

    /// Waits for the next thing to happen: what waited first, then whatever comes.
    async fn next(&mut self) -> Result<Woke> {
        if let Some(problem) = self.problems.pop_front() {
            return Ok(Woke::Event(Event::Problem(problem)));
        }
        if let Some(term_event) = self.input.typed.pop_front() {
            return Ok(self.translate(term_event));
        }
        if let Some(tagged) = self.held.pop_front() {
            return Ok(Woke::Socket(tagged));
        }
        // Until the rate cap allows the next frame, socket events and the preview worker's
        // results wait: they are taken just before it. A busy server then wakes the loop once a
        // frame, at the frame's time, and not for each event.
        let now = Instant::now();
        let next_frame = self
            .last_draw
            .map(|t| t + self.frame_interval())
            .filter(|at| *at > now);
        let timer_at = [
            self.state.wakeup_at().map(|t| self.clock.instant_at(t)),
            self.state.previews.wake_at,
        ]
        .into_iter()
        .flatten()
        .min();
        self.alarm.set(match (next_frame, timer_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        });
        let news_waits = next_frame.is_some();
        let arrived = tokio::select! {
            term_event = next_input(self.input.stream.as_mut()) => Arrived::Terminal(term_event),
            Some(tagged) = self.conn_rx.recv(), if !news_waits => Arrived::Socket(tagged),
            Some((index, reply)) = self.reply_rx.recv() => Arrived::Reply(index, reply),
            () = previews_ready(self.executor.pipeline.as_ref()), if !news_waits => {
                Arrived::Previews
            }
            news = next_query_news(self.input.query.as_mut()) => Arrived::Query(news),
            () = self.alarm.ring() => Arrived::Timer(timer_at),
            reason = self.endings.next() => Arrived::Ending(reason),
        };
        self.woke_by(arrived)
    }

    /// What the loop makes of what arrived.
    fn woke_by(&mut self, arrived: Arrived) -> Result<Woke> {
        Ok(match arrived {
            Arrived::Terminal(Some(Ok(term_event))) => self.translate(term_event),
            Arrived::Terminal(Some(Err(error))) => {
                return Err(error).wrap_err("cannot read from the terminal");
            }
            Arrived::Terminal(None) => Woke::Exit(Exit::InputClosed),
            Arrived::Socket(tagged) => Woke::Socket(tagged),
            Arrived::Reply(index, reply) => Woke::Reply(index, reply),
            Arrived::Previews => match &self.executor.pipeline {
                Some(pipeline) => Woke::Event(Event::Preview(PreviewResults(pipeline.take()))),
                None => Woke::Nothing,
            },
            Arrived::Query(news) => {
                match news {
                    Some(QueryNews::Typed(bytes)) => {
                        self.input.typed.extend(term::typed_events(&bytes));
                    }
                    Some(QueryNews::Settled(settled)) => self.input.settled = Some(Some(settled)),
                    // The reader is gone without a word: no previews, but the keys work.
                    None => self.input.settled = Some(None),
                }
                Woke::Nothing
            }
            Arrived::Timer(timer_at) => {
                if timer_at.is_some_and(|at| at <= Instant::now()) {
                    Woke::Event(Event::Tick)
                } else {
                    Woke::Nothing
                }
            }
            Arrived::Ending(reason) => Woke::Exit(Exit::Signal(reason)),
        })
    }

    /// Maps a terminal event to a dashboard event (the mouse through the layout's hit test).
    fn translate(&self, event: TermEvent) -> Woke {
        let state = &self.state;
        let event = match event {
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
        };
        event.map_or(Woke::Nothing, Woke::Event)
    }

    /// Shows an image at the terminal's full size until a key is pressed, following newer
    /// previews of `follow`'s prompt meanwhile. The problem, when it could not.
    fn show_full_size(
        &mut self,
        data: &[u8],
        caption: &str,
        follow: Option<&str>,
    ) -> Option<String> {
        let had_input = self.input.stream.take().is_some();
        let decode_full = |data: &[u8]| {
            crate::preview::decode(
                data,
                ImageFormat::Other,
                DecodeLimits::default(),
                FULL_VIEW_MAX_SIDE,
            )
        };
        // The socket's events wait while the view is up; the followed prompt's newest preview
        // among them is shown as it comes.
        let conn_rx = &mut self.conn_rx;
        let held = &mut self.held;
        let shown_server = self.state.current;
        let mut newer = || {
            let mut newest = None;
            while let Ok(tagged) = conn_rx.try_recv() {
                if tagged.tag == shown_server
                    && let Some(id) = follow
                    && let Some(bytes) = app::preview::preview_of(&tagged.event, id)
                {
                    newest = Some(bytes);
                }
                held.push_back(tagged);
            }
            newest.and_then(|bytes| decode_full(&bytes).ok().map(|d| d.image))
        };
        let shown = match decode_full(data) {
            Ok(decoded) => show_full_size(
                &mut self.guard.terminal,
                &decoded.image,
                caption,
                self.input.renderer.as_ref(),
                &mut newer,
            )
            .map_err(|e| e.to_string()),
            Err(problem) => Err(problem.to_string()),
        };
        if had_input {
            self.input.stream = Some(TerminalEvents::start());
        }
        shown.err().map(|error| format!("full-size view: {error}"))
    }
}

/// crossterm's event stream, read on a task of its own: the stream checks the terminal each time
/// it is polled, and the loop wakes for every socket event, so polled there it would cost a
/// system call per event. The task is polled only when the terminal has something.
struct TerminalEvents {
    events: mpsc::Receiver<std::io::Result<TermEvent>>,
    task: tokio::task::JoinHandle<()>,
}

impl TerminalEvents {
    fn start() -> Self {
        let (sender, events) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            let mut stream = EventStream::new();
            while let Some(event) = stream.next().await {
                if sender.send(event).await.is_err() {
                    return;
                }
            }
        });
        Self { events, task }
    }
}

impl Drop for TerminalEvents {
    /// Stops reading the terminal (the full-size view reads it itself meanwhile).
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next terminal event, once crossterm reads the terminal; never before. `None` when the
/// terminal's input ended.
async fn next_input(input: Option<&mut TerminalEvents>) -> Option<std::io::Result<TermEvent>> {
    match input {
        Some(input) => input.events.recv().await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_alarm_rings_at_its_time_follows_a_move_and_never_rings_unset() {
        let mut alarm = Alarm::new();
        let quiet = tokio::time::timeout(Duration::from_millis(30), alarm.ring()).await;
        assert!(quiet.is_err(), "an alarm with no time rang");

        let started = Instant::now();
        alarm.set(Some(started + Duration::from_secs(3600)));
        // Moved earlier: the old time no longer counts.
        alarm.set(Some(started + Duration::from_millis(20)));
        tokio::time::timeout(Duration::from_secs(5), alarm.ring())
            .await
            .expect("the alarm did not ring at its new time");
        assert!(started.elapsed() >= Duration::from_millis(20));

        alarm.set(None);
        let quiet = tokio::time::timeout(Duration::from_millis(30), alarm.ring()).await;
        assert!(quiet.is_err(), "an alarm taken off still rang");
    }
}
