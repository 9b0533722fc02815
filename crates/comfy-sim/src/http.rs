//! The HTTP API, route for route as `server.py` answers: the same status codes, the same empty
//! 200 bodies, a plain-text 500 where Python would raise, every route also under `/api/`
//! (except `/internal/...`), and the Origin check that refuses cross-site requests to a
//! loopback server.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use serde_json::{Map, Value, json};

use super::bridge;
use super::images;
use super::ordered::Ordered;
use super::pyfmt;
use super::queue::FreeFlags;
use super::registry::registry;
use super::state::{FileKey, Sim, Submitted};
use super::ws;
use comfy_client::api::{Device, PromptInfo, SystemInfo, SystemStats};
use comfy_client::protocol::{ExecInfo, FeatureFlags};

/// The largest body the server takes (ComfyUI's default `max_upload_size`).
pub(crate) const MAX_UPLOAD: usize = 100 << 20;

pub(crate) fn router(sim: Arc<Sim>, required: Option<(String, String)>) -> Router {
    let api: Router<Arc<Sim>> = Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/prompt", get(get_prompt).post(post_prompt))
        .route("/queue", get(get_queue).post(post_queue))
        .route("/interrupt", axum::routing::post(post_interrupt))
        .route("/free", axum::routing::post(post_free))
        .route("/history", get(get_history).post(post_history))
        .route("/history/{prompt_id}", get(get_history_entry))
        .route("/view", get(view))
        .route("/system_stats", get(system_stats))
        .route("/object_info", get(object_info))
        .route("/object_info/{node_class}", get(object_info_one))
        .route("/features", get(features))
        .route("/embeddings", get(|| async { json_response(&json!([])) }))
        .route("/comfytop/bridge", get(bridge_info))
        .route("/comfytop/bridge/watch", axum::routing::post(bridge_watch));
    let internal: Router<Arc<Sim>> = Router::new()
        .route("/internal/logs", get(logs_text))
        .route("/internal/logs/raw", get(logs_raw))
        .route("/internal/logs/subscribe", patch(logs_subscribe));
    Router::new()
        .route("/", get(index))
        .merge(api.clone())
        .nest("/api", api)
        .merge(internal)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), origin_guard))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let required = required.clone();
            async move { header_guard(required.as_ref(), req, next).await }
        }))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(sim)
}

/// The stand-in for a proxy that wants a token: without the header (and its value), 401.
async fn header_guard(required: Option<&(String, String)>, req: Request, next: Next) -> Response {
    if let Some((name, value)) = required
        && req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            != Some(value.as_str())
    {
        return status_only(StatusCode::UNAUTHORIZED);
    }
    next.run(req).await
}

fn json_response<T: serde::Serialize>(body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            bytes,
        )
            .into_response(),
        Err(_) => server_error(),
    }
}

fn json_with_status<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = json_response(body);
    *response.status_mut() = status;
    response
}

/// 200 with no body and no content type, as aiohttp's bare `web.Response()`.
fn empty_ok() -> Response {
    StatusCode::OK.into_response()
}

/// What aiohttp sends when a handler raises.
fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "500 Internal Server Error\n\nServer got itself in trouble",
    )
        .into_response()
}

fn status_only(status: StatusCode) -> Response {
    status.into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        "404: Not Found",
    )
        .into_response()
}

async fn index(State(sim): State<Arc<Sim>>) -> Response {
    let page = format!(
        "<!doctype html><title>comfytop sim</title><h1>comfytop simulated ComfyUI</h1>\
         <p>A simulated ComfyUI server (API only) for demos and tests. Queue: {} prompt(s).</p>",
        sim.queue_remaining()
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

/// ComfyUI's `origin_only_middleware`: a request whose Origin names another host than a
/// loopback Host gets 403; OPTIONS gets an empty 200.
async fn origin_guard(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if let Some((host, origin)) = cross_origin(&req) {
        sim.log(&format!(
            "WARNING: request with non matching host and origin {host} != {origin}, returning 403"
        ));
        return status_only(StatusCode::FORBIDDEN);
    }
    if req.method() == Method::OPTIONS {
        return empty_ok();
    }
    next.run(req).await
}

/// Host and Origin of a request whose Origin names another host than its loopback Host.
fn cross_origin(req: &Request) -> Option<(String, String)> {
    let host = req.headers().get(header::HOST)?.to_str().ok()?;
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    origin_mismatch(host, origin).then(|| (host.to_string(), origin.to_string()))
}

/// `(host, port)` of `host[:port]` or `[v6]:port`, lowercased.
fn split_host_port(netloc: &str) -> (String, Option<String>) {
    let netloc = netloc.rsplit('@').next().unwrap_or_default().to_lowercase();
    if let Some(rest) = netloc.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').map(str::to_string);
        return (host.to_string(), port);
    }
    match netloc.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), Some(port.to_string())),
        _ => (netloc, None),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn origin_mismatch(host_header: &str, origin: &str) -> bool {
    let host_domain = host_header.to_lowercase();
    let origin_netloc = match origin.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or_default(),
        None => "",
    }
    .to_lowercase();
    let (host_name, host_port) = split_host_port(&host_domain);
    let (origin_name, origin_port) = split_host_port(&origin_netloc);
    if !is_loopback(&host_name) {
        return false;
    }
    // A side without a port is compared by host name only (browsers differ here).
    let host_cmp = if origin_port.is_none() {
        host_name.clone()
    } else {
        host_domain
    };
    let origin_cmp = if host_port.is_none() {
        origin_name
    } else {
        origin_netloc
    };
    !host_cmp.is_empty() && !origin_cmp.is_empty() && host_cmp != origin_cmp
}

