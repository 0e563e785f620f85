"""The VITRON planner: a VITRON-style LM reads the turn (words, history, pictures) and writes the invocations.

The model answers in the invocation grammar with its own `[SIG]` tokens; the hidden state that emitted each one is
projected by the module's signal heads into that step's `SignalEmbedding` (task-specific + task-invariant).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from memory import History
from schemas import (
    MODULES,
    ArtifactRef,
    BackendUnavailable,
    BoxRegion,
    InvalidInput,
    Plan,
    PlanStep,
    PointsRegion,
    Region,
    ScribbleRegion,
    SignalEmbedding,
    VitronSettings,
    resolve_module,
)

from .base import PlanRequest
from .grammar import SIGNAL_TOKENS
from .vitron_model import IMAGE_TOKEN, MODEL_SETTING, MODULE_CODES, SIGNAL_TOKEN, VitronModel
from .vitron_reply import read_vitron_reply

MAX_ARTIFACT_LINES = 40
"""The artifact table shows at most this many of the newest rows; the history sums up the rest."""

_SYSTEM = (
    "You are VITRON, a pixel-level vision assistant. Answer the user; to run a specialist module, add one block per "
    "step after your answer:\n"
    f"<module>B</module><instruction>what to do</instruction><region>(x1, y1, x2, y2)</region>"
    f"<input>@1</input>{SIGNAL_TOKEN}\n"
    "<region> and <input> are optional; @N is step N's output, @alias a remembered artifact.\n"
    "Modules: " + ", ".join(f"{m.code} {m.name}" for m in MODULES) + "."
)


@dataclass(frozen=True)
class PlannerPrompt:
    """What the model is given for one request: the prompt text and the pictures (RGB uint8 HxWx3), in order."""

    text: str
    images: list[np.ndarray] = field(default_factory=list)
    shown: str | None = None  # what the pictures are, as the prompt says it (`@img3`, `4 frames of @video1`)


# --- loading, once per process ---------------------------------------------------------------------------------

_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _cached_model(folder: Path, device: str) -> VitronModel:
    return VitronModel.load(folder, device=device)


def load_planner_model(folder: str | Path, device: str = "cpu") -> VitronModel:
    """The model in `folder`, loaded on first use and shared by every planner of this process afterwards."""
    resolved = Path(folder).expanduser().resolve()
    with _LOAD_LOCK:  # lru_cache alone may load twice when two threads miss at once
        return _cached_model(resolved, str(device))


# --- the planner -----------------------------------------------------------------------------------------------


class VitronPlanner:
    """Plans with a loaded VITRON-style model; each step's signal tokens become its `SignalEmbedding`."""

    name = "vitron"
    replans = False

    def __init__(
        self,
        model: VitronModel,
        *,
        max_new_tokens: int = 256,
        video_frames: int = 4,
        force_sequence: str | Sequence[int] | None = None,
    ) -> None:
        """`force_sequence` is for tests and demos only: the model emits exactly that text, whatever its weights."""
        if max_new_tokens < 1 or video_frames < 1:
            raise InvalidInput("max_new_tokens and video_frames must be at least 1", field="planner")
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.video_frames = video_frames
        self.force_sequence = force_sequence

    @classmethod
    def from_settings(cls, settings: VitronSettings | Any | None = None, **options: Any) -> VitronPlanner:
        """Load (once per process) the model folder named by VITRON_PLANNER_MODEL; `options` go to __init__."""
        settings = settings if settings is not None else VitronSettings()
        folder = getattr(settings, "planner_model", None)
        if not folder:
            raise BackendUnavailable(
                "no planner model is configured",
                field=MODEL_SETTING,
                fix=f"set {MODEL_SETTING} to a local folder holding a VITRON-style model "
                "(config.json, weights, tokenizer, signal heads), or use the built-in planner",
            )
        device = getattr(settings, "planner_device", None) or "cpu"
        return cls(load_planner_model(folder, device), **options)

    def plan(self, request: PlanRequest) -> Plan:
        if request.round > 1:
            return Plan()  # one round: this planner does not read results back
        prompt = self.prompt_for(request)
        generation = self.model.generate(
            prompt.text, prompt.images or None, self.max_new_tokens, force_sequence=self.force_sequence
        )
        reading = read_vitron_reply(generation.text, signal_tokens=SIGNAL_TOKENS | {SIGNAL_TOKEN})
        hidden = generation.signal_hidden
        if hidden.shape[0] == reading.signals_written:  # else `_attach_signals` says why they cannot be matched
            hidden = hidden[reading.signal_rows]
        return self._attach_signals(reading.plan, hidden)

    def prompt_for(self, request: PlanRequest) -> PlannerPrompt:
        """The prompt and pictures `plan` gives the model for `request` (public so callers can inspect it)."""
        return planner_prompt(request, multimodal=self.model.is_multimodal, video_frames=self.video_frames)

    # -- internals ------------------------------------------------------------------------------------------

    def _attach_signals(self, plan: Plan, signal_hidden: torch.Tensor) -> Plan:
        """Give each step the embeddings of the signal tokens its block held, in order."""
        counts = [step.signal_tokens for step in plan.steps]
        if signal_hidden.shape[0] != sum(counts):
            raise InvalidInput(
                f"the plan's blocks hold {sum(counts)} signal tokens but the model emitted "
                f"{signal_hidden.shape[0]} {SIGNAL_TOKEN} tokens, so the embeddings cannot be matched to steps",
                field="plan",
                fix=f"emit each signal as the model's own {SIGNAL_TOKEN} token, after a block's tags "
                "(never inside an <instruction>, never spelled <signal/>)",
            )
        if not plan.steps:
            return plan
        steps = []
        for step, rows in zip(plan.steps, torch.split(signal_hidden, counts), strict=True):
            code = resolve_module(step.invocation.module).code if step.signal_tokens else None
            if code is not None and code in MODULE_CODES:  # H has no signal head: it takes no signal
                task_specific, task_invariant = self.model.embed_signals(code, rows)
                invocation = step.invocation.model_copy(update={"signal": _embedding(task_specific, task_invariant)})
                step = PlanStep(invocation=invocation, signal_tokens=step.signal_tokens)
            steps.append(step)
        return Plan(reply=plan.reply, steps=steps)


