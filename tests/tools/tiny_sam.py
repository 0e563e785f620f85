"""A tiny random SAM (2-layer ViT on 64-pixel inputs), built in code and saved as a `.pth` state dict, for the
SAM backends' tests: it loads through a models file exactly as an official checkpoint does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from tools.real.sam import build_custom_sam

WIDTH = 32  # the prompt encoder's width: the signal's task-specific width

TINY_OPTIONS: dict[str, Any] = {
    "encoder_embed_dim": 16, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1],
    "image_size": 64, "patch_size": 8, "window_size": 4, "mlp_ratio": 2.0, "prompt_embed_dim": WIDTH,
    "mask_in_chans": 4, "decoder_depth": 1, "decoder_mlp_dim": 32, "decoder_num_heads": 2,
    "iou_head_depth": 2, "iou_head_hidden_dim": 16,
}


def tiny_sam(seed: int = 0) -> Any:
    """The tiny SAM with weights drawn from `seed`."""
    torch.manual_seed(seed)
    sam = build_custom_sam(TINY_OPTIONS)
    with torch.no_grad():  # SAM zero-initialises its position tables; random ones make outputs depend on place
        for name, param in sam.named_parameters():
            if "rel_pos" in name or name.endswith("pos_embed"):
                param.normal_(0, 0.5)
    return sam


def save_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """Save the tiny SAM's state dict as `folder/tiny_sam.pth`, as the official checkpoints are."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny_sam.pth"
    torch.save(tiny_sam(seed).state_dict(), path)
    return path


def write_models_file(path: Path, weights: Path, *, modules: tuple[str, ...] = ("image_segmentation",),
                      variant: str | None = "custom", **options: Any) -> Path:
    """A models file configuring SAM with these weights for each of `modules` (no `variant:` when None)."""
    entry = {"backend": "sam", "weights": str(weights), "device": "cpu", "options": {**TINY_OPTIONS, **options}}
    if variant is not None:
        entry["variant"] = variant
    path.write_text(yaml.safe_dump({module: entry for module in modules}))
    return path
