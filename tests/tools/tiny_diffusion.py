"""Tiny random Stable Diffusion parts, built in code (no downloads), for the diffusers backends' tests.

The CLIP tokenizer is a real `CLIPTokenizer` over a vocabulary written here: every byte as a token (with and
without the end-of-word mark) plus a few merges, so any text tokenizes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

TEXT_WIDTH = 32  # the text encoder's hidden size = the UNet's cross-attention width = the signal's width


def _bytes_to_unicode() -> dict[int, str]:
    # CLIP's byte-level alphabet (transformers.models.clip.tokenization_clip.bytes_to_unicode).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP tokenizer with a byte vocabulary and a few merges, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = ["t h", "th e</w>", "c a", "ca t</w>", "d o", "do g</w>"]
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(tokens))}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def tiny_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=TEXT_WIDTH,
    )
    return CLIPTextModel(config).eval()


def tiny_unet(in_channels: int = 4, seed: int = 0, **overrides: Any) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    config = dict(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=4, norm_num_groups=8,
    )
    config.update(overrides)
    return UNet2DConditionModel(**config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    ).eval()


def tiny_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         steps_offset=1, set_alpha_to_one=False)


def tiny_sd_components(folder: Path, *, unet_in_channels: int = 4, seed: int = 0) -> dict[str, Any]:
    """The components of a Stable Diffusion pipeline (text-to-image: 4 UNet input channels; inpainting: 9;
    InstructPix2Pix: 8), with the tokenizer files under `folder / "tokenizer-src"`."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    return {
        "unet": tiny_unet(unet_in_channels, seed),
        "vae": tiny_vae(seed),
        "scheduler": tiny_scheduler(),
        "text_encoder": tiny_text_encoder(tokenizer, seed),
        "tokenizer": tokenizer,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def save_tiny_pipeline(pipeline_class: Any, folder: Path, **components: Any) -> Path:
    """Build `pipeline_class` from components and `save_pretrained` it to `folder` (as a user's weights would be)."""
    pipe = pipeline_class(**components)
    pipe.save_pretrained(folder / "weights", safe_serialization=True)
    return folder / "weights"
