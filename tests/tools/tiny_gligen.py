"""Tiny random GLIGEN and SDXL pipelines, built in code and saved as diffusers folders, plus a models-file writer,
for the image generation and editing backends' tests (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from tests.tools.tiny_diffusion import (
    TEXT_WIDTH,
    save_tiny_pipeline,
    tiny_scheduler,
    tiny_sd_components,
    tiny_tokenizer,
    tiny_unet,
    tiny_vae,
)

SDXL_WIDTH = 2 * TEXT_WIDTH  # SDXL's cross-attention reads both text encoders' states side by side


def save_sd(pipeline_class: Any, folder: Path, *, unet_in_channels: int = 4, seed: int = 0) -> Path:
    """A tiny SD-family pipeline (text-to-image 4 UNet channels, inpainting 9, InstructPix2Pix 8) saved in folder."""
    return save_tiny_pipeline(pipeline_class, folder,
                              **tiny_sd_components(folder, unet_in_channels=unet_in_channels, seed=seed))


def save_gligen(folder: Path, *, inpainting: bool = False, seed: int = 0) -> Path:
    """A tiny `StableDiffusionGLIGENPipeline`: a UNet with gated self-attention (the grounding tokens' fuser);
    for inpainting it reads 9 channels (noisy latents, masked image latents, the box mask)."""
    from diffusers import StableDiffusionGLIGENPipeline

    components = tiny_sd_components(folder, seed=seed)
    unet = tiny_unet(9 if inpainting else 4, seed, attention_type="gated")
    with torch.no_grad():  # GLIGEN starts its gates closed (tanh(0) = 0); open them so the boxes matter
        for name, param in unet.named_parameters():
            if name.endswith(("alpha_attn", "alpha_dense")):
                param.fill_(1.0)
    components["unet"] = unet
    return save_tiny_pipeline(StableDiffusionGLIGENPipeline, folder, **components)


def save_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """A tiny `StableDiffusionXLPipeline`: two CLIP text encoders (one with projection) and a text-time UNet."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=TEXT_WIDTH,
    )
    text_encoder, text_encoder_2 = CLIPTextModel(config).eval(), CLIPTextModelWithProjection(config).eval()
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=4, use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + TEXT_WIDTH,  # six size/crop numbers + the pooled text
        cross_attention_dim=SDXL_WIDTH, norm_num_groups=8,
    ).eval()
    return save_tiny_pipeline(
        StableDiffusionXLPipeline, folder, vae=tiny_vae(seed), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=tiny_scheduler(), add_watermarker=False,
    )


def write_models_file(path: Path, module: str, **entry: Any) -> Path:
    """A models file with one entry, as a user writes it (paths as strings)."""
    entry = {key: str(value) if isinstance(value, Path) else value for key, value in entry.items()}
    if isinstance(entry.get("weights"), dict):
        entry["weights"] = {role: str(p) for role, p in entry["weights"].items()}
    path.write_text(yaml.safe_dump({module: entry}))
    return path
