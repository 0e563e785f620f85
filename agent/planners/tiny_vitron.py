"""A tiny random VITRON planner model built in code, offline: for tests and the demo, not for answers.

`build_tiny_vitron(folder)` writes a LLaVA-style model (tiny CLIP vision tower + tiny Llama) or, with
`vision=False`, a tiny Llama alone, with a byte-level BPE tokenizer trained here, the processor and random
signal heads, all through `save_pretrained`, so that `VitronModel.load(folder)` reads it like a real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from schemas import MODULES, ModelsFile

from .vitron_model import IMAGE_TOKEN, SPECIAL_TOKENS, SignalHeads, add_signal_tokens

TEXT_HIDDEN = 64
IMAGE_SIZE = 32
PATCH_SIZE = 8
BASE_SPECIAL = ("<unk>", "<s>", "</s>", "<pad>")


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


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()  # byte-level BPE decodes back to the exact text
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[*BASE_SPECIAL, IMAGE_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos = tok.token_to_id("<s>")
    # Like Llama: a bos token in front of every encoded prompt.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    add_signal_tokens(fast)
    assert all(t in fast.get_vocab() for t in SPECIAL_TOKENS)
    return fast


def build_tiny_vitron(folder: Path, *, seed: int = 0, vision: bool = True, models: ModelsFile | None = None,
                      initializer_range: float = 0.02) -> Path:
    """Write a tiny random planner model into `folder` (created if needed) and return the folder; its signal heads
    are as wide as the backends `models` configures read (default the settings' models file).

    `initializer_range`: the weights' scale. At the default, a model this small gives near-uniform logits (its output
    rows are tiny next to the normalised hidden state), which LoRA cannot lift in a few steps; a training test
    uses a larger one, as a trained base's output layer would be."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlamaForCausalLM,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = _build_tokenizer()
    vocab = tokenizer.get_vocab()
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
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
    if vision:
        vision_config = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            projection_dim=32,
        )
        n_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2  # CLS dropped by the "default" feature strategy
        config = LlavaConfig(
            vision_config=vision_config,
            text_config=text_config,
            image_token_index=vocab[IMAGE_TOKEN],
            image_seq_length=n_image_tokens,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
        )
        model = LlavaForConditionalGeneration(config)
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
        processor.save_pretrained(folder)
    else:
        model = LlamaForCausalLM(text_config)
        tokenizer.save_pretrained(folder)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(folder)
    SignalHeads(TEXT_HIDDEN, models=models).save(folder)
    return folder
