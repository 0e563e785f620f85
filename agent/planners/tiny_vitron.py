"""A tiny random VITRON planner model built in code, offline: for tests and the demo, not for answers.

`build_tiny_vitron(folder)` writes a LLaVA-style model (tiny CLIP vision tower + tiny Llama); `family=` picks another
vision-language family (`llava_onevision`: tiny SigLIP + Qwen2, any-resolution tiles; `qwen2_vl` and `qwen2_5_vl`:
their own tiny vision transformers with M-RoPE) and `vision=False` a tiny Llama alone. Each comes with a byte-level
BPE tokenizer trained here (holding the family's own picture tokens), the family's processor and random signal heads,
all through `save_pretrained`, so that `VitronModel.load(folder)` reads it like a real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from schemas import MODULES, InvalidInput, ModelsFile

from .vitron_model import IMAGE_TOKEN, SPECIAL_TOKENS, SignalHeads, add_signal_tokens

TEXT_HIDDEN = 64
IMAGE_SIZE = 32
PATCH_SIZE = 8
BASE_SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")
FAMILIES = ("llava", "llava_onevision", "qwen2_vl", "qwen2_5_vl")
"""The vision-language families `build_tiny_vitron` writes."""
QWEN_PICTURE_TOKENS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")


def _corpus() -> list[str]:
    """Words the grammar and the demo use, so common ones become single BPE tokens."""
    lines = [
        "Sure, I'll take the zebra farthest away.",
        "segmentation: zebra farthest from you",
        "editing: make the red car blue; remove the person; blur the background",
        "generation: a cat on a sofa, a dog in the park, a video of waves",
        "What is in the picture? A man, a woman, a horse, a clock, a tree and the sky.",
        "The region is (23, 35, 110, 126) and the points are [(1, 2), (3, 4)].",
        "input @1 @2 @mask2 @img1 0 1 2 3 4 5 6 7 8 9 10 100 255",
        "USER: ASSISTANT: Yes. No. Okay! Here it is - done.",
    ]
    for info in MODULES:
        lines.append(f"{info.code} {info.name} {info.title} {info.title.lower()}")
    return lines * 4


def _build_tokenizer(picture_tokens: tuple[str, ...] = (IMAGE_TOKEN,), bos: bool = True, planner_tokens: bool = True):
    """A byte-level BPE tokenizer with `picture_tokens` and (with `planner_tokens`) the grammar's tokens as special
    tokens; with `bos`, a bos token in front of every encoded prompt (Llama's way; Qwen's tokenizers add none)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()  # byte-level BPE decodes back to the exact text
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[*BASE_SPECIAL, *picture_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    if bos:
        bos_id = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>" if bos else None, eos_token="</s>", pad_token="<pad>"
    )
    if planner_tokens:
        add_signal_tokens(fast)
        assert all(t in fast.get_vocab() for t in SPECIAL_TOKENS)
    return fast


