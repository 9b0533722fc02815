//! The protocol core's client (connection task, HTTP client, tracker) against the simulated
//! server over loopback: a run followed to success, a targeted interrupt, a pending prompt
//! deleted, and the two ways a connection ends mid-run (the network drops while the server goes
//! on; the server restarts and forgets).

use std::time::{Duration, Instant};

use comfytop::comfy::api::PromptRequest;
use comfytop::comfy::connection::{Connection, ConnectionConfig, new_client_id};
use comfytop::comfy::http::ComfyClient;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::session::{run_fetch, tracker_input};
use comfytop::sim::{SimConfig, SimHandle, SimServer};
use comfytop::tracker::{Outcome, Phase, Tracker, TrackerInput};
use serde_json::Value;
use tokio::sync::mpsc;

/// Generous: the machines are shared; a passing run takes a fraction of this.
const PATIENCE: Duration = Duration::from_secs(30);

fn workflow(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/workflows/{name}.json", comfytop::FIXTURES)).unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn start_sim(listen: &str) -> SimHandle {
    SimServer::start(SimConfig {
        listen: listen.parse().unwrap(),
        step: Duration::from_millis(5),
        demo: false,
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
                    if let Some(input) = tracker_input(&event) {
                        self.feed(input);
                    }
                }
                Some(reply) = self.replies.recv() => self.feed(reply),
                _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting until {what}"),
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
