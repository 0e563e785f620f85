"""The hand-written held-out conversations and their scoring: the set is what the planner issue asks for (150
requests, 50 of them conversations), its gold plans agree with the simulated session turn after turn (a planner
that answers with them scores full marks), and `vitron planner eval --set` prints the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.planners.conversations import load_conversations, score_conversations
from memory import undo_target
from schemas import InvalidInput, Invocation, Plan, PlanStep, SessionOperation, resolve_module
from tests.cli import one_json, vitron

HELD_OUT = Path(__file__).resolve().parents[2] / "bench" / "planner_heldout.jsonl"
MAIN_INPUT = {"B": "image", "C": "image", "G": "image", "E": "video", "F": "video"}


def test_the_held_out_set_is_as_the_issue_asks():
    conversations = load_conversations(HELD_OUT)
    assert len(conversations) >= 150 and sum(len(c["turns"]) > 1 for c in conversations) >= 50
    assert len({c["id"] for c in conversations}) == len(conversations)
    kinds = {"steps": 0, "ask": 0, "question": 0, "op": 0}
    for conversation in conversations:
        for turn in conversation["turns"]:
            (kind,) = [k for k in turn["expect"] if k in kinds]
            kinds[kind] += 1
            for step in turn["expect"].get("steps", []):
                assert resolve_module(step["module"]).code == step["module"]
                assert step.get("where", "inside") in ("inside", "outside")
    assert all(count >= 5 for count in kinds.values()), kinds  # every kind of turn is there


class Oracle:
    """A planner that answers each request with its gold plan: the set and the simulation must agree."""

    def __init__(self, conversations: list[dict]) -> None:
        self.gold = {turn["text"]: turn["expect"] for c in conversations for turn in c["turns"]}

    def plan(self, request) -> Plan:
        expect = self.gold[request.text]
        if expect.get("ask"):
            return Plan(reply="What would you like me to change?", steps=[])
        if "op" in expect:
            target = expect["current"] if expect["op"] == "undo" else expect["target"]
            return Plan(operation=SessionOperation(kind=expect["op"], target=target))
        if "steps" not in expect:
            return Plan(reply="Here is what I can tell.", steps=[])
        steps = []
        for step in expect["steps"]:
            inputs = {MAIN_INPUT[step["module"]]: step["on"]} if "on" in step else {}
            steps.append(PlanStep(invocation=Invocation(
                module=step["module"], command=" ".join(step.get("words", ["it"])), inputs=inputs,
                params={"area": "background"} if step.get("where") == "outside" else {})))
        return Plan(reply="", steps=steps)


def test_the_gold_plans_score_full_marks_on_the_simulated_sessions():
    conversations = load_conversations(HELD_OUT)
    unique = {}
    for conversation in conversations:  # the oracle keys on the text: keep conversations whose texts agree
        for turn in conversation["turns"]:
            unique.setdefault(turn["text"], []).append(json.dumps(turn["expect"], sort_keys=True))
    clashing = {text for text, golds in unique.items() if len(set(golds)) > 1}
    kept = [c for c in conversations if not any(t["text"] in clashing for t in c["turns"])]
    assert len(kept) >= 120
    scores = score_conversations(Oracle(kept), kept)
    assert scores["module_exact"] == scores["keyword_recall"] == 1.0
    assert scores["follow_up_target_accuracy"] == scores["where_accuracy"] == 1.0
    assert scores["question_accuracy"] == scores["vague_accuracy"] == 1.0
    assert scores["silent_wrong_rate"] == 0.0 and scores["ask_rate_on_clear"] == 0.0
    assert scores["operation_accuracy"] == 1.0 and scores["turn_accuracy"] == 1.0


UNDONE = {"id": "undone", "turns": [
    {"text": "make the sky orange", "upload": "image", "region": True, "expect": {"steps": [
        {"module": "B", "words": ["sky"], "on": "@img1"}, {"module": "C", "words": ["orange"], "on": "@img1"}]}},
    {"text": "undo", "expect": {"op": "undo", "current": "@img1"}},
    {"text": "make it pink instead", "expect": {"steps": [{"module": "C", "words": ["pink"], "on": "@img1"}]}},
    {"text": "show me the mask", "expect": {"op": "show", "target": "@mask1"}}]}


class Natural:
    """Plans as a planner would: inputs left to the resolver, undo's target from session memory, or a question."""

    def __init__(self, confirm: bool = False) -> None:
        self.confirm = confirm

    def plan(self, request) -> Plan:
        if request.text == "undo":
            return Plan(operation=SessionOperation(kind="undo", target="@" + undo_target(request.artifacts).alias))
        if request.text == "show me the mask":
            return Plan(operation=SessionOperation(kind="show", target="@mask1"), confirm=self.confirm)
        steps = [PlanStep(invocation=Invocation(module="C", command=request.text))]
        if request.text == "make the sky orange":
            steps.insert(0, PlanStep(invocation=Invocation(module="B", command="the sky")))
            steps[1] = PlanStep(invocation=Invocation(module="C", command=request.text, inputs={"mask": "@1"}))
        return Plan(steps=steps, confirm=self.confirm, reply="Shall I?" if self.confirm else "")


def test_after_a_gold_undo_the_next_edit_acts_on_what_it_brought_back():
    scores = score_conversations(Natural(), [UNDONE])
    assert scores["operation_accuracy"] == scores["follow_up_target_accuracy"] == scores["turn_accuracy"] == 1.0


def test_a_question_before_a_guess_is_asked_not_run():
    scores = score_conversations(Natural(confirm=True), [UNDONE])
    assert scores["ask_rate_on_clear"] == 1.0 and scores["silent_wrong_rate"] == 0.0
    assert scores["operation_accuracy"] == 0.5  # the undo was done; the show only asked about


def test_a_malformed_line_is_named(tmp_path):
    bad = tmp_path / "set.jsonl"
    bad.write_text('{"id": "x", "turns": [{"text": "hi", "expect": {"question": true}}]}\n{"id": "y"}\n')
    with pytest.raises(InvalidInput, match=r"line 2 of set\.jsonl"):
        load_conversations(bad)


def test_planner_eval_with_a_set_prints_one_json_line(env):
    figures = one_json(vitron(env, "planner", "eval", "--set", str(HELD_OUT), "--planner", "explicit"))
    assert figures["planner"] == "explicit" and figures["conversations"] >= 150
    assert {"turn_accuracy", "module_exact", "keyword_recall", "follow_up_target_accuracy", "silent_wrong_rate",
            "ask_rate_on_clear"} <= set(figures)


class Looker:
    """A planner that looks at the pixels of the turn's uploads, as the vitron planner and multimodal chat models do."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    name = "looker"

    def plan(self, request):
        for ref in request.inputs.values():
            picture = request.store.get_image(ref) if ref.kind == "image" else next(request.store.iter_frames(ref))
            self.seen.append((ref.kind, picture.shape, int(picture.mean())))
        return Plan(reply="Looked.")


def test_a_planner_that_reads_the_pictures_finds_them_in_the_store():
    uploads = [c for c in load_conversations(HELD_OUT) if any(t.get("upload") for t in c["turns"])]
    conversations = [c for c in uploads if c["turns"][0].get("upload") == "video"][:4] + uploads[:8]
    looker = Looker()
    figures = score_conversations(looker, conversations)
    assert figures["turns"] >= 12 and len(looker.seen) >= 12
    assert {kind for kind, *_ in looker.seen} == {"image", "video"}
    assert len({seen for seen in looker.seen}) > 1  # each upload a picture of its own
