//! The WebSocket task: connect, negotiate feature flags, pass every frame on, notice dead
//! tunnels, and reconnect with backoff under the same clientId.
//!
//! The backoff starts over as soon as a socket is open and the server's first `status` has
//! arrived, and stays short (capped at [`ConnectionConfig::backoff_max_early`]) for the first
//! [`ConnectionConfig::early_outage`] of an outage: ComfyUI restarts in seconds, and a user who
//! just saw it healthy should not wait half a minute after it is back. [`Connection::retry_now`]
//! cuts a wait short.
//!
//! The task never fetches anything over HTTP: whoever consumes [`ConnEvent::Connected`] decides
//! what to refresh.

use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::{ProtocolError, TlsError};
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::http::looks_like_html;
use super::protocol::{FeatureFlags, ServerMessage, client_feature_flags};
use super::server_url::ServerUrl;
use super::{Decoded, RawFrame};

/// Everything the connection task reports, in order.
///
/// One socket's life reads `Connecting`, `Connected`, its `Frame`s, `Disconnected`, then
/// `Reconnecting` before the next `Connecting`. A failed attempt skips `Connected` and the
/// frames. The handshake frames (first `status`, `feature_flags`) are held until `Connected`
/// and follow it; only a socket that drops during the handshake yields frames without one.
/// While an open socket brings nothing (not even a pong), `Quiet` comes now and then, and
/// `Resumed` once data flows again.
// Frames are nearly every event, so boxing them would add an allocation and save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// A connection attempt starts: 1 for the first since the last healthy connection.
    Connecting { attempt: u32 },
    /// The socket is open and the handshake is done: `sid` from the first `status`, the server's
    /// feature flags from its reply to ours (None if it did not answer in time).
    Connected {
        sid: Option<String>,
        features: Option<FeatureFlags>,
    },
    /// One data frame, in arrival order (including the handshake frames).
    Frame(ReceivedFrame),
    /// The socket is gone (and fully closed), and why, in words a user can act on.
    Disconnected { reason: String },
    /// The next attempt comes after `delay` (or sooner, see [`Connection::retry_now`]).
    Reconnecting { attempt: u32, delay: Duration },
    /// The open socket has brought nothing, not even a pong, for `silent_for`: the server or
    /// the tunnel may be stalled. Repeated while it lasts; past the ping timeout the socket is
    /// dropped.
    Quiet { silent_for: Duration },
    /// Data arrives again after `Quiet`.
    Resumed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFrame {
    /// Seconds since this socket connected (the transcript clock).
    pub t: f64,
    pub raw: RawFrame,
    pub decoded: Decoded,
}

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub server: ServerUrl,
    /// One per process (see [`new_client_id`]); never another client's id.
    pub client_id: String,
    /// Interval of WebSocket pings. With nothing received for `ping_interval + ping_timeout`
    /// the socket counts as dead and is dropped.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// The first wait after a failure; each further failure doubles it.
    pub backoff_initial: Duration,
    /// The longest wait for the first `early_outage` of an outage.
    pub backoff_max_early: Duration,
    /// How long an outage counts as fresh (the server was healthy a moment ago).
    pub early_outage: Duration,
    /// The longest wait once the outage is older.
    pub backoff_max: Duration,
    /// Silence after which `Quiet` is reported, and how often again while it lasts.
    pub quiet_after: Duration,
    pub quiet_every: Duration,
    /// Limit on TCP + TLS + WebSocket handshake.
    pub connect_timeout: Duration,
    /// How long to wait for the server's feature flags before reporting `Connected` without.
    pub handshake_wait: Duration,
    /// How long a close handshake may take before the socket is dropped anyway.
    pub close_timeout: Duration,
}

impl ConnectionConfig {
    /// The defaults: pings every 10 s, quiet after 15 s of silence, dead after 30 s; backoff
    /// from 0.5 s, at most 5 s in the first minute of an outage, then at most 30 s.
    pub fn new(server: ServerUrl, client_id: impl Into<String>) -> Self {
        Self {
            server,
            client_id: client_id.into(),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(20),
            backoff_initial: Duration::from_millis(500),
            backoff_max_early: Duration::from_secs(5),
            early_outage: Duration::from_secs(60),
            backoff_max: Duration::from_secs(30),
            // A pong normally comes within a second of each ping, so silence stays near 10 s.
            quiet_after: Duration::from_secs(15),
            quiet_every: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            handshake_wait: Duration::from_secs(1),
            close_timeout: Duration::from_secs(1),
        }
    }
}

