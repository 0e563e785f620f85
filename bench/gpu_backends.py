"""The real backends at real size, with random weights, on a GPU. Prints one JSON line.

For each pipeline: SD 1.5 (UNet 860M, 512², module A), SAM ViT-B (1024², module B), a ZeroScope-sized
text-to-video UNet (320×576, 24 frames, module D), and for module H Qwen2-VL-2B (a caption of a 1024² photo, 32
tokens) and OWLv2 base (ViT-B/16 at 960², a phrase found), and referring segmentation (module B given "the
largest car" and no region: OWLv2 grounds it, SAM ViT-B segments the picked box), built from their published
configs with random weights, saved with `save_pretrained` / `torch.save` and loaded through a models file exactly
as a user's weights are:

- `latency_s`: one job through the tool (`get_tool(...).run`), median of `--repeats` after a warm-up;
- `peak_gpu_gb`: the peak GPU memory the job allocated;
- `overhead_ratio`: the same job as a one-step agent turn (explicit planner, local executor): the turn's wall
  time over the tool's own time.

fp16 on CUDA (the models file's `dtype: auto`). Random weights make the pixels noise, but the arithmetic is the
real one, so the timings are. `--tiny` runs the same code with tiny configs on the CPU, to check the script.

Run (GPU machine): .venv/bin/python bench/gpu_backends.py [--steps 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import VitronAgent
from schemas import VitronSettings
from tests.tools.tiny_diffusion import tiny_tokenizer
from tools import ToolContext, get_tool
from tools.model_cache import model_cache


def _diffusion(folder: Path, tiny: bool, name: str, pipeline: str, unet: str, width: int,
               text: tuple[int, int, int]) -> Path:
    """A Stable-Diffusion-family pipeline with random weights: `unet` at its library defaults (the published
    architecture) with a `width`-wide cross-attention, SD's VAE, a CLIP text encoder of (layers, heads, ffn)."""
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    width = 32 if tiny else width
    layers, heads, ffn = (2, 4, 37) if tiny else text
    small = dict(block_out_channels=(32, 64, 64, 64), attention_head_dim=8, norm_num_groups=8, layers_per_block=1)
    parts = {
        "unet": getattr(diffusers, unet)(sample_size=64, cross_attention_dim=width, **(small if tiny else {})),
        "vae": diffusers.AutoencoderKL(
            block_out_channels=(16, 32, 32, 32) if tiny else (128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1 if tiny else 2, norm_num_groups=8 if tiny else 32, sample_size=512),
        "text_encoder": CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer) if tiny else 49408, hidden_size=width, intermediate_size=ffn,
            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)),
        "tokenizer": tokenizer,
        "scheduler": diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                             clip_sample=False, set_alpha_to_one=False, steps_offset=1),
    }
    if pipeline == "StableDiffusionPipeline":
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    getattr(diffusers, pipeline)(**parts).save_pretrained(folder / name)
    return folder / name


def sd15(folder: Path, tiny: bool) -> Path:
    """Stable Diffusion 1.5's architecture (UNet 860M, VAE, CLIP ViT-L/14 text encoder), random weights."""
    return _diffusion(folder, tiny, "sd15", "StableDiffusionPipeline", "UNet2DConditionModel", 768, (12, 12, 3072))


def zeroscope(folder: Path, tiny: bool) -> Path:
    """ZeroScope v2 576w's architecture (UNet3D, SD VAE, OpenCLIP ViT-H text encoder), random weights."""
    return _diffusion(folder, tiny, "zeroscope", "TextToVideoSDPipeline", "UNet3DConditionModel", 1024,
                      (23, 16, 4096))


def sam_vit_b(folder: Path, tiny: bool) -> tuple[Path, dict[str, Any]]:
    """SAM ViT-B (`sam_model_registry["vit_b"]`), random weights, saved as the official checkpoints are."""
    from tools.real.sam import build_custom_sam

    if tiny:
        options = {"encoder_embed_dim": 16, "encoder_depth": 2, "encoder_num_heads": 2, "image_size": 64,
                   "encoder_global_attn_indexes": [1], "patch_size": 8, "window_size": 4}
        model = build_custom_sam(options)
    else:
        from segment_anything import sam_model_registry

        options, model = {}, sam_model_registry["vit_b"]()
    torch.save(model.state_dict(), folder / "sam_vit_b.pth")
    return folder / "sam_vit_b.pth", options


def qwen2_vl_2b(folder: Path, tiny: bool) -> Path:
    """Qwen2-VL-2B-Instruct's architecture (a 675M ViT, a 1.5B Qwen2 with M-RoPE), random weights, in float16."""
    from tests.tools.tiny_vlm import save_qwen2_vl

    if tiny:
        return save_qwen2_vl(folder / "qwen2-vl")
    return save_qwen2_vl(
        folder / "qwen2-vl", dtype=torch.float16,
        text=dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                  tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
        vision=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14),
        pixels=dict(min_pixels=56 * 56, max_pixels=28 * 28 * 1280, patch_size=14))  # the model card's pixel budget


