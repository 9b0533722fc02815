//! What the command tests share: the simulated ComfyUI on loopback, a TCP proxy that can cut
//! connections, helpers to run the real binary, and the binary in a pseudo-terminal.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod pty;

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use comfy_sim::{SimConfig, SimHandle, SimServer};
use comfytop::comfy::api::{QueueSnapshot, RawLogs};
use comfytop::comfy::http::ComfyClient;
use comfytop::comfy::server_url::ServerUrl;

pub const REFERENCE: &str = comfytop::FIXTURES;

pub fn workflow_path(name: &str) -> String {
    format!("{REFERENCE}/workflows/{name}")
}

pub fn workflow(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(workflow_path(name)).unwrap()).unwrap()
}

/// Time allowed for anything a test waits on; generous, since machines are noisy.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The simulated ComfyUI, fast: one sampler step takes 5 ms, so a Lab `delay` of 0.3 s takes
/// 15 ms and the long interruptible run about 25 s.
pub struct TestServer {
    sim: SimHandle,
}

impl TestServer {
    pub async fn start() -> Self {
        let sim = SimServer::start(SimConfig {
            step: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        Self { sim }
    }

    pub fn url(&self) -> String {
        self.sim.url()
    }

    /// Cuts every WebSocket without a close frame; the server and its prompts go on.
    pub fn disconnect_all(&self) {
        self.sim.disconnect_all();
    }

    /// What the server logged about every `POST /interrupt` so far, as ComfyUI logs them:
    /// `Interrupting prompt ID`, `Prompt ID is not currently running, skipping interrupt`, or
    /// `Global interrupt (no prompt_id specified)`.
    pub async fn interrupts(&self) -> Vec<String> {
        let url = format!("{}/internal/logs/raw", self.url());
        let logs: RawLogs = reqwest::get(url).await.unwrap().json().await.unwrap();
        logs.entries
            .into_iter()
            .map(|e| e.m.trim().to_string())
            .filter(|m| {
                m.starts_with("Interrupting prompt ")
                    || m.ends_with("is not currently running, skipping interrupt")
                    || m.starts_with("Global interrupt")
            })
            .collect()
    }
}

/// A loopback TCP proxy in front of a server: `cut` drops every open connection, `block`
/// refuses new ones until `unblock`.
pub struct CuttingProxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    blocked: bool,
    connections: Vec<JoinHandle<()>>,
}

impl CuttingProxy {
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = accept_state.lock().unwrap();
                if state.blocked {
                    continue;
                }
                let upstream = upstream.clone();
                state.connections.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { url, state, task }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Drops every connection and refuses new ones.
    pub fn cut_and_block(&self) {
        let mut state = self.state.lock().unwrap();
        state.blocked = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    pub fn unblock(&self) {
        self.state.lock().unwrap().blocked = false;
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
        for connection in self.state.lock().unwrap().connections.drain(..) {
            connection.abort();
        }
    }
}

pub fn client(url: &str) -> ComfyClient {
    ComfyClient::new(ServerUrl::parse(url).unwrap()).unwrap()
}

/// Polls `check` until it gives a value; panics after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn queue(client: &ComfyClient) -> QueueSnapshot {
    client.queue().await.unwrap()
}

/// Waits until `prompt_id` runs.
pub async fn until_running(client: &ComfyClient, prompt_id: &str) {
    eventually(&format!("{prompt_id} to run"), || async {
        let q = client.queue().await.ok()?;
        q.queue_running
            .iter()
            .any(|i| i.prompt_id == prompt_id)
            .then_some(())
    })
    .await
}

/// Waits for the history entry of `prompt_id`; returns its `status_str` and the entry.
pub async fn until_finished(
    client: &ComfyClient,
    prompt_id: &str,
) -> comfytop::comfy::api::HistoryEntry {
    eventually(&format!("{prompt_id} to finish"), || async {
        client.history_item(prompt_id).await.ok().flatten()
    })
    .await
}

/// Where the binary under test keeps its state (the kept client ids): apart from the user's.
pub const STATE_DIR: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/comfytop-state");
/// A config directory with no config in it, so a user's config changes no test.
pub const NO_CONFIG_HOME: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/no-config");

/// The binary, with no server in the environment, no config, and state of its own.
pub fn comfytop(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comfytop"));
    command
        .args(args)
        .env_remove("COMFYUI_URL")
        .env_remove("COMFYUI_HEADERS")
        .env_remove("COMFYTOP_CONFIG")
        .env("XDG_CONFIG_HOME", NO_CONFIG_HOME)
        .env("COMFYTOP_STATE_DIR", STATE_DIR)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary to its end without blocking the runtime the server runs on.
pub async fn run(args: &[&str]) -> Output {
    let mut command = comfytop(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `comfytop watch` with `args` until it prints a line that `wanted` accepts (at most
/// 20 s), and returns the lines printed so far.
pub async fn watch_until(args: &[&str], wanted: fn(&str) -> bool) -> Vec<String> {
    let mut child = comfytop(args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = wanted(&line);
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    lines.await.unwrap()
}

/// A simulator with 5 ms steps, on a runtime of its own, for tests that drive the binary in a
/// pseudo-terminal from a plain thread.
pub fn fast_simulator() -> (tokio::runtime::Runtime, SimHandle) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(SimServer::start(SimConfig {
            step: Duration::from_millis(5),
            ..SimConfig::default()
        }))
        .unwrap();
    (runtime, sim)
}

/// Queues a small workflow on `url` as a browser tab would, waits for its end, and returns its
/// id.
pub fn run_prompt_from_elsewhere(runtime: &tokio::runtime::Runtime, url: &str) -> String {
    let request = comfytop::comfy::api::PromptRequest {
        prompt: workflow("small_save.json"),
        client_id: Some("a-browser-tab".into()),
        ..Default::default()
    };
    let client = client(url);
    let accepted = runtime.block_on(client.submit(&request)).unwrap();
    runtime.block_on(until_finished(&client, &accepted.prompt_id));
    accepted.prompt_id
}