/// A fresh clientId (`comfytop-` and a uuid v4). Create one per process and keep it across
/// reconnects.
pub fn new_client_id() -> String {
    format!("{COMFYTOP_CLIENT_PREFIX}{}", uuid::Uuid::new_v4())
}

/// How every comfytop's client id begins (the server takes any string), so one comfytop knows
/// the prompts another queued.
pub const COMFYTOP_CLIENT_PREFIX: &str = "comfytop-";

/// Handle to the running task. Dropping it does not stop the task (it ends when the event
/// receiver is dropped); call [`Connection::close`] to close the socket properly.
pub struct Connection {
    shutdown: watch::Sender<bool>,
    /// Counts retry requests; the task compares it with the count it has seen.
    retry: watch::Sender<u64>,
    /// Counts reopen requests, the same way.
    reopen: watch::Sender<u64>,
    task: JoinHandle<()>,
    close_timeout: Duration,
}

impl Connection {
    /// Starts the task on the current tokio runtime.
    pub fn spawn(config: ConnectionConfig, events: mpsc::Sender<ConnEvent>) -> Self {
        Self::start(config, Events::Plain(events))
    }

    /// Like [`Connection::spawn`], for a client of several servers whose events share one
    /// channel: each is sent with `tag` (the server's index) and the time it came, for a
    /// receiver that may take its events later than they came.
    pub fn spawn_tagged(
        config: ConnectionConfig,
        tag: usize,
        events: mpsc::Sender<TaggedEvent>,
    ) -> Self {
        Self::start(config, Events::Tagged(tag, events))
    }

    fn start(config: ConnectionConfig, events: Events) -> Self {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (retry, retry_rx) = watch::channel(0);
        let (reopen, reopen_rx) = watch::channel(0);
        let close_timeout = config.close_timeout;
        let task = Task {
            server: config.server.redacted(),
            config,
            events,
            shutdown: Shutdown(shutdown_rx),
            retry: retry_rx,
            reopen: reopen_rx,
        };
        Self {
            shutdown,
            retry,
            reopen,
            task: tokio::spawn(task.run()),
            close_timeout,
        }
    }

    /// Ends the wait before the next attempt now. Asked for during an attempt, the wait after
    /// it is skipped if the attempt fails; asked for while connected, it is forgotten.
    pub fn retry_now(&self) {
        self.retry
            .send_modify(|asked| *asked = asked.wrapping_add(1));
    }

    /// Closes the open socket properly and opens another at once (with the same client id).
    /// For a socket the server stopped sending to: ComfyUI forgets a client id when any socket
    /// under it closes, so the close of an earlier socket it only noticed late silences the
    /// one open now, whose pongs still come. Asked for while not connected, it is forgotten.
    pub fn reopen(&self) {
        self.reopen
            .send_modify(|asked| *asked = asked.wrapping_add(1));
    }

