//! Several simulators at once, and a flaky one: each server is on its own port with its own
//! queue, history and log, and an outage really closes the port and drops the WebSockets, then
//! the server comes back on the same port with its history.
//!
//! The machine running these may be shared and slow: nothing here asserts how long anything
//! takes, only that it happens within a generous wait.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use comfy_sim::{Outage, SimConfig, SimFleet};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_millis(5);

/// How long "eventually" may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn base() -> SimConfig {
    SimConfig {
        step: STEP,
        ..SimConfig::default()
    }
}

/// Retries `attempt` every few milliseconds until it gives something.
async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = attempt().await {
            return found;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Status and JSON body of a GET, `None` when the server cannot be reached.
async fn try_get(http: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let response = http.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// A GET that must succeed with 200.
async fn get(http: &reqwest::Client, url: &str) -> Value {
    match try_get(http, url).await {
        Some((200, body)) => body,
        other => panic!("GET {url}: {other:?}"),
    }
}

/// Queues the demo's text-to-image graph; `None` when the server cannot be reached.
async fn try_queue(http: &reqwest::Client, base: &str) -> Option<String> {
    let workflow = comfy_sim::demo::text_to_image("a quiet lake", 7, 4, 64, 64);
    let response = http
        .post(format!("{base}/prompt"))
        .json(&json!({"prompt": workflow}))
        .send()
        .await
        .ok()?;
    assert_eq!(response.status().as_u16(), 200, "the prompt is accepted");
    let body: Value = response.json().await.ok()?;
    body["prompt_id"].as_str().map(str::to_string)
}

/// Every prompt id in a `/queue` answer, running and pending.
fn queued_ids(queue: &Value) -> Vec<String> {
    ["queue_running", "queue_pending"]
        .iter()
        .filter_map(|key| queue[key].as_array())
        .flatten()
        .filter_map(|item| item[1].as_str().map(str::to_string))
        .collect()
}

/// Whether a fresh TCP connection to `addr` is refused (nothing listens there).
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

#[tokio::test]
async fn three_servers_answer_each_on_its_own_port() {
    let mut fleet = SimFleet::start(SimFleet::configs(&base(), 3))
        .await
        .expect("the fleet starts");
    let addrs: Vec<SocketAddr> = fleet.servers.iter().map(|s| s.addr()).collect();
    assert_eq!(addrs.iter().collect::<HashSet<_>>().len(), 3, "{addrs:?}");

    let http = reqwest::Client::new();
    for (addr, url) in addrs.iter().zip(fleet.urls()) {
        let queue = get(&http, &format!("{url}/queue")).await;
        assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
        // Each one says which address it listens on, in its stats and in its own log.
        let stats = get(&http, &format!("{url}/system_stats")).await;
        assert!(stats["devices"].is_array(), "{stats}");
        assert_eq!(
            stats["system"]["argv"].as_array().and_then(|a| a.last()),
            Some(&json!(addr.to_string())),
            "{stats}"
        );
        let log = get(&http, &format!("{url}/internal/logs")).await;
        let log = log.as_str().unwrap_or_default();
        for other in &addrs {
            let mentions = log.contains(&format!("http://{other}"));
            assert_eq!(mentions, other == addr, "log of {addr}: {log}");
        }
    }

    // One stopping leaves the others serving.
    let first = fleet.servers.remove(0);
    first.shutdown().await;
    assert!(refused(addrs[0]).await, "the first server's port is closed");
    for url in fleet.urls() {
        get(&http, &format!("{url}/queue")).await;
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_prompt_queued_on_one_server_stays_on_that_one() {
    let fleet = SimFleet::start(SimFleet::configs(&base(), 3))
        .await
        .expect("the fleet starts");
    let urls = fleet.urls();
    let http = reqwest::Client::new();
    let id = try_queue(&http, &urls[1]).await.expect("queued");

    // Right away it is queued there, or already done.
    let queue = get(&http, &format!("{}/queue", urls[1])).await;
    let history = get(&http, &format!("{}/history", urls[1])).await;
    assert!(
        queued_ids(&queue).contains(&id) || history.get(&id).is_some(),
        "{queue} {history}"
    );
    let entry = eventually("the prompt in the history of its server", || async {
        let history = get(&http, &format!("{}/history/{id}", urls[1])).await;
        history.get(&id).cloned()
    })
    .await;
    assert_eq!(entry["status"]["status_str"], "success", "{entry}");

    for url in [&urls[0], &urls[2]] {
        let queue = get(&http, &format!("{url}/queue")).await;
        assert_eq!(queue, json!({"queue_running": [], "queue_pending": []}));
        assert_eq!(get(&http, &format!("{url}/history")).await, json!({}));
        assert_eq!(
            get(&http, &format!("{url}/history/{id}")).await,
            json!({}),
            "{url}"
        );
    }
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_flaky_server_closes_its_port_and_comes_back_with_its_history() {
    let steady = base();
    let flaky = SimConfig {
        outage: Some(Outage {
            every: Duration::from_millis(1200),
            down_for: Duration::from_millis(500),
        }),
        ..base()
    };
    let fleet = SimFleet::start(vec![steady, flaky])
        .await
        .expect("the fleet starts");
    let (steady_url, flaky_url) = (fleet.servers[0].url(), fleet.servers[1].url());
    let flaky_addr = fleet.servers[1].addr();
    assert!(fleet.servers[0].outage().is_none());
    assert!(fleet.servers[1].outage().is_some());
    let http = reqwest::Client::new();

    // Requests may meet an outage: each is retried until the server answers.
    let id = eventually("a prompt queued on the flaky server", || {
        try_queue(&http, &flaky_url)
    })
    .await;
    eventually("the prompt in the flaky server's history", || async {
        let (_, history) = try_get(&http, &format!("{flaky_url}/history/{id}")).await?;
        history.get(&id).map(|_| ())
    })
    .await;

    let ws_url = format!("{}/ws?clientId=flaky", flaky_url.replacen("http", "ws", 1));
    let mut socket = eventually("a WebSocket to the flaky server", || async {
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .ok()?;
        // The first `status` says the socket is registered, so an outage from now on cuts it.
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => Some(socket),
            _ => None,
        }
    })
    .await;

    eventually("the flaky server refusing connections", || async {
        refused(flaky_addr).await.then_some(())
    })
    .await;
    // Down is down for the flaky server alone.
    get(&http, &format!("{steady_url}/queue")).await;
    // The outage dropped the WebSocket without a close frame, as a network drop does.
    let dropped = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) => return false,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return true,
            }
        }
    })
    .await
    .expect("the WebSocket ends");
    assert!(dropped, "no close frame in an outage");

    // Back on the same port, with what it had.
    let history = eventually("the flaky server answering again", || async {
        match try_get(&http, &format!("{flaky_url}/history")).await {
            Some((200, history)) => Some(history),
            _ => None,
        }
    })
    .await;
    assert!(history.get(&id).is_some(), "history kept: {history}");
    fleet.shutdown().await;
}
