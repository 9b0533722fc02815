//! `comfytop --demo`: the dashboard on the simulated ComfyUI server, started in-process, with
//! work of its own queued now and then beside the simulated clients'.

use std::time::Duration;

use color_eyre::eyre::{Context as _, Result};
use comfy_sim::{SimConfig, SimServer};

use crate::app::{Reply, Submitted};
use crate::comfy::api::PromptRequest;
use crate::comfy::server_url::ServerUrl;
use crate::dashboard::{Beside, DashboardConfig, RunSummary, run_loop};

/// Runs the dashboard on a simulated server started in-process on a free loopback port, with
/// demo work flowing through it. `config.server` is replaced by the simulator's address.
pub async fn run_demo(mut config: DashboardConfig) -> Result<RunSummary> {
    let sim = SimServer::start(SimConfig {
        demo: true,
        ..SimConfig::default()
    })
    .await
    .wrap_err("cannot start the simulated server")?;
    config.server = ServerUrl::parse(&sim.url())?;
    let result = run_loop(config, |beside| Some(tokio::spawn(queue_demo_work(beside)))).await;
    sim.shutdown().await;
    result
}

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
        if replies.send(Reply::Submitted(result)).is_err() {
            return;
        }
        tokio::time::sleep(DEMO_EVERY).await;
    }
}
