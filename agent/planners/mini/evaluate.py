"""The mini planner's figures on the generated test split (phrasings and object nouns never seen in training).

- intent_accuracy: share of test requests read with the right intent (plan, question, vague, undo, show).
- module_exact: share of test requests whose intent and planned module sequence are exactly the gold ones.
- keyword_recall: share of the gold instructions' content words found in the planned instruction of the same step.
- where_accuracy: share of gold edits acting inside / outside the mask as the gold does.
- reference_accuracy: share of steps naming an alias in the gold whose named inputs are exactly the gold ones.
- ask_rate: share of test requests whose reading is below the calibrated confidence threshold.
- plan_ms_p50: median wall time of `MiniPlanner.plan` for one request (batch 1, after warm-up).
- synergy_*_disc_acc: a fresh logistic-regression probe, trained on train-split signal features and scored on
  test-split ones (module-balanced, so chance is 1/7), tries to tell the module from the task-invariant and from
  the task-specific features. `ablation_no_synergy` repeats that for the heads as they were before stage 3.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memory import ArtifactEntry, ArtifactStore, History
from schemas import ArtifactRef, BoxRegion

from ..base import PlanRequest
from .compose import words
from .data import Example, generate
from .encoder import load_minilm
from .inference import CHECKPOINT, MODULE_CODES, load_reader, load_tagger
from .model import MiniPlannerModel, SignalProjections
from .planner import MiniPlanner, RequestReading, read_request
from .train import encode_examples, signal_states

Progress = Callable[[str], None]
REGION = BoxRegion(box=(10, 10, 50, 40))
_KINDS = {"img": ("image", "image/png", (64, 64, 3)), "mask": ("mask", "image/png", (64, 64)),
          "masks": ("masks", "video/x-matroska", (4, 64, 64)), "video": ("video", "video/mp4", (4, 64, 64, 3)),
          "vid": ("video", "video/mp4", (4, 64, 64, 3))}
FIGURES = ("intent_accuracy", "module_exact", "keyword_recall", "where_accuracy", "reference_accuracy", "ask_rate",
           "plan_ms_p50", "synergy_invariant_disc_acc", "synergy_specific_disc_acc", "chance", "ablation_no_synergy")


def evaluate(folder: str | Path | None = None, *, test_examples: int = 2000, probe_examples: int = 1000,
             timing_requests: int = 100, progress: Progress | None = print) -> dict[str, Any]:
    """Figures for the checkpoint in `folder` (default: the shipped one); printed as one JSON line and returned."""
    say = progress or (lambda _message: None)
    folder = Path(folder or CHECKPOINT)
    tagger, reader = load_tagger(folder), load_reader()
    model = MiniPlannerModel.load(folder)  # in torch, for the synergy probes
    planner = MiniPlanner(tagger, reader)
    seed = int(model.config.extra.get("seed", 0))
    test = generate("test", test_examples, seed)
    readings = []
    for n, example in enumerate(test):
        readings.append(read_request(tagger, reader, example.text, example.context))
        if n % 500 == 0:
            say(f"read {n}/{len(test)} test requests")
    figures: dict[str, Any] = reading_figures(test, readings, tagger.config.threshold)
    figures["plan_ms_p50"] = round(plan_latency_ms(planner, test[:timing_requests]), 2)

    say("signal features for the synergy probes")
    train_probe = [e for e in generate("train", probe_examples, seed) if e.steps]
    test_probe = [e for e in test[:probe_examples] if e.steps]
    synergy = synergy_figures(model, train_probe, test_probe, {"full": model.signals,
                                                               "ablation": model.ablation_heads(folder)})
    figures.update(synergy["full"])
    figures["chance"] = round(1 / len(MODULE_CODES), 4)
    figures["ablation_no_synergy"] = synergy["ablation"]
    ordered = {key: figures[key] for key in FIGURES}
    print(json.dumps(ordered))
    return ordered


def reading_figures(examples: Sequence[Example], readings: Sequence[RequestReading],
                    threshold: float) -> dict[str, float]:
    """intent_accuracy, module_exact, keyword_recall, where_accuracy, reference_accuracy and ask_rate."""
    intents = exact = keywords = found = wheres = where_right = references = correct = asked = 0
    for example, reading in zip(examples, readings, strict=True):
        intents += reading.intent == example.intent
        planned = [step.module for step in reading.steps]
        exact += reading.intent == example.intent and planned == [step.module for step in example.steps]
        asked += reading.confidence < threshold
        for index, gold in enumerate(example.steps):
            step = reading.steps[index] if index < len(reading.steps) else None
            said = set(words(step.instruction)) if step else set()
            keywords += len(gold.keywords)
            found += sum(word in said for word in gold.keywords)
            if gold.module in "CF":
                wheres += 1
                where_right += step is not None and step.area == gold.area
            if gold.inputs:
                references += 1
                correct += step is not None and step.inputs == gold.inputs
    n = max(1, len(examples))
    return {"intent_accuracy": round(intents / n, 4), "module_exact": round(exact / n, 4),
            "keyword_recall": round(found / max(1, keywords), 4),
            "where_accuracy": round(where_right / max(1, wheres), 4),
            "reference_accuracy": round(correct / max(1, references), 4), "ask_rate": round(asked / n, 4)}


def request_for(example: Example, store: ArtifactStore) -> PlanRequest:
    """A real PlanRequest for an example: its upload as this turn's input, its memory as the artifact table."""
    def ref(alias: str) -> ArtifactRef:
        prefix = alias.rstrip("0123456789")
        kind, media, shape = _KINDS.get(prefix, _KINDS["img"])
        return ArtifactRef(sha256=hashlib.sha256(alias.encode()).hexdigest(), kind=kind, media_type=media, shape=shape,
                           alias=alias)

    table = tuple(ArtifactEntry(ref=ref(a), made_by="upload") for a in example.context.memory)
    upload = example.context.memory[-1:] if example.context.upload else ()
    history = History(session_id="eval", turns=(), tokens=0, earlier_turns=0)
    return PlanRequest(text=example.text, history=history, artifacts=table, inputs={a: ref(a) for a in upload},
                       region=REGION if example.context.region else None, store=store)