    /// Sends a Close frame, waits briefly for the server's answer, and ends the task.
    pub async fn close(self) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        let limit = self.close_timeout + Duration::from_millis(500);
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The task is over: close was asked for, or nobody listens to the events any more.
struct Stopped;

struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once close is asked for; never if the handle was dropped without asking.
    async fn requested(&mut self) {
        if self.0.wait_for(|&stop| stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    async fn race<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Stopped> {
        tokio::select! {
            biased;
            () = self.requested() => Err(Stopped),
            value = work => Ok(value),
        }
    }
}

/// How one socket ended.
enum End {
    /// The stream failed or ended: nothing left to close.
    Lost(String),
    /// The server sent a Close frame; our answer goes out while draining.
    ClosedByServer(String),
    /// Silence past the ping timeout.
    Dead(String),
    /// [`Connection::reopen`] was asked for.
    Reopen(String),
    /// Close was asked for, or the receiver is gone.
    Stop,
}

/// Where the task's events go.
enum Events {
    Plain(mpsc::Sender<ConnEvent>),
    Tagged(usize, mpsc::Sender<TaggedEvent>),
}

/// An event of [`Connection::spawn_tagged`].
#[derive(Debug)]
pub struct TaggedEvent {
    /// The tag the connection was given.
    pub tag: usize,
    /// When the connection passed it on: for a frame, as soon as it was read (the handshake's
    /// frames once the handshake is done).
    pub at: std::time::Instant,
    pub event: ConnEvent,
}

struct Task {
    config: ConnectionConfig,
    /// The server as people should read it, for messages.
    server: String,
    events: Events,
    shutdown: Shutdown,
    retry: watch::Receiver<u64>,
    reopen: watch::Receiver<u64>,
}

impl Task {
    async fn run(mut self) {
        let _ = self.reconnect_forever().await;
    }

    async fn reconnect_forever(&mut self) -> Result<(), Stopped> {
        let mut backoff = Backoff::new(&self.config);
        let mut attempt = 1;
        loop {
            self.emit(ConnEvent::Connecting { attempt }).await?;
            let connected = self
                .shutdown
                .race(connect(&self.config, &self.server))
                .await?;
            let reason = match connected {
                Ok(socket) => {
                    let mut healthy = false;
                    let reason = self.session(socket, Instant::now(), &mut healthy).await?;
                    if healthy {
                        backoff.reset();
                        attempt = 0;
                        // A retry asked for while connected is about an outage that is over.
                        self.retry.borrow_and_update();
                    }
                    reason
                }
                Err(reason) => reason,
            };
            self.emit(ConnEvent::Disconnected { reason }).await?;
            attempt += 1;
            let delay = backoff.next_delay(Instant::now());
            self.emit(ConnEvent::Reconnecting { attempt, delay })
                .await?;
            let retry = &mut self.retry;
            let asked = async {
                // The handle is gone: nobody can ask any more, so only the timer ends the wait.
                if retry.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            self.shutdown
                .race(async {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = asked => {}
                    }
                })
                .await?;
        }
    }

    /// Runs one open socket to its end and closes it completely; returns why it ended.
    /// `healthy` turns true once the server's first `status` arrived on it.
    async fn session(
        &mut self,
        mut socket: Socket,
        opened: Instant,
        healthy: &mut bool,
    ) -> Result<String, Stopped> {
        let mut handshake = Some(Handshake::new());
        let end = self
            .pump(&mut socket, opened, &mut handshake, healthy)
            .await;
        // The socket must be gone before anything else happens: a new socket with the same id
        // overlapping the old one goes deaf.
        let reason = match end {
            End::Lost(reason) => reason,
            End::ClosedByServer(reason) | End::Dead(reason) | End::Reopen(reason) => {
                close_socket(&mut socket, self.config.close_timeout).await;
                reason
            }
            End::Stop => {
                close_socket(&mut socket, self.config.close_timeout).await;
                return Err(Stopped);
            }
        };
        drop(socket);
        if let Some(pending) = handshake {
            for frame in pending.held {
                self.emit(ConnEvent::Frame(frame)).await?;
            }
        }
        Ok(reason)
    }

    async fn pump(
        &mut self,
        socket: &mut Socket,
        opened: Instant,
        handshake: &mut Option<Handshake>,
        healthy: &mut bool,
    ) -> End {
        let send_limit = self.config.ping_timeout;
        let flags = Message::text(client_feature_flags());
        match tokio::time::timeout(send_limit, socket.send(flags)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return End::Lost(self.lost(&e)),
            Err(_) => return End::Dead(self.dead()),
        }

        let handshake_deadline = opened + self.config.handshake_wait;
        let silence_limit = self.config.ping_interval + self.config.ping_timeout;
        let mut last_received = Instant::now();
        let mut ping = tokio::time::interval_at(
            opened + self.config.ping_interval,
            self.config.ping_interval,
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Re-armed lazily: frames only move `last_received`, the timer catches up when it fires.
        let silence = tokio::time::sleep_until(last_received + silence_limit);
        tokio::pin!(silence);
        // Same lazy re-arming; once silence is reported it fires every `quiet_every`.
        let quiet = tokio::time::sleep_until(last_received + self.config.quiet_after);
        tokio::pin!(quiet);
        let mut reported_quiet = false;
        // Only what is asked for while this socket is open counts.
        self.reopen.borrow_and_update();

        loop {
            tokio::select! {
                biased;
                () = self.shutdown.requested() => return End::Stop,
                Ok(()) = self.reopen.changed() => {
                    return End::Reopen(format!(
                        "{} stopped sending to this client while its socket stayed open (it forgets \
                         a client id when an earlier socket closes late); reconnecting",
                        self.server
                    ));
                }
                () = tokio::time::sleep_until(handshake_deadline), if handshake.is_some() => {
                    if self.finish_handshake(handshake).await.is_err() {
                        return End::Stop;
                    }
                }
                message = socket.next() => {
                    let raw = match message {
                        None => return End::Lost(format!("{} closed the connection", self.server)),
                        Some(Err(e)) => return End::Lost(self.lost(&e)),
                        Some(Ok(Message::Close(frame))) => {
                            return End::ClosedByServer(self.closed_by_server(frame.as_ref()));
                        }
                        Some(Ok(Message::Text(text))) => RawFrame::Text(text.as_str().to_owned()),
                        Some(Ok(Message::Binary(bytes))) => RawFrame::Binary(bytes),
                        // Pings are answered by the library; pongs only prove the link lives.
                        Some(Ok(_)) => {
                            last_received = Instant::now();
                            if std::mem::take(&mut reported_quiet)
                                && self.emit(ConnEvent::Resumed).await.is_err()
                            {
                                return End::Stop;
                            }
                            continue;
                        }
                    };
                    if std::mem::take(&mut reported_quiet)
                        && self.emit(ConnEvent::Resumed).await.is_err()
                    {
                        return End::Stop;
                    }
                    let frame = ReceivedFrame {
                        t: opened.elapsed().as_secs_f64(),
                        decoded: raw.decode(),
                        raw,
                    };
                    *healthy |= matches!(frame.decoded, Decoded::Message(ServerMessage::Status(_)));
                    let delivered = match handshake {
                        Some(pending) => {
                            pending.observe(frame);
                            if pending.is_complete() {
                                self.finish_handshake(handshake).await
                            } else {
                                Ok(())
                            }
                        }
                        None => self.emit(ConnEvent::Frame(frame)).await,
                    };
                    if delivered.is_err() {
                        return End::Stop;
                    }
                    // Taken after delivery: time spent waiting on a slow receiver is not silence.
                    last_received = Instant::now();
                }
                _ = ping.tick() => {
                    let ping = Message::Ping(bytes::Bytes::new());
                    match tokio::time::timeout(send_limit, socket.send(ping)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return End::Lost(self.lost(&e)),
                        Err(_) => return End::Dead(self.dead()),
                    }
                }
                () = &mut silence => {
                    let due = last_received + silence_limit;
                    if due > Instant::now() {
                        silence.as_mut().reset(due);
                    } else {
                        return End::Dead(self.dead());
                    }
                }
                () = &mut quiet => {
                    let due = last_received + self.config.quiet_after;
                    let now = Instant::now();
                    if due > now {
                        quiet.as_mut().reset(due);
                        continue;
                    }
                    reported_quiet = true;
                    let silent_for = now - last_received;
                    if self.emit(ConnEvent::Quiet { silent_for }).await.is_err() {
                        return End::Stop;
                    }
                    quiet.as_mut().reset(now + self.config.quiet_every);
                }
            }
        }
    }

    /// Reports `Connected`, then the frames held during the handshake.
    async fn finish_handshake(&mut self, handshake: &mut Option<Handshake>) -> Result<(), Stopped> {
        let Some(done) = handshake.take() else {
            return Ok(());
        };
        self.emit(ConnEvent::Connected {
            sid: done.sid,
            features: done.features,
        })
        .await?;
        for frame in done.held {
            self.emit(ConnEvent::Frame(frame)).await?;
        }
        Ok(())
    }

    /// Sends one event; waits while the receiver is behind, unless close is asked for.
    async fn emit(&mut self, event: ConnEvent) -> Result<(), Stopped> {
        let sent = match &self.events {
            Events::Plain(events) => self.shutdown.race(events.send(event)).await?.is_ok(),
            Events::Tagged(tag, events) => {
                let tagged = TaggedEvent {
                    tag: *tag,
                    at: std::time::Instant::now(),
                    event,
                };
                self.shutdown.race(events.send(tagged)).await?.is_ok()
            }
        };
        if sent { Ok(()) } else { Err(Stopped) }
    }

    fn lost(&self, error: &WsError) -> String {
        match error {
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                format!("{} closed the connection", self.server)
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => format!(
                "the connection to {} was cut (no WebSocket close); ComfyUI may have stopped",
                self.server
            ),
            other => format!("the connection to {} was lost ({other})", self.server),
        }
    }

    fn dead(&self) -> String {
        let silence = self.config.ping_interval + self.config.ping_timeout;
        format!(
            "no answer from {} for {} s (pings unanswered): the connection or ssh tunnel seems dead",
            self.server,
            silence.as_secs_f32()
        )
    }

    fn closed_by_server(&self, frame: Option<&CloseFrame>) -> String {
        match frame {
            Some(frame) if !frame.reason.is_empty() => format!(
                "{} closed the connection (code {}: {})",
                self.server,
                u16::from(frame.code),
                crate::text::one_line(frame.reason.as_str())
            ),
            Some(frame) => format!(
                "{} closed the connection (code {})",
                self.server,
                u16::from(frame.code)
            ),
            None => format!("{} closed the connection", self.server),
        }
    }
}

/// What the first frames of a socket told us, and those frames, until `Connected` is out.
struct Handshake {
    status_seen: bool,
    sid: Option<String>,
    features: Option<FeatureFlags>,
    held: Vec<ReceivedFrame>,
}

impl Handshake {
    fn new() -> Self {
        Self {
            status_seen: false,
            sid: None,
            features: None,
            held: Vec::new(),
        }
    }

    fn observe(&mut self, frame: ReceivedFrame) {
        match &frame.decoded {
            Decoded::Message(ServerMessage::Status(status)) if !self.status_seen => {
                self.status_seen = true;
                self.sid = status.sid.clone();
            }
            Decoded::Message(ServerMessage::FeatureFlags(flags)) if self.features.is_none() => {
                self.features = Some(flags.clone());
            }
            _ => {}
        }
        self.held.push(frame);
    }

    fn is_complete(&self) -> bool {
        self.status_seen && self.features.is_some()
    }
}

/// Exponential backoff with jitter: each delay is 75–100 % of `initial · 2ⁿ`, capped at
/// `max_early` while the outage is younger than `early_outage`, at `max` after.
struct Backoff {
    initial: Duration,
    max_early: Duration,
    early_outage: Duration,
    max: Duration,
    failures: u32,
    /// When the first failure since the last healthy connection (or since the start) came.
    outage_since: Option<Instant>,
}

impl Backoff {
    fn new(config: &ConnectionConfig) -> Self {
        Self {
            initial: config.backoff_initial,
            max_early: config.backoff_max_early,
            early_outage: config.early_outage,
            max: config.backoff_max,
            failures: 0,
            outage_since: None,
        }
    }

    /// The wait after a failure at `now`.
    fn next_delay(&mut self, now: Instant) -> Duration {
        let since = *self.outage_since.get_or_insert(now);
        let cap = if now.saturating_duration_since(since) < self.early_outage {
            self.max_early.min(self.max)
        } else {
            self.max
        };
        let factor = 2u32.saturating_pow(self.failures.min(20));
        let base = self.initial.saturating_mul(factor).min(cap);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(rand::random_range(0.75..=1.0))
    }

    /// The server was healthy: the next failure starts a new outage.
    fn reset(&mut self) {
        self.failures = 0;
        self.outage_since = None;
    }
}

/// Opens the socket, or says in words why not.
async fn connect(config: &ConnectionConfig, server: &str) -> Result<Socket, String> {
    let mut url = config.server.websocket(&config.client_id);
    let authorization = basic_authorization(&url);
    // Credentials go in a header; left in the URL they would end up in the Host line.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("cannot connect to {server}: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("comfytop/", env!("CARGO_PKG_VERSION"))),
    );
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, value);
    }
    // `--header` last: a header given there wins over one made from the URL.
    for name in config.server.headers().keys() {
        headers.remove(name);
    }
    for (name, value) in config.server.headers() {
        headers.append(name.clone(), value.clone());
    }
    let connector = if config.server.is_https() {
        let tls = config
            .server
            .tls()
            .client_config()
            .map_err(|e| format!("cannot connect to {server}: {e}"))?;
        Connector::Rustls(tls)
    } else {
        Connector::Plain
    };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(socket_config()),
        false,
        Some(connector),
    );
    match tokio::time::timeout(config.connect_timeout, connecting).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(describe_connect_error(
            server,
            config.server.base(),
            &e,
            &config.server.credentials_sent(),
        )),
        Err(_) => Err(format!(
            "cannot reach {server}: no answer within {} s. Is the address right, and is the server up?",
            config.connect_timeout.as_secs_f32()
        )),
    }
}

