"""The mini planner's data and its composition: tagged requests of every intent and module, held-out phrasings and
nouns, determinism; steps composed from spans exactly as a careful reader would plan them."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.planners.mini.compose import PREFIX, TAGS, Context, Span, compose
from agent.planners.mini.data import SPLITS, generate, generate_splits, object_nouns, template_splits
from agent.planners.mini.encoder import load_minilm
from agent.planners.mini.inference import INTENTS, TAG_NAMES
from agent.planners.mini.train import encode_examples


@pytest.fixture(scope="module")
def splits():
    return generate_splits({"train": 1500, "val": 200, "test": 400}, seed=0)


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    assert generate("train", 50, seed=3) == generate("train", 50, seed=3)
    assert generate("train", 50, seed=3) != generate("train", 50, seed=4)


def test_test_phrasings_and_nouns_never_appear_in_training(splits):
    phrasings = {split: {part for e in splits[split] for part in e.template.split("+")} for split in SPLITS}
    assert not phrasings["train"] & phrasings["test"]
    assert not phrasings["train"] & phrasings["val"]
    assert not phrasings["val"] & phrasings["test"]
    for group, parts in template_splits(0).items():
        assert parts["test"] and parts["train"], group
        assert not set(parts["test"]) & set(parts["train"]), group
    test_nouns = {object_nouns()[i] for i in template_splits(0)["noun"]["test"]}
    train_text = " ".join(e.text.lower() for e in splits["train"])
    unseen = [n for n in test_nouns if not re.search(rf"\b{n}\b", train_text)]
    assert len(unseen) > 0.8 * len(test_nouns)  # (a few also occur inside other nouns or scenes)
    train_texts = {e.text.lower() for e in splits["train"]}
    assert sum(e.text.lower() in train_texts for e in splits["test"]) == 0


def test_every_intent_module_and_tag_occurs(splits):
    examples = splits["train"]
    assert set(Counter(e.intent for e in examples)) == set(INTENTS)
    letters = Counter(step.module for e in examples for step in e.steps)
    assert set(letters) == set(PREFIX) and min(letters.values()) > 50
    assert set(Counter(span.tag for e in examples for span in e.spans)) == set(TAGS)
    assert sum(len(e.steps) >= 3 for e in examples) > 50
    assert any(step.area == "background" for e in examples for step in e.steps)
    assert any(step.inputs for e in examples for step in e.steps)  # aliases the user named
    assert all(not e.spans for e in examples if e.intent != "plan")


def test_varied_phrasing(splits):
    texts = [e.text for e in splits["train"]]
    assert any(t.isupper() for t in texts) and any(t[:1].isupper() and not t.isupper() for t in texts)
    assert any(t.lower().startswith(("please", "could you", "can you")) for t in texts)
    assert len(set(texts)) > 0.9 * len(texts)


def test_instructions_are_the_users_words_without_aliases(splits):
    for example in splits["train"] + splits["test"]:
        for step in example.steps:
            assert step.instruction.startswith(PREFIX[step.module])
            body = step.instruction.split(":", 1)[1].split()
            assert not any(re.fullmatch(r"@?(img|vid|video|mask|masks)\d+", w, re.I) for w in body)
            text_words = example.text.split()
            assert all(any(w in t for t in text_words) for w in body
                       if w not in ("the", "marked", "region", "main", "subject")), (example.text, step)


def test_gold_tags_mark_every_span_and_only_words(splits):
    minilm = load_minilm()
    examples = [e for e in splits["test"] if e.spans][:60]
    for item in encode_examples(minilm, examples):
        tags = [TAG_NAMES[t] for t in item.tags.tolist() if t != -100]
        assert len(tags) == int(item.words.sum())
        opened = sum(name.startswith("B-") for name in tags)
        assert opened == sum(1 for s in item.example.spans if s.begins)
        for span in item.example.spans:
            inside = [TAG_NAMES[t] for (a, _b), t in zip(item.offsets, item.tags.tolist(), strict=True)
                      if span.start <= a < span.end and t != -100]
            assert inside and all(name.endswith(span.tag) for name in inside)


def test_requests_that_plan_nothing_teach_the_tagger_nothing(splits):
    """A question's words are not tagged O: "what colour is the lemon?" must not teach that a lemon is no object."""
    others = [e for e in splits["train"] if e.intent != "plan"][:40]
    assert {e.intent for e in others} >= {"question", "vague"}
    for item in encode_examples(load_minilm(), others):
        assert set(item.tags.tolist()) == {-100}


# --- composition ----------------------------------------------------------------------------------------------


def tagged(text: str, *parts: tuple[str, str] | tuple[str, str, bool]) -> list[Span]:
    """Spans of `text` from (words, tag[, begins]) in order of appearance."""
    spans, cursor = [], 0
    for part in parts:
        words, tag, *rest = part
        start = text.index(words, cursor)
        spans.append(Span(start, start + len(words), tag, rest[0] if rest else True))
        cursor = start + len(words)
    return spans


def plan_of(text: str, spans: list[Span], context: Context) -> list[tuple[str, str, str | None, dict]]:
    return [(s.module, s.instruction, s.area, s.inputs) for s in compose(text, spans, context)]


UPLOAD = Context(upload="image", memory=("img1",), region=True)


def test_an_edit_of_an_object_segments_it_first():
    text = "make the rocket blue"
    assert plan_of(text, tagged(text, ("make", "EDIT"), ("the rocket", "OBJ"), ("blue", "EDIT", False)), UPLOAD) == [
        ("B", "segmentation: the rocket", None, {}), ("C", "editing: make the rocket blue", None, {})]


