"""VITRON's invocation grammar: parse a planner's text into a Plan, and print a Plan back.

    Sure. <module>B</module><instruction>segmentation: zebra</instruction><region>(23, 35, 110, 126)</region>
    <Module>Video Segmentation</Module><Instruction>segmentation: clock</Instruction>

A block is a `<module>` tag and the `<instruction>`, `<region>`, `<input>` and signal tags after it, up to the
next `<module>` or the end; each block is one step, in order. Text outside the tags is the reply. Any mistake
raises PlanSyntaxError with its offset and what was expected, and `parse_plan(format_plan(plan)) == plan`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NoReturn

from pydantic import ValidationError

from schemas import (
    AliasName,
    ArtifactRef,
    BoxRegion,
    InputRef,
    InvalidInput,
    Invocation,
    Plan,
    PlanStep,
    PlanSyntaxError,
    PointsRegion,
    Region,
    UnknownModule,
    parse_box,
    parse_points,
    parse_reference,
    resolve_module,
    step_number,
)

SIGNAL_TOKENS: frozenset[str] = frozenset({"<signal/>", "<signal>", "[SIG]", "<SIG>"})
"""Spellings of a signal token, matched exactly. A planner whose tokenizer has its own special tokens passes
`signal_tokens=SIGNAL_TOKENS | {...}` to parse_plan. (`<signal>` and `<signal/>` are also read as tags, so
their case and spacing may vary like any tag's.)"""

# A tag begins right at `<` (no space), so prose such as "a < b" stays text. The closing `>` is optional in
# the pattern only so that a tag missing it is reported rather than silently read as text. ASCII-only case
# folding keeps exotic letters (Kelvin sign, long s) from passing for tag names.
_TAG = r"(?ai:<(?P<close>/?)(?P<name>module|instruction|region|input|signal)(?![a-z0-9_])(?P<attrs>[^<>]*)(?P<end>>?))"
_NAME_ATTR = re.compile(r"\s+name\s*=\s*(?P<q>[\"'])(?P<value>[A-Za-z_][A-Za-z0-9_]*)(?P=q)\s*", re.ASCII)
_POINTS_PREFIX = re.compile(r"points\s*:?", re.IGNORECASE | re.ASCII)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENTITY = re.compile(r"&(lt|gt|amp);")
_UNESCAPED = {"lt": "<", "gt": ">", "amp": "&"}


def parse_plan(text: str, *, signal_tokens: Iterable[str] = SIGNAL_TOKENS, workflows: Iterable[str] = ()) -> Plan:
    """Read a planner's (or a person's) text into a Plan; raise PlanSyntaxError, only, on any mistake.

    `workflows`: names of saved workflows, which a `<module>` may name like a module."""
    return _Parser(text, _scanner(frozenset(signal_tokens)), frozenset(workflows)).parse()


def format_plan(plan: Plan) -> str:
    """Print a plan in VITRON's released form: the reply, a space, then one block per step.

    The reply is printed as it is, so it must hold no tags or signal tokens. Raises InvalidInput for what the
    grammar cannot say: scribble regions, artifact refs without an alias, input names that are not identifiers.
    """
    blocks = "".join(_format_step(step) for step in plan.steps)
    return " ".join(part for part in (plan.reply, blocks) if part)


# --- parsing -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _scanner(signal_tokens: frozenset[str]) -> re.Pattern[str]:
    """One pattern for the next tag or signal token; longest tokens first so none hides a longer one."""
    literals = sorted((token for token in signal_tokens if token), key=len, reverse=True)
    signal = "|".join(re.escape(token) for token in literals) or "(?!)"
    return re.compile(f"(?P<signal>{signal})|{_TAG}")


@lru_cache(maxsize=8)
def _closing(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}\s*>", re.IGNORECASE | re.ASCII)


@dataclass
class _Block:
    """A step being read: everything between its `<module>` and the next."""

    number: int  # steps count from 1
    start: int  # offset of its <module> tag
    module: str
    command: str | None = None
    region: Region | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    unnamed: int = 0
    signals: int = 0


class _Parser:
    def __init__(self, text: str, scanner: re.Pattern[str], workflows: frozenset[str] = frozenset()) -> None:
        self.text = text
        self.scanner = scanner
        self.workflows = workflows
        self.steps: list[PlanStep] = []
        self.block: _Block | None = None

    def parse(self) -> Plan:
        text, pos, outside = self.text, 0, []
        while (match := self.scanner.search(text, pos)) is not None:
            outside.append(text[pos:match.start()])
            pos = self._take(match)
        outside.append(text[pos:])
        self._finish_block(len(text))
        # Tags separate words, so the pieces around them join with a space before whitespace is collapsed.
        return Plan(reply=" ".join(" ".join(outside).split()), steps=self.steps)

    def _take(self, match: re.Match[str]) -> int:
        """Handle one tag or signal token; return the offset where scanning goes on."""
        start, end = match.span()
        if match["signal"] is not None:
            self._current(start, repr(match["signal"])).signals += 1
            return end
        name, closing = match["name"].lower(), bool(match["close"])
        tag = f"<{match['close']}{name}>"
        if not match["end"]:
            self._fail(end, f"the {tag} tag is not closed", "'>'")
        named = self._check_attrs(match, name, closing)
        if closing:
            if name != "signal":
                self._fail(start, f"a stray closing tag {tag}", f"<{name}> before it, inside a <module> block")
            self._current(start, tag)  # `<signal></signal>` counts once, at its opening tag
            return end
        if name == "module":
            self._finish_block(start)
            spelling, at, after = self._content(start, end, name)
            self.block = _Block(number=len(self.steps) + 1, start=start, module=self._module(spelling, at))
            return after
        block = self._current(start, tag)
        if name == "signal":
            block.signals += 1
            return end
        if name == "instruction":
            return self._instruction(block, start, end)
        content, at, after = self._content(start, end, name)
        if name == "region":
            if block.region is not None:
                self._fail(start, f"a second <region> in step {block.number}", "one <region> per <module>")
            block.region = self._region(content, at)
        else:
            self._input(block, content, at, named, start)
        return after

    def _check_attrs(self, match: re.Match[str], name: str, closing: bool) -> str | None:
        """Only `<input name="field">` and `<signal/>` carry anything besides the name; return the field name."""
        attrs = match["attrs"]
        if name == "input" and not closing and (named := _NAME_ATTR.fullmatch(attrs)):
            return named["value"]
        if not attrs.strip() or (name == "signal" and not closing and attrs.strip() == "/"):
            return None
        expected = "name=\"field\" or '>'" if name == "input" and not closing else "'>'"
        at = match.start("attrs") + len(attrs) - len(attrs.lstrip())
        self._fail(at, f"unexpected {attrs.strip()!r} in the <{match['close']}{name}> tag", expected)

    def _content(self, start: int, end: int, name: str) -> tuple[str, int, int]:
        """Text up to the matching closing tag, which must come before any other `<`.

        Returns the stripped text, the offset where it starts and the offset after the closing tag.
        """
        stop = self.text.find("<", end)
        stop = len(self.text) if stop < 0 else stop
        closing = _closing(name).match(self.text, stop)
        if closing is None:
            self._fail(stop, f"<{name}> (opened at {self._where(start)}) is not closed", f"</{name}>")
        raw = self.text[end:stop]
        return raw.strip(), end + len(raw) - len(raw.lstrip()), closing.end()

    def _instruction(self, block: _Block, start: int, end: int) -> int:
        # An instruction may hold any text but its closing tag; `&lt;`, `&gt;`, `&amp;` stand for `<`, `>`, `&`.
        if block.command is not None:
            self._fail(start, f"a second <instruction> in step {block.number}", "one <instruction> per <module>")
        closing = _closing("instruction").search(self.text, end)
        if closing is None:
            self._fail(len(self.text), f"<instruction> (opened at {self._where(start)}) is never closed",
                       "</instruction>")
        block.command = _ENTITY.sub(lambda m: _UNESCAPED[m[1]], self.text[end:closing.start()].strip())
        return closing.end()

    def _module(self, spelling: str, at: int) -> str:
        try:
            return resolve_module(spelling).name
        except UnknownModule as exc:
            if spelling.strip() in self.workflows:
                return spelling.strip()
            saved = f", or a saved workflow ({', '.join(sorted(self.workflows))})" if self.workflows else ""
            self._fail(at, f"unknown module {spelling!r}", "a module letter, canonical name or title" + saved,
                       fix=exc.fix)

    def _region(self, content: str, at: int) -> Region:
        points = _POINTS_PREFIX.match(content)
        try:
            return parse_points(content[points.end():]) if points else parse_box(content)
        except InvalidInput as exc:
            expected = ("points: (x, y, label), … with labels 0 or 1 and at least one 1" if points
                        else "a box (x1, y1, x2, y2) with 0 <= x1 < x2 and 0 <= y1 < y2")
            self._fail(at, f"bad region {content!r}: {exc.problem}", expected, fix=exc.fix)

    def _input(self, block: _Block, ref: str, at: int, named: str | None, start: int) -> None:
        if named is None:
            block.unnamed += 1
        key = named or _unnamed_key(block.unnamed)
        if key in block.inputs:
            self._fail(start, f"step {block.number} has a second input named {key!r}", "each input name once")
        number = step_number(ref)
        if number is not None and not 1 <= number < block.number:
            earlier = f"@1 to @{block.number - 1}" if block.number > 1 else "none: step 1 comes first"
            self._fail(at, f"step {block.number} cannot use {ref}: steps count from 1 and may use only earlier ones",
                       f"an earlier step ({earlier}) or an alias such as @img1")
        if number is None and not _is_alias(ref):
            self._fail(at, f"bad input reference {ref!r}", "@N for step N's output or @alias for a remembered artifact")
        block.inputs[key] = ref

    def _current(self, start: int, what: str) -> _Block:
        if self.block is None:
            self._fail(start, f"{what} outside any block", "<module> first: every other tag belongs to a block")
        return self.block

    def _finish_block(self, end: int) -> None:
        block, self.block = self.block, None
        if block is None:
            return
        if block.command is None:
            self._fail(end, f"step {block.number} (<module> at {self._where(block.start)}) has no <instruction>",
                       "<instruction>…</instruction> in every block")
        try:
            invocation = Invocation(module=block.module, command=block.command, region=block.region,
                                    inputs=block.inputs)
        except ValidationError as exc:  # not expected: everything was checked above; still, only one error type
            self._fail(block.start, f"step {block.number} is not a valid invocation: {exc.errors()[0]['msg']}",
                       "a valid invocation")
        self.steps.append(PlanStep(invocation=invocation, signal_tokens=block.signals))

    def _where(self, offset: int) -> str:
        line = self.text.count("\n", 0, offset) + 1
        column = offset - self.text.rfind("\n", 0, offset)
        return f"line {line}, column {column}"

    def _fail(self, position: int, problem: str, expected: str, fix: str | None = None) -> NoReturn:
        raise PlanSyntaxError(problem, text=self.text, position=position, expected=expected, fix=fix)


# --- printing ------------------------------------------------------------------------------------------------


def _is_alias(ref: str) -> bool:
    try:
        return isinstance(parse_reference(ref), AliasName)
    except InvalidInput:
        return False


def _unnamed_key(n: int) -> str:
    """Key of the n-th input written without a name: input, input2, input3, …"""
    return "input" if n == 1 else f"input{n}"


def escape_instruction(text: str) -> str:
    """An instruction's text as the grammar writes it: `<`, `>`, `&` as `&lt;`, `&gt;`, `&amp;` (what `parse_plan`
    reads back)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _format_step(step: PlanStep) -> str:
    invocation = step.invocation
    command = escape_instruction(invocation.command)
    try:
        module = resolve_module(invocation.module).code
    except UnknownModule:
        module = invocation.module  # a saved workflow, by its name
    parts = [f"<module>{module}</module>", f"<instruction>{command}</instruction>"]
    if invocation.region is not None:
        parts.append(f"<region>{_format_region(invocation.region)}</region>")
    unnamed = 0
    for key, ref in invocation.inputs.items():
        # The parser numbers unnamed inputs in order, so a key prints bare only where that numbering gives it back.
        if key == _unnamed_key(unnamed + 1):
            unnamed += 1
            parts.append(f"<input>{_format_ref(ref)}</input>")
        elif _FIELD_NAME.fullmatch(key):
            parts.append(f'<input name="{key}">{_format_ref(ref)}</input>')
        else:
            raise InvalidInput(f"input name {key!r} cannot be printed", field="inputs",
                               fix="name inputs with letters, digits and underscores")
    parts.append("<signal/>" * step.signal_tokens)
    return "".join(parts)


def _format_ref(ref: InputRef) -> str:
    if isinstance(ref, ArtifactRef):
        if ref.alias is None or not _FIELD_NAME.fullmatch(ref.alias):
            raise InvalidInput(f"artifact {ref.short} has no alias to print", field="inputs",
                               fix="give the artifact an alias, or refer to it as @alias")
        return f"@{ref.alias}"
    return ref


def _format_region(region: Region) -> str:
    if isinstance(region, BoxRegion):
        return "(" + ", ".join(_number(v) for v in region.box) + ")"
    if isinstance(region, PointsRegion):
        return "points: " + ", ".join(
            f"({_number(x)}, {_number(y)}, {label})" for (x, y), label in zip(region.points, region.labels, strict=True)
        )
    raise InvalidInput("a scribble region cannot be written in the grammar", field="region",
                       fix="give a box or points, or pass the scribble mask as an input")


def _number(value: float) -> str:
    """The shortest text that reads back as the same float; whole numbers without `.0`."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
