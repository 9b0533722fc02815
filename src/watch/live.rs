//! Live `watch`: one connection to a server, its events through a [`Watcher`], the tracker's
//! fetches run on tasks whose replies come back into the same loop.

use std::future::Future;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::comfy::connection::{ConnEvent, Connection, ConnectionConfig, new_client_id};
use crate::comfy::http::ComfyClient;
use crate::comfy::server_url::ServerUrl;
use crate::comfy::transcript::Recorder;
use crate::session::{FetchReply, run_fetch, sleep_until};
use crate::tracker::{TrackerCommand, TrackerInput};

use super::{LineFormat, Step, Watcher, record_answer};

/// What `watch` is asked to do.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub format: LineFormat,
    /// Connection settings; [`ConnectionConfig::new`] gives the defaults.
    pub connection: ConnectionConfig,
    /// Finished prompts kept in memory (`--history`).
    pub finished_kept: usize,
}

impl WatchOptions {
    /// Defaults for `server`, with a fresh client id.
    pub fn new(server: ServerUrl, format: LineFormat) -> Self {
        Self {
            format,
            connection: ConnectionConfig::new(server, new_client_id()),
            finished_kept: crate::tracker::FINISHED_KEPT,
        }
    }
}

/// Follows the server until Ctrl-C (or SIGTERM / SIGHUP), printing to stdout and recording to
/// `record` when given.
pub async fn run(
    server: ServerUrl,
    client_id: String,
    format: LineFormat,
    record: Option<&Path>,
    finished_kept: usize,
) -> Result<()> {
    let recorder = crate::session::open_recording(record)?;
    if let Some(path) = record {
        // On stderr, so stdout stays one line per event.
        eprintln!(
            "comfytop: appending every frame and HTTP answer to {}",
            path.display()
        );
    }
    let options = WatchOptions {
        finished_kept,
        connection: ConnectionConfig::new(server, client_id),
        format,
    };
    match watch(options, recorder, io::stdout(), shutdown_signal()).await {
        // Whoever read our output went away (`| head`): a normal end.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other,
    }
}

/// One server for [`run_several`]: what to call it, where it is, our client id there.
pub struct NamedServer {
    pub name: String,
    pub url: ServerUrl,
    pub client_id: String,
}

/// Follows several servers at once until Ctrl-C: each has its own connection and tracker, and
/// each line is marked with the server's name (text: `name │ line`, JSON: a `"server_name"`
/// field first). One that is down or slow holds up none of the others.
pub async fn run_several(
    servers: Vec<NamedServer>,
    format: LineFormat,
    finished_kept: usize,
) -> Result<()> {
    let width = servers
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let watches = servers.into_iter().map(|server| {
        let options = WatchOptions {
            finished_kept,
            connection: ConnectionConfig::new(server.url, server.client_id),
            format,
        };
        let out = NamedLines::new(&server.name, width, format);
        watch(options, None, out, shutdown_signal())
    });
    for result in futures_util::future::join_all(watches).await {
        match result {
            Err(e) if is_broken_pipe(&e) => return Ok(()),
            other => other?,
        }
    }
    Ok(())
}

/// A writer that puts the server's name on every line it passes to stdout, whole lines at a
/// time, so the lines of several servers never mix.
struct NamedLines {
    /// Text before each line (human), or the field to add (JSON).
    prefix: String,
    format: LineFormat,
    partial: Vec<u8>,
}

impl NamedLines {
    fn new(name: &str, width: usize, format: LineFormat) -> Self {
        let name = crate::text::one_line(name);
        let prefix = match format {
            LineFormat::Human => format!("{name:<width$} │ "),
            LineFormat::Json => format!(
                "\"server_name\":{}",
                crate::text::terminal_safe_json(&serde_json::Value::from(name.as_ref()))
            ),
        };
        Self {
            prefix,
            format,
            partial: Vec::new(),
        }
    }

    fn named(&self, line: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + line.len() + 2);
        match (self.format, line.strip_prefix(b"{")) {
            (LineFormat::Json, Some(rest)) => {
                out.push(b'{');
                out.extend_from_slice(self.prefix.as_bytes());
                if !rest.starts_with(b"}") {
                    out.push(b',');
                }
                out.extend_from_slice(rest);
            }
            (LineFormat::Json, None) => out.extend_from_slice(line),
            (LineFormat::Human, _) => {
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend_from_slice(line);
            }
        }
        out.push(b'\n');
        out
    }
}

impl Write for NamedLines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let named = self.named(&line[..end]);
            // One write of the whole line under stdout's lock: lines of servers never mix.
            io::stdout().lock().write_all(&named)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// One reply from a fetch task.
enum Reply {
    Done(TrackerInput),
    Failed(TrackerCommand, String),
    /// Whether the comfytop bridge relays every prompt to this socket (asked on each connect).
    Bridge(crate::bridge::BridgeLink),
}

