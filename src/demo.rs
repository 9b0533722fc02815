//! `comfytop --demo`: the dashboard on the simulated ComfyUI server, started in-process, with
//! work of its own queued now and then beside the simulated clients'.

use std::time::Duration;

use color_eyre::eyre::{Context as _, Result};
use comfy_sim::{Outage, SimConfig, SimFleet};

use crate::app::{Reply, Submitted};
use crate::comfy::api::PromptRequest;
use crate::comfy::server_url::ServerUrl;
use crate::dashboard::{Beside, DashboardConfig, RunSummary, run_loop};

/// Runs the dashboard on a simulated server started in-process on a free loopback port, with
/// demo work flowing through it, instead of the servers `config` names.
pub async fn run_demo(mut config: DashboardConfig, fleet: bool) -> Result<RunSummary> {
    // The simulated browser tabs' prompts are seen live through the bridge; in the fleet, half
    // the boxes have none, to show how those look.
    let base = SimConfig {
        demo: true,
        bridge: true,
        ..SimConfig::default()
    };
    let mut configs = if fleet {
        SimFleet::configs(&base, FLEET_SIZE)
    } else {
        vec![base]
    };
    for config in configs.iter_mut().skip(1).step_by(2) {
        config.bridge = false;
    }
    if fleet && let Some(last) = configs.last_mut() {
        // One box of the fleet drops off the network now and then, as real ones do.
        last.outage = Some(Outage {
            every: Duration::from_secs(45),
            down_for: Duration::from_secs(8),
        });
    }
    let sims = SimFleet::start(configs)
        .await
        .wrap_err("cannot start the simulated server")?;
    let mut servers = Vec::new();
    for (index, url) in sims.urls().iter().enumerate() {
        servers.push(crate::dashboard::WatchedServer {
            url: ServerUrl::parse(url)?,
            name: fleet.then(|| FLEET_NAMES[index % FLEET_NAMES.len()].to_string()),
            client_id: crate::comfy::connection::new_client_id(),
            client_id_note: None,
            read_only: false,
        });
    }
    config.servers = servers;
    let result = run_loop(config, |beside| Some(tokio::spawn(queue_demo_work(beside)))).await;
    sims.shutdown().await;
    result
}

/// `--demo --fleet`: this many simulated boxes, named like a small studio's.
const FLEET_SIZE: usize = 4;
const FLEET_NAMES: &[&str] = &["gpu1", "gpu2", "render-a", "laptop"];

/// What the demo's own work asks for, in turn.
const DEMO_PROMPTS: &[&str] = &[
    "a paper boat on a mountain lake, morning fog, watercolor",
    "a lighthouse keeper's cabin in a snowstorm, warm windows",
    "koi pond seen from above, autumn leaves, ukiyo-e",
    "a tiny robot tending a bonsai, macro photo, soft light",
];
/// How often the demo queues a prompt of its own.
const DEMO_EVERY: Duration = Duration::from_secs(20);

/// In the demo, this comfytop queues work of its own now and then, with its own client id, so
/// every step of it shows live beside the simulated browser tabs' and script's prompts.
async fn queue_demo_work(
    Beside {
        client,
        client_id,
        replies,
    }: Beside,
) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    for round in 0.. {
        let prompt = DEMO_PROMPTS[round % DEMO_PROMPTS.len()];
        let steps = 20 + (round as u32 % 3) * 4;
        let seed = rand::random::<u64>() >> 16;
        let request = PromptRequest {
            prompt: comfy_sim::demo::text_to_image(prompt, seed, steps, 512, 512),
            client_id: Some(client_id.clone()),
            ..PromptRequest::default()
        };
        let result = match client.submit(&request).await {
            Ok(accepted) => Ok(Box::new(Submitted { request, accepted })),
            Err(error) => Err(error.to_string()),
        };
        if replies.send((0, Reply::Submitted(result))).is_err() {
            return;
        }
        tokio::time::sleep(DEMO_EVERY).await;
    }
}
