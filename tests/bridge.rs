//! The comfytop bridge path against the simulator's emulation of it (`sim --bridge`), over
//! real sockets: a browser tab's prompt reaches a watching comfytop live, the tab gets its own
//! messages unchanged, a bystander gets nothing more than before, and comfytop registers again
//! after a cut. The bridge itself (Python) has its own tests in `assets/bridge/`.

mod support;

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use comfy_sim::{SimConfig, SimHandle, SimServer};
use comfytop::bridge::BridgeLink;
use comfytop::comfy::Decoded;
use comfytop::comfy::api::PromptRequest;
use comfytop::comfy::binary::BinaryFrame;
use comfytop::comfy::connection::{ConnEvent, Connection, ConnectionConfig};
use comfytop::comfy::protocol::ServerMessage;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::tracker::{Outcome, Tracker};
use support::{PATIENCE, client, comfytop, until_finished, workflow};

async fn simulator(bridge: bool) -> SimHandle {
    SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        bridge,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A plain WebSocket client, as a browser tab is: every frame it gets, in order.
struct RawSocket {
    frames: mpsc::UnboundedReceiver<Message>,
}

impl RawSocket {
    async fn connect(url: &str, client_id: &str) -> Self {
        let ws_url = format!("{}/ws?clientId={client_id}", url.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let mut raw = Self { frames };
        // Registered once the server greets it.
        let first = raw.next().await.expect("no greeting");
        assert!(matches!(first, Message::Text(_)), "{first:?}");
        raw
    }

    async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(PATIENCE, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every frame until the text message `last` accepts (included).
    async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Message> {
        let mut seen = Vec::new();
        while let Some(frame) = self.next().await {
            let done = match &frame {
                Message::Text(text) => serde_json::from_str(text).is_ok_and(|v: Value| last(&v)),
                _ => false,
            };
            seen.push(frame);
            if done {
                return seen;
            }
        }
        panic!("the socket ended before the awaited message; got {seen:?}")
    }

    /// Whatever arrived until now.
    fn drain(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.frames.try_recv().ok()).collect()
    }
}

fn is_relayed(frame: &Message) -> bool {
    match frame {
        Message::Text(text) => text.contains("\"comfytop_bridge\""),
        Message::Binary(bytes) => bytes.starts_with(b"CMTB"),
        _ => false,
    }
}

fn prompt_over(prompt_id: &str) -> impl Fn(&Value) -> bool {
    let prompt_id = prompt_id.to_string();
    move |v: &Value| {
        v["type"] == "executing"
            && v["data"]["node"].is_null()
            && v["data"]["prompt_id"] == prompt_id
    }
}

/// The frames as the tab got them, minus what every socket gets (`status`, progress text).
fn execution_frames(frames: &[Message]) -> Vec<Message> {
    frames
        .iter()
        .filter(|frame| match frame {
            Message::Text(text) => {
                !text.starts_with(r#"{"type": "status""#)
                    && serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] != "status")
            }
            Message::Binary(bytes) => !bytes.starts_with(&[0, 0, 0, 3]),
            _ => false,
        })
        .cloned()
        .collect()
}

/// comfytop's side: a connection that joins the bridge after connecting, and a tracker fed
/// with what comes, as the dashboard and `watch` do.
struct Watcher {
    events: mpsc::Receiver<ConnEvent>,
    connection: Connection,
    tracker: Tracker,
    frames: Vec<Decoded>,
}

impl Watcher {
    async fn start(url: &str, client_id: &str) -> (Self, BridgeLink) {
        let server = ServerUrl::parse(url).unwrap();
        let (tx, events) = mpsc::channel(1024);
        let connection = Connection::spawn(ConnectionConfig::new(server, client_id), tx);
        let mut watcher = Self {
            events,
            connection,
            tracker: Tracker::new(client_id),
            frames: Vec::new(),
        };
        watcher
            .until(|event| matches!(event, ConnEvent::Connected { .. }))
            .await;
        let link = comfytop::bridge::join(&client(url), client_id).await;
        (watcher, link)
    }

    async fn until(&mut self, done: impl Fn(&ConnEvent) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("timed out")
                .expect("the connection ended");
            if let Some(input) = comfytop::session::tracker_input(event.clone()) {
                self.tracker.handle(0.0, input);
            }
            if let ConnEvent::Frame(frame) = &event {
                self.frames.push(frame.decoded.clone());
            }
            if done(&event) {
                return;
            }
        }
    }
}

