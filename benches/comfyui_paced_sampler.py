"""A model-free ComfyUI custom node that behaves like a sampler on the wire, for benchmarks.

ComfytopPacedSampler takes `step_seconds` per step (it sleeps what building the image left of
it, so the pace holds on a busy machine as long as a step's work fits) and, after each step,
reports progress with a preview image through the same call a KSampler's latent preview makes
(latent_preview.prepare_callback):

    comfy.utils.ProgressBar(steps).update_absolute(step + 1, steps, ("JPEG", image, preview_size))

so a real ComfyUI sends the prompt's owner a `progress` and a `progress_state` message and a
binary preview frame per step: type 4 (PREVIEW_IMAGE_WITH_METADATA: JSON metadata, then the
JPEG) to clients that announced `supports_preview_metadata` (the web frontend, comfytop), type
1 (PREVIEW_IMAGE, then 1 = JPEG, then the JPEG) to those that did not. The server scales the
preview to fit in preview_size and encodes it at JPEG quality 95, as for a sampler. The image
is a gradient with coarse noise that moves with every step, so each preview differs. The node
outputs the last image (IMAGE, 1 x height x width x 3), to feed a SaveImage or PreviewImage.

No model, no GPU, about 10 ms of numpy per 512 px step. Install: copy this file into ComfyUI's
custom_nodes/ and restart ComfyUI, e.g.

    cp benches/comfyui_paced_sampler.py ~/ComfyUI/custom_nodes/

Check: GET /object_info/ComfytopPacedSampler answers with the node. Same seed and inputs twice
and ComfyUI serves the second from its cache (no steps), as for a sampler: vary the seed.
"""

import time

import numpy as np
import torch
from PIL import Image

import comfy.utils


class ComfytopPacedSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "steps": ("INT", {"default": 200, "min": 1, "max": 10000}),
                "step_seconds": ("FLOAT", {"default": 0.05, "min": 0.0, "max": 60.0, "step": 0.001}),
                "width": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 8}),
                "height": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 8}),
                "preview_size": ("INT", {"default": 256, "min": 16, "max": 4096}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sample"
    CATEGORY = "sampling/testing"

    def sample(self, steps, step_seconds, width, height, preview_size, seed):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        # Coarse noise (one value per 8x8 block), like a latent upscaled to pixels.
        noise_shape = ((height + 7) // 8, (width + 7) // 8, 3)
        noise = rng.standard_normal(noise_shape).astype(np.float32)
        pbar = comfy.utils.ProgressBar(steps)
        rgb = None
        start = time.monotonic()
        for step in range(steps):
            # The noise fades as the "denoising" goes on and the gradient drifts with the step.
            fade = 1.0 - (step + 1) / steps
            noise = 0.9 * noise + 0.1 * rng.standard_normal(noise_shape).astype(np.float32)
            coarse = np.repeat(np.repeat(noise, 8, axis=0), 8, axis=1)[:height, :width]
            shift = step * 3.0
            base = np.stack(
                [(x + shift) % 256, (y + 2 * shift) % 256, ((x + y) / 2 + 4 * shift) % 256],
                axis=-1,
            )
            rgb = np.clip(base + 80.0 * fade * coarse, 0, 255).astype(np.uint8)
            # Paced against the start, not step by step, so the image work does not add up.
            time.sleep(max(0.0, start + (step + 1) * step_seconds - time.monotonic()))
            # The same call and tuple as a sampler's latent preview (latent_preview.py).
            pbar.update_absolute(step + 1, steps, ("JPEG", Image.fromarray(rgb), preview_size))
        image = torch.from_numpy(rgb.astype(np.float32) / 255.0)[None]
        return (image,)


NODE_CLASS_MAPPINGS = {"ComfytopPacedSampler": ComfytopPacedSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"ComfytopPacedSampler": "Paced Sampler (comfytop bench)"}