# --- the prompt ------------------------------------------------------------------------------------------------


def planner_prompt(request: PlanRequest, *, multimodal: bool, video_frames: int = 4) -> PlannerPrompt:
    """The prompt and pictures the planner gives its model for `request` (a model that reads pictures gets them);
    training writes its prompts with it too, so a trained model sees what it will see at run time."""
    images, shown = _pictures(request, video_frames) if multimodal else ([], None)
    lines: list[str] = []
    history = _history_text(request.history, request.text)
    if history:
        lines += ["Conversation so far:", history]
    if request.artifacts:
        table = request.artifacts[-MAX_ARTIFACT_LINES:]
        hidden = len(request.artifacts) - len(table)
        lines.append("Artifacts:" + (f" ({hidden} older not shown)" if hidden else ""))
        lines += [entry.describe() for entry in table]
    if request.inputs:
        lines.append("This turn's inputs: " + "; ".join(_describe_input(a, r) for a, r in request.inputs.items()))
    if request.region is not None:
        lines.append(f"Region drawn by the user: {_describe_region(request.region)}")
    if shown:
        lines.append(f"Pictures: {shown}")
    if request.feedback:
        lines.append(f"Your previous plan was refused: {request.feedback}. Write it again, corrected.")
    return PlannerPrompt(text=prompt_text(lines, request.text, len(images)), images=images, shown=shown)


def _pictures(request: PlanRequest, video_frames: int) -> tuple[list[np.ndarray], str | None]:
    """This turn's images; else frames of its video; else the newest image of the session; else none."""
    store = request.store
    images = [(alias, ref) for alias, ref in request.inputs.items() if ref.kind == "image"]
    if images:
        return [store.get_image(ref) for _, ref in images], ", ".join(_at(alias) for alias, _ in images)
    videos = [(alias, ref) for alias, ref in request.inputs.items() if ref.kind == "video"]
    if videos:
        alias, ref = videos[0]
        _, picked = store.sample_frames(ref, video_frames)
        frames, indices = [frame for _, frame in picked], [index for index, _ in picked]
        return frames, f"{len(frames)} frames of {_at(alias)} (frames {', '.join(map(str, indices))})"
    for entry in reversed(request.artifacts):
        if entry.ref.kind == "image":
            return [store.get_image(entry.ref)], _at(entry.alias)
    return [], None


# --- helpers ---------------------------------------------------------------------------------------------------


def prompt_text(context: Sequence[str], text: str, images: int) -> str:
    """The prompt: the system's words and the turn's context lines, then the user's words after one `<image>` per
    picture (LLaVA expands each into the vision tokens). Training writes its prompts with it too."""
    lines = _no_image_tokens("\n".join([_SYSTEM, *context]))
    pictures = f"{IMAGE_TOKEN}\n" * images
    return f"{lines}\nUSER: {pictures}{_no_image_tokens(text)} ASSISTANT:"


def _embedding(task_specific: torch.Tensor, task_invariant: torch.Tensor) -> SignalEmbedding:
    try:
        return SignalEmbedding(task_specific=_cpu_float32(task_specific), task_invariant=_cpu_float32(task_invariant))
    except ValidationError as exc:  # e.g. NaN from a half-precision overflow
        raise InvalidInput(f"the planner's signal embedding is unusable: {exc.errors()[0]['msg']}",
                           field="signal") from None


def _cpu_float32(tensor: torch.Tensor) -> torch.Tensor:
    # clone() outside inference mode turns the heads' inference tensor into an ordinary one callers may modify.
    return tensor.detach().to(device="cpu", dtype=torch.float32).clone()


def _history_text(history: History, text: str) -> str:
    turns = history.turns
    if turns and turns[-1].role == "user" and turns[-1].text == text:
        # The agent may record the user's turn before planning; the USER line says it already.
        history = dataclasses.replace(history, turns=turns[:-1])
    return history.render()


def _at(alias: str) -> str:
    return "@" + alias.removeprefix("@")


def _describe_input(alias: str, ref: ArtifactRef) -> str:
    shape = ref.shape
    if ref.kind in ("image", "mask") and len(shape) >= 2:
        size = f" {shape[1]}x{shape[0]}"
    elif ref.kind in ("video", "masks") and len(shape) >= 3:
        size = f" {shape[0]} frames of {shape[2]}x{shape[1]}"
    else:
        size = f" {list(shape)}" if shape else ""
    return f"{_at(alias)} {ref.kind}{size}"


def _describe_region(region: Region) -> str:
    if isinstance(region, BoxRegion):
        return "box (" + ", ".join(f"{v:g}" for v in region.box) + ")"
    if isinstance(region, PointsRegion):
        points = zip(region.points, region.labels, strict=True)
        return "points " + ", ".join(f"({x:g}, {y:g}, {label})" for (x, y), label in points)
    if isinstance(region, ScribbleRegion):
        name = _at(region.mask.alias) if region.mask.alias else region.mask.short
        return f"scribble mask {name}"
    return str(region)


def _no_image_tokens(text: str) -> str:
    # Only the pictures may place <image>: a user who types it must not shift the vision tokens.
    return text.replace(IMAGE_TOKEN, "[image]")


__all__ = ["PlannerPrompt", "VitronPlanner", "load_planner_model", "planner_prompt"]