def owlv2_base(folder: Path, tiny: bool) -> Path:
    """OWLv2 base patch16's architecture (ViT-B/16 at 960², a 12-layer text tower), random weights, in float16."""
    from tests.tools.tiny_vlm import save_owlv2

    if tiny:
        return save_owlv2(folder / "owlv2")
    return save_owlv2(folder / "owlv2", dtype=torch.float16,
                      text=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                num_attention_heads=8),
                      vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, image_size=960, patch_size=16))


def timed(fn: Any, repeats: int) -> tuple[float, float]:
    """(median seconds, peak GPU GB) of `fn()` after one warm-up call (loading, kernel selection)."""
    fn()
    seconds = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    return statistics.median(seconds), peak


def overhead(agent: VitronAgent, text: str, image: Any, repeats: int) -> float:
    """Median of a one-step turn's wall time over the step's own time."""
    ratios = []
    for _ in range(repeats):
        tool_s = 0.0
        start = time.perf_counter()
        for event in agent.session().stream(text, image=image):
            if event["event"] == "step_finished":
                tool_s = event["seconds"]
            elif event["event"] == "step_failed":
                raise RuntimeError(event["error"])
        ratios.append((time.perf_counter() - start) / tool_s)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="denoising steps per job")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="tiny configs on the CPU: checks the script")
    args = parser.parse_args()
    if not args.tiny and not torch.cuda.is_available():
        sys.exit("bench/gpu_backends.py needs a CUDA GPU (or --tiny to check the script on the CPU)")
    tiny, steps = args.tiny, (2 if args.tiny else args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sam_path, sam_options = sam_vit_b(home, tiny)
        options = {"num_inference_steps": steps}
        models = {
            "image_generation": {"backend": "stable_diffusion", "weights": str(sd15(home, tiny)), "options": options},
            "image_segmentation": {"backend": "sam", "weights": str(sam_path),
                                   "variant": "custom" if tiny else "vit_b", "options": sam_options},
            "video_generation": {"backend": "text_to_video", "weights": str(zeroscope(home, tiny)),
                                 "options": options},
            "visual_understanding": {"backend": "transformers", "weights": str(qwen2_vl_2b(home, tiny)),
                                     "grounding": str(owlv2_base(home, tiny)),
                                     # random weights score low: every box counts, so a phrase always finds some
                                     "options": {"max_new_tokens": 32, "box_threshold": 0.0}},
        }
        (home / "models.yaml").write_text(yaml.safe_dump(models))
        settings = VitronSettings(home=home, models_file=home / "models.yaml")
        ctx = ToolContext.from_settings(settings)
        side = 64 if tiny else 1024
        photo = ctx.store.put_image(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))
        box = (side // 8, side // 8, side // 2, side // 2)
        size = {"width": 64, "height": 64} if tiny else {}
        frames = {"num_frames": 4, "width": 64, "height": 64} if tiny else {"num_frames": 24, "width": 576,
                                                                              "height": 320}
        jobs = {
            "sd15_512": ("A", {"command": "a red car on a street", "seed": 0, **size},
                         "<module>A</module><instruction>a red car on a street</instruction>", None),
            "sam_vit_b_1024": ("B", {"image": photo, "region": {"kind": "box", "box": list(box)}},
                               f"<module>B</module><instruction>segment it</instruction><region>{box}</region>", photo),
            "zeroscope_320x576x24": ("D", {"command": "a boat on a lake", "seed": 0, **frames},
                                     "<module>D</module><instruction>a boat on a lake</instruction>", None),
            "qwen2_vl_2b_caption_32_tokens": ("H", {"image": photo, "command": "caption"},
                                              "<module>H</module><instruction>caption</instruction>", photo),
            "owlv2_base_960": ("H", {"image": photo, "command": "find: a red car"},
                               "<module>H</module><instruction>find: a red car</instruction>", photo),
            # referring segmentation: OWLv2 grounds the phrase, the pick takes the largest box, SAM segments it
            "owlv2_sam_vit_b_referring": ("B", {"image": photo, "command": "the largest car"},
                                          "<module>B</module><instruction>the largest car</instruction>", photo),
        }
        figures: dict[str, Any] = {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (tiny)",
            "dtype": "float16" if torch.cuda.is_available() else "float32", "steps": steps}
        with VitronAgent.from_settings(settings, planner="explicit") as agent:
            for name, (module, data, text, image) in jobs.items():
                tool = get_tool(module)
                latency, peak = timed(lambda tool=tool, data=data: tool.run(data, ctx), args.repeats)
                if tiny and module in ("A", "D"):
                    text = None  # the grammar has no size: a turn would make a full-size output on the CPU
                figures[name] = {"latency_s": round(latency, 3), "peak_gpu_gb": round(peak, 2),
                                 "overhead_ratio": round(overhead(agent, text, image, args.repeats), 3) if text
                                 else None}
                model_cache().clear()  # the next pipeline gets the whole GPU
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
