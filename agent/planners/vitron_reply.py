"""Reading what a trained VITRON writes, the way its released demo dispatches it (SkyworkAI/Vitron, `app.py`):

    Sure! I will edit the video. <module>F</module> <instruction> foreground: add wings to the man </instruction>
    <instruction> background: keep </instruction> <SP>None</SP>

Its replies differ from our grammar (`agent.planners.grammar`, which stays strict for people and other planners) in
four ways, each read here as the demo reads it:

- a module is handed only the text after its instruction's task prefix (`segmentation: zebra` → `zebra`). The demo
  keeps what follows the last colon; here only a known task prefix is taken off, so a colon inside the words
  ("a sign that says: open") survives;
- `<SP>…</SP>` and any other tag pair outside the grammar are markers, removed with their content from the reply;
- video editing (F) writes two instructions, `foreground: …` then `background: …` (the demo's StableVideo edits the
  foreground atlas with the first and the background atlas with the second). Read as the step that edits the
  foreground with the first, and, unless the second says to keep the background ("keep", "none", empty), a second F
  step that edits outside the mask with it, on the first's output;
- a `<module>` block with no `<instruction>` runs nothing: the demo then answers with the reply alone, and so does
  this reader (the block's signal tokens are left unused).

Regions: the demo parses the model's `<region>` and never uses it: every module reads the user's own drawing (the
sketch pad). So a region the model writes whose corners are not ordered (x2 < x1 or y2 < y1, as in the paper's own
example) is left out here instead of failing the turn; the step reads the user's region, if they drew one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from schemas import Invocation, Plan, PlanStep, UnknownModule, resolve_module, step_number

from .grammar import SIGNAL_TOKENS, escape_instruction, parse_plan

TASK_PREFIX = re.compile(r"^\s*(?:video generation|video segmentation|video editing|image to video|generation|"
                         r"segmentation|editing|tracking|foreground|background)\s*:\s*", re.IGNORECASE)
"""The task words a VITRON instruction starts with."""
KEEP = frozenset({"", "keep", "none", "keep it", "unchanged", "no change", "nothing", "same"})
"""A background instruction that leaves the background as it is."""

_MODULE = re.compile(r"<module>", re.IGNORECASE)
_INSTRUCTION = re.compile(r"<instruction>(?P<body>.*?)</instruction>", re.IGNORECASE | re.DOTALL)
_REGION = re.compile(r"<region>(?P<body>[^<]*)</region>", re.IGNORECASE)
_OURS = "module|instruction|region|input|signal"
_MARKER = re.compile(rf"<(?P<tag>(?!(?:{_OURS})\b)[A-Za-z][\w-]*)\b[^<>]*>.*?</(?P=tag)\s*>", re.IGNORECASE | re.DOTALL)
_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class VitronReading:
    """The plan read from a reply, how many signal tokens the reply wrote, and which of them (0-based, in the order
    written) belong to its steps, in order: the hidden states of the others are not used."""

    plan: Plan
    signals_written: int
    signal_rows: list[int]


def read_vitron_reply(text: str, *, signal_tokens: Iterable[str] = SIGNAL_TOKENS) -> VitronReading:
    """Read a VITRON reply into a plan (see the module docstring); anything else wrong raises `PlanSyntaxError`, as
    `parse_plan` does."""
    tokens = frozenset(signal_tokens)
    signal = re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))
    markers = [m.span() for m in _MARKER.finditer(text)]
    written = [m.start() for m in signal.finditer(text)
               if not any(a <= m.start() < b for a, b in markers)]  # the signal tokens a step may own, in order
    starts = [m.start() for m in _MODULE.finditer(text)]
    pieces = [_MARKER.sub(" ", text[:starts[0]] if starts else text)]
    rows: list[int] = []
    backgrounds: dict[int, str] = {}  # kept block (0-based) → the background edit after it
    kept = 0
    for start, end in zip(starts, [*starts[1:], len(text)][:len(starts)], strict=True):
        block = _MARKER.sub(" ", text[start:end])
        instructions = [m["body"].strip() for m in _INSTRUCTION.finditer(block)]
        if "<instruction" not in block.lower():  # the demo answers with the reply alone: keep the words after tags
            pieces.append(_without_tags(block, signal))
            continue
        if not instructions:  # one never closed: the grammar says where
            pieces.append(block)
            continue
        first, *rest = instructions
        background = TASK_PREFIX.sub("", rest[0]).strip() if rest else ""
        if _module_code(block) == "F" and background.lower().rstrip(".!") not in KEEP:
            backgrounds[kept] = background
        block = _REGION.sub(lambda m: m[0] if _ordered(m["body"]) else "", _INSTRUCTION.sub("", block))
        body = escape_instruction(TASK_PREFIX.sub("", first).strip())
        close = block.lower().find("</module>")
        close = len(block) if close < 0 else close + len("</module>")
        pieces.append(f"{block[:close]}<instruction>{body}</instruction>{block[close:]}")
        rows.extend(i for i, at in enumerate(written) if start <= at < end)
        kept += 1
    plan = parse_plan("".join(pieces), signal_tokens=tokens)
    return VitronReading(_with_backgrounds(plan, backgrounds), len(written), rows)


def _with_backgrounds(plan: Plan, backgrounds: dict[int, str]) -> Plan:
    """Each F step with a background edit followed by it (outside the mask, on the F step's output); `@N` of a later
    step moved to the new positions, a reference to such an F step now reading the finished video."""
    if not backgrounds:
        return plan
    moved, position = {}, 0
    for index in range(len(plan.steps)):
        position += 2 if index in backgrounds else 1
        moved[index + 1] = position
    steps: list[PlanStep] = []
    for index, step in enumerate(plan.steps):
        inputs = {name: f"@{moved[number]}" if (number := step_number(ref)) is not None else ref
                  for name, ref in step.invocation.inputs.items()}
        steps.append(step.model_copy(update={"invocation": step.invocation.model_copy(update={"inputs": inputs})}))
        if index in backgrounds:
            steps.append(PlanStep(invocation=Invocation(
                module=step.invocation.module, command=backgrounds[index], inputs={"video": f"@{len(steps)}"},
                params={"area": "background"})))
    return plan.model_copy(update={"steps": steps})


def _module_code(block: str) -> str | None:
    found = re.search(r"<module>(?P<name>[^<]*)</module>", block, re.IGNORECASE)
    try:
        return resolve_module(found["name"].strip()).code if found else None
    except UnknownModule:  # parse_plan reports it with its offset
        return None


def _ordered(region: str) -> bool:
    """Whether a box's corners are ordered (x1 < x2, y1 < y2); points and anything else are left to the grammar."""
    numbers = [float(n) for n in _NUMBERS.findall(region)]
    if "points" in region.lower() or len(numbers) != 4:
        return True
    x1, y1, x2, y2 = numbers
    return x1 < x2 and y1 < y2


def _without_tags(block: str, signal: re.Pattern[str]) -> str:
    return signal.sub(" ", re.sub(rf"<(?P<tag>{_OURS})>.*?</(?P=tag)>", " ", block, flags=re.IGNORECASE | re.DOTALL))
