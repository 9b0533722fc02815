//! The protocol core's client (connection task, HTTP client, tracker) against the simulated
//! server over loopback: a run followed to success, a targeted interrupt, a pending prompt
//! deleted, and the two ways a connection ends mid-run (the network drops while the server goes
//! on; the server restarts and forgets), and the tracker under load and faults: prompts of
//! another client that come and go between two fetches, a resync after a long cut, a burst,
//! a fetch that fails once.

mod support;

use std::time::{Duration, Instant};

use comfy_sim::{SimConfig, SimHandle, SimServer};
use comfytop::comfy::api::PromptRequest;
use comfytop::comfy::connection::{Connection, ConnectionConfig, new_client_id};
use comfytop::comfy::http::ComfyClient;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::session::{run_fetch, run_fetch_with_retries, tracker_input};
use comfytop::tracker::{Outcome, Phase, Tracker, TrackerCommand, TrackerInput};
use serde_json::Value;
use tokio::sync::mpsc;

/// Generous: the machines are shared; a passing run takes a fraction of this.
const PATIENCE: Duration = Duration::from_secs(30);

fn workflow(name: &str) -> Value {
    let text =
        std::fs::read_to_string(format!("{}/workflows/{name}.json", comfytop::FIXTURES)).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn start_sim(listen: &str) -> SimHandle {
    SimServer::start(SimConfig {
        listen: listen.parse().unwrap(),
        step: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// A live client as the dashboard runs one: connection events and fetch replies feed one tracker.
struct LiveClient {
    client: ComfyClient,
    connection: Option<Connection>,
    events: mpsc::Receiver<comfytop::comfy::connection::ConnEvent>,
    replies_tx: mpsc::UnboundedSender<TrackerInput>,
    replies: mpsc::UnboundedReceiver<TrackerInput>,
    tracker: Tracker,
    started: Instant,
    reconnects: u32,
}

impl LiveClient {
    fn connect(url: &str) -> Self {
        let server = ServerUrl::parse(url).unwrap();
        let client_id = new_client_id();
        let mut config = ConnectionConfig::new(server.clone(), client_id.clone());
        config.backoff_initial = Duration::from_millis(50);
        config.backoff_max = Duration::from_millis(200);
        let (tx, events) = mpsc::channel(1024);
        let connection = Connection::spawn(config, tx);
        let (replies_tx, replies) = mpsc::unbounded_channel();
        Self {
            client: ComfyClient::new(server).unwrap(),
            connection: Some(connection),
            events,
            replies_tx,
            replies,
            tracker: Tracker::new(client_id),
            started: Instant::now(),
            reconnects: 0,
        }
    }

    fn feed(&mut self, input: TrackerInput) {
        let now = self.started.elapsed().as_secs_f64();
        for command in self.tracker.handle(now, input) {
            let client = self.client.clone();
            let tx = self.replies_tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(run_fetch(&client, command).await.input);
            });
        }
    }

    /// Runs the client until `done` holds for the tracker.
    async fn run_until(&mut self, what: &str, done: impl Fn(&Tracker) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(&self.tracker) {
            tokio::select! {
                event = self.events.recv() => {
                    let event = event.expect("connection task ended");
                    if matches!(event, comfytop::comfy::connection::ConnEvent::Reconnecting { .. }) {
                        self.reconnects += 1;
                    }
                    if let Some(input) = tracker_input(event) {
                        self.feed(input);
                    }
                }
                Some(reply) = self.replies.recv() => self.feed(reply),
                _ = tokio::time::sleep_until(deadline) => panic!(
                    "timed out waiting until {what}: {} pending, running {:?}, {} finished",
                    self.tracker.pending().count(),
                    self.tracker.running().map(|p| p.id.clone()),
                    self.tracker.finished().count(),
                ),
            }
        }
    }

    async fn submit(&mut self, name: &str) -> String {
        let request = PromptRequest {
            prompt: workflow(name),
            client_id: Some(self.tracker.our_client_id().to_string()),
            ..PromptRequest::default()
        };
        let accepted = self.client.submit(&request).await.unwrap();
        self.feed(TrackerInput::Submitted {
            prompt_id: accepted.prompt_id.clone(),
            number: accepted.number,
            request,
        });
        accepted.prompt_id
    }

    async fn close(mut self) {
        if let Some(c) = self.connection.take() {
            c.close().await;
        }
    }
}

fn phase_of(t: &Tracker, id: &str) -> Option<Phase> {
    t.prompt(id).map(|p| p.phase.clone())
}

#[tokio::test]
async fn a_submitted_prompt_is_followed_live_to_success() {
    let sim = start_sim("127.0.0.1:0").await;
    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    let id = live.submit("slow_steps_full").await;
    live.run_until("the prompt finished", |t| {
        t.prompt(&id).is_some_and(|p| p.is_finished())
    })
    .await;
    let p = live.tracker.prompt(&id).unwrap();
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert!(p.ours && p.live, "our own prompt gets live events");
    assert_eq!(p.node_title("1"), Some("Slow Steps"));
    assert!(p.nodes["1"].has_progress, "{:?}", p.nodes["1"]);
    assert_eq!(p.nodes["1"].max, 6.0);
    let (complete, total) = p.node_counts();
    assert_eq!(complete, total);
    assert!(p.images().count() >= 2, "{:?}", p.outputs);
    live.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_targeted_interrupt_ends_only_that_prompt_and_a_deleted_one_never_runs() {
    let sim = start_sim("127.0.0.1:0").await;
    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    let long = live.submit("long_run_interruptible").await;
    let doomed = live.submit("small_save").await;
    let kept = live.submit("small_save").await;
    live.run_until("the long run runs", |t| {
        phase_of(t, &long) == Some(Phase::Running)
    })
    .await;
    assert_eq!(
        live.tracker
            .pending()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>(),
        vec![doomed.clone(), kept.clone()]
    );
    live.client
        .delete_queued(std::slice::from_ref(&doomed))
        .await
        .unwrap();
    live.client.interrupt(Some(&long)).await.unwrap();
    live.run_until("all three ended", |t| {
        [&long, &doomed, &kept]
            .iter()
            .all(|id| t.prompt(id).is_some_and(|p| p.is_finished()))
    })
    .await;
    let outcome = |id: &str| live.tracker.prompt(id).unwrap().outcome().cloned();
    assert!(
        matches!(outcome(&long), Some(Outcome::Interrupted { .. })),
        "{:?}",
        outcome(&long)
    );
    assert_eq!(outcome(&doomed), Some(Outcome::Removed));
    assert_eq!(outcome(&kept), Some(Outcome::Success));
    live.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_network_drop_mid_run_resyncs_to_the_real_end_from_history() {
    let sim = start_sim("127.0.0.1:0").await;
    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    let id = live.submit("slow_steps_full").await;
    live.run_until("the prompt runs", |t| {
        phase_of(t, &id) == Some(Phase::Running)
    })
    .await;
    // Every socket is cut without a close frame; the server runs on.
    sim.disconnect_all();
    live.run_until("the prompt finished", |t| {
        t.prompt(&id).is_some_and(|p| p.is_finished())
    })
    .await;
    assert!(live.reconnects >= 1, "the client reconnected");
    let p = live.tracker.prompt(&id).unwrap();
    assert_eq!(p.phase, Phase::Finished(Outcome::Success));
    assert!(p.images().count() >= 1, "outputs known from history");
    live.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_server_restart_mid_run_reports_the_prompt_as_lost() {
    let sim = start_sim("127.0.0.1:0").await;
    let addr = sim.addr().to_string();
    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    let id = live.submit("long_run_interruptible").await;
    live.run_until("the prompt runs", |t| {
        phase_of(t, &id) == Some(Phase::Running)
    })
    .await;
    sim.shutdown().await;
    live.run_until("disconnected", |t| !t.is_connected()).await;
    // A restarted ComfyUI has an empty queue and no history: the run is gone.
    let sim = start_sim(&addr).await;
    live.run_until("the prompt ended", |t| {
        t.prompt(&id).is_some_and(|p| p.is_finished())
    })
    .await;
    assert_eq!(
        phase_of(&live.tracker, &id),
        Some(Phase::Finished(Outcome::Unknown))
    );
    live.run_until("reconnected", Tracker::is_connected).await;
    live.close().await;
    sim.shutdown().await;
}

/// Posts `workflow` as another client (the watcher gets no execution events for it).
async fn post_as_other(client: &ComfyClient, prompt: Value) -> String {
    let request = PromptRequest {
        prompt,
        client_id: Some("someone-else".into()),
        ..PromptRequest::default()
    };
    client.submit(&request).await.unwrap().prompt_id
}

/// Waits until the server has run everything it was given.
async fn until_idle(client: &ComfyClient) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let queue = client.queue().await.unwrap();
        if queue.queue_running.is_empty() && queue.queue_pending.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "the server never went idle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_finished(ids: &[String]) -> impl Fn(&Tracker) -> bool + '_ {
    move |t| {
        ids.iter()
            .all(|id| t.prompt(id).is_some_and(|p| p.is_finished()))
    }
}

#[tokio::test]
async fn fast_prompts_of_another_client_appear_though_no_queue_fetch_listed_them() {
    let sim = start_sim("127.0.0.1:0").await;
    let other = ComfyClient::new(ServerUrl::parse(&sim.url()).unwrap()).unwrap();
    // Run each once, so the reruns are served from the cache: an instant failure and a fully
    // cached success, over before a `/queue` fetch can list them.
    post_as_other(&other, workflow("error_after_progress")).await;
    post_as_other(&other, workflow("small_save")).await;
    until_idle(&other).await;

    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    live.run_until("history read", |t| t.finished().count() == 2)
        .await;
    let mut failing = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..5 {
        failing.push(post_as_other(&other, workflow("error_after_progress")).await);
        cached.push(post_as_other(&other, workflow("small_save")).await);
        // Spaced out, as a user would post them; the watcher keeps listening meanwhile.
        let pause = tokio::time::Instant::now() + Duration::from_millis(150);
        while tokio::time::Instant::now() < pause {
            tokio::select! {
                Some(event) = live.events.recv() => {
                    if let Some(input) = tracker_input(event) {
                        live.feed(input);
                    }
                }
                Some(reply) = live.replies.recv() => live.feed(reply),
                _ = tokio::time::sleep_until(pause) => {}
            }
        }
    }
    let every: Vec<String> = failing.iter().chain(&cached).cloned().collect();
    live.run_until(
        "every fast prompt is known to have ended",
        all_finished(&every),
    )
    .await;
    for id in &failing {
        let p = live.tracker.prompt(id).unwrap();
        assert!(
            matches!(p.outcome(), Some(Outcome::Error(_))),
            "{:?}",
            p.phase
        );
    }
    for id in &cached {
        let p = live.tracker.prompt(id).unwrap();
        assert_eq!(p.phase, Phase::Finished(Outcome::Success));
        assert_eq!(p.node_counts(), (2, 2), "{:?}", p.nodes);
    }
    let recovered = live.tracker.take_finished_news();
    assert!(
        every.iter().all(|id| recovered.iter().any(|n| &n.id == id)),
        "every one is news: {recovered:?}"
    );
    live.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_resync_after_a_long_cut_shows_every_prompt_that_ended_meanwhile() {
    let sim = start_sim("127.0.0.1:0").await;
    let proxy = support::CuttingProxy::start(&sim.url()).await;
    let direct = ComfyClient::new(ServerUrl::parse(&sim.url()).unwrap()).unwrap();
    let first = post_as_other(&direct, workflow("small_save")).await;
    until_idle(&direct).await;

    let mut live = LiveClient::connect(&proxy.url());
    live.run_until(
        "the first prompt is known",
        all_finished(std::slice::from_ref(&first)),
    )
    .await;
    proxy.cut_and_block();
    live.run_until("disconnected", |t| !t.is_connected()).await;
    // 200 prompts end while the watcher cannot reach the server.
    let mut during_cut = Vec::new();
    for _ in 0..200 {
        during_cut.push(post_as_other(&direct, workflow("small_save")).await);
    }
    until_idle(&direct).await;
    proxy.unblock();
    live.run_until(
        "every prompt of the cut is known",
        all_finished(&during_cut),
    )
    .await;
    assert_eq!(live.tracker.finished().count(), 201);
    assert!(
        during_cut
            .iter()
            .all(|id| live.tracker.prompt(id).unwrap().phase == Phase::Finished(Outcome::Success))
    );
    let news = live.tracker.take_finished_news();
    assert_eq!(
        news.iter().filter(|n| n.recovered).count(),
        201,
        "each recovered prompt is reported once"
    );
    live.close().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn after_a_burst_nothing_is_pending_and_every_prompt_is_in_history() {
    let sim = start_sim("127.0.0.1:0").await;
    let other = ComfyClient::new(ServerUrl::parse(&sim.url()).unwrap()).unwrap();
    let mut live = LiveClient::connect(&sim.url());
    live.run_until("connected", Tracker::is_connected).await;
    // Distinct seeds: nothing is cached, so the queue builds up while they are posted.
    let mut burst = Vec::new();
    for seed in 0..150 {
        let mut prompt = workflow("small_save");
        prompt["1"]["inputs"]["seed"] = seed.into();
        prompt["1"]["inputs"]["steps"] = 1.into();
        prompt["1"]["inputs"]["delay"] = 0.0.into();
        burst.push(post_as_other(&other, prompt).await);
    }
    let every = all_finished(&burst);
    live.run_until("the burst is over and known", |t| {
        every(t) && t.pending().next().is_none() && t.running().is_none()
    })
    .await;
    until_idle(&other).await;
    assert_eq!(live.tracker.finished().count(), 150);
    live.close().await;
    sim.shutdown().await;
}

/// A loopback server that drops the first `drops` connections unanswered, then answers every
/// request with an empty queue.
async fn flaky_server(drops: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut seen = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            seen += 1;
            if seen <= drops {
                drop(socket);
                continue;
            }
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = r#"{"queue_running":[],"queue_pending":[]}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn a_fetch_that_fails_on_the_way_is_retried_with_backoff() {
    let url = flaky_server(2).await;
    let client = ComfyClient::new(ServerUrl::parse(&url).unwrap()).unwrap();
    let reply = run_fetch(&client, TrackerCommand::FetchQueue).await;
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert!(matches!(reply.input, TrackerInput::Queue(_)));

    // Without retries left, the failure reaches the tracker.
    let url = flaky_server(1).await;
    let client = ComfyClient::new(ServerUrl::parse(&url).unwrap()).unwrap();
    let reply = run_fetch_with_retries(&client, TrackerCommand::FetchQueue, &[]).await;
    assert!(reply.error.is_some());
    assert_eq!(
        reply.input,
        TrackerInput::FetchFailed(TrackerCommand::FetchQueue)
    );
}

/// A loopback server whose one answer is a large queue body sent in slices, `pause` apart.
async fn slow_large_answer(slices: usize, pause: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                // Spaces are valid JSON padding: a large body of a valid empty queue.
                let body = format!(
                    "{}{}",
                    " ".repeat(slices * 1024),
                    r#"{"queue_running":[],"queue_pending":[]}"#
                );
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                for slice in body.as_bytes().chunks(1024) {
                    if socket.write_all(slice).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn a_large_answer_that_keeps_coming_is_not_a_timeout() {
    use comfytop::comfy::http::HttpTimeouts;
    // Arriving over about 1.5 s, each slice well within the 0.5 s allowed between bytes.
    let url = slow_large_answer(15, Duration::from_millis(100)).await;
    let timeouts = HttpTimeouts {
        request: Duration::from_millis(500),
        ..HttpTimeouts::default()
    };
    let client = ComfyClient::with_timeouts(ServerUrl::parse(&url).unwrap(), timeouts).unwrap();
    let queue = client.queue().await;
    assert!(queue.is_ok(), "{queue:?}");

    // A server that stops sending is still one that timed out.
    let url = slow_large_answer(3, Duration::from_secs(3)).await;
    let client = ComfyClient::with_timeouts(ServerUrl::parse(&url).unwrap(), timeouts).unwrap();
    let error = client.queue().await.unwrap_err();
    assert!(
        matches!(error, comfytop::comfy::http::HttpError::Timeout { .. }),
        "{error:?}"
    );
}
