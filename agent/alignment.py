"""Embedding alignment against the backend the user configured: the use case behind `vitron planner align`.

VITRON aligns its signal heads with each specialist by training them on the specialist's own embeddings of the same
instructions. Here the planner stays as it is and a linear adapter is fitted instead, per module, backend and
weights (`tools.real.adapters`): the planner plans the requests of its generated training data
(`agent.planners.mini.data`), each step of the module gives a pair (the step's task-specific signal, the backend's
own conditioning of the gold step's instruction, `tools.real.targets`), and a ridge regression maps the one to the
other in closed form. Minutes on a CPU at most (most of it planning); a backend then loads the adapter with its
weights and applies it to that planner's signals.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from memory import ArtifactEntry, ArtifactStore, History
from schemas import MODELS_SETTING, ArtifactRef, BoxRegion, InvalidInput, ModelsFile, VitronSettings, resolve_module

from .planners.base import PlanRequest
from .planners.signals import signal_source

Progress = Callable[[str], None]
PAIRS = 400
"""Signal/target pairs an adapter is fitted on by default."""
MAX_REQUESTS = 20000
"""Generated requests read at most while looking for steps of the module (video generation is the rarest)."""
_REGION = BoxRegion(box=(8, 8, 56, 40))
_KINDS = {"img": ("image", "image/png", (64, 64, 3)), "mask": ("mask", "image/png", (64, 64)),
          "masks": ("masks", "video/x-matroska", (4, 64, 64)), "video": ("video", "video/mp4", (4, 64, 64, 3)),
          "vid": ("video", "video/mp4", (4, 64, 64, 3))}


def align_signals(module: str, *, planner: str | None = None, settings: VitronSettings | None = None,
                  pairs: int = PAIRS, seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
    """Fit and store the adapters from `planner`'s task-specific signals for `module` to the configured backend's
    conditioning (one per weight role that reads the signal); what was written, with the fit's figures."""
    from tools import ToolContext
    from tools.real.adapters import adapter_path, fit_adapter
    from tools.real.targets import conditioning_targets, signal_roles

    from .api import make_planner

    say = progress or (lambda _message: None)
    settings = settings or VitronSettings()
    started = time.perf_counter()
    name = resolve_module(module).name
    models = ModelsFile.load(settings.models_path)
    spec = models.spec(name)
    if spec is None:
        raise InvalidInput(f"{name} has no real backend in {settings.models_path}: the signal is aligned to a "
                           "configured backend", field=MODELS_SETTING,
                           fix=f"configure {name} (backend and weights) in the models file first")
    roles = signal_roles(spec, name)
    if not roles:
        raise InvalidInput(f"{name} ({spec.backend}) has none of the weights that read the signal",
                           field=MODELS_SETTING, fix=f"configure the weights of {name} in the models file")
    if pairs < 8:
        raise InvalidInput(f"{pairs} pairs are too few to fit an adapter", field="pairs", fix="use at least 8")
    chosen = make_planner(planner or settings.planner, settings)
    source = signal_source(chosen)
    if source is None:
        raise InvalidInput(f"the {chosen.name} planner makes no signal embeddings, so there is nothing to align",
                           field="planner", fix="align the planner that makes them: mini or vitron")

    signals, instructions, requests = _signal_pairs(chosen, name, pairs, seed, say)
    ctx = ToolContext(ArtifactStore.from_settings(settings), settings, models_file=models)
    unique = sorted(set(instructions))
    written = []
    for role in roles:
        say(f"{name} ({spec.backend}, {role}): the backend's own conditioning of {len(unique)} instructions")
        targets = conditioning_targets(ctx, name, role, unique)
        rows = {text: index for index, text in enumerate(unique)}
        wanted = targets.values[[rows[text] for text in instructions]]
        adapter = fit_adapter(signals, wanted, tokens=targets.tokens, seed=seed,
                              info={"source": source, "module": name, "backend": spec.backend, "role": role})
        path = adapter.save(adapter_path(settings.home, source, name, spec, role))
        figures = {key: adapter.info[key] for key in ("r2_held_out", "cosine_held_out", "ridge")}
        say(f"{name} ({role}): {adapter.in_width} → {adapter.tokens} x {adapter.width}, {figures}; wrote {path}")
        written.append({"role": role, "path": str(path), "in_width": adapter.in_width, "tokens": adapter.tokens,
                        "width": adapter.width, **figures})
    return {"module": name, "planner": source, "backend": spec.backend, "pairs": len(signals),
            "requests": requests, "adapters": written, "seconds": round(time.perf_counter() - started, 2)}


