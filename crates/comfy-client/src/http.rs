//! The ComfyUI HTTP API client: one `reqwest` client per server, a timeout on every call, and
//! errors that say what failed, against which server, and what to do.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::api::{
    FreeRequest, FullHistoryEntry, FullQueueItem, History, HistoryEntry, PromptAccepted,
    PromptInfo, PromptRejected, PromptRequest, QueueChange, QueueSnapshot, SystemStats,
};
use super::protocol::{FeatureFlags, ImageRef, PromptId};
use super::server_url::ServerUrl;
use super::string_cut::StringCutter;

/// How long calls may take. Deadlines fit the bodies: a call gets its base time plus
/// [`HttpTimeouts::per_mb`] for every megabyte it sends or receives, so a 50 MB `/queue` or
/// `POST /prompt` is not cut off while a stuck server still is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub connect: Duration,
    /// Every JSON call: until the answer starts, for a small body until its end (a large body
    /// gets more, by its size), and the longest silence while it arrives.
    pub request: Duration,
    /// `GET /view`: full-size images can be large.
    pub view: Duration,
    /// Added to a call's deadline per megabyte of request or response body.
    pub per_mb: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(15),
            view: Duration::from_secs(60),
            per_mb: Duration::from_secs(1),
        }
    }
}

impl HttpTimeouts {
    /// `base` plus the allowance for `bytes` of body.
    fn fitting(&self, base: Duration, bytes: u64) -> Duration {
        const MB: f64 = 1024.0 * 1024.0;
        base + self.per_mb.mul_f64(bytes as f64 / MB)
    }
}

/// Bodies larger than this are read into a buffer of the announced size at most: a lying
/// `Content-Length` cannot make the client reserve gigabytes up front.
const PREALLOCATED_MAX: u64 = 256 * 1024 * 1024;
/// The same for a body read with its strings cut.
const PREALLOCATED_CUT_MAX: u64 = 4 * 1024 * 1024;
/// Longest string kept while the queue or history is read: the longest any summary keeps
/// ([`ERROR_TEXT_KEPT`](super::api::ERROR_TEXT_KEPT)), so cutting early changes nothing it shows.
const STRING_KEPT_WHILE_READING: usize = super::api::ERROR_TEXT_KEPT;
/// After a body at least this large is parsed and dropped, memory the allocator kept is given
/// back to the system.
const TRIM_AFTER: usize = 4 * 1024 * 1024;

/// A client for one server. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ComfyClient {
    http: reqwest::Client,
    server: Arc<ServerUrl>,
    timeouts: HttpTimeouts,
    queue_pace: Arc<Mutex<QueuePace>>,
}

/// Spaces the reads of `/queue`. With thousands of prompts queued each read is a large body to
/// build on the server and to parse here, and a burst of status messages asks for one after
/// another: after a read that took `d`, the next waits until `d` has passed (at most
/// [`QUEUE_SPACING_MAX`]), so reading the queue takes at most half of either side's time, and a
/// short queue, read in a millisecond, is read again at once.
#[derive(Debug, Default)]
struct QueuePace {
    /// When the last read ended, and how long it took.
    last: Option<(Instant, Duration)>,
}

const QUEUE_SPACING_MAX: Duration = Duration::from_secs(2);

impl QueuePace {
    fn next_read_at(&self) -> Option<Instant> {
        self.last
            .map(|(ended, took)| ended + took.min(QUEUE_SPACING_MAX))
    }

    fn read(&mut self, started: Instant, ended: Instant) {
        self.last = Some((ended, ended.saturating_duration_since(started)));
    }
}

/// A file served by `GET /view`.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewedFile {
    pub bytes: Bytes,
    /// The `Content-Type` the server gave, e.g. `image/png`.
    pub content_type: Option<String>,
}

