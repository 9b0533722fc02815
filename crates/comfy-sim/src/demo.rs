//! Demo traffic: keeps realistic work flowing through the simulator's own queue, as if a web UI
//! and a script were using the server: text-to-image runs of the usual ComfyUI graph from two
//! browser clients and one script without a client id, an exact re-run (served from cache), a
//! re-run with a new seed (partly cached), and now and then a batch too big for the GPU.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::ordered::Ordered;
use super::state::{Sim, Submitted};

const PROMPTS: &[&str] = &[
    "a lighthouse on a cliff at sunset, oil painting, dramatic sky",
    "misty forest at dawn, volumetric light, moss covered trees",
    "ocean waves crashing on black rocks, long exposure",
    "a galaxy rising over snowy mountains, astrophotography",
    "desert dunes under a violet dusk sky, minimal",
    "neon city street in the rain, cyberpunk, reflections",
    "autumn valley with a winding river, golden hour",
    "abstract fractal pattern, vivid colors, intricate",
    "a volcano erupting at night, glowing lava rivers",
    "glacier lake in arctic light, crisp air, ice",
    "an enchanted garden in spring, soft focus, flowers",
    "retro synthwave sunset over the sea, grid, palm trees",
];

const NEGATIVE: &str = "blurry, lowres, watermark, text, jpeg artifacts";

/// Who queues a job: a browser tab (with its client id) or a script (none).
#[derive(Clone)]
struct Client(Option<String>);

#[derive(Clone)]
struct Job {
    client: Client,
    checkpoint: &'static str,
    prompt: String,
    seed: u64,
    steps: u32,
    size: (u32, u32),
    batch: u32,
}

/// ComfyUI's default text-to-image graph (API format, its usual node ids 3 to 9) for the
/// simulator's SD1.5-like checkpoint: what a client of the demo can queue itself.
pub fn text_to_image(prompt: &str, seed: u64, steps: u32, width: u32, height: u32) -> Value {
    Job {
        client: Client(None),
        checkpoint: "dreamshaper_8.safetensors",
        prompt: prompt.to_string(),
        seed,
        steps,
        size: (width, height),
        batch: 1,
    }
    .workflow()
}

impl Job {
    /// ComfyUI's default text-to-image graph, with its usual node ids.
    fn workflow(&self) -> Value {
        json!({
            "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"}, "inputs": {
                "seed": self.seed, "steps": self.steps, "cfg": 7.0, "sampler_name": "dpmpp_2m",
                "scheduler": "karras", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
                "negative": ["7", 0], "latent_image": ["5", 0]}},
            "4": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"},
                  "inputs": {"ckpt_name": self.checkpoint}},
            "5": {"class_type": "EmptyLatentImage", "_meta": {"title": "Empty Latent Image"},
                  "inputs": {"width": self.size.0, "height": self.size.1, "batch_size": self.batch}},
            "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
                  "inputs": {"text": self.prompt, "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Negative)"},
                  "inputs": {"text": NEGATIVE, "clip": ["4", 1]}},
            "8": {"class_type": "VAEDecode", "_meta": {"title": "VAE Decode"},
                  "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "_meta": {"title": "Save Image"},
                  "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
        })
    }

    fn body(&self) -> Value {
        let mut body = json!({"prompt": self.workflow()});
        if let Some(id) = &self.client.0 {
            body["client_id"] = json!(id);
        }
        body
    }
}

/// Keeps the queue busy until the task is aborted.
pub(crate) async fn drive(sim: Arc<Sim>) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let hex_id = |rng: &mut StdRng| format!("{:032x}", rng.random::<u128>());
    let browsers = [
        Client(Some(hex_id(&mut rng))),
        Client(Some(hex_id(&mut rng))),
    ];
    let script = Client(None);
    let mut last: Option<Job> = None;
    let mut round: u64 = 0;
    loop {
        // While a flaky server is down, its clients cannot reach it either.
        if sim.queue_remaining() >= 2 || !sim.listening.load(Ordering::Relaxed) {
            tokio::time::sleep(sim.pace.seconds(1.0)).await;
            continue;
        }
        let prompt = PROMPTS[rng.random_range(0..PROMPTS.len())].to_string();
        let fresh_seed = rng.random_range(0..1u64 << 48);
        let job = match (round % 8, &last) {
            // The same job again: every node comes from the cache.
            (3, Some(previous)) => previous.clone(),
            // The same job with a new seed: loader and text encoders stay cached.
            (4, Some(previous)) => Job {
                seed: fresh_seed,
                client: browsers[1].clone(),
                ..previous.clone()
            },
            // Far too big a batch for the card: CUDA runs out of memory.
            (6, _) => Job {
                client: browsers[0].clone(),
                checkpoint: "sd_xl_base_1.0.safetensors",
                prompt,
                seed: fresh_seed,
                steps: 30,
                size: (2048, 2048),
                batch: 4,
            },
            (n, _) => {
                let (checkpoint, size, steps) = match n {
                    1 | 5 => ("sd_xl_base_1.0.safetensors", (1024, 768), 25),
                    2 => ("dreamshaper_8.safetensors", (512, 768), 24),
                    7 => ("dreamshaper_8.safetensors", (768, 512), 12),
                    _ => ("dreamshaper_8.safetensors", (512, 512), 20),
                };
                let client = match n {
                    2 | 7 => script.clone(),
                    1 | 5 => browsers[1].clone(),
                    _ => browsers[0].clone(),
                };
                Job {
                    client,
                    checkpoint,
                    prompt,
                    seed: fresh_seed,
                    steps,
                    size,
                    batch: 1,
                }
            }
        };
        let accepted = matches!(
            sim.submit(&Ordered::from_value(&job.body())),
            Submitted::Accepted(_)
        );
        if accepted && job.batch == 1 {
            last = Some(job);
        }
        round += 1;
        let pause = rng.random_range(2.0..8.0);
        tokio::time::sleep(sim.pace.seconds(pause)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{Validation, validate_prompt};

    #[test]
    fn demo_workflows_validate() {
        let Value::Object(mut prompt) = text_to_image(PROMPTS[0], 5, 20, 512, 512) else {
            panic!()
        };
        let order: Vec<String> = prompt.keys().cloned().collect();
        let v = validate_prompt(&mut prompt, &order, None, &mut Vec::new());
        assert!(
            matches!(v, Validation::Accepted { ref outputs, .. } if outputs == &["9"]),
            "{v:?}"
        );
    }
}