/// Parses a JSON body as Python's `await request.json()` would; `None` means it raised.
fn parse_json(body: &Bytes) -> Option<Value> {
    serde_json::from_slice(body).ok()
}

async fn get_prompt(State(sim): State<Arc<Sim>>) -> Response {
    json_response(&PromptInfo {
        exec_info: ExecInfo {
            queue_remaining: sim.queue_remaining(),
        },
    })
}

async fn post_prompt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    sim.log("got prompt");
    let Ok(parsed) = Ordered::parse(&body) else {
        return server_error();
    };
    match sim.submit(&parsed) {
        Submitted::Accepted(body) => json_response(&body),
        Submitted::Rejected(rejected) => json_with_status(StatusCode::BAD_REQUEST, &rejected),
        Submitted::Crashed => server_error(),
    }
}

async fn get_queue(State(sim): State<Arc<Sim>>) -> Response {
    json_response(&sim.queue().snapshot())
}

async fn post_queue(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(body) = parse_json(&body) else {
        return server_error();
    };
    let map = match body {
        Value::Object(map) => map,
        Value::Array(_) | Value::String(_) => return empty_ok(),
        _ => return server_error(),
    };
    if map.get("clear").is_some_and(pyfmt::truthy) {
        sim.clear_pending();
    }
    match map.get("delete") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(ids)) => {
            for id in ids {
                if let Value::String(id) = id {
                    sim.delete_pending(id);
                }
            }
        }
        Some(_) => return server_error(),
    }
    empty_ok()
}

async fn post_interrupt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let target = parse_json(&body)
        .and_then(|v| v.get("prompt_id").cloned())
        .filter(pyfmt::truthy)
        .map(|id| pyfmt::str(&id));
    sim.interrupt(target.as_deref());
    empty_ok()
}

async fn post_free(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(Value::Object(map)) = parse_json(&body) else {
        return server_error();
    };
    let flag = |name| map.get(name).is_some_and(pyfmt::truthy);
    let (unload_models, free_memory) = (flag("unload_models"), flag("free_memory"));
    if unload_models || free_memory {
        let mut queue = sim.queue();
        let flags = queue.free.get_or_insert_with(FreeFlags::default);
        flags.unload_models |= unload_models;
        flags.free_memory |= free_memory;
        drop(queue);
        sim.work_ready.notify_one();
    }
    empty_ok()
}

/// Python's `int()` of a query value.
fn query_int(value: &str) -> Option<i64> {
    value.trim().replace('_', "").parse().ok()
}

fn query_value(raw: &Option<String>, key: &str) -> Option<String> {
    let raw = raw.as_deref()?;
    url::form_urlencoded::parse(raw.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn get_history(State(sim): State<Arc<Sim>>, RawQuery(query): RawQuery) -> Response {
    let parse = |key| match query_value(&query, key) {
        None => Ok(None),
        Some(v) => query_int(&v).map(Some).ok_or(()),
    };
    let (Ok(max_items), Ok(offset)) = (parse("max_items"), parse("offset")) else {
        return server_error();
    };
    json_response(&sim.queue().history_page(max_items, offset))
}

async fn get_history_entry(State(sim): State<Arc<Sim>>, Path(prompt_id): Path<String>) -> Response {
    json_response(&sim.queue().history_entry(&prompt_id))
}

async fn post_history(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(body) = parse_json(&body) else {
        return server_error();
    };
    let map = match body {
        Value::Object(map) => map,
        Value::Array(_) | Value::String(_) => return empty_ok(),
        _ => return server_error(),
    };
    if map.get("clear").is_some_and(pyfmt::truthy) {
        sim.queue().wipe_history();
    }
    match map.get("delete") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(ids)) => {
            let mut queue = sim.queue();
            for id in ids.iter().filter_map(Value::as_str) {
                queue.delete_history(id);
            }
        }
        Some(_) => return server_error(),
    }
    empty_ok()
}