/// Why a call failed. Every message names the call, the server (credentials redacted) and what
/// to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "{call}: cannot reach {server} ({reason}). Is ComfyUI running there, and is the address right?"
    )]
    Unreachable {
        call: String,
        server: String,
        reason: String,
    },
    #[error("{call}: {server} did not answer within {} s. The server or the connection to it may be stuck; try again.", .after.as_secs_f32())]
    Timeout {
        call: String,
        server: String,
        after: Duration,
    },
    /// `POST /prompt` answered 400: the workflow did not validate.
    #[error("ComfyUI at {server} rejected the prompt: {}\nFix the workflow and submit it again.", .rejection.describe())]
    PromptRejected {
        server: String,
        rejection: Box<PromptRejected>,
    },
    #[error("{call}: {server} answered HTTP {status}{}. {}", excerpt_suffix(.body_excerpt), status_hint(*.status, .credentials_sent))]
    Status {
        call: String,
        server: String,
        status: u16,
        body_excerpt: String,
        /// What was sent to prove who we are ([`ServerUrl::credentials_sent`]), for a refusal.
        credentials_sent: String,
    },
    #[error(
        "{call}: the server at {server} does not look like ComfyUI ({why}). Check the URL, including any path prefix of a reverse proxy."
    )]
    NotComfy {
        call: String,
        server: String,
        why: String,
    },
    #[error(
        "{call}: the answer of {server} has an unexpected shape ({error}). This ComfyUI version may not be supported yet; please report it."
    )]
    Decode {
        call: String,
        server: String,
        error: String,
    },
    #[error("{call} to {server} failed: {reason}")]
    Request {
        call: String,
        server: String,
        reason: String,
    },
    /// A 3xx: ComfyUI's API never redirects, a proxy's sign-in does.
    #[error(
        "{call}: {server} redirected to {location} (HTTP {status}), most likely the sign-in page of a proxy in front of ComfyUI. comfytop cannot sign in there: give a token the proxy accepts with --header (e.g. 'Authorization: Bearer ...'), or use the address behind the proxy."
    )]
    Redirected {
        call: String,
        server: String,
        status: u16,
        /// Where to, without its query (which may carry a token).
        location: String,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": \"{excerpt}\"")
    }
}

fn status_hint(status: u16, credentials_sent: &str) -> String {
    match status {
        401 | 403 | 407 => format!(
            "Authentication failed: comfytop sent {credentials_sent}. Check them, or what the proxy in front of ComfyUI expects."
        ),
        404 => "It does not exist (any more).".to_string(),
        502..=504 => {
            "A proxy answered: ComfyUI behind it is probably down or restarting.".to_string()
        }
        500..=599 => "The server failed internally; its log says why.".to_string(),
        _ => "See the server's log for details.".to_string(),
    }
}

impl ComfyClient {
    pub fn new(server: ServerUrl) -> Result<Self, HttpError> {
        Self::with_timeouts(server, HttpTimeouts::default())
    }

