"""A models file with tiny random SAM (image segmentation) and Stable Diffusion (image generation), built in code:
the backends a planner's signals are aligned to in the training tests and the tiny training benchmark."""

from __future__ import annotations

from pathlib import Path

import yaml
from diffusers import StableDiffusionPipeline

from tests.tools.tiny_gligen import save_sd
from tests.tools.tiny_sam import TINY_OPTIONS, save_tiny_sam


def tiny_models_file(root: Path) -> Path:
    sam = {"backend": "sam", "variant": "custom", "weights": str(save_tiny_sam(root / "sam")), "device": "cpu",
           "options": TINY_OPTIONS}
    sd = {"backend": "stable_diffusion", "weights": str(save_sd(StableDiffusionPipeline, root / "sd")),
          "device": "cpu", "options": {"num_inference_steps": 2}}
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"image_segmentation": sam, "image_generation": sd}))
    return path
