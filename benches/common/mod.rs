//! What the benches share: made-up prompts that look like real ones, in the server's wire
//! forms, and feeding frames to the tracker as a live connection does.

// Each bench uses a part.
#![allow(dead_code)]

use std::hint::black_box;

use serde_json::{Value, json};

use comfytop::comfy::{Decoded, RawFrame};
use comfytop::tracker::{Tracker, TrackerInput};

/// Sampler steps of the made-up prompts.
pub const STEPS: u32 = 30;

/// A prompt id shaped like the server's (a uuid), distinct for every `n`.
pub fn prompt_id(n: usize) -> String {
    format!("{:08x}-6d1e-4c3b-9a55-{n:012x}", 0x5eed_0000_u32 ^ n as u32)
}

/// ComfyUI's default text-to-image graph: seven nodes.
pub fn graph(seed: usize) -> Value {
    json!({
        "4": {"class_type": "CheckpointLoaderSimple", "_meta": {"title": "Load Checkpoint"},
              "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Prompt)"},
              "inputs": {"text": "a lighthouse on a cliff at dusk, volumetric light", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "CLIP Text Encode (Negative)"},
              "inputs": {"text": "blurry, low quality", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "_meta": {"title": "Empty Latent Image"},
              "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "3": {"class_type": "KSampler", "_meta": {"title": "KSampler"},
              "inputs": {"seed": seed, "steps": STEPS, "cfg": 7.0, "sampler_name": "euler",
                         "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                         "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "_meta": {"title": "VAE Decode"},
              "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "_meta": {"title": "Save Image"},
              "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}}
    })
}

/// This comfytop's client id in the benches.
pub const CLIENT: &str = "5f1c9a2e-comfytop";

/// Wall clock (ms) when the newest made-up history entry ended.
pub const NOW_MS: u64 = 1_795_828_739_000;

/// Who queued prompt `n`: one in three is ours, the rest come from two other clients.
pub fn owner(n: usize) -> &'static str {
    match n % 3 {
        0 => CLIENT,
        1 => "lab-g-2ba58b69",
        _ => "e0c6b8f3-1a2d-4c5e-8f90-7a6b5c4d3e2f",
    }
}

/// A queue item as `/queue` and `/history` send it: `[number, id, graph, extra, outputs]`.
pub fn wire_item(n: usize, owner: &str) -> Value {
    json!([n, prompt_id(n), graph(n), {"client_id": owner}, ["9"]])
}

/// One history entry of `finished`: every 40th failed in the sampler, the rest saved an image.
fn history_entry(n: usize, finished: usize) -> Value {
    let id = prompt_id(n);
    // One prompt every 20 s, the newest ending at `NOW_MS`.
    let ended = NOW_MS - (finished - n) as u64 * 20_000;
    let started = ended - 18_500;
    let start = json!(["execution_start", {"prompt_id": id, "timestamp": started}]);
    let cached = json!(["execution_cached", {"nodes": [], "prompt_id": id, "timestamp": started}]);
    if n % 40 == 39 {
        json!({
            "prompt": wire_item(n, owner(n)),
            "outputs": {},
            "status": {"status_str": "error", "completed": false, "messages": [start, cached,
                ["execution_error", {
                    "prompt_id": id, "node_id": "3", "node_type": "KSampler",
                    "executed": ["4", "5", "6", "7"],
                    "exception_message": "Allocation on device 0 would exceed allowed memory.",
                    "exception_type": "torch.OutOfMemoryError",
                    "traceback": ["  File \"execution.py\", line 496, in execute\n",
                                  "  File \"nodes.py\", line 1525, in sample\n"],
                    "current_inputs": {}, "current_outputs": {}, "timestamp": ended}]]},
            "meta": {}
        })
    } else {
        json!({
            "prompt": wire_item(n, owner(n)),
            "outputs": {"9": {"images": [
                {"filename": format!("ComfyUI_{n:05}_.png"), "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": true, "messages": [start, cached,
                ["execution_success", {"prompt_id": id, "timestamp": ended}]]},
            "meta": {"9": {"node_id": "9", "display_node": "9", "parent_node": null,
                           "real_node_id": "9"}}
        })
    }
}

/// `/history` with `finished` entries, oldest first, as JSON text (a JSON object keeps its
/// order on the wire, which the client reads; a `Value` map would sort it by id).
pub fn history_json(finished: usize) -> String {
    let entries: Vec<String> = (0..finished)
        .map(|n| format!("{}:{}", json!(prompt_id(n)), history_entry(n, finished)))
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// Decodes one frame and feeds it to the tracker, as a live connection does.
pub fn decode_and_track(tracker: &mut Tracker, now: f64, raw: &RawFrame) {
    let input = match raw.decode() {
        Decoded::Message(m) => TrackerInput::Message(m),
        Decoded::Binary(b) => TrackerInput::Binary(b),
        Decoded::Malformed { .. } => return,
    };
    black_box(tracker.handle(now, input));
}
