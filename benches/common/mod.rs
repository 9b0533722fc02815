//! What the benches share: made-up prompts that look like real ones.

use serde_json::{Value, json};

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
