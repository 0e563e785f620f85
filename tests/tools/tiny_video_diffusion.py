"""Tiny random video-diffusion parts, built in code (no downloads), for the D, G and F backends' tests.

Text-to-video (`TextToVideoSDPipeline`, ZeroScope's layout) and image-to-video (`I2VGenXLPipeline`) pipelines are
saved with `save_pretrained` into a folder, as a user's weights would be; video editing reuses the SD parts of
`tests.tools.tiny_diffusion` (inpainting and InstructPix2Pix UNets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    I2VGenXLPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionInstructPix2PixPipeline,
    TextToVideoSDPipeline,
    UNet3DConditionModel,
)
from diffusers.models.unets import I2VGenXLUNet
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from tests.tools.tiny_diffusion import (
    TEXT_WIDTH,
    save_tiny_pipeline,
    tiny_scheduler,
    tiny_sd_components,
    tiny_text_encoder,
    tiny_tokenizer,
)

_UNET_3D = dict(
    block_out_channels=(8, 16), layers_per_block=1, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    cross_attention_dim=TEXT_WIDTH, attention_head_dim=4, norm_num_groups=4,
)


def tiny_vae_8(seed: int = 0) -> AutoencoderKL:
    """A VAE with SD's factor of 8 (four levels, eight channels): video latents stay small at 64x64 frames."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()


def tiny_unet_3d(seed: int = 0) -> UNet3DConditionModel:
    torch.manual_seed(seed)
    return UNet3DConditionModel(sample_size=8, **_UNET_3D).eval()


def tiny_i2vgen_unet(seed: int = 0) -> I2VGenXLUNet:
    torch.manual_seed(seed)
    return I2VGenXLUNet(sample_size=8, num_attention_heads=None, **_UNET_3D).eval()


def tiny_image_encoder(seed: int = 0) -> CLIPVisionModelWithProjection:
    """A CLIP vision tower whose projection has the UNet's cross-attention width (I2VGenXL's image context)."""
    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=16, projection_dim=TEXT_WIDTH, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, intermediate_size=16, patch_size=8)
    return CLIPVisionModelWithProjection(config).eval()


def tiny_text_to_video(folder: Path, seed: int = 0) -> Path:
    """A tiny `TextToVideoSDPipeline` saved under `folder / "weights"`; returns that folder."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    return save_tiny_pipeline(
        TextToVideoSDPipeline, folder, unet=tiny_unet_3d(seed), vae=tiny_vae_8(seed), scheduler=tiny_scheduler(),
        text_encoder=tiny_text_encoder(tokenizer, seed), tokenizer=tokenizer,
    )


def tiny_image_to_video(folder: Path, seed: int = 0) -> Path:
    """A tiny `I2VGenXLPipeline` saved under `folder / "weights"`; returns that folder."""
    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    return save_tiny_pipeline(
        I2VGenXLPipeline, folder, unet=tiny_i2vgen_unet(seed), vae=tiny_vae_8(seed), scheduler=tiny_scheduler(),
        text_encoder=tiny_text_encoder(tokenizer, seed), tokenizer=tokenizer, image_encoder=tiny_image_encoder(seed),
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
    )


def tiny_inpainting(folder: Path, seed: int = 0) -> Path:
    """A tiny SD inpainting pipeline (9 UNet input channels) saved under `folder / "weights"`."""
    components: dict[str, Any] = tiny_sd_components(folder, unet_in_channels=9, seed=seed)
    return save_tiny_pipeline(StableDiffusionInpaintPipeline, folder, **components)


def tiny_instruct_pix2pix(folder: Path, seed: int = 0) -> Path:
    """A tiny InstructPix2Pix pipeline (8 UNet input channels) saved under `folder / "weights"`."""
    components = tiny_sd_components(folder, unet_in_channels=8, seed=seed)
    return save_tiny_pipeline(StableDiffusionInstructPix2PixPipeline, folder, **components)


def models_file(path: Path, module: str, **entry: Any) -> Path:
    """Write a models file configuring one module (on the CPU unless told), as a user would; returns its path."""
    import yaml

    entry.setdefault("device", "cpu")
    entry = {key: str(value) if isinstance(value, Path) else value for key, value in entry.items()}
    path.write_text(yaml.safe_dump({module: entry}))
    return path