def build_tiny_vitron(folder: Path, *, seed: int = 0, vision: bool = True, family: str = "llava",
                      models: ModelsFile | None = None, initializer_range: float = 0.02,
                      planner_tokens: bool = True) -> Path:
    """Write a tiny random planner model into `folder` (created if needed) and return the folder; its signal heads
    are as wide as the backends `models` configures read (default the settings' models file).

    `family`: which vision-language model (one of `FAMILIES`); `vision=False` writes a plain causal LM instead.
    `planner_tokens=False`: a tokenizer without the grammar's tokens, as a published base has (loading adds them).
    `initializer_range`: the weights' scale. At the default, a model this small gives near-uniform logits (its output
    rows are tiny next to the normalised hidden state), which LoRA cannot lift in a few steps; a training test
    uses a larger one, as a trained base's output layer would be."""
    from transformers import LlamaForCausalLM

    if family not in FAMILIES:
        raise InvalidInput(f"unknown tiny model family {family!r}", field="family", fix=f"use one of {FAMILIES}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    qwen = vision and family.startswith("qwen")
    pictures = {"qwen2_vl": QWEN_PICTURE_TOKENS, "qwen2_5_vl": QWEN_PICTURE_TOKENS,
                "llava_onevision": (IMAGE_TOKEN, "<video>")}.get(family, (IMAGE_TOKEN,)) if vision else (IMAGE_TOKEN,)
    tokenizer = _build_tokenizer(pictures, bos=not qwen, planner_tokens=planner_tokens)
    text = dict(
        # Qwen's checkpoints have more embedding rows than tokens (a multiple of 64 here), room for added ones
        vocab_size=-(-len(tokenizer) // 64) * 64 if qwen else len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=initializer_range,
    )
    if not vision:
        from transformers import LlamaConfig

        model: Any = LlamaForCausalLM(LlamaConfig(**text))
        tokenizer.save_pretrained(folder)
    else:
        model, processor = _BUILDERS[family](tokenizer, text)
        processor.save_pretrained(folder)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(folder)
    SignalHeads(TEXT_HIDDEN, models=models).save(folder)
    return folder


def llava_parts(tokenizer: Any, text: dict[str, Any]) -> tuple[Any, Any]:
    """LLaVA-1.5's layout: a CLIP vision tower (CLS dropped), an MLP projector, a Llama."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    vision_config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32)
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=LlamaConfig(**text),
        image_token_index=tokenizer.get_vocab()[IMAGE_TOKEN],
        image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,  # CLS dropped by the "default" feature strategy
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token
        image_token=IMAGE_TOKEN,
    )
    return LlavaForConditionalGeneration(config), processor


def _llava_onevision(tokenizer: Any, text: dict[str, Any]) -> tuple[Any, Any]:
    """LLaVA-OneVision's layout: a SigLIP tower (no CLS), any-resolution tiles with a newline row, a Qwen2 LM."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    vocab = tokenizer.get_vocab()
    tiles = [[IMAGE_SIZE, IMAGE_SIZE], [IMAGE_SIZE, 2 * IMAGE_SIZE]]  # a landscape picture takes two tiles
    config = LlavaOnevisionConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
                                         vision_use_head=False),
        text_config=Qwen2Config(**text),
        image_token_index=vocab[IMAGE_TOKEN],
        video_token_index=vocab["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=tiles,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=tiles),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(IMAGE_SIZE // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        image_token=IMAGE_TOKEN,
        video_token="<video>",
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _qwen_vl(tokenizer: Any, text: dict[str, Any], version: str) -> tuple[Any, Any]:
    """Qwen2-VL's (or Qwen2.5-VL's) layout: a vision transformer over 2x2-merged patches, its pictures between
    `<|vision_start|>` and `<|vision_end|>`, M-RoPE positions; input and output embeddings tied, as the 2B/3B are."""
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    vocab = tokenizer.get_vocab()
    pixels = {"min_pixels": 16 * 16, "max_pixels": 48 * 48}  # a 64x48 picture becomes 32x48: 6 vision tokens
    patches = {"patch_size": PATCH_SIZE, "merge_size": 2, "temporal_patch_size": 2}
    vision = {"depth": 2, "num_heads": 4, "patch_size": PATCH_SIZE, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if version == "2":
        vision |= {"embed_dim": 32, "hidden_size": TEXT_HIDDEN}
    else:  # Qwen2.5-VL: windowed attention but in the last block, an output width of its own
        vision |= {"hidden_size": 32, "intermediate_size": 64, "out_hidden_size": TEXT_HIDDEN,
                   "window_size": 2 * PATCH_SIZE, "fullatt_block_indexes": [1]}
    prefix = "Qwen2VL" if version == "2" else "Qwen2_5_VL"
    config = getattr(transformers, f"{prefix}Config")(
        text_config={**text, "tie_word_embeddings": True,
                     # M-RoPE: a head's 8 rotary pairs (head width 16) split between time, height and width
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}},
        vision_config=vision,
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=Qwen2VLImageProcessor(**pixels, **patches),
        video_processor=Qwen2VLVideoProcessor(**pixels, **patches),
        tokenizer=tokenizer,
    )
    return getattr(transformers, f"{prefix}ForConditionalGeneration")(config), processor


_BUILDERS = {
    "llava": llava_parts,
    "llava_onevision": _llava_onevision,
    "qwen2_vl": lambda tokenizer, text: _qwen_vl(tokenizer, text, "2"),
    "qwen2_5_vl": lambda tokenizer, text: _qwen_vl(tokenizer, text, "2.5"),
}