/// The library's defaults, but a smaller read buffer: it is zeroed up to its size before
/// every read, and ComfyUI's messages are small (a preview is tens of KB), so the default
/// 128 KiB cost a large memset per message for nothing. Bigger frames take a few reads.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER)
}

/// See [`socket_config`].
const READ_BUFFER: usize = 32 * 1024;

fn describe_connect_error(
    server: &str,
    config_base: &url::Url,
    error: &WsError,
    credentials_sent: &str,
) -> String {
    match error {
        WsError::Http(response) => {
            let status = response.status();
            let is_html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/html"))
                || response.body().as_deref().is_some_and(looks_like_html);
            // aiohttp's answer to a plain GET on /ws: "No WebSocket UPGRADE hdr".
            let upgrade_missing = response.body().as_deref().is_some_and(|body| {
                String::from_utf8_lossy(body)
                    .to_ascii_lowercase()
                    .contains("upgrade")
            });
            match status.as_u16() {
                300..=399 => {
                    let location = response
                        .headers()
                        .get(header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|to| config_base.join(to).ok())
                        .map_or_else(
                            || "nowhere it names".to_string(),
                            |to| super::http::without_secrets(&to),
                        );
                    format!(
                        "{server} redirected the WebSocket to {location} (HTTP {status}), most likely the sign-in page of a proxy in front of ComfyUI. comfytop cannot sign in there: give a token the proxy accepts with --header (e.g. 'Authorization: Bearer ...'), or use the address behind the proxy"
                    )
                }
                200..=299 | 400 | 426 if !is_html && (upgrade_missing || status.is_success()) => {
                    format!(
                        "a proxy in front of {server} does not pass the WebSocket upgrade on: /ws answered HTTP {status} to the upgrade request. Let the proxy forward WebSockets (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\")"
                    )
                }
                401 | 403 | 407 => format!(
                    "{server} refused the WebSocket (HTTP {status}): authentication failed; comfytop sent {credentials_sent}. Check them, or what the proxy in front of ComfyUI expects"
                ),
                502..=504 => format!(
                    "a proxy at {server} answered HTTP {status}: ComfyUI behind it is probably down or restarting"
                ),
                _ if is_html => format!(
                    "the server at {server} does not look like ComfyUI: /ws answered an HTML page (HTTP {status}) instead of a WebSocket. Check the URL and any path prefix"
                ),
                _ => format!(
                    "the server at {server} does not look like ComfyUI: /ws answered HTTP {status} instead of a WebSocket. Check the URL and any path prefix"
                ),
            }
        }
        WsError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "cannot reach {server}: connection refused. Is ComfyUI running there, and is the port right?"
        ),
        WsError::Io(e) if crate::tls::find_tls_error(e).is_some() => {
            tls_failed(server, crate::tls::find_tls_error(e))
        }
        WsError::Io(e) => {
            format!("cannot reach {server} ({e}). Is the address right, and is the server up?")
        }
        WsError::Protocol(ProtocolError::HandshakeIncomplete) => format!(
            "{server} accepted the connection but closed it without answering; if it is an ssh tunnel, ComfyUI behind it may be down"
        ),
        WsError::Protocol(e) => format!(
            "the server at {server} does not look like ComfyUI: the WebSocket handshake failed ({e})"
        ),
        WsError::Tls(TlsError::Rustls(e)) => tls_failed(server, Some(e)),
        WsError::Tls(e) => tls_failed(server, crate::tls::find_tls_error(e)),
        other => format!("cannot connect to {server} ({other})"),
    }
}

