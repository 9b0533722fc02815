//! The HTTP client against an in-test server on loopback that answers with the bodies recorded
//! from a real ComfyUI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use comfytop::comfy::api::{FreeRequest, PromptRequest};
use comfytop::comfy::http::{ComfyClient, HttpError, HttpTimeouts};
use comfytop::comfy::protocol::ImageRef;
use comfytop::comfy::server_url::ServerUrl;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const REFERENCE: &str = comfytop::FIXTURES;

fn recorded(name: &str) -> Value {
    let path = format!("{REFERENCE}/http/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The path of a recorded `"request": "GET /history/<id>"`.
fn recorded_path(file: &Value) -> String {
    let request = file["request"].as_str().unwrap();
    request.split_once(' ').unwrap().1.to_string()
}

#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: Option<&'static str>,
    body: Bytes,
    delay: Duration,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            content_type: Some("application/json; charset=utf-8"),
            body: Bytes::from(body.to_string()),
            delay: Duration::ZERO,
        }
    }

    fn empty() -> Self {
        Self {
            status: 200,
            content_type: None,
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: Some(content_type),
            body: Bytes::from(body.to_string()),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A ComfyUI stand-in: answers set per (method, path) under a path prefix, 404 otherwise, and
/// remembers every request.
#[derive(Clone, Default)]
struct FakeComfy {
    prefix: String,
    answers: Arc<Mutex<HashMap<(String, String), Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeComfy {
    /// Serves under `prefix` ("" or "/comfy") and returns a client pointed at it.
    async fn start(prefix: &str) -> (Self, ComfyClient) {
        let fake = Self {
            prefix: prefix.to_string(),
            ..Self::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let server = ServerUrl::parse(&format!("http://{addr}{prefix}")).unwrap();
        (fake, ComfyClient::new(server).unwrap())
    }

    fn answer(&self, method: &str, path: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert((method.to_string(), path.to_string()), answer);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("no request seen")
    }
}

async fn handle(State(fake): State<FakeComfy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let full_path = parts.uri.path().to_string();
    fake.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: full_path.clone(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    });
    let answer = full_path.strip_prefix(&fake.prefix).and_then(|path| {
        let key = (parts.method.to_string(), path.to_string());
        fake.answers.lock().unwrap().get(&key).cloned()
    });
    let Some(answer) = answer else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("404: Not Found"))
            .unwrap();
    };
    tokio::time::sleep(answer.delay).await;
    let mut response = Response::builder().status(answer.status);
    if let Some(content_type) = answer.content_type {
        response = response.header(header::CONTENT_TYPE, content_type);
    }
    response.body(Body::from(answer.body)).unwrap()
}

#[tokio::test]
async fn every_recorded_body_decodes_through_the_client_under_a_path_prefix() {
    let (fake, client) = FakeComfy::start("/comfy").await;

    for name in [
        "get_queue_idle.json",
        "get_queue_running_and_pending.json",
        "get_queue_after_delete.json",
    ] {
        let body = &recorded(name)["body"];
        fake.answer("GET", "/queue", Answer::json(200, body));
        let queue = client.queue().await.unwrap();
        let pending = body["queue_pending"].as_array().unwrap().len();
        assert_eq!(queue.queue_pending.len(), pending, "{name}");
        let running = body["queue_running"].as_array().unwrap();
        assert_eq!(queue.queue_running.len(), running.len(), "{name}");
        for (item, raw) in queue.queue_running.iter().zip(running) {
            assert_eq!(item.prompt_id, raw[1].as_str().unwrap());
        }
    }

    let body = &recorded("get_history.json")["body"];
    fake.answer("GET", "/history", Answer::json(200, body));
    let history = client.history(None, None).await.unwrap();
    let ids: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(!history.is_empty());
    assert_eq!(history.len(), ids.len());
    assert!(fake.last().query.is_none());

    let body = &recorded("get_history_max_items_2.json")["body"];
    fake.answer("GET", "/history", Answer::json(200, body));
    let history = client.history(Some(2), Some(5)).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(fake.last().query.as_deref(), Some("max_items=2&offset=5"));

    for name in ["success", "cached", "error", "interrupted"] {
        let file = recorded(&format!("get_history_id_{name}.json"));
        let path = recorded_path(&file);
        let id = path.strip_prefix("/history/").unwrap();
        fake.answer("GET", &path, Answer::json(200, &file["body"]));
        let entry = client.history_item(id).await.unwrap().expect(name);
        assert_eq!(entry.prompt.prompt_id, id);
        assert!(entry.status.is_some(), "{name}");
    }
    let file = recorded("get_history_id_unknown.json");
    let path = recorded_path(&file);
    fake.answer("GET", &path, Answer::json(200, &file["body"]));
    let id = path.strip_prefix("/history/").unwrap();
    assert_eq!(client.history_item(id).await.unwrap(), None);

    for (name, remaining) in [("get_prompt_idle.json", 0), ("get_prompt_busy.json", 4)] {
        fake.answer("GET", "/prompt", Answer::json(200, &recorded(name)["body"]));
        let info = client.prompt_info().await.unwrap();
        assert_eq!(info.exec_info.queue_remaining, remaining);
    }

    let body = &recorded("get_system_stats.json")["body"];
    fake.answer("GET", "/system_stats", Answer::json(200, body));
    let stats = client.system_stats().await.unwrap();
    assert_eq!(
        stats.system.comfyui_version,
        body["system"]["comfyui_version"].as_str().unwrap()
    );
    assert_eq!(
        stats.devices.len(),
        body["devices"].as_array().unwrap().len()
    );

    fake.answer(
        "GET",
        "/features",
        Answer::json(200, &recorded("get_features.json")["body"]),
    );
    let features = client.features().await.unwrap();
    assert!(features.supports_preview_metadata());

    let body = &recorded("get_object_info_trimmed.json")["body"];
    fake.answer("GET", "/object_info", Answer::json(200, body));
    assert_eq!(&client.object_info(None).await.unwrap(), body);
    let body = &recorded("get_object_info_LabSlowSteps.json")["body"];
    fake.answer("GET", "/object_info/LabSlowSteps", Answer::json(200, body));
    assert_eq!(
        &client.object_info(Some("LabSlowSteps")).await.unwrap(),
        body
    );

    for name in [
        "post_prompt_ok.json",
        "post_prompt_front.json",
        "post_prompt_requeue_with_prompt_id.json",
    ] {
        let file = recorded(name);
        fake.answer("POST", "/prompt", Answer::json(200, &file["body"]));
        let request: PromptRequest = serde_json::from_value(file["request_body"].clone()).unwrap();
        let accepted = client.submit(&request).await.unwrap();
        assert_eq!(
            accepted.prompt_id,
            file["body"]["prompt_id"].as_str().unwrap()
        );
        assert_eq!(accepted.number, file["body"]["number"].as_f64().unwrap());
        assert_eq!(accepted.dropped_outputs(), None);
        assert_eq!(fake.last().json(), file["request_body"], "{name}");
    }

    let png = std::fs::read(format!("{REFERENCE}/http/view_output_image.png")).unwrap();
    fake.answer(
        "GET",
        "/view",
        Answer {
            status: 200,
            content_type: Some("image/png"),
            body: Bytes::from(png.clone()),
            delay: Duration::ZERO,
        },
    );
    let image = ImageRef {
        filename: "full_00002_.png".into(),
        subfolder: "lab".into(),
        folder: "output".into(),
    };
    let file = client.view(&image).await.unwrap();
    assert_eq!(file.bytes, png);
    assert_eq!(file.content_type.as_deref(), Some("image/png"));
    assert_eq!(
        fake.last().query.as_deref(),
        Some("filename=full_00002_.png&subfolder=lab&type=output")
    );

    let seen = fake.seen();
    assert!(
        seen.iter().all(|s| s.path.starts_with("/comfy/")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn mutations_send_the_bodies_comfyui_expects() {
    let (fake, client) = FakeComfy::start("").await;
    for path in ["/queue", "/history", "/interrupt", "/free"] {
        fake.answer("POST", path, Answer::empty());
    }
    let ids = vec!["a".to_string(), "b".to_string()];

    client.interrupt(Some("p-1")).await.unwrap();
    assert_eq!(fake.last().json(), json!({"prompt_id": "p-1"}));
    client.interrupt(None).await.unwrap();
    assert_eq!(fake.last().json(), json!({}));

    client.delete_queued(&ids).await.unwrap();
    assert_eq!(
        (fake.last().path, fake.last().json()),
        ("/queue".into(), json!({"delete": ["a", "b"]}))
    );
    client.clear_queue().await.unwrap();
    assert_eq!(fake.last().json(), json!({"clear": true}));

    client.delete_history(&ids).await.unwrap();
    assert_eq!(
        (fake.last().path, fake.last().json()),
        ("/history".into(), json!({"delete": ["a", "b"]}))
    );
    client.clear_history().await.unwrap();
    assert_eq!(
        (fake.last().path, fake.last().json()),
        ("/history".into(), json!({"clear": true}))
    );

    let free = FreeRequest {
        unload_models: true,
        free_memory: true,
    };
    client.free(free).await.unwrap();
    assert_eq!(
        fake.last().json(),
        json!({"unload_models": true, "free_memory": true})
    );

    for seen in fake.seen() {
        assert_eq!(seen.method, "POST");
        assert_eq!(
            seen.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/json"
        );
    }
}

#[tokio::test]
async fn requests_carry_no_origin_and_a_comfytop_user_agent() {
    let (fake, client) = FakeComfy::start("").await;
    fake.answer(
        "GET",
        "/queue",
        Answer::json(200, &recorded("get_queue_idle.json")["body"]),
    );
    fake.answer("POST", "/interrupt", Answer::empty());
    client.queue().await.unwrap();
    client.interrupt(None).await.unwrap();
    for seen in fake.seen() {
        assert!(seen.headers.get(header::ORIGIN).is_none(), "{seen:?}");
        let agent = seen.headers.get(header::USER_AGENT).unwrap();
        assert!(agent.to_str().unwrap().starts_with("comfytop/"));
    }
}

#[tokio::test]
async fn a_400_from_post_prompt_is_a_rejection_naming_each_node_and_input() {
    let (fake, client) = FakeComfy::start("").await;
    let server = client.server().redacted();
    for name in [
        "bad_combo",
        "bad_inputs",
        "bad_link",
        "no_outputs",
        "no_prompt_key",
        "unknown_class",
    ] {
        let file = recorded(&format!("post_prompt_invalid_{name}.json"));
        fake.answer("POST", "/prompt", Answer::json(400, &file["body"]));
        let request: PromptRequest =
            serde_json::from_value(file["request_body"].clone()).unwrap_or_default();
        let error = client.submit(&request).await.unwrap_err();
        let HttpError::PromptRejected { rejection, .. } = &error else {
            panic!("{name}: {error:?}");
        };
        assert_eq!(rejection.error.kind, file["body"]["error"]["type"]);
        let nodes: Vec<&String> = file["body"]["node_errors"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(rejection.node_errors.keys().collect::<Vec<_>>(), nodes);
        let text = error.to_string();
        assert!(text.contains(&server), "{text}");
        for (id, node) in &rejection.node_errors {
            assert!(
                text.contains(&format!("node {id} ({})", node.class_type)),
                "{text}"
            );
        }
    }

    let file = recorded("post_prompt_invalid_bad_combo.json");
    fake.answer("POST", "/prompt", Answer::json(400, &file["body"]));
    let error = client.submit(&PromptRequest::default()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "ComfyUI at {server} rejected the prompt: Prompt outputs failed validation\n  \
             - node 2 (ImageScale): input 'upscale_method': Value not in list \
             ('no-such-method' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'])\n\
             Fix the workflow and submit it again."
        )
    );
}

#[test]
fn rejections_read_as_what_to_fix() {
    let describe = |name: &str| {
        let body = recorded(&format!("post_prompt_invalid_{name}.json"))["body"].clone();
        serde_json::from_value::<comfytop::comfy::api::PromptRejected>(body)
            .unwrap()
            .describe()
    };
    assert_eq!(
        describe("bad_inputs"),
        "Prompt outputs failed validation\n  \
         - node 1 (LabSlowSteps): input 'width': Value 4 smaller than min of 16\n  \
         - node 1 (LabSlowSteps): input 'steps': Required input is missing"
    );
    assert_eq!(
        describe("bad_link"),
        "Prompt outputs failed validation (Exception when validating node: '99')\n  \
         - node 2 (PreviewImage): Exception when validating node: '99' [KeyError]"
    );
    assert_eq!(
        describe("unknown_class"),
        "Cannot execute because node NoSuchNodeType does not exist. (Node ID '#1')"
    );
    assert_eq!(describe("no_prompt_key"), "No prompt provided");
}

#[tokio::test]
async fn a_200_with_node_errors_reports_the_dropped_outputs() {
    let (fake, client) = FakeComfy::start("").await;
    let file = recorded("post_prompt_partially_valid.json");
    fake.answer("POST", "/prompt", Answer::json(200, &file["body"]));
    let request: PromptRequest = serde_json::from_value(file["request_body"].clone()).unwrap();
    let accepted = client.submit(&request).await.unwrap();
    assert_eq!(accepted.prompt_id, "780c74a5-f322-45dc-9c90-7ead70d12bef");
    assert_eq!(
        accepted.dropped_outputs().as_deref(),
        Some(
            "queued without output node(s) 4, which failed validation:\n  \
             - node 3 (ImageScale): input 'upscale_method': Value not in list \
             ('no-such-method' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos'])"
        )
    );
}

#[tokio::test]
async fn a_server_that_is_not_comfyui_says_so() {
    let (fake, client) = FakeComfy::start("").await;

    let page = "<!DOCTYPE html>\n<html><head><title>Login</title></head></html>";
    fake.answer(
        "GET",
        "/queue",
        Answer::text(200, "text/html; charset=utf-8", page),
    );
    let error = client.queue().await.unwrap_err();
    assert!(matches!(error, HttpError::NotComfy { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("does not look like ComfyUI"), "{text}");
    assert!(text.contains("HTML page"), "{text}");
    assert!(text.starts_with("GET /queue: "), "{text}");

    // Nothing answers /history here: a 404 on an API path is not ComfyUI either.
    let error = client.history(None, None).await.unwrap_err();
    assert!(matches!(error, HttpError::NotComfy { .. }), "{error:?}");
    assert!(error.to_string().contains("404"), "{error}");

    // A prefix that is missing from the URL gives the same answer.
    let (_fake, prefixed) = FakeComfy::start("/comfy").await;
    let base = prefixed.server().redacted().replace("/comfy", "");
    let unprefixed = ComfyClient::new(ServerUrl::parse(&base).unwrap()).unwrap();
    let error = unprefixed.prompt_info().await.unwrap_err();
    assert!(matches!(error, HttpError::NotComfy { .. }), "{error:?}");
}

#[tokio::test]
async fn other_failures_are_typed_and_name_the_server() {
    let (fake, client) = FakeComfy::start("").await;
    let server = client.server().redacted();

    fake.answer(
        "GET",
        "/queue",
        Answer::json(200, &json!({"queue_running": 5})),
    );
    let error = client.queue().await.unwrap_err();
    assert!(matches!(error, HttpError::Decode { .. }), "{error:?}");
    assert!(error.to_string().contains(&server));

    let probe = recorded("probes.json");
    let trouble = probe["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == 500)
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_string();
    fake.answer(
        "POST",
        "/prompt",
        Answer::text(500, "text/plain; charset=utf-8", &trouble),
    );
    let error = client.submit(&PromptRequest::default()).await.unwrap_err();
    let HttpError::Status {
        status,
        body_excerpt,
        ..
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 500);
    assert_eq!(
        body_excerpt,
        "500 Internal Server Error Server got itself in trouble"
    );
    assert!(error.to_string().contains("log"), "{error}");

    fake.answer(
        "GET",
        "/view",
        Answer::text(404, "text/plain", "404: Not Found"),
    );
    let missing = ImageRef {
        filename: "does-not-exist.png".into(),
        subfolder: String::new(),
        folder: "output".into(),
    };
    let error = client.view(&missing).await.unwrap_err();
    assert!(
        matches!(error, HttpError::Status { status: 404, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = FakeComfy::default();
    fake.answer(
        "GET",
        "/queue",
        Answer {
            delay: Duration::from_secs(30),
            ..Answer::json(200, &json!({}))
        },
    );
    let app = Router::new().fallback(handle).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let timeouts = HttpTimeouts {
        request: Duration::from_millis(200),
        ..HttpTimeouts::default()
    };
    let server = ServerUrl::parse(&format!("http://{addr}")).unwrap();
    let client = ComfyClient::with_timeouts(server, timeouts).unwrap();
    let error = client.queue().await.unwrap_err();
    assert!(
        matches!(error, HttpError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_credentials() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let server = ServerUrl::parse(&format!("http://me:secret@{addr}/comfy")).unwrap();
    let client = ComfyClient::new(server).unwrap();
    let error = client.queue().await.unwrap_err();
    assert!(matches!(error, HttpError::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("http://***:***@{addr}/comfy")),
        "{text}"
    );
    assert!(text.contains("cannot reach"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test]
async fn https_to_a_plain_server_is_a_tls_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .fallback(handle)
        .with_state(FakeComfy::default());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let server = ServerUrl::parse(&format!("https://{addr}")).unwrap();
    let error = ComfyClient::new(server).unwrap().queue().await.unwrap_err();
    assert!(matches!(error, HttpError::Request { .. }), "{error:?}");
    assert!(
        error.to_string().contains("TLS handshake failed"),
        "{error}"
    );
}
