//! The simulated server's HTTP API and WebSocket edges against what the real ComfyUI answered
//! (the shared reference's `http/` bodies), over loopback with a plain client.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use comfy_sim::{SimConfig, SimHandle, SimServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const REFERENCE: &str = comfy_client::FIXTURES;

fn reference(path: &str) -> Value {
    let path = PathBuf::from(REFERENCE).join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference JSON")
}

async fn start() -> SimHandle {
    SimServer::start(SimConfig {
        step: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(sim: &SimHandle) -> Self {
        Self {
            base: sim.url(),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    async fn queue(&self, prompt: &Value, extra: Value) -> String {
        let mut body = json!({ "prompt": prompt });
        if let (Some(b), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(extra.clone());
        }
        let (status, reply) = self.post("/prompt", &body).await;
        assert_eq!(status, 200, "{reply}");
        reply["prompt_id"].as_str().expect("prompt_id").to_string()
    }

    async fn remaining(&self) -> u64 {
        self.get("/prompt").await.1["exec_info"]["queue_remaining"]
            .as_u64()
            .expect("queue_remaining")
    }

    async fn wait_idle(&self) {
        let started = Instant::now();
        while self.remaining().await > 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "never idle");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_until_running(&self, prompt_id: &str) {
        let started = Instant::now();
        loop {
            let (_, q) = self.get("/queue").await;
            if q["queue_running"][0][1] == prompt_id {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never ran");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn history_entry(&self, prompt_id: &str) -> Value {
        let (_, h) = self.get(&format!("/history/{prompt_id}")).await;
        h[prompt_id].clone()
    }
}

fn workflow(name: &str) -> Value {
    reference(&format!("workflows/{name}.json"))
}

fn long_run() -> Value {
    workflow("long_run_interruptible")
}

fn small_save(seed: u64) -> Value {
    let mut w = workflow("small_save");
    w["1"]["inputs"]["seed"] = json!(seed);
    w
}

/// Error types of a 400 body as a comparable value: the error, then per node its class,
/// dependents and error (type, message, details) triples.
fn error_summary(body: &Value) -> Value {
    let mut nodes = serde_json::Map::new();
    if let Some(map) = body["node_errors"].as_object() {
        for (id, e) in map {
            let mut errors: Vec<Value> = e["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| json!([x["type"], x["message"], x["details"]]))
                        .collect()
                })
                .unwrap_or_default();
            // The real server's order of a node's errors follows a Python set.
            errors.sort_by_key(|v| v.to_string());
            nodes.insert(
                id.clone(),
                json!({"class_type": e["class_type"], "dependent_outputs": e["dependent_outputs"], "errors": errors}),
            );
        }
    }
    json!({
        "error": [body["error"]["type"], body["error"]["message"], body["error"]["details"]],
        "node_errors": nodes,
    })
}

#[tokio::test]
async fn invalid_prompts_get_the_recorded_errors() {
    let sim = start().await;
    let client = Client::new(&sim);
    for name in [
        "bad_combo",
        "bad_inputs",
        "bad_link",
        "no_outputs",
        "no_prompt_key",
        "unknown_class",
    ] {
        let recorded = reference(&format!("http/post_prompt_invalid_{name}.json"));
        let (status, body) = client.post("/prompt", &recorded["request_body"]).await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(
            error_summary(&body),
            error_summary(&recorded["body"]),
            "{name}"
        );
    }
    // Nothing was queued, but every POST took a number.
    let (_, reply) = client
        .post("/prompt", &json!({"prompt": small_save(1)}))
        .await;
    assert_eq!(reply["number"], 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_partially_valid_prompt_runs_its_valid_outputs() {
    let sim = start().await;
    let client = Client::new(&sim);
    let recorded = reference("http/post_prompt_partially_valid.json");
    let (status, body) = client.post("/prompt", &recorded["request_body"]).await;
    assert_eq!(status, 200);
    assert_eq!(error_summary(&body), error_summary(&recorded["body"]));
    let id = body["prompt_id"].as_str().unwrap().to_string();
    client.wait_idle().await;
    let entry = client.history_entry(&id).await;
    assert_eq!(entry["status"]["status_str"], "success");
    assert_eq!(entry["prompt"][4], json!(["2"]));
    let outputs: Vec<&String> = entry["outputs"].as_object().unwrap().keys().collect();
    assert_eq!(outputs, ["2"]);
    assert_eq!(entry["outputs"]["2"]["images"][0]["type"], "temp");
    sim.shutdown().await;
}

#[tokio::test]
async fn queue_numbers_front_delete_clear_and_run_order() {
    let sim = start().await;
    let client = Client::new(&sim);
    let blocker = client.queue(&long_run(), json!({})).await;
    client.wait_until_running(&blocker).await;
    let a = client
        .queue(&small_save(1), json!({"client_id": "tester"}))
        .await;
    let b = client.queue(&small_save(2), json!({})).await;
    let c = client.queue(&small_save(3), json!({})).await;
    let (_, reply) = client
        .post("/prompt", &json!({"prompt": small_save(4), "front": true}))
        .await;
    assert_eq!(reply["number"], -4);
    let d = reply["prompt_id"].as_str().unwrap().to_string();

    let (_, queue) = client.get("/queue").await;
    assert_eq!(queue["queue_running"][0][0], 0);
    assert_eq!(queue["queue_running"][0][1], blocker.as_str());
    // Pending items come in heap order, as Python's heapq leaves them.
    let numbers: Vec<i64> = queue["queue_pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[0].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [-4, 1, 3, 2]);
    let first_pending = &queue["queue_pending"][1];
    assert_eq!(first_pending[1], a.as_str());
    assert_eq!(first_pending[3], json!({"client_id": "tester"}));
    assert_eq!(first_pending[4], json!(["2"]));
    assert_eq!(client.remaining().await, 5);

    let (status, body) = client.post("/queue", &json!({"delete": [b]})).await;
    assert_eq!((status, body), (200, Value::Null));
    assert_eq!(client.remaining().await, 4);

    // A targeted interrupt for a prompt that is not running changes nothing.
    client.post("/interrupt", &json!({"prompt_id": c})).await;
    client.post("/interrupt", &json!({"prompt_id": d})).await;
    assert_eq!(client.remaining().await, 4);
    client
        .post("/interrupt", &json!({"prompt_id": blocker}))
        .await;
    client.wait_idle().await;

    // Completion order: the interrupted blocker, the front item, then by number.
    let (_, history) = client.get("/history").await;
    let order: Vec<&String> = history.as_object().unwrap().keys().collect();
    assert_eq!(order.len(), 4);
    let entry = client.history_entry(&blocker).await;
    assert_eq!(entry["status"]["status_str"], "error");
    let last = &entry["status"]["messages"][2];
    assert_eq!(last[0], "execution_interrupted");
    assert_eq!(last[1]["node_type"], "LabLongRun");
    let ran: Vec<String> = [&d, &a, &c]
        .iter()
        .map(|id| client.history_entry(id))
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .iter()
        .map(|e| {
            e["status"]["status_str"]
                .as_str()
                .unwrap_or("missing")
                .to_string()
        })
        .collect();
    assert_eq!(ran, ["success", "success", "success"]);
    assert!(
        client.history_entry(&b).await.is_null(),
        "deleted item never ran"
    );

    // Clear empties the pending part only.
    let blocker = client.queue(&long_run(), json!({})).await;
    client.wait_until_running(&blocker).await;
    client.queue(&small_save(5), json!({})).await;
    client.queue(&small_save(6), json!({})).await;
    assert_eq!(client.remaining().await, 3);
    client.post("/queue", &json!({"clear": true})).await;
    let (_, queue) = client.get("/queue").await;
    assert_eq!(queue["queue_pending"], json!([]));
    assert_eq!(queue["queue_running"][0][1], blocker.as_str());
    // A bare interrupt stops whatever runs.
    let r = client.post_raw("/interrupt", "").await;
    assert_eq!(r.status(), 200);
    client.wait_idle().await;
    assert_eq!(
        client.history_entry(&blocker).await["status"]["status_str"],
        "error"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn history_paging_unknown_ids_delete_and_clear() {
    let sim = start().await;
    let client = Client::new(&sim);
    let mut ids = Vec::new();
    for seed in 0..4 {
        ids.push(client.queue(&small_save(seed), json!({})).await);
        client.wait_idle().await;
    }
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let (_, all) = client.get("/history").await;
    assert_eq!(sorted(keys(&all)), sorted(ids.clone()));
    let (_, newest) = client.get("/history?max_items=2").await;
    assert_eq!(sorted(keys(&newest)), sorted(ids[2..].to_vec()));
    let (_, page) = client.get("/history?max_items=2&offset=1").await;
    assert_eq!(sorted(keys(&page)), sorted(ids[1..3].to_vec()));
    let (_, tail) = client.get("/history?offset=3").await;
    assert_eq!(keys(&tail), ids[3..].to_vec());
    let (status, _) = client.get("/history?max_items=lots").await;
    assert_eq!(status, 500);

    let (status, unknown) = client
        .get("/history/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(
        (status, unknown),
        (
            200,
            reference("http/get_history_id_unknown.json")["body"].clone()
        )
    );

    let entry = client.history_entry(&ids[0]).await;
    assert_eq!(entry["prompt"][1], ids[0].as_str());
    assert_eq!(entry["status"]["completed"], true);
    let kinds: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["execution_start", "execution_cached", "execution_success"]
    );
    assert_eq!(
        entry["meta"]["2"],
        json!({"node_id": "2", "display_node": "2", "parent_node": null, "real_node_id": "2"})
    );

    client.post("/history", &json!({"delete": [ids[0]]})).await;
    assert!(client.history_entry(&ids[0]).await.is_null());
    client.post("/history", &json!({"clear": true})).await;
    assert_eq!(client.get("/history").await.1, json!({}));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_requeued_prompt_keeps_the_client_chosen_id() {
    let sim = start().await;
    let client = Client::new(&sim);
    let recorded = reference("http/post_prompt_requeue_with_prompt_id.json");
    let (status, body) = client.post("/prompt", &recorded["request_body"]).await;
    assert_eq!(status, 200);
    assert_eq!(body["prompt_id"], recorded["body"]["prompt_id"]);
    client.wait_idle().await;
    let entry = client
        .history_entry(recorded["body"]["prompt_id"].as_str().unwrap())
        .await;
    let error = &entry["status"]["messages"][2][1];
    assert_eq!(error["exception_type"], "RuntimeError");
    assert_eq!(error["exception_message"], "lab: deliberate failure\n");
    assert_eq!(error["executed"], json!(["1"]));
    assert!(
        error["current_inputs"]["image"][0]
            .as_str()
            .unwrap()
            .starts_with("tensor([[[[")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn view_serves_produced_images_and_refuses_the_rest() {
    let sim = start().await;
    let client = Client::new(&sim);
    let id = client.queue(&workflow("slow_steps_full"), json!({})).await;
    client.wait_idle().await;
    let entry = client.history_entry(&id).await;
    let saved = &entry["outputs"]["3"]["images"][0];
    assert_eq!(saved["subfolder"], "lab");
    assert_eq!(saved["filename"], "full_00001_.png");
    let url = format!(
        "{}/view?filename={}&subfolder=lab&type=output",
        sim.url(),
        saved["filename"].as_str().unwrap()
    );
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["content-disposition"],
        "filename=\"full_00001_.png\""
    );
    let png = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));

    let temp = &entry["outputs"]["4"]["images"][0];
    let r = reqwest::get(format!(
        "{}/api/view?filename={}&type=temp&subfolder=&preview=jpeg%3B50",
        sim.url(),
        temp["filename"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");

    let status = |path: String| async move { reqwest::get(path).await.unwrap().status().as_u16() };
    let base = sim.url();
    assert_eq!(
        status(format!(
            "{base}/view?filename=does-not-exist.png&type=output"
        ))
        .await,
        404
    );
    assert_eq!(status(format!("{base}/api/view?filename=x.png")).await, 404);
    assert_eq!(
        status(format!(
            "{base}/view?filename=x.png&type=output&subfolder=../.."
        ))
        .await,
        403
    );
    assert_eq!(
        status(format!("{base}/view?filename=../x.png&type=output")).await,
        400
    );
    assert_eq!(
        status(format!("{base}/view?filename=x.png&type=secret")).await,
        400
    );
    assert_eq!(status(format!("{base}/view")).await, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_get_the_plain_500_and_interrupt_does_not() {
    let sim = start().await;
    let client = Client::new(&sim);
    for path in ["/prompt", "/queue", "/history", "/free"] {
        let r = client.post_raw(path, "{not json").await;
        assert_eq!(r.status(), 500, "{path}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(
            r.text().await.unwrap(),
            "500 Internal Server Error\n\nServer got itself in trouble"
        );
    }
    let r = client.post_raw("/interrupt", "x").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-type").is_none());
    assert_eq!(r.text().await.unwrap(), "");
    sim.shutdown().await;
}

#[tokio::test]
async fn every_route_is_also_under_api_and_bodies_match_the_recording() {
    let sim = start().await;
    let client = Client::new(&sim);
    client.queue(&small_save(1), json!({})).await;
    client.wait_idle().await;
    for path in [
        "/prompt",
        "/features",
        "/queue",
        "/history?max_items=1",
        "/object_info/LabSlowSteps",
        "/embeddings",
    ] {
        let plain = client.get(path).await;
        let api = client.get(&format!("/api{path}")).await;
        assert_eq!(plain.0, 200, "{path}");
        assert_eq!(plain, api, "{path}");
    }
    assert_eq!(
        client.get("/features").await.1,
        reference("http/get_features.json")["body"]
    );
    assert_eq!(
        client.get("/object_info/LabSlowSteps").await.1,
        reference("http/get_object_info_LabSlowSteps.json")["body"]
    );
    let all = client.get("/object_info").await.1;
    let recorded = reference("http/get_object_info_trimmed.json")["body"].clone();
    for (name, info) in recorded.as_object().unwrap() {
        assert_eq!(&all[name], info, "{name}");
    }
    assert_eq!(
        client.get("/object_info/NoSuchNode").await,
        (200, json!({}))
    );
    assert_eq!(client.get("/embeddings").await.1, json!([]));

    let logs = reqwest::get(format!("{}/internal/logs", sim.url()))
        .await
        .unwrap();
    assert_eq!(logs.status(), 200);
    let api_logs = reqwest::get(format!("{}/api/internal/logs", sim.url()))
        .await
        .unwrap();
    assert_eq!(api_logs.status(), 404);
    let (_, raw) = client.get("/internal/logs/raw").await;
    assert_eq!(raw["size"], json!({"cols": 80, "rows": 24}));
    let lines: Vec<&str> = raw["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["m"].as_str().unwrap())
        .collect();
    assert!(lines.contains(&"got prompt\n"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("Prompt executed in ")),
        "{lines:?}"
    );

    let mutating = reference("http/mutating_endpoints.json");
    for result in mutating["results"].as_array().unwrap() {
        let request = result["request"].as_str().unwrap();
        let Some(path) = request.strip_prefix("POST ") else {
            continue;
        };
        let r = match &result["request_body"] {
            Value::Null => client.post_raw(path, "").await,
            body => client
                .http
                .post(format!("{}{path}", sim.url()))
                .json(body)
                .send()
                .await
                .unwrap(),
        };
        assert_eq!(r.status(), 200, "{request}");
        assert!(r.headers().get("content-type").is_none(), "{request}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_foreign_origin_is_refused_on_a_loopback_host() {
    let sim = start().await;
    let http = reqwest::Client::new();
    let get = |origin: String| {
        http.get(format!("{}/prompt", sim.url()))
            .header("Origin", origin)
            .send()
    };
    assert_eq!(
        get("http://example.com".into()).await.unwrap().status(),
        403
    );
    assert_eq!(get(sim.url()).await.unwrap().status(), 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn odd_requests_never_break_the_server() {
    let sim = start().await;
    let client = Client::new(&sim);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let bodies = vec![
        json!(null),
        json!(5),
        json!("prompt"),
        json!([1, 2]),
        json!({"prompt": null}),
        json!({"prompt": "text"}),
        json!({"prompt": {"1": 5}}),
        json!({"prompt": {"1": {"class_type": 5, "inputs": {}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": []}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": [[1], "x"]}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": ["2", -7]}},
                          "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": 3}}}}),
        json!({"prompt": {"1": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "../../escape"}},
                          "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
                          "2": {"class_type": "EmptyImage", "inputs": {"width": 16384, "height": 16384, "batch_size": 4096, "color": 0}}}}),
        json!({"prompt": {"1": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
                          "2": {"class_type": "EmptyImage", "inputs": {"width": {"__value__": 8}, "height": "8", "batch_size": 1.5, "color": true}}}}),
        json!({"prompt": {}, "number": [1]}),
        json!({"prompt": {}, "extra_data": 5, "client_id": "x"}),
        json!({"prompt": {}, "partial_execution_targets": 5}),
        json!({"prompt": {"1": {"class_type": "LabSlowSteps", "inputs": {"steps": 1e300, "delay": "nan", "seed": -1, "width": 16, "height": 16}},
                          "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}, "prompt_id": null}),
    ];
    for body in &bodies {
        let (status, _) = client.post("/prompt", body).await;
        assert!([200, 400, 500].contains(&status), "{body}: {status}");
    }
    client.wait_idle().await;
    // The failures at run time became history entries, not crashes.
    let (_, history) = client.get("/history").await;
    let errors: Vec<String> = history
        .as_object()
        .unwrap()
        .values()
        .filter(|e| e["status"]["status_str"] == "error")
        .filter_map(|e| {
            e["status"]["messages"][2][1]["exception_type"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(errors.iter().any(|e| e == "Exception"), "{errors:?}");
    assert!(errors.iter().any(|e| e == "RuntimeError"), "{errors:?}");

    for path in ["/prompt", "/queue", "/history", "/free", "/interrupt"] {
        let r = client.post_raw(path, deep.clone()).await;
        assert!([200, 500].contains(&r.status().as_u16()), "{path}");
        for body in [
            json!(null),
            json!(7),
            json!([1]),
            json!({"delete": 5}),
            json!({"delete": [5, null]}),
        ] {
            let (status, _) = client.post(path, &body).await;
            assert!([200, 400, 500].contains(&status), "{path} {body}");
        }
    }
    let r = client
        .http
        .patch(format!("{}/internal/logs/subscribe", sim.url()))
        .json(&json!({"clientId": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    client.wait_idle().await;
    assert_eq!(client.get("/prompt").await.0, 200);
    sim.shutdown().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(sim: &SimHandle, path: &str) -> Socket {
    let url = format!("{}{path}", sim.url().replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect")
        .0
}

/// The next frame, or `None` when nothing comes within `wait`.
async fn next_frame(socket: &mut Socket, wait: Duration) -> Option<Message> {
    match tokio::time::timeout(wait, socket.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        _ => None,
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    loop {
        match next_frame(socket, Duration::from_secs(10))
            .await
            .expect("a frame")
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Binary(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until a JSON message of this type arrives.
async fn wait_for(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let v = next_json(socket).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// Reads until the server has closed the connection.
async fn closed(socket: &mut Socket) {
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the connection never closed");
}

#[tokio::test]
async fn websocket_handshake_rules() {
    let sim = start().await;
    let mut anonymous = ws(&sim, "/ws").await;
    let first = next_json(&mut anonymous).await;
    assert_eq!(first["type"], "status");
    let sid = first["data"]["sid"].as_str().unwrap();
    assert!(
        sid.len() == 32 && sid.chars().all(|c| c.is_ascii_hexdigit()),
        "{sid}"
    );

    let mut api = ws(&sim, "/api/ws?clientId=probe-api-ws").await;
    assert_eq!(next_json(&mut api).await["data"]["sid"], "probe-api-ws");
    // Anything but feature flags first, and later flags are ignored.
    api.send(Message::Text(r#"{"type":"hello"}"#.into()))
        .await
        .unwrap();
    api.send(Message::Text(
        comfy_client::protocol::client_feature_flags().into(),
    ))
    .await
    .unwrap();
    assert!(
        next_frame(&mut api, Duration::from_millis(300))
            .await
            .is_none()
    );

    let mut flagged = ws(&sim, "/ws?clientId=flagged").await;
    next_json(&mut flagged).await;
    flagged
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    flagged
        .send(Message::Text(
            comfy_client::protocol::client_feature_flags().into(),
        ))
        .await
        .unwrap();
    let reply = next_json(&mut flagged).await;
    assert_eq!(reply["type"], "feature_flags");
    assert_eq!(reply["data"], reference("http/get_features.json")["body"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_socket_with_the_same_id_takes_over_and_any_close_forgets_the_id() {
    let sim = start().await;
    let client = Client::new(&sim);
    let mut first = ws(&sim, "/ws?clientId=same").await;
    next_json(&mut first).await;
    let mut second = ws(&sim, "/ws?clientId=same").await;
    next_json(&mut second).await;
    client
        .queue(&small_save(1), json!({"client_id": "same"}))
        .await;
    // The newest socket gets everything, the older one nothing (not even broadcasts).
    let mut kinds = Vec::new();
    while let Some(m) = next_frame(&mut second, Duration::from_millis(500)).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let done = v["type"] == "executing" && v["data"]["node"].is_null();
            kinds.push(v["type"].as_str().unwrap().to_string());
            if done {
                break;
            }
        }
    }
    assert!(
        kinds.contains(&"execution_success".to_string()),
        "{kinds:?}"
    );
    assert!(
        next_frame(&mut first, Duration::from_millis(200))
            .await
            .is_none()
    );

    // Closing the old socket deregisters the id: the new one goes deaf too.
    first.close(None).await.unwrap();
    closed(&mut first).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    client
        .queue(&small_save(2), json!({"client_id": "same"}))
        .await;
    client.wait_idle().await;
    assert!(
        next_frame(&mut second, Duration::from_millis(200))
            .await
            .is_none()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_owner_reconnecting_mid_run_hears_which_node_runs() {
    let sim = start().await;
    let client = Client::new(&sim);
    let mut first = ws(&sim, "/ws?clientId=owner").await;
    next_json(&mut first).await;
    let id = client
        .queue(&long_run(), json!({"client_id": "owner"}))
        .await;
    wait_for(&mut first, "progress").await;
    first.close(None).await.unwrap();
    closed(&mut first).await;
    let mut socket = ws(&sim, "/ws?clientId=owner").await;
    assert_eq!(next_json(&mut socket).await["type"], "status");
    assert_eq!(
        next_json(&mut socket).await,
        json!({"type": "executing", "data": {"node": "1"}})
    );
    client.post("/interrupt", &json!({"prompt_id": id})).await;
    loop {
        let v = next_json(&mut socket).await;
        if v["type"] == "execution_interrupted" {
            assert_eq!(v["data"]["node_id"], "1");
            break;
        }
    }
    sim.shutdown().await;
}

/// A small text-to-image graph like the demo's.
fn txt2img(steps: u32, size: u32) -> Value {
    json!({
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
              "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at sunset", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

async fn vram_free(client: &Client) -> u64 {
    client.get("/system_stats").await.1["devices"][0]["vram_free"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn text_to_image_samples_with_previews_and_uses_vram() {
    let sim = start().await;
    let client = Client::new(&sim);
    let idle = vram_free(&client).await;
    let mut socket = ws(&sim, "/ws?clientId=painter").await;
    next_json(&mut socket).await;
    let id = client
        .queue(&txt2img(5, 128), json!({"client_id": "painter"}))
        .await;
    let mut previews = 0;
    let mut progress_max = 0;
    loop {
        match next_frame(&mut socket, Duration::from_secs(20))
            .await
            .expect("frame")
        {
            Message::Binary(frame) => {
                assert_eq!(
                    &frame[..8],
                    &[0, 0, 0, 1, 0, 0, 0, 1],
                    "type-1 JPEG preview"
                );
                let jpeg = image::load_from_memory(&frame[8..]).expect("a real JPEG");
                assert!(jpeg.width() <= 512 && jpeg.height() <= 512);
                previews += 1;
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "progress" {
                    progress_max = v["data"]["max"].as_u64().unwrap();
                }
                if v["type"] == "executing" && v["data"]["node"].is_null() {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!((previews, progress_max), (5, 5));
    let entry = client.history_entry(&id).await;
    assert_eq!(entry["status"]["status_str"], "success");
    let image = &entry["outputs"]["9"]["images"][0];
    assert_eq!(image["filename"], "ComfyUI_00001_.png");
    // The model stays loaded after the run: less VRAM is free than before.
    let loaded = vram_free(&client).await;
    assert!(loaded < idle, "{loaded} !< {idle}");

    // A new seed: loader and text encoders come from the cache.
    let mut again = txt2img(3, 128);
    again["3"]["inputs"]["seed"] = json!(43);
    let id = client.queue(&again, json!({})).await;
    client.wait_idle().await;
    let entry = client.history_entry(&id).await;
    let mut cached: Vec<String> =
        serde_json::from_value(entry["status"]["messages"][1][1]["nodes"].clone()).unwrap();
    cached.sort();
    assert_eq!(cached, ["4", "5", "6", "7"]);

    // Far too big a batch: CUDA runs out of memory, and the models are unloaded.
    let mut huge = txt2img(3, 2048);
    huge["5"]["inputs"]["batch_size"] = json!(8);
    let id = client.queue(&huge, json!({})).await;
    client.wait_idle().await;
    let entry = client.history_entry(&id).await;
    let error = &entry["status"]["messages"][2][1];
    assert_eq!(error["exception_type"], "torch.OutOfMemoryError");
    assert_eq!(error["node_type"], "KSampler");
    assert!(vram_free(&client).await > loaded);

    // POST /free unloads models between prompts.
    client.queue(&txt2img(2, 64), json!({})).await;
    client.wait_idle().await;
    let before = vram_free(&client).await;
    client
        .post(
            "/free",
            &json!({"unload_models": true, "free_memory": true}),
        )
        .await;
    let started = Instant::now();
    while vram_free(&client).await <= before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "models never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_sockets_and_frees_the_port_for_a_restart() {
    let sim = start().await;
    let addr = sim.addr();
    let mut socket = ws(&sim, "/ws?clientId=stays").await;
    next_json(&mut socket).await;
    sim.shutdown().await;
    let closed = next_frame(&mut socket, Duration::from_secs(5)).await;
    assert!(
        matches!(closed, Some(Message::Close(_)) | None),
        "{closed:?}"
    );

    let again = SimServer::start(SimConfig {
        listen: addr,
        step: Duration::from_millis(2),
        ..SimConfig::default()
    })
    .await
    .expect("same port again");
    let client = Client::new(&again);
    assert_eq!(client.remaining().await, 0);
    assert_eq!(client.get("/history").await.1, json!({}));
    again.shutdown().await;
}

#[tokio::test]
async fn demo_traffic_flows_through_the_queue() {
    let sim = SimServer::start(SimConfig {
        step: Duration::from_millis(1),
        demo: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = Client::new(&sim);
    let started = Instant::now();
    let history = loop {
        let (_, history) = client.get("/history").await;
        let done = history.as_object().map_or(0, |h| h.len());
        if done >= 3 {
            break history;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "demo produced {done} entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entries: Vec<&Value> = history.as_object().unwrap().values().collect();
    let with_image = entries
        .iter()
        .find_map(|e| e["outputs"]["9"]["images"][0].as_object())
        .expect("a saved image");
    let url = format!(
        "{}/view?filename={}&type=output",
        sim.url(),
        with_image["filename"].as_str().unwrap()
    );
    let png = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(image::load_from_memory(&png).is_ok());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_network_drop_keeps_the_run_going_and_the_owner_can_come_back() {
    let sim = start().await;
    let client = Client::new(&sim);
    let mut socket = ws(&sim, "/ws?clientId=dropped").await;
    next_json(&mut socket).await;
    let id = client
        .queue(&long_run(), json!({"client_id": "dropped"}))
        .await;
    wait_for(&mut socket, "progress").await;
    sim.disconnect_all();
    // Frames already sent may still arrive; then the connection ends without a close frame.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) => return false,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return true,
            }
        }
    })
    .await
    .expect("the connection ends");
    assert!(ended, "no close frame on a network drop");
    assert_eq!(client.remaining().await, 1, "the prompt still runs");
    let mut back = ws(&sim, "/ws?clientId=dropped").await;
    assert_eq!(next_json(&mut back).await["type"], "status");
    assert_eq!(next_json(&mut back).await["data"], json!({"node": "1"}));
    client.post("/interrupt", &json!({"prompt_id": id})).await;
    client.wait_idle().await;
    sim.shutdown().await;
}

#[test]
fn the_demo_workflow_is_public_and_valid_for_the_server() {
    let workflow = comfy_sim::demo::text_to_image("a quiet lake", 7, 4, 64, 64);
    assert_eq!(workflow["9"]["class_type"], "SaveImage");
    assert_eq!(workflow["5"]["inputs"]["width"], 64);
}

/// Binary frames a socket receives until its prompt ends: (event type, image format or mime,
/// image size).
async fn images_until_done(socket: &mut Socket) -> Vec<(u32, String, (u32, u32))> {
    let mut out = Vec::new();
    loop {
        match next_frame(socket, Duration::from_secs(20))
            .await
            .expect("frame")
        {
            Message::Binary(frame) => {
                let word = |at: usize| {
                    u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]])
                };
                let (kind, image) = match word(0) {
                    1 => (word(4).to_string(), &frame[8..]),
                    4 => {
                        let len = word(4) as usize;
                        let meta: Value = serde_json::from_slice(&frame[8..8 + len]).unwrap();
                        (
                            meta["image_type"].as_str().unwrap().to_string(),
                            &frame[8 + len..],
                        )
                    }
                    _ => continue,
                };
                let img = image::load_from_memory(image).expect("a real image");
                out.push((word(0), kind, (img.width(), img.height())));
            }
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "executing" && v["data"]["node"].is_null() {
                    return out;
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn save_image_websocket_sends_full_pngs_the_way_previews_go() {
    let sim = start().await;
    let client = Client::new(&sim);
    let workflow = workflow("save_image_websocket");

    let mut legacy = ws(&sim, "/ws?clientId=legacy").await;
    next_json(&mut legacy).await;
    let id = client
        .queue(&workflow, json!({"client_id": "legacy"}))
        .await;
    let frames = images_until_done(&mut legacy).await;
    // Two 32 px JPEG previews from the slow node, then the PNG itself: all type 1.
    assert_eq!(
        frames,
        [
            (1, "1".to_string(), (32, 32)),
            (1, "1".to_string(), (32, 32)),
            (1, "2".to_string(), (32, 32))
        ]
    );
    let entry = client.history_entry(&id).await;
    assert_eq!(entry["outputs"], json!({}));
    assert_eq!(entry["status"]["status_str"], "success");

    let mut modern = ws(&sim, "/ws?clientId=modern").await;
    next_json(&mut modern).await;
    modern
        .send(Message::Text(
            comfy_client::protocol::client_feature_flags().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut modern).await["type"], "feature_flags");
    let mut again = workflow.clone();
    again["1"]["inputs"]["seed"] = json!(8);
    client.queue(&again, json!({"client_id": "modern"})).await;
    let kinds: Vec<(u32, String)> = images_until_done(&mut modern)
        .await
        .into_iter()
        .map(|(t, k, _)| (t, k))
        .collect();
    assert_eq!(
        kinds,
        [
            (4, "image/jpeg".to_string()),
            (4, "image/jpeg".to_string()),
            (4, "image/png".to_string())
        ]
    );
    sim.shutdown().await;
}