def plan_latency_ms(planner: MiniPlanner, examples: Sequence[Example], warmup: int = 10) -> float:
    """Median milliseconds of `planner.plan` over `examples`, one request at a time, after `warmup` calls."""
    with tempfile.TemporaryDirectory() as root:
        store = ArtifactStore(root)
        requests = [request_for(example, store) for example in examples]
        for request in requests[:warmup]:
            planner.plan(request)
        times = []
        for request in requests:
            start = time.perf_counter()
            planner.plan(request)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def signal_features(model: MiniPlannerModel, examples: Sequence[Example]) -> tuple[torch.Tensor, np.ndarray]:
    """The tagger's states over each gold step's words and the steps' module indices."""
    encoded = encode_examples(load_minilm(), examples, layers=model.config.encoder_layers)
    hidden = signal_states(model, encoded)
    labels = np.array([MODULE_CODES.index(step.module) for e in examples for step in e.steps])
    return hidden, labels


def synergy_figures(model: MiniPlannerModel, train: Sequence[Example], test: Sequence[Example],
                    heads: dict[str, SignalProjections], seed: int = 0) -> dict[str, dict[str, float]]:
    """Probe accuracies on each set of heads' invariant and specific features (module-balanced test set)."""
    train_hidden, train_labels = signal_features(model, train)
    test_hidden, test_labels = signal_features(model, test)
    train_rows, test_rows = _balanced(train_labels, seed), _balanced(test_labels, seed)
    out = {}
    for name, projections in heads.items():
        figures = {}
        for kind in ("invariant", "specific"):
            x_train = _features(projections, kind, train_hidden[train_rows], train_labels[train_rows])
            x_test = _features(projections, kind, test_hidden[test_rows], test_labels[test_rows])
            figures[f"synergy_{kind}_disc_acc"] = round(
                probe_accuracy(x_train, train_labels[train_rows], x_test, test_labels[test_rows]), 4)
        out[name] = figures
    return out


def probe_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """A fresh logistic-regression probe (standardised features), trained on one set and scored on the other."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def _features(projections: SignalProjections, kind: str, hidden: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        if kind == "invariant":
            return projections.task_invariant(hidden).numpy()
        return projections.specific([MODULE_CODES[i] for i in labels], hidden).numpy()


def _balanced(labels: np.ndarray, seed: int) -> np.ndarray:
    """The same number of rows of every module (so chance is 1/7), picked at random."""
    rng = random.Random(seed)
    count = min(int((labels == k).sum()) for k in range(len(MODULE_CODES)))
    rows: list[int] = []
    for k in range(len(MODULE_CODES)):
        rows += rng.sample([int(i) for i in np.flatnonzero(labels == k)], count)
    return np.array(sorted(rows))