def _signal_pairs(planner: Any, module: str, pairs: int, seed: int,
                  say: Progress) -> tuple[np.ndarray, list[str], int]:
    """(signals [n, d], the gold instruction of each, requests planned): the planner's task-specific signal for
    each step of `module` it plans as the gold plan does, over the generated training requests."""
    from threadpoolctl import threadpool_limits

    code = resolve_module(module).code
    examples = _examples_with(code, pairs, seed, say)
    signals: list[np.ndarray] = []
    instructions: list[str] = []
    planned_requests = 0
    with tempfile.TemporaryDirectory() as root, threadpool_limits(1):  # one request's matrices: threads only contend
        store = ArtifactStore(root)
        for example in examples:
            if len(signals) >= pairs:
                break
            planned_requests += 1
            plan = planner.plan(_request(example, store))
            mine = [s.invocation for s in plan.steps if resolve_module(s.invocation.module).code == code]
            gold = [step for step in example.steps if step.module == code]
            if len(mine) != len(gold):
                continue  # a misread request: its steps cannot be paired with the gold ones
            for invocation, step in zip(mine, gold, strict=True):
                if invocation.signal is None:
                    continue
                for row in np.asarray(invocation.signal.task_specific, np.float32).reshape(
                        -1, np.shape(invocation.signal.task_specific)[-1]):
                    signals.append(row)
                    instructions.append(step.instruction)
            if planned_requests % 100 == 0:
                say(f"planned {planned_requests} requests: {len(signals)} signals of {module}")
    if len(signals) < 8:
        raise InvalidInput(f"the planner planned only {len(signals)} {module} steps as the gold plans do",
                           field="planner", fix="align a planner that plans this module's requests")
    widths = {len(row) for row in signals}
    if len(widths) != 1:
        raise InvalidInput(f"the planner's {module} signals have several widths {sorted(widths)}", field="planner")
    signals, instructions = signals[:pairs], instructions[:pairs]  # a request's last steps may overshoot
    say(f"{len(signals)} signals of {module} from {planned_requests} requests")
    return np.stack(signals), instructions, planned_requests


def _examples_with(code: str, pairs: int, seed: int, say: Progress) -> list[Any]:
    """Generated training requests whose gold plan has a step of module `code`: enough for `pairs` of them with
    some to spare (a misread request gives none), reading more requests while too few are found."""
    from .planners.mini.data import generate

    wanted = int(pairs * 1.3) + 1
    count = min(MAX_REQUESTS, max(200, pairs * 4))
    while True:
        found = [e for e in generate("train", count, seed) if any(step.module == code for step in e.steps)]
        steps = sum(step.module == code for e in found for step in e.steps)
        if steps >= wanted or count >= MAX_REQUESTS:
            say(f"{len(found)} of {count} generated requests have a step of {code}")
            return found
        # as many requests again as this module's share of steps says are needed, and a tenth more
        count = min(MAX_REQUESTS, max(count * 2, int(count * wanted / max(steps, 1) * 1.1)))


def _request(example: Any, store: ArtifactStore) -> PlanRequest:
    """A real planning request for a generated example: its memory as the artifact table, its upload as this
    turn's input, its drawn region as a box."""
    def ref(alias: str) -> ArtifactRef:
        kind, media, shape = _KINDS.get(alias.rstrip("0123456789"), _KINDS["img"])
        return ArtifactRef(sha256=hashlib.sha256(alias.encode()).hexdigest(), kind=kind, media_type=media,
                           shape=shape, alias=alias)

    context = example.context
    table = tuple(ArtifactEntry(ref=ref(alias), made_by="upload") for alias in context.memory)
    upload = context.memory[-1:] if context.upload else ()
    return PlanRequest(text=example.text, history=History(session_id="align", turns=(), tokens=0, earlier_turns=0),
                       artifacts=table, inputs={alias: ref(alias) for alias in upload},
                       region=_REGION if context.region else None, store=store)