/// `GET /view`: a file this server produced, with `server.py`'s checks: 400 for a bad file
/// name or folder type, 403 for a subfolder leaving the folder, 404 for anything unknown.
async fn view(State(sim): State<Arc<Sim>>, RawQuery(query): RawQuery) -> Response {
    let Some(mut filename) = query_value(&query, "filename") else {
        return status_only(StatusCode::NOT_FOUND);
    };
    // "name.png [output]" names its folder itself.
    let mut folder = None;
    for kind in ["output", "input", "temp"] {
        if let Some(name) = filename.strip_suffix(&format!(" [{kind}]")) {
            filename = name.to_string();
            folder = Some(kind.to_string());
        }
    }
    if filename.is_empty() || filename.starts_with('/') || filename.contains("..") {
        return status_only(StatusCode::BAD_REQUEST);
    }
    let folder =
        folder.unwrap_or_else(|| query_value(&query, "type").unwrap_or_else(|| "output".into()));
    if !["output", "input", "temp"].contains(&folder.as_str()) {
        return status_only(StatusCode::BAD_REQUEST);
    }
    let subfolder = match query_value(&query, "subfolder") {
        None => String::new(),
        Some(sub) => match normalize_subfolder(&sub) {
            Some(s) => s,
            None => return status_only(StatusCode::FORBIDDEN),
        },
    };
    let basename = filename.rsplit('/').next().unwrap_or_default().to_string();
    let key = FileKey {
        folder,
        subfolder,
        filename: basename.clone(),
    };
    let Some(data) = sim.files().get(&key) else {
        return status_only(StatusCode::NOT_FOUND);
    };
    let disposition = format!("filename=\"{}\"", basename.replace('"', ""));
    let channel = query_value(&query, "channel").unwrap_or_else(|| "rgba".into());
    let preview = query_value(&query, "preview");
    let (body, content_type) = match (preview, channel.as_str()) {
        // Previews are sent as JPEG (this server has no WebP encoder).
        (Some(spec), _) => {
            let quality = spec
                .rsplit(';')
                .next()
                .and_then(|q| q.parse::<u8>().ok())
                .unwrap_or(90)
                .clamp(1, 100);
            match image::load_from_memory(&data) {
                Ok(img) => (images::encode_jpeg(&img.to_rgb8(), quality), "image/jpeg"),
                Err(_) => (data, "image/png"),
            }
        }
        (None, "a") => match image::load_from_memory(&data) {
            // Our images are opaque: the alpha channel is all white.
            Ok(img) => (
                images::encode_png(&images::solid(img.width(), img.height(), 0xFF_FFFF), true),
                "image/png",
            ),
            Err(_) => (data, "image/png"),
        },
        _ => (data, "image/png"),
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_DISPOSITION, disposition)
        .body(Body::from(body))
        .unwrap_or_else(|_| server_error())
}