def test_background_words_make_the_edit_act_outside():
    text = "segment the rocket and blur everything else"
    spans = tagged(text, ("segment", "SEG"), ("the rocket", "OBJ"), ("blur", "EDIT"), ("everything else", "BG"))
    assert plan_of(text, spans, UPLOAD) == [("B", "segmentation: the rocket", None, {}),
                                            ("C", "editing: blur", "background", {})]
    text = "remove the background"  # nothing named: the drawn region is segmented
    assert plan_of(text, tagged(text, ("remove", "EDIT"), ("the background", "BG")), UPLOAD) == [
        ("B", "segmentation: the marked region", None, {}), ("C", "editing: remove", "background", {})]
    text = "make the rest gray but keep the shark"  # the kept object is segmented before the edit
    spans = tagged(text, ("make", "EDIT"), ("the rest", "BG"), ("gray", "EDIT", False), ("keep", "SEG"),
                   ("the shark", "OBJ"))
    assert [m for m, *_ in plan_of(text, spans, UPLOAD)] == ["B", "C"]


def test_a_follow_up_edit_of_an_object_reuses_the_sessions_mask_unless_a_region_is_drawn():
    text = "make the lighthouse red too"
    spans = tagged(text, ("make", "EDIT"), ("the lighthouse", "OBJ"), ("red", "EDIT", False))
    later = Context(memory=("img1", "mask1", "img2"))
    assert [m for m, *_ in plan_of(text, spans, later)] == ["C"]
    assert [m for m, *_ in plan_of(text, spans, Context(memory=("img1", "mask1", "img2"), region=True))] == ["B", "C"]
    # the session's mask is reused only when it is of the object named ("lighthouses" is a lighthouse)
    same = Context(memory=("img1", "mask1", "img2"), segmented=("old", "lighthouses"))
    assert [m for m, *_ in plan_of(text, spans, same)] == ["C"]
    other = Context(memory=("img1", "mask1", "img2"), segmented=("umbrella",))
    assert [m for m, *_ in plan_of(text, spans, other)] == ["B", "C"]


def test_videos_named_or_uploaded_or_made_switch_to_video_modules():
    text = "track the dog and blur it"
    spans = tagged(text, ("track", "SEG"), ("the dog", "OBJ"), ("blur", "EDIT"))
    assert [m for m, *_ in plan_of(text, spans, Context(upload="video", memory=("video1",)))] == ["E", "F"]
    text = "make the video sepia"
    assert [m for m, *_ in plan_of(text, tagged(text, ("make", "EDIT"), ("sepia", "EDIT", False)),
                                   Context(memory=("img1", "video1")))] == ["F"]
    text = "draw a fox and animate it then make it sepia"
    spans = tagged(text, ("a fox", "GEN"), ("animate", "ANIM"), ("make", "EDIT"), ("sepia", "EDIT", False))
    assert [m for m, *_ in plan_of(text, spans, Context())] == ["A", "G", "F"]
    text = "create a fox in the snow and then animate it"  # only an image is animated: the description is one
    spans = tagged(text, ("a fox in the snow", "VGEN"), ("animate", "ANIM"))
    assert [m for m, *_ in plan_of(text, spans, Context())] == ["A", "G"]
    text = "make it look like it was shot on film"  # a photo just uploaded, no video anywhere: about the photo
    spans = tagged(text, ("make", "EDIT"), ("look like it was shot on film", "EDIT", False))
    assert [m for m, *_ in plan_of(text, spans, Context(upload="image", memory=("img1",)))] == ["C"]
    assert [m for m, *_ in plan_of(text, spans, Context(upload="image", memory=("video1", "img1")))] == ["F"]


def test_named_aliases_go_to_the_nearest_step_and_the_users_mask_replaces_a_segmentation():
    text = "in img2, segment the cat, then make it red"
    spans = tagged(text, ("segment", "SEG"), ("the cat", "OBJ"), ("make", "EDIT"), ("red", "EDIT", False))
    assert plan_of(text, spans, Context(memory=("img1", "img2"))) == [
        ("B", "segmentation: the cat", None, {"image": "@img2"}),
        ("C", "editing: make red", None, {"image": "@img2"})]
    text = "recolour the dog in mask1 red in img1"
    spans = tagged(text, ("recolour", "EDIT"), ("the dog", "OBJ"), ("red", "EDIT", False))
    assert plan_of(text, spans, Context(memory=("img1", "mask1"))) == [
        ("C", "editing: recolour the dog red", None, {"image": "@img1", "mask": "@mask1"})]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abc @1 ", max_size=30), tags=st.lists(st.tuples(
    st.integers(0, 30), st.integers(0, 30), st.sampled_from(TAGS), st.booleans()), max_size=8),
    upload=st.sampled_from([None, "image", "video"]), region=st.booleans())
def test_any_spans_compose_into_valid_steps(text, tags, upload, region):
    spans = [Span(min(a, b, len(text)), min(max(a, b), len(text)), tag, begins) for a, b, tag, begins in tags]
    for step in compose(text, spans, Context(upload=upload, memory=("img1", "mask1", "video1"), region=region)):
        assert step.module in PREFIX and step.instruction.startswith(PREFIX[step.module])
        assert step.area in (None, "background") and (step.area is None or step.module in "CF")
