"""The MiniLM encoder in plain torch gives transformers' numbers (tokens, offsets, segments, hidden states and
sentence embeddings), and loading the planner imports no transformers (its 2 s of imports were most of a cold
start)."""

from __future__ import annotations

import subprocess
import sys

import torch

from agent.planners.mini.encoder import MiniLM, default_folder

TEXTS = ["segment the cup and make it blue", "now blur the background please, it is too sharp " * 12, "hi",
         "Make the astronaut's suit RED — now!"]
CONTEXTS = ["inputs: img1 | memory: mask1 img2 | region", "inputs: none", "inputs: video1", "memory: img3"]


def test_the_encoder_matches_transformers_bert():
    from transformers import AutoModel, AutoTokenizer

    folder = default_folder()
    ours = MiniLM(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    encoded = ours.encode(TEXTS, CONTEXTS)
    batch = tokenizer(TEXTS, CONTEXTS, truncation="only_first", max_length=128, padding=True,
                      return_offsets_mapping=True, return_tensors="pt")
    offsets = batch.pop("offset_mapping").tolist()
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert encoded.hidden.shape == hidden.shape and torch.equal(encoded.mask, real)
    assert (encoded.hidden - hidden)[real].abs().max() < 1e-4
    assert encoded.tokens == [tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
    assert encoded.offsets == [[tuple(o) for o in row] for row in offsets]
    assert encoded.segments == [[-1 if s is None else s for s in batch.sequence_ids(i)] for i in range(len(TEXTS))]

    with torch.inference_mode():  # the tagger reads several layers side by side: the same as transformers' too
        layers = model(**batch, output_hidden_states=True).hidden_states
    picked = ours.encode(TEXTS, CONTEXTS, layers=(0, 2, 4, 6)).hidden
    assert (picked - torch.cat([layers[i] for i in (0, 2, 4, 6)], dim=-1))[real].abs().max() < 1e-4

    single = tokenizer(TEXTS, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**single).last_hidden_state
    weights = single["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((states * weights).sum(1) / weights.sum(1), dim=-1)
    assert (ours.sentence_embeddings(TEXTS) - want).abs().max() < 1e-5


def test_loading_the_planner_imports_neither_transformers_nor_torch():
    code = ("import sys; from agent.planners.mini import MiniPlanner; MiniPlanner(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'sentence_transformers', "
            "'torch')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