fn relayed_end_of(prompt_id: &str) -> impl Fn(&ConnEvent) -> bool {
    let prompt_id = prompt_id.to_string();
    move |event: &ConnEvent| {
        matches!(event, ConnEvent::Frame(frame)
            if matches!(&frame.decoded, Decoded::Message(m @ ServerMessage::Relayed(_))
                if m.unrelayed().0.kind() == "executing"
                    && m.prompt_id() == Some(prompt_id.as_str())
                    && matches!(m.unrelayed().0, ServerMessage::Executing(e) if e.node.is_none())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_tabs_prompt_reaches_a_watching_comfytop_live_and_nobody_else_changes() {
    let sim = simulator(true).await;
    let url = sim.url();
    let mut tab = RawSocket::connect(&url, "browser-tab").await;
    let mut bystander = RawSocket::connect(&url, "bystander").await;
    let (mut watcher, link) = Watcher::start(&url, "comfytop-watcher").await;
    assert_eq!(
        link,
        BridgeLink::Watching {
            version: "1.0.0".into()
        }
    );

    let request = PromptRequest {
        prompt: workflow("slow_steps_full.json"),
        client_id: Some("browser-tab".into()),
        ..Default::default()
    };
    let prompt_id = client(&url).submit(&request).await.unwrap().prompt_id;
    watcher.until(relayed_end_of(&prompt_id)).await;
    let tab_frames = tab.until(prompt_over(&prompt_id)).await;

    // The tab got every message of its prompt, and no copy of anything.
    assert!(!tab_frames.iter().any(is_relayed), "{tab_frames:?}");
    let owned = execution_frames(&tab_frames);
    assert!(owned.len() > 10, "{owned:?}");

    // The watcher got each of them once, in the same order, marked with the tab's id.
    let relayed: Vec<Message> = watcher
        .frames
        .iter()
        .filter_map(|decoded| match decoded {
            Decoded::Message(ServerMessage::Relayed(r)) => {
                assert_eq!(r.owner, "browser-tab");
                Some(Message::Text(r.message.to_json().into()))
            }
            Decoded::Binary(BinaryFrame::Relayed { owner, frame }) => {
                assert_eq!(owner, "browser-tab");
                Some(Message::Binary(frame.encode()))
            }
            _ => None,
        })
        .collect();
    let as_values = |frames: &[Message]| -> Vec<Value> {
        frames
            .iter()
            .map(|frame| match frame {
                Message::Text(text) => serde_json::from_str(text).unwrap(),
                Message::Binary(bytes) => json!({ "binary": bytes.to_vec() }),
                other => json!({ "other": other.to_string() }),
            })
            .collect()
    };
    assert_eq!(as_values(&relayed), as_values(&owned));
    assert!(
        relayed.iter().any(|f| matches!(f, Message::Binary(_))),
        "no preview was relayed"
    );

    // Tracked as the tab's prompt, seen live: every node, its steps, its outcome.
    let record = watcher.tracker.prompt(&prompt_id).unwrap();
    assert!(record.live && record.relayed && !record.ours);
    assert_eq!(record.client_id.as_deref(), Some("browser-tab"));
    assert_eq!(record.outcome(), Some(&Outcome::Success));
    let steps = record.nodes.get("1").unwrap();
    assert_eq!((steps.value, steps.max), (6.0, 6.0));

    // A socket that did not ask got only what it always gets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bystanders = bystander.drain();
    assert!(!bystanders.iter().any(is_relayed), "{bystanders:?}");
    assert!(execution_frames(&bystanders).is_empty(), "{bystanders:?}");
    watcher.connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bridge_nothing_is_relayed_and_comfytop_says_it_is_absent() {
    let sim = simulator(false).await;
    let url = sim.url();
    let (mut watcher, link) = Watcher::start(&url, "comfytop-watcher").await;
    assert_eq!(link, BridgeLink::Absent);
    let request = PromptRequest {
        prompt: workflow("small_save.json"),
        client_id: Some("browser-tab".into()),
        ..Default::default()
    };
    let prompt_id = client(&url).submit(&request).await.unwrap().prompt_id;
    until_finished(&client(&url), &prompt_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    watcher.until(|_| true).await;
    while let Ok(event) = watcher.events.try_recv() {
        if let ConnEvent::Frame(frame) = event {
            watcher.frames.push(frame.decoded);
        }
    }
    assert!(
        !watcher.frames.iter().any(|d| matches!(
            d,
            Decoded::Message(ServerMessage::Relayed(_))
                | Decoded::Binary(BinaryFrame::Relayed { .. })
        )),
        "{:?}",
        watcher.frames
    );
    watcher.connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_routes_answer_as_the_python_bridge_does() {
    let sim = simulator(true).await;
    let url = sim.url();
    let http = reqwest::Client::new();
    let info: Value = http
        .get(format!("{url}/comfytop/bridge"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info,
        json!({"name": "comfytop-bridge", "version": "1.0.0", "protocol": 1, "enabled": true, "watchers": 0})
    );
    let watch = |body: String| {
        let http = http.clone();
        let url = format!("{url}/api/comfytop/bridge/watch");
        async move { http.post(url).body(body).send().await.unwrap() }
    };
    assert_eq!(watch("not json".into()).await.status(), 400);
    assert_eq!(watch(r#"{"enabled": true}"#.into()).await.status(), 400);
    let unknown = watch(r#"{"clientId": "nobody", "enabled": true}"#.into()).await;
    assert_eq!(unknown.status(), 409);
    let error: Value = unknown.json().await.unwrap();
    assert!(
        error["error"].as_str().unwrap().contains("nobody"),
        "{error}"
    );

    // A registration lasts as long as its socket.
    let _socket = RawSocket::connect(&url, "short-lived").await;
    let ok = watch(r#"{"clientId": "short-lived", "enabled": true}"#.into()).await;
    assert_eq!(ok.status(), 200);
    let count = |url: String| async move {
        let info: Value = reqwest::get(format!("{url}/comfytop/bridge"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        info["watchers"].as_u64().unwrap()
    };
    assert_eq!(count(url.clone()).await, 1);
    let off = watch(r#"{"clientId": "short-lived", "enabled": false}"#.into()).await;
    assert_eq!(off.status(), 200);
    assert_eq!(count(url.clone()).await, 0);
    watch(r#"{"clientId": "short-lived", "enabled": true}"#.into()).await;
    sim.disconnect_all();
    support::eventually("the cut socket's registration to end", || {
        let url = url.clone();
        async move { (count(url).await == 0).then_some(()) }
    })
    .await;
}

/// The next JSON line `wanted` accepts; panics with what came before it after [`PATIENCE`].
async fn next_matching(
    lines: &mut mpsc::UnboundedReceiver<String>,
    what: &str,
    wanted: fn(&Value) -> bool,
) -> Value {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} in {seen:#?}"))
            .unwrap_or_else(|| panic!("watch ended before {what}: {seen:#?}"));
        let value: Value = serde_json::from_str(&line).unwrap();
        seen.push(line);
        if wanted(&value) {
            return value;
        }
    }
}

/// `comfytop watch` joins the bridge on every connect: after a cut it registers again and the
/// browser's prompts keep coming live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_joins_the_bridge_again_after_a_cut_and_prints_relayed_events() {
    let sim = simulator(true).await;
    let url = sim.url();
    let mut child = comfytop(&["watch", "--json", &url]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let joined = |v: &Value| v["event"] == "bridge" && v["state"] == "watching";
    let first = next_matching(&mut lines, "bridge line", joined).await;
    assert_eq!(first["version"], "1.0.0");

    sim.disconnect_all();
    next_matching(&mut lines, "disconnect", |v| v["event"] == "disconnected").await;
    next_matching(&mut lines, "bridge line after the cut", joined).await;

    let _tab = RawSocket::connect(&url, "browser-tab").await;
    let request = PromptRequest {
        prompt: workflow("small_save.json"),
        client_id: Some("browser-tab".into()),
        ..Default::default()
    };
    client(&url).submit(&request).await.unwrap();
    let progress = next_matching(&mut lines, "relayed progress", |v| {
        v["event"] == "progress" && v["relayed_owner"] == "browser-tab"
    })
    .await;
    assert_eq!(progress["max"], 4);
    next_matching(&mut lines, "relayed success", |v| {
        v["event"] == "execution_success" && v["relayed_owner"] == "browser-tab"
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_says_when_a_server_has_no_bridge() {
    let sim = simulator(false).await;
    let url = sim.url();
    let lines =
        support::watch_until(&["watch", &url], |line| line.contains("comfytop bridge")).await;
    let last = lines.last().unwrap();
    assert!(
        last.contains("no comfytop bridge on") && last.contains("comfytop install-bridge"),
        "{lines:#?}"
    );
}

/// The dashboard, in a pseudo-terminal, while a browser tab's prompt runs: live through the
/// bridge where there is one, with the install hint where there is none.
#[test]
fn the_dashboard_shows_a_browser_prompt_live_through_the_bridge_or_says_how_to_get_it() {
    use support::pty::PtyApp;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for bridge in [true, false] {
        // Nominal speed: the prompt runs for seconds, long enough to be seen running.
        let sim = runtime
            .block_on(SimServer::start(SimConfig {
                bridge,
                ..SimConfig::default()
            }))
            .unwrap();
        let url = sim.url();
        let mut app = PtyApp::connected_dashboard(&url);
        let request = PromptRequest {
            prompt: workflow("slow_steps_full.json"),
            client_id: Some("a-browser-tab".into()),
            ..Default::default()
        };
        runtime.block_on(client(&url).submit(&request)).unwrap();
        let screen = if bridge {
            app.wait_for("a relayed prompt", Duration::from_secs(20), |s| {
                s.contains("queued by another client · via bridge") && s.contains("/6")
            })
        } else {
            app.wait_for("the install hint", Duration::from_secs(20), |s| {
                s.contains("see every prompt live: comfytop install-bridge")
            })
        };
        assert_eq!(screen.contains("│ bridge │"), bridge, "{screen}");
        assert_eq!(screen.contains("⇄ a-browser-tab"), bridge, "{screen}");
        app.send(b"q");
        assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
        drop(sim);
    }
}

#[test]
fn install_bridge_writes_prints_replaces_and_removes_it() {
    let output = |args: &[&str]| comfytop(args).output().unwrap();
    let printed = output(&["install-bridge", "--print"]);
    assert_eq!(printed.status.code(), Some(0));
    assert!(support::text(&printed.stdout).contains("NODE_CLASS_MAPPINGS = {}"));

    let comfyui = tempfile::tempdir().unwrap();
    let dir = comfyui.path().to_str().unwrap();
    let refused = output(&["install-bridge", dir]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        support::text(&refused.stderr).contains("is not a ComfyUI checkout"),
        "{}",
        support::text(&refused.stderr)
    );
    for file in ["main.py", "server.py", "execution.py"] {
        std::fs::write(comfyui.path().join(file), "").unwrap();
    }
    std::fs::create_dir(comfyui.path().join("custom_nodes")).unwrap();
    let installed_at = comfyui.path().join("custom_nodes/comfytop_bridge.py");

    let installed = output(&["install-bridge", dir]);
    assert_eq!(installed.status.code(), Some(0));
    let said = support::text(&installed.stdout);
    assert!(
        said.contains("Installed the comfytop bridge 1.0.0"),
        "{said}"
    );
    assert!(said.contains("Restart ComfyUI"), "{said}");
    assert_eq!(std::fs::read(&installed_at).unwrap(), printed.stdout);

    let again = output(&["install-bridge", dir]);
    assert!(support::text(&again.stdout).contains("already installed"));
    std::fs::write(&installed_at, "VERSION = \"0.1.0\"\n").unwrap();
    let updated = output(&["install-bridge", dir]);
    assert!(
        support::text(&updated.stdout).contains("from 0.1.0 to 1.0.0"),
        "{}",
        support::text(&updated.stdout)
    );
    assert_eq!(std::fs::read(&installed_at).unwrap(), printed.stdout);

    let removed = output(&["install-bridge", dir, "--uninstall"]);
    assert_eq!(removed.status.code(), Some(0));
    assert!(support::text(&removed.stdout).contains("Removed the comfytop bridge"));
    assert!(!installed_at.exists());

    let both = output(&["install-bridge", dir, "--print"]);
    assert_eq!(both.status.code(), Some(2), "--print takes no folder");
    let neither = output(&["install-bridge"]);
    assert_eq!(
        neither.status.code(),
        Some(2),
        "a folder or --print is needed"
    );
}
