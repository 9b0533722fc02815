//! The dashboard's event loop: terminal input, the WebSocket connection and HTTP replies merged
//! into one stream of [`Event`]s for [`app::update`]; the [`Command`]s it returns run on tokio
//! tasks whose replies come back as events. The screen is drawn only when the state says it
//! changed, at most [`MAX_FPS`] times a second, and timers run only when the state asks for one:
//! an idle dashboard sleeps.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use color_eyre::eyre::{Context as _, Result, eyre};
use crossterm::event::{
    Event as TermEvent, EventStream, KeyEventKind, MouseButton, MouseEventKind,
};
use futures_util::StreamExt as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::app::{self, ClickTarget, Command, Event, Fetched, State};
use crate::comfy::connection::{Connection, ConnectionConfig, new_client_id};
use crate::comfy::http::ComfyClient;
use crate::comfy::server_url::ServerUrl;
use crate::session;
use crate::term::TerminalGuard;
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
            Command::Quit => {}
        }
    }
}

/// Maps a terminal event to a dashboard event (the mouse through the layout's hit test).
fn translate(event: TermEvent, state: &State) -> Option<Event> {
    match event {
        // Some terminals report releases too; only presses and repeats act.
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => Some(Event::Key(key)),
        TermEvent::Key(_) | TermEvent::Paste(_) => None,
        TermEvent::Mouse(mouse) => {
            let target = ui::hit_test(state, mouse.column, mouse.row);
            let panel = target.map(|t| match t {
                ClickTarget::Panel(p) | ClickTarget::Row { panel: p, .. } => p,
            });
            match mouse.kind {
                MouseEventKind::Down(MouseButton::Left) => target.map(Event::Click),
                MouseEventKind::ScrollDown => Some(Event::Wheel { panel, down: true }),
                MouseEventKind::ScrollUp => Some(Event::Wheel { panel, down: false }),
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
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(eyre!(
            "the dashboard needs a terminal; for plain output use `comfytop watch {}`",
            config.server
        ));
    }
    let client_id = new_client_id();
    let client =
        ComfyClient::new(config.server.clone()).wrap_err("cannot set up the HTTP client")?;
    let (conn_tx, mut conn_rx) = mpsc::channel(1024);
    let connection = Connection::spawn(
        ConnectionConfig::new(config.server.clone(), client_id.clone()),
        conn_tx,
    );
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel();
    let executor = Executor {
        client,
        replies: reply_tx,
    };
    let mut sigterm = signal(SignalKind::terminate()).wrap_err("cannot watch SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).wrap_err("cannot watch SIGHUP")?;
    let mut sigint = signal(SignalKind::interrupt()).wrap_err("cannot watch SIGINT")?;

    let clock = Clock::start();
    let mut state = State::new(
        config.server.redacted(),
        &client_id,
        clock.epoch_ms_at_start,
    );
    let mut guard = TerminalGuard::enter(config.mouse).wrap_err("cannot set up the terminal")?;
    tracing::info!(server = %config.server, %client_id, "dashboard started");
    if let Ok(size) = guard.terminal.size() {
        app::update(
            &mut state,
            clock.now(),
            Event::Resize {
                width: size.width,
                height: size.height,
            },
        );
    }

    let mut input = EventStream::new();
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
        // Wake for a frame held back by the rate cap, or for a timer the state asked for.
        let draw_at = state
            .dirty
            .then(|| last_draw.map(|t| t + MIN_FRAME_INTERVAL))
            .flatten();
        let timer_at = state.wakeup_at().map(|t| clock.instant_at(t));
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
        let event = tokio::select! {
            term_event = input.next() => match term_event {
                Some(Ok(term_event)) => translate(term_event, &state),
                Some(Err(error)) => {
                    return Err(error).wrap_err("cannot read from the terminal");
                }
                None => break Exit::InputClosed,
            },
            Some(conn_event) = conn_rx.recv() => Some(Event::Conn(conn_event)),
            Some(reply) = reply_rx.recv() => Some(Event::Fetched(reply)),
            () = sleep => timer_at
                .is_some_and(|at| at <= Instant::now())
                .then_some(Event::Tick),
            _ = sigterm.recv() => break Exit::Signal("SIGTERM"),
            _ = sighup.recv() => break Exit::Signal("SIGHUP"),
            _ = sigint.recv() => break Exit::Signal("SIGINT"),
        };
        let Some(event) = event else {
            continue;
        };
        for command in app::update(&mut state, clock.now(), event) {
            executor.run(command);
        }
        if state.quitting {
            break Exit::Quit;
        }
    };
    drop(guard);
    tracing::info!(?exit, frames_drawn, "dashboard closed");
    connection.close().await;
    Ok(RunSummary { frames_drawn })
}