/// The subfolder as a clean relative path, or `None` when it leaves the folder.
fn normalize_subfolder(sub: &str) -> Option<String> {
    if sub.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in sub.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

async fn system_stats(State(sim): State<Arc<Sim>>) -> Response {
    let (total, used, active, ram_total) = {
        let m = sim.machine();
        (m.vram_total, m.used(), m.active, m.ram_total)
    };
    // The allocator's reserve wobbles a little, more while something runs.
    let tick = sim.started.elapsed().as_millis() as u64 / 500;
    let wobble = (tick.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40)
        % if active > 0 { 48 << 20 } else { 4 << 20 };
    let vram_free = total.saturating_sub(used + wobble);
    let ram_free = ram_total
        .saturating_sub(9 << 30)
        .saturating_sub(used.saturating_sub(420 << 20).min(8 << 30) / 2)
        .saturating_sub(wobble * 3);
    let torch_total = (used.saturating_sub(420 << 20) + wobble).next_multiple_of(2 << 20);
    let mut other = Map::new();
    other.insert("required_frontend_version".into(), json!("1.27.10"));
    other.insert("installed_templates_version".into(), json!("0.1.95"));
    other.insert("required_templates_version".into(), json!("0.1.95"));
    other.insert("embedded_python".into(), json!(false));
    other.insert(
        "argv".into(),
        json!(["comfytop", "sim", "--listen", sim.listen.to_string()]),
    );
    let stats = SystemStats {
        system: SystemInfo {
            os: "posix".into(),
            ram_total,
            ram_free,
            comfyui_version: "0.3.64".into(),
            python_version: "3.11.7 (main, simulated by comfytop) [GCC 12.2.0]".into(),
            pytorch_version: "2.8.0+cu128".into(),
            other,
        },
        devices: vec![Device {
            name: "cuda:0 Simulated GPU (comfytop sim) : cudaMallocAsync".into(),
            kind: "cuda".into(),
            index: Some(0),
            vram_total: total,
            vram_free,
            torch_vram_total: torch_total,
            torch_vram_free: torch_total.saturating_sub(used.saturating_sub(420 << 20)),
        }],
    };
    json_response(&stats)
}

async fn object_info() -> Response {
    json_response(&registry().object_info())
}

async fn object_info_one(Path(node_class): Path<String>) -> Response {
    let mut out = Map::new();
    if let Some(t) = registry().get(&node_class) {
        out.insert(node_class, t.info.clone());
    }
    json_response(&out)
}

pub(crate) fn server_features() -> FeatureFlags {
    let mut flags = Map::new();
    flags.insert("supports_preview_metadata".into(), json!(true));
    flags.insert("max_upload_size".into(), json!(MAX_UPLOAD));
    FeatureFlags(flags)
}

async fn features() -> Response {
    json_response(&server_features())
}

async fn logs_text(State(sim): State<Arc<Sim>>) -> Response {
    json_response(&sim.logs.text())
}

async fn logs_raw(State(sim): State<Arc<Sim>>) -> Response {
    json_response(&sim.logs.raw())
}

async fn logs_subscribe(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let Some(Value::Object(map)) = parse_json(&body) else {
        return server_error();
    };
    let (Some(client_id), Some(enabled)) = (map.get("clientId"), map.get("enabled")) else {
        return server_error();
    };
    sim.logs
        .subscribe(&pyfmt::str(client_id), pyfmt::truthy(enabled));
    empty_ok()
}

/// The comfytop bridge's routes (see [`super::bridge`]); a server without it has neither.
async fn bridge_info(State(sim): State<Arc<Sim>>) -> Response {
    match sim.hub.watchers() {
        Some(watchers) => json_response(&bridge::info(watchers)),
        None => not_found().await,
    }
}

async fn bridge_watch(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    if sim.hub.watchers().is_none() {
        return not_found().await;
    }
    let refused = |status: StatusCode, error: String| {
        (status, axum::Json(json!({ "error": error }))).into_response()
    };
    let Some(Value::Object(map)) = parse_json(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON object".into(),
        );
    };
    let Some(Value::String(client_id)) = map.get("clientId") else {
        return refused(StatusCode::BAD_REQUEST, "no string \"clientId\"".into());
    };
    let enabled = map.get("enabled").is_none_or(pyfmt::truthy);
    match sim.hub.watch(client_id, enabled) {
        Ok(()) => json_response(&json!({ "watching": enabled, "version": bridge::VERSION })),
        Err(bridge::WatchRefused::NotConnected) => refused(
            StatusCode::CONFLICT,
            format!(
                "no WebSocket with clientId {client_id} is connected; open /ws?clientId={client_id} first"
            ),
        ),
        Err(bridge::WatchRefused::TooMany) => refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the bridge relays to {} watchers at most",
                bridge::MAX_WATCHERS
            ),
        ),
        Err(bridge::WatchRefused::NoBridge) => not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_check_like_comfyui() {
        assert!(origin_mismatch("127.0.0.1:8188", "http://example.com"));
        assert!(!origin_mismatch("127.0.0.1:8188", "http://127.0.0.1:8188"));
        assert!(origin_mismatch("127.0.0.1:8188", "http://127.0.0.1:9999"));
        // No port on the origin: host names only.
        assert!(!origin_mismatch("localhost:8188", "http://localhost"));
        // Not a loopback host: not checked.
        assert!(!origin_mismatch(
            "comfy.example:8188",
            "http://other.example"
        ));
        assert!(!origin_mismatch("[::1]:8188", "http://[::1]:8188"));
        assert!(!origin_mismatch("127.0.0.1:8188", "null"));
    }

    #[test]
    fn subfolders_may_not_leave_the_folder() {
        assert_eq!(normalize_subfolder("lab").as_deref(), Some("lab"));
        assert_eq!(normalize_subfolder("").as_deref(), Some(""));
        assert_eq!(normalize_subfolder("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize_subfolder("../.."), None);
        assert_eq!(normalize_subfolder("/etc"), None);
    }

    #[test]
    fn query_ints_read_like_python() {
        assert_eq!(query_int(" 5 "), Some(5));
        assert_eq!(query_int("-1"), Some(-1));
        assert_eq!(query_int("1_0"), Some(10));
        assert_eq!(query_int("x"), None);
    }
}