    pub fn with_timeouts(server: ServerUrl, timeouts: HttpTimeouts) -> Result<Self, HttpError> {
        let mut builder = reqwest::Client::builder();
        if server.is_https() {
            let tls = server.tls().client_config().map_err(HttpError::Setup)?;
            builder = builder.use_preconfigured_tls(rustls::ClientConfig::clone(&tls));
        }
        let http = builder
            .connect_timeout(timeouts.connect)
            // A redirect is reported, not followed: see `HttpError::Redirected`.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("comfytop/", env!("CARGO_PKG_VERSION")))
            .default_headers(server.headers().clone())
            // The WebSocket goes direct; HTTP must take the same path to the same server.
            .no_proxy()
            .build()
            .map_err(|e| HttpError::Setup(innermost_cause(&e)))?;
        Ok(Self {
            http,
            server: Arc::new(server),
            timeouts,
            queue_pace: Arc::default(),
        })
    }

    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// `GET /queue`, spaced after the previous read: after a read that took `d`, the next waits
    /// until `d` has passed, at most 2 s.
    pub async fn queue(&self) -> Result<QueueSnapshot, HttpError> {
        let next_read_at = self.pace().next_read_at();
        if let Some(at) = next_read_at {
            tokio::time::sleep_until(at).await;
        }
        let started = Instant::now();
        let snapshot = self.get_summary(&["queue"], &[]).await;
        self.pace().read(started, Instant::now());
        snapshot
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, QueuePace> {
        // Only times are kept under the lock: a panic elsewhere cannot leave them half-written.
        self.queue_pace
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `GET /history`: with `max_items` alone, the newest N; in completion order, oldest first.
    pub async fn history(
        &self,
        max_items: Option<u32>,
        offset: Option<u32>,
    ) -> Result<History, HttpError> {
        let mut query = Vec::new();
        if let Some(n) = max_items {
            query.push(("max_items", n.to_string()));
        }
        if let Some(n) = offset {
            query.push(("offset", n.to_string()));
        }
        self.get_summary(&["history"], &query).await
    }

    /// `GET /history/{id}`; `None` when the server does not know the prompt (any more).
    pub async fn history_item(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, HttpError> {
        let history: History = self.get_summary(&["history", prompt_id], &[]).await?;
        let mut entries = history.0.into_iter();
        // The server keys the answer by the id asked for; take that one, else the only one.
        Ok(match entries.len() {
            0 => None,
            1 => entries.next().map(|(_, entry)| entry),
            _ => entries.find(|(id, _)| id == prompt_id).map(|(_, e)| e),
        })
    }

    /// The graph and `extra_data` of a prompt exactly as it was queued, for a requeue: from
    /// `GET /history/{id}`, else from `GET /queue`; `None` when the server has it in neither.
    /// Only this call reads a graph whole: the others keep a bounded summary of it.
    pub async fn queued_prompt(&self, prompt_id: &str) -> Result<Option<FullQueueItem>, HttpError> {
        let history: History<FullHistoryEntry> =
            self.get_json(&["history", prompt_id], &[]).await?;
        if let Some((_, entry)) = history.0.into_iter().find(|(id, _)| id == prompt_id) {
            return Ok(Some(entry.prompt));
        }
        let queue: QueueSnapshot<FullQueueItem> = self.get_json(&["queue"], &[]).await?;
        Ok(queue
            .queue_running
            .into_iter()
            .chain(queue.queue_pending)
            .find(|item| item.prompt_id == prompt_id))
    }

    /// `GET /prompt`: the queue length.
    pub async fn prompt_info(&self) -> Result<PromptInfo, HttpError> {
        self.get_json(&["prompt"], &[]).await
    }

    /// `GET /system_stats`.
    pub async fn system_stats(&self) -> Result<SystemStats, HttpError> {
        self.get_json(&["system_stats"], &[]).await
    }

    /// `GET /internal/logs/raw`: the server's recent log lines.
    pub async fn logs_raw(&self) -> Result<super::api::RawLogs, HttpError> {
        self.get_json(&["internal", "logs", "raw"], &[]).await
    }

    /// `PATCH /internal/logs/subscribe`: `logs` messages for `client_id`'s socket from now on
    /// (or no more).
    pub async fn subscribe_logs(&self, client_id: &str, enabled: bool) -> Result<(), HttpError> {
        let path = ["internal", "logs", "subscribe"];
        let call = self.call_name(&Method::PATCH, &path);
        let body = serde_json::json!({ "clientId": client_id, "enabled": enabled });
        let request = self.http.patch(self.endpoint(&path)).json(&body);
        let response = self.send(&call, request, self.timeouts.request).await?;
        self.body(&call, response, self.timeouts.request).await?;
        Ok(())
    }

    /// `GET /comfytop/bridge`: the comfytop bridge, or `None` when the server has none (404).
    pub async fn bridge_info(&self) -> Result<Option<super::api::BridgeInfo>, HttpError> {
        let path = ["comfytop", "bridge"];
        let call = self.call_name(&Method::GET, &path);
        let request = self.http.get(self.endpoint(&path));
        let response = self.send_raw(&call, request, self.timeouts.request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            // Read the body so the connection can be reused.
            let _ = self.body(&call, response, self.timeouts.request).await;
            return Ok(None);
        }
        let response = self.check_status(&call, response).await?;
        let body = self.body(&call, response, self.timeouts.request).await?;
        self.decode(&call, &body).map(Some)
    }

    /// `POST /comfytop/bridge/watch`: the bridge relays every other client's execution events
    /// and previews to `client_id`'s socket from now on (or no more). It holds while that
    /// socket does: ask again after each reconnect.
    pub async fn watch_through_bridge(
        &self,
        client_id: &str,
        enabled: bool,
    ) -> Result<(), HttpError> {
        let body = serde_json::json!({ "clientId": client_id, "enabled": enabled });
        self.post(&["comfytop", "bridge", "watch"], &body).await
    }

    /// `GET /object_info` or `GET /object_info/{class}`: node definitions, kept as JSON.
    pub async fn object_info(&self, class: Option<&str>) -> Result<Value, HttpError> {
        match class {
            Some(class) => self.get_json(&["object_info", class], &[]).await,
            None => self.get_json(&["object_info"], &[]).await,
        }
    }

    /// `GET /features`: the server's feature flags.
    pub async fn features(&self) -> Result<FeatureFlags, HttpError> {
        self.get_json(&["features"], &[]).await
    }

    /// `GET /view`: the bytes of an output, temp or input file.
    pub async fn view(&self, image: &ImageRef) -> Result<ViewedFile, HttpError> {
        let query = [
            ("filename", image.filename.as_str()),
            ("subfolder", image.subfolder.as_str()),
            ("type", image.folder.as_str()),
        ];
        let call = self.call_name(&Method::GET, &["view"]);
        let request = self.http.get(self.endpoint(&["view"])).query(&query);
        let response = self.send_raw(&call, request, self.timeouts.view).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(self.status_error(&call, response.status(), b""));
        }
        let response = self.check_status(&call, response).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/html"))
        {
            return Err(self.not_comfy(&call, "it answered an HTML page instead of a file"));
        }
        let bytes = self.body(&call, response, self.timeouts.view).await?;
        Ok(ViewedFile {
            bytes: Bytes::from(bytes),
            content_type,
        })
    }

    /// `POST /prompt`. A 400 is [`HttpError::PromptRejected`]; a 200 can still carry
    /// `node_errors` for dropped outputs (see [`PromptAccepted::dropped_outputs`]).
    pub async fn submit(&self, request: &PromptRequest) -> Result<PromptAccepted, HttpError> {
        let path = ["prompt"];
        let call = self.call_name(&Method::POST, &path);
        let body = serde_json::to_vec(request).map_err(|e| HttpError::Request {
            call: call.clone(),
            server: self.server.redacted(),
            reason: format!("the prompt cannot be written as JSON: {e}"),
        })?;
        // The server reads and validates the whole graph before it answers.
        let timeout = self
            .timeouts
            .fitting(self.timeouts.request, body.len() as u64);
        let builder = self
            .http
            .post(self.endpoint(&path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send_raw(&call, builder, timeout).await?;
        let status = response.status();
        if status == StatusCode::BAD_REQUEST {
            let body = self.body(&call, response, self.timeouts.request).await?;
            return match serde_json::from_slice::<PromptRejected>(&body) {
                Ok(rejection) => Err(HttpError::PromptRejected {
                    server: self.server.redacted(),
                    rejection: Box::new(rejection),
                }),
                Err(_) => Err(self.status_error(&call, status, &body)),
            };
        }
        let response = self.check_status(&call, response).await?;
        let body = self.body(&call, response, self.timeouts.request).await?;
        self.decode(&call, &body)
    }

    /// `POST /queue {"delete": ids}`: removes pending prompts (not the running one).
    pub async fn delete_queued(&self, prompt_ids: &[PromptId]) -> Result<(), HttpError> {
        let body = QueueChange {
            delete: Some(prompt_ids.to_vec()),
            clear: false,
        };
        self.post(&["queue"], &body).await
    }

    /// `POST /queue {"clear": true}`: empties the pending queue.
    pub async fn clear_queue(&self) -> Result<(), HttpError> {
        let body = QueueChange {
            delete: None,
            clear: true,
        };
        self.post(&["queue"], &body).await
    }

    /// `POST /interrupt`. With a prompt id it stops only that prompt, if it is the one running;
    /// without, it stops whatever runs when the request arrives.
    pub async fn interrupt(&self, prompt_id: Option<&str>) -> Result<(), HttpError> {
        let body = match prompt_id {
            Some(id) => serde_json::json!({ "prompt_id": id }),
            None => serde_json::json!({}),
        };
        self.post(&["interrupt"], &body).await
    }

    /// `POST /history {"delete": ids}`.
    pub async fn delete_history(&self, prompt_ids: &[PromptId]) -> Result<(), HttpError> {
        let body = QueueChange {
            delete: Some(prompt_ids.to_vec()),
            clear: false,
        };
        self.post(&["history"], &body).await
    }

    /// `POST /history {"clear": true}`.
    pub async fn clear_history(&self) -> Result<(), HttpError> {
        let body = QueueChange {
            delete: None,
            clear: true,
        };
        self.post(&["history"], &body).await
    }

    /// `POST /free`: unload models and/or free memory.
    pub async fn free(&self, request: FreeRequest) -> Result<(), HttpError> {
        self.post(&["free"], &request).await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, HttpError> {
        self.get_decoded(path, query, None).await
    }

    /// A GET whose answer is read with every string cut to [`STRING_KEPT_WHILE_READING`]
    /// characters as it arrives: for the queue and history, whose bodies carry whole graphs
    /// and error messages of which a summary keeps far less.
    async fn get_summary<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, HttpError> {
        let cutter = StringCutter::new(STRING_KEPT_WHILE_READING);
        self.get_decoded(path, query, Some(cutter)).await
    }

    async fn get_decoded<T: DeserializeOwned>(
        &self,
        path: &[&str],
        query: &[(&str, String)],
        cutter: Option<StringCutter>,
    ) -> Result<T, HttpError> {
        let call = self.call_name(&Method::GET, path);
        let mut request = self.http.get(self.endpoint(path));
        if !query.is_empty() {
            request = request.query(query);
        }
        let response = self.send(&call, request, self.timeouts.request).await?;
        let body = self
            .read_body(&call, response, self.timeouts.request, cutter)
            .await?;
        let decoded = self.decode(&call, &body);
        release(body);
        decoded
    }

    /// A POST whose answer is an empty 200.
    async fn post(&self, path: &[&str], body: &impl Serialize) -> Result<(), HttpError> {
        let call = self.call_name(&Method::POST, path);
        let request = self.http.post(self.endpoint(path)).json(body);
        let response = self.send(&call, request, self.timeouts.request).await?;
        // Read the body so the connection can be reused.
        self.body(&call, response, self.timeouts.request).await?;
        Ok(())
    }

    async fn send(
        &self,
        call: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let response = self.send_raw(call, request, timeout).await?;
        self.check_status(call, response).await
    }

    async fn send_raw(
        &self,
        call: &str,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        match tokio::time::timeout(timeout, request.send()).await {
            Ok(sent) => sent.map_err(|e| self.transport_error(call, e, timeout)),
            Err(_) => Err(self.timeout_error(call, timeout)),
        }
    }

    async fn check_status(&self, call: &str, response: Response) -> Result<Response, HttpError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status.is_redirection() {
            return Err(self.redirect_error(call, &response));
        }
        let body = self
            .body(call, response, self.timeouts.request)
            .await
            .unwrap_or_default();
        if status == StatusCode::NOT_FOUND {
            // Every API path exists on a ComfyUI; a 404 means another server or a wrong prefix.
            return Err(self.not_comfy(call, "it answered 404 Not Found"));
        }
        Err(self.status_error(call, status, &body))
    }

    /// The whole body, within `base` plus the allowance for its size (the announced one, or
    /// what has arrived so far when it is not announced or is exceeded), and beyond that for as
    /// long as it keeps coming: only a silence of `base` is a timeout.
    async fn body(
        &self,
        call: &str,
        response: Response,
        base: Duration,
    ) -> Result<Vec<u8>, HttpError> {
        self.read_body(call, response, base, None).await
    }

    /// The body, through `cutter` when there is one.
    async fn read_body(
        &self,
        call: &str,
        mut response: Response,
        base: Duration,
        mut cutter: Option<StringCutter>,
    ) -> Result<Vec<u8>, HttpError> {
        let announced = response.content_length().unwrap_or(0);
        let started = tokio::time::Instant::now();
        let mut last_bytes = started;
        let mut arrived = 0u64;
        let reserved = match cutter {
            // What is kept is not known ahead; a cut body is often a small part of it.
            Some(_) => announced.min(PREALLOCATED_CUT_MAX),
            None => announced.min(PREALLOCATED_MAX),
        };
        let mut body = Vec::with_capacity(reserved as usize);
        loop {
            let allowed = self.timeouts.fitting(base, announced.max(arrived));
            let deadline = (started + allowed).max(last_bytes + base);
            let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
            last_bytes = tokio::time::Instant::now();
            match chunk {
                Ok(Ok(Some(chunk))) => {
                    arrived += chunk.len() as u64;
                    match cutter.as_mut() {
                        Some(cutter) => cutter.feed(&chunk, &mut body),
                        None => body.extend_from_slice(&chunk),
                    }
                }
                Ok(Ok(None)) => return Ok(body),
                Ok(Err(e)) => return Err(self.transport_error(call, e, allowed)),
                Err(_) => return Err(self.timeout_error(call, allowed)),
            }
        }
    }

    fn timeout_error(&self, call: &str, after: Duration) -> HttpError {
        HttpError::Timeout {
            call: call.to_string(),
            server: self.server.redacted(),
            after,
        }
    }

    fn decode<T: DeserializeOwned>(&self, call: &str, body: &[u8]) -> Result<T, HttpError> {
        serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                HttpError::Decode {
                    call: call.to_string(),
                    server: self.server.redacted(),
                    error: e.to_string(),
                }
            } else {
                let why = if looks_like_html(body) {
                    "it answered an HTML page instead of JSON".to_string()
                } else if body.is_empty() {
                    "it answered an empty body instead of JSON".to_string()
                } else {
                    format!(
                        "it answered something that is not JSON: \"{}\"",
                        excerpt(body)
                    )
                };
                self.not_comfy(call, &why)
            }
        })
    }

    fn transport_error(&self, call: &str, error: reqwest::Error, timeout: Duration) -> HttpError {
        let server = self.server.redacted();
        let call = call.to_string();
        if error.is_timeout() {
            let after = if error.is_connect() {
                self.timeouts.connect
            } else {
                timeout
            };
            return HttpError::Timeout {
                call,
                server,
                after,
            };
        }
        // Without the URL: it may carry credentials, and the message names the server anyway.
        let error = error.without_url();
        let reason = innermost_cause(&error);
        if let Some(tls) = crate::tls::find_tls_error(&error) {
            return HttpError::Request {
                call,
                server,
                reason: format!("the TLS handshake failed: {}", crate::tls::describe(tls)),
            };
        }
        if error.is_connect() {
            HttpError::Unreachable {
                call,
                server,
                reason,
            }
        } else {
            HttpError::Request {
                call,
                server,
                reason,
            }
        }
    }

    fn status_error(&self, call: &str, status: StatusCode, body: &[u8]) -> HttpError {
        HttpError::Status {
            call: call.to_string(),
            server: self.server.redacted(),
            status: status.as_u16(),
            body_excerpt: if looks_like_html(body) {
                String::new()
            } else {
                excerpt(body)
            },
            credentials_sent: self.server.credentials_sent(),
        }
    }

    fn redirect_error(&self, call: &str, response: &Response) -> HttpError {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|to| response.url().join(to).ok())
            .map_or_else(|| "nowhere it names".to_string(), |to| without_secrets(&to));
        HttpError::Redirected {
            call: call.to_string(),
            server: self.server.redacted(),
            status: response.status().as_u16(),
            location,
        }
    }