/// The watch loop: prints every event's lines to `out` (flushed per event) and records frames,
/// until `shutdown` completes or the connection task ends; then closes the socket.
pub async fn watch<W: Write>(
    options: WatchOptions,
    mut recorder: Option<Recorder>,
    mut out: W,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let server = options.connection.server.clone();
    let client = ComfyClient::new(server.clone())
        .wrap_err_with(|| format!("cannot set up HTTP for {server}"))?;
    let client_id = options.connection.client_id.clone();
    let mut watcher = Watcher::new(&options.connection.client_id, options.format)
        .keeping_finished(options.finished_kept);
    let (events_tx, mut events) = mpsc::channel(256);
    let connection = Connection::spawn(options.connection, events_tx);
    let (replies_tx, mut replies) = mpsc::channel(64);
    let started = Instant::now();
    // When the current socket connected: recorded HTTP answers share the frames' clock.
    let mut socket_started = started;
    tokio::pin!(shutdown);

    let result: Result<()> = loop {
        let now = || started.elapsed().as_secs_f64();
        let timer_at = watcher
            .tracker()
            .timer_due_at()
            .map(|at| started + Duration::from_secs_f64(at.max(0.0)));
        let step = tokio::select! {
            () = &mut shutdown => break Ok(()),
            // A fetch that failed for good is asked again in a while, also from an idle server;
            // the queue is looked at now and then, which shows a socket gone deaf.
            () = sleep_until(timer_at) => {
                let step = watcher.on_timer(now());
                if watcher.take_reopen() {
                    connection.reopen();
                }
                step
            }
            event = events.recv() => {
                let Some(event) = event else { break Ok(()) };
                if let ConnEvent::Connected { .. } = &event {
                    socket_started = Instant::now();
                    // A registration with the bridge ends with the socket it was made for.
                    let (client, client_id) = (client.clone(), client_id.clone());
                    let replies = replies_tx.clone();
                    tokio::spawn(async move {
                        let joined = crate::bridge::join(&client, &client_id).await;
                        let _ = replies.send(Reply::Bridge(joined)).await;
                    });
                }
                if let (Some(recorder), ConnEvent::Frame(frame)) = (&mut recorder, &event)
                    && let Err(e) = recorder.record(frame.t, &frame.raw)
                {
                    break Err(e).wrap_err("recording failed; stopped so no frame goes missing");
                }
                watcher.on_connection(now(), event, &server)
            }
            Some(reply) = replies.recv() => match reply {
                Reply::Done(input) => {
                    // Written once the tracker has seen it: a look at the queue or history that
                    // changed nothing (most of those the timer asks for) teaches a replay
                    // nothing either.
                    let answer = recorder.is_some().then(|| input.clone());
                    let step = watcher.on_reply(now(), input);
                    if let (Some(recorder), Some(answer)) = (&mut recorder, answer)
                        && !watcher.tracker().last_input_changed_nothing()
                        && let Err(e) = record_answer(
                            recorder,
                            socket_started.elapsed().as_secs_f64(),
                            &answer,
                        )
                    {
                        break Err(e)
                            .wrap_err("recording failed; stopped so no answer goes missing");
                    }
                    step
                }
                Reply::Failed(command, error) => watcher.on_fetch_failed(now(), command, &error),
                Reply::Bridge(link) => watcher.on_bridge(&link, &server),
            },
        };
        let Step { lines, commands } = step;
        if let Err(e) = print(&mut out, &lines) {
            break Err(e.into());
        }
        for command in commands {
            spawn_fetch(&client, command, replies_tx.clone());
        }
    };
    connection.close().await;
    result
}

fn print(out: &mut impl Write, lines: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Runs one HTTP fetch on its own task; the reply comes back through `replies`.
fn spawn_fetch(client: &ComfyClient, command: TrackerCommand, replies: mpsc::Sender<Reply>) {
    let client = client.clone();
    tokio::spawn(async move {
        let reply = match run_fetch(&client, command.clone()).await {
            FetchReply { error: None, input } => Reply::Done(input),
            FetchReply { error: Some(e), .. } => Reply::Failed(command, e.to_string()),
        };
        // The loop is gone only when watch is over; the reply is not needed then.
        let _ = replies.send(reply).await;
    });
}

/// Completes on Ctrl-C, and on SIGTERM or SIGHUP (an ssh session that drops) on Unix.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn next(signal: &mut Option<Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hangup = signal(SignalKind::hangup()).ok();
        tokio::select! {
            () = ctrl_c() => {}
            () = next(&mut term) => {}
            () = next(&mut hangup) => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c().await;
}

async fn ctrl_c() {
    // Without a handler the default action (ending the process) still applies.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn is_broken_pipe(report: &color_eyre::Report) -> bool {
    report
        .chain()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
