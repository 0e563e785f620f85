"""The mini planner's instruction data: all seven modules, references, held-out phrasings, determinism."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from agent.planners.mini.data import PREFIX, SPLITS, generate, generate_splits, template_splits
from agent.planners.mini.encoder import load_minilm
from agent.planners.mini.model import ALIAS, END_INSTRUCTION, FIXED, N_FIXED, SIGNAL, copied_text
from agent.planners.mini.train import encode_examples


@pytest.fixture(scope="module")
def splits():
    return generate_splits({"train": 1500, "val": 200, "test": 400}, seed=0)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    assert generate("train", 50, seed=3) == generate("train", 50, seed=3)
    assert generate("train", 50, seed=3) != generate("train", 50, seed=4)


def test_test_phrasings_never_appear_in_training(splits):
    phrasings = {split: {part for e in splits[split] for part in e.template.split("+")} for split in SPLITS}
    assert not phrasings["train"] & phrasings["test"]
    assert not phrasings["train"] & phrasings["val"]
    assert not phrasings["val"] & phrasings["test"]
    # every clause group keeps phrasings of its own for the test split
    for group, parts in template_splits(0).items():
        assert parts["test"] and parts["train"], group
        assert not set(parts["test"]) & set(parts["train"]), group
    train_texts = {e.text.lower() for e in splits["train"]}
    assert sum(e.text.lower() in train_texts for e in splits["test"]) == 0


def test_every_module_single_and_multi_step_with_references(splits):
    examples = splits["train"]
    letters = Counter(step.module for e in examples for step in e.steps)
    assert set(letters) == set(PREFIX) and min(letters.values()) > 50
    assert sum(len(e.steps) == 1 for e in examples) > 300 and sum(len(e.steps) >= 3 for e in examples) > 50
    refs = [ref for e in examples for step in e.steps for ref in step.inputs]
    assert any(re.fullmatch(r"@\d", r) for r in refs)
    for prefix in ("img", "mask", "video"):
        assert any(re.fullmatch(rf"@{prefix}\d+", r) for r in refs), prefix
    assert any(e.region for e in examples) and not all(e.region for e in examples)
    # the user names remembered artifacts in the text, e.g. "... mask3's dog red in img1"
    assert any(re.search(r"mask\d", e.text, re.I) and e.steps[0].module == "C" for e in examples)


def test_steps_are_consistent(splits):
    for e in splits["train"] + splits["test"]:
        known = {*e.inputs, *e.memory}
        for number, step in enumerate(e.steps, start=1):
            assert step.instruction.startswith(PREFIX[step.module])
            copied = " ".join(e.text[a:b] for a, b in step.spans)
            assert step.instruction == f"{PREFIX[step.module]} {copied}"
            assert step.keywords and step.object_phrase
            for ref in step.inputs:
                name = ref[1:]
                assert (name.isdigit() and int(name) < number) or name in known, (e.text, ref)


def test_varied_phrasing(splits):
    texts = [e.text for e in splits["train"]]
    assert any(t.isupper() for t in texts) and any(t[:1].isupper() and not t.isupper() for t in texts)
    assert any(t.lower().startswith(("please", "could you", "can you")) for t in texts)
    assert len(set(texts)) > 0.95 * len(texts)


def test_gold_tokens_copy_the_instruction_and_aliases_from_the_source(splits):
    minilm = load_minilm()
    examples = [e for e in splits["test"] if any(not r[1:].isdigit() for s in e.steps for r in s.inputs)][:40]
    encoded = encode_examples(minilm, examples)
    batch = minilm.encode([e.text for e in examples], [e.context for e in examples])
    for row, item in enumerate(encoded):
        example, target = item.example, item.target
        assert target.count(SIGNAL) == len(example.steps)
        blocks = [b for b in _split_blocks(target)]
        for (letter, copies, aliases), step in zip(blocks, example.steps, strict=True):
            assert letter == step.module
            words = copied_text(copies, batch.tokens[row], batch.offsets[row], batch.segments[row],
                                [example.text, example.context])
            assert f"{PREFIX[letter]} {words}" == step.instruction
            named = [copied_text(a, batch.tokens[row], batch.offsets[row], batch.segments[row],
                                 [example.text, example.context]).lower() for a in aliases]
            assert named == [r[1:] for r in step.inputs if not r[1:].isdigit()]


def _split_blocks(target: list[int]) -> list[tuple[str, list[int], list[list[int]]]]:
    blocks: list[tuple[str, list[int], list[list[int]]]] = []
    mode = ""
    for token in target:
        if token < N_FIXED and FIXED[token] in PREFIX:
            blocks.append((FIXED[token], [], []))
            mode = "instruction"
        elif token == END_INSTRUCTION:
            mode = "inputs"
        elif token == ALIAS:
            blocks[-1][2].append([])
            mode = "alias"
        elif token >= N_FIXED:
            (blocks[-1][1] if mode == "instruction" else blocks[-1][2][-1]).append(token - N_FIXED)
        else:
            mode = "inputs"
    return blocks