    fn not_comfy(&self, call: &str, why: &str) -> HttpError {
        HttpError::NotComfy {
            call: call.to_string(),
            server: self.server.redacted(),
            why: why.to_string(),
        }
    }

    /// The URL of an endpoint under the server's prefix; each segment is percent-encoded.
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.server.http("");
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn call_name(&self, method: &Method, segments: &[&str]) -> String {
        format!("{method} /{}", segments.join("/"))
    }
}

/// Drops a body that has been parsed; after a large one, gives the freed memory back to the
/// system (glibc keeps freed heap pages otherwise, and a 50 MB reply would stay in the RSS).
fn release(body: Vec<u8>) {
    let large = body.capacity() >= TRIM_AFTER;
    drop(body);
    if large {
        trim_heap();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

pub(super) fn looks_like_html(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    let head = &body[start..body.len().min(start + 64)];
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.starts_with("<head")
}

/// The start of a body, on one line, for error messages.
fn excerpt(body: &[u8]) -> String {
    const MAX_CHARS: usize = 160;
    let text = String::from_utf8_lossy(body);
    let mut out: String = crate::text::one_line(&text)
        .chars()
        .take(MAX_CHARS)
        .collect();
    if text.chars().count() > MAX_CHARS {
        out.push('…');
    }
    out
}

/// The most specific message in an error's source chain ("Connection refused (os error 111)").
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// A URL as it may be shown: no credentials, query or fragment.
pub(super) fn without_secrets(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_queue_read_is_followed_by_a_pause_as_long_a_quick_one_by_none() {
        let mut pace = QueuePace::default();
        assert_eq!(pace.next_read_at(), None, "the first read goes at once");
        let t0 = Instant::now();
        pace.read(t0, t0 + Duration::from_millis(300));
        assert_eq!(pace.next_read_at(), Some(t0 + Duration::from_millis(600)));
        pace.read(t0, t0 + Duration::from_millis(1));
        assert_eq!(pace.next_read_at(), Some(t0 + Duration::from_millis(2)));
        let slow_end = t0 + Duration::from_secs(30);
        pace.read(t0, slow_end);
        assert_eq!(pace.next_read_at(), Some(slow_end + QUEUE_SPACING_MAX));
    }

    #[test]
    fn html_is_recognised_after_whitespace() {
        assert!(looks_like_html(b"\n  <!DOCTYPE html><html>"));
        assert!(looks_like_html(b"<html lang=en>"));
        assert!(!looks_like_html(b"{\"a\":1}"));
        assert!(!looks_like_html(b""));
    }

    #[test]
    fn excerpt_is_one_short_line() {
        let body = "500 Internal Server Error\n\nServer got itself in trouble";
        assert_eq!(
            excerpt(body.as_bytes()),
            "500 Internal Server Error Server got itself in trouble"
        );
        let long = "x".repeat(500);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), 161);
    }

    #[test]
    fn endpoints_stay_under_the_prefix_and_encode_ids() {
        let server = ServerUrl::parse("http://box:8188/comfy/").unwrap();
        let client = ComfyClient::new(server).unwrap();
        assert_eq!(
            client.endpoint(&["history", "a/b c"]).as_str(),
            "http://box:8188/comfy/history/a%2Fb%20c"
        );
        assert_eq!(
            client.endpoint(&["queue"]).as_str(),
            "http://box:8188/comfy/queue"
        );
    }
}