fn tls_failed(server: &str, error: Option<&rustls::Error>) -> String {
    match error {
        Some(error) => format!(
            "the TLS handshake with {server} failed: {}",
            crate::tls::describe(error)
        ),
        None => format!(
            "the TLS handshake with {server} failed. Does the server speak https/wss on that port, with a certificate for that name?"
        ),
    }
}

/// `Authorization: Basic` from credentials in the URL, as the HTTP client does it.
fn basic_authorization(url: &url::Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode).unwrap_or_default();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Close handshake within `limit`, then the caller drops the stream (closing TCP).
async fn close_socket(socket: &mut Socket, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = socket.close(Some(frame)).await;
        // Read until the server closes its side: only then is the id free on the server.
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_backoff() -> Backoff {
        let server = ServerUrl::parse("http://127.0.0.1:8188").unwrap();
        Backoff::new(&ConnectionConfig::new(server, "id"))
    }

    fn assert_jittered(delay: Duration, base_ms: u64) {
        let base = Duration::from_millis(base_ms);
        assert!(
            delay <= base && delay >= base.mul_f64(0.75),
            "{delay:?} is not 75–100 % of {base:?}"
        );
    }

    #[test]
    fn a_fresh_outage_is_retried_at_half_a_second_doubling_to_five() {
        let mut backoff = default_backoff();
        let start = Instant::now();
        for (n, base_ms) in [500, 1000, 2000, 4000, 5000, 5000, 5000]
            .into_iter()
            .enumerate()
        {
            let at = start + Duration::from_secs(n as u64 * 5);
            assert_jittered(backoff.next_delay(at), base_ms);
        }
    }

    #[test]
    fn after_a_minute_of_outage_the_wait_grows_to_thirty_seconds() {
        let mut backoff = default_backoff();
        let start = Instant::now();
        for _ in 0..6 {
            backoff.next_delay(start);
        }
        let later = start + Duration::from_secs(61);
        assert_jittered(backoff.next_delay(later), 30_000);
        for _ in 0..200 {
            assert!(backoff.next_delay(later) <= Duration::from_secs(30));
        }
    }

    #[test]
    fn a_healthy_connection_starts_the_schedule_and_the_outage_clock_over() {
        let mut backoff = default_backoff();
        let start = Instant::now();
        for n in 0..20 {
            backoff.next_delay(start + Duration::from_secs(n * 10));
        }
        backoff.reset();
        // The old outage began minutes ago; the new one starts now.
        let now = start + Duration::from_secs(600);
        assert_jittered(backoff.next_delay(now), 500);
        assert_jittered(backoff.next_delay(now), 1000);
        assert_jittered(backoff.next_delay(now), 2000);
        for _ in 0..10 {
            assert!(backoff.next_delay(now + Duration::from_secs(30)) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn credentials_become_a_basic_header() {
        let url = url::Url::parse("ws://me:p%40ss@box/ws").unwrap();
        let value = basic_authorization(&url).unwrap();
        // base64("me:p@ss")
        assert_eq!(value.to_str().unwrap(), "Basic bWU6cEBzcw==");
        assert!(basic_authorization(&url::Url::parse("ws://box/ws").unwrap()).is_none());
    }

    #[test]
    fn percent_decoding_tolerates_broken_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    fn refused_with(status: u16, headers: &[(&str, &str)], body: &str) -> String {
        let mut response = tokio_tungstenite::tungstenite::http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        let response = response.body(Some(body.as_bytes().to_vec())).unwrap();
        let base = url::Url::parse("https://box.example/comfy/").unwrap();
        describe_connect_error(
            "https://box.example/comfy",
            &base,
            &WsError::Http(Box::new(response)),
            "the header authorization",
        )
    }

    #[test]
    fn a_redirect_to_a_sign_in_page_says_so_without_its_query() {
        let message = refused_with(
            302,
            &[("location", "/oauth2/sign_in?rd=%2Fcomfy%2Fws&token=abc")],
            "",
        );
        assert!(
            message.contains(
                "redirected the WebSocket to https://box.example/oauth2/sign_in (HTTP 302 Found)"
            ),
            "{message}"
        );
        assert!(message.contains("sign-in page of a proxy"), "{message}");
        assert!(!message.contains("abc"), "{message}");
    }

    #[test]
    fn a_proxy_that_drops_the_upgrade_is_named() {
        let aiohttp = "No WebSocket UPGRADE hdr: None\n Can \"Upgrade\" only to \"WebSocket\".";
        for (status, body) in [(400, aiohttp), (200, "{}")] {
            let message = refused_with(status, &[], body);
            assert!(
                message.contains("does not pass the WebSocket upgrade on"),
                "{status}: {message}"
            );
            assert!(message.contains("proxy_set_header Upgrade"), "{message}");
        }
        let refused = refused_with(401, &[], "");
        assert!(refused.contains("authentication failed"), "{refused}");
        let html = refused_with(400, &[("content-type", "text/html")], "<html>");
        assert!(html.contains("does not look like ComfyUI"), "{html}");
    }
}
