"""The hand-written held-out conversations and their scoring: the set is what the planner issue asks for (150
requests, 50 of them conversations), its gold plans agree with the simulated session turn after turn (a planner
that answers with them scores full marks), and `vitron planner eval --set` prints the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.planners.conversations import load_conversations, score_conversations
from schemas import InvalidInput, Invocation, Plan, PlanStep, resolve_module
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
    assert scores["operation_accuracy"] == 0.0  # no planner has session operations yet


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
