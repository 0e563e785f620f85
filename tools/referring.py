"""Referring phrases: what a command with no region names ("the cat on the left", "the second red object from the
right", "the largest blue one in frame 12"), and which of several found candidates it picks.

Pure: words in, a `Phrase` out; a `Phrase` and candidate boxes (`schemas.LabelledBox`, from colour regions or a
grounding detector) in, the index of the one it means out. B and E use it the same way with either backend (the
Grounded-SAM recipe: find candidates for the phrase's subject, pick by its spatial words, segment from the pick).

What a phrase may say, beside what to find (its subject, e.g. "red car"):

- a place: left, right, top, bottom (upper, lower, leftmost…), corners ("top left"), the middle one ("in the middle":
  the median of the candidates along the way they are spread), the one nearest the centre of the picture ("nearest
  the centre", "in the centre", "central");
- a size: largest, biggest, smallest, tiniest (big, small…);
- an ordinal: "the second dog from the left", "the third from the top", "the second largest", "the last one", "the
  second to last"; without a direction, in reading order (from the left);
- a frame of a video: "in frame 12" (frames numbered from 0, as regions' frames are), "on the last frame", "the
  third frame";
- another object it is beside ("the cup next to the plate", "the red object beside the blue one", "near", "close
  to"), or left of, right of, above ("on top of") or below ("under", "beneath"): the words after the relation, to the
  end of the clause (a comma), name that object, the anchor. Among the candidates the relation allows (those on that
  side of the anchor; never the anchor itself), the one nearest the anchor; with a place, size or order as well,
  that one among them ("the largest cup next to the plate"). An anchor that several objects fit equally is any of
  them: the question, if one is asked, is about the object meant.

A place with a size or an ordinal of another direction narrows where to look ("the largest object on the left": of
those in the left half). When the phrase does not tell two candidates apart — "the red object" with two red objects
of about the same size, "the one on the left" with two one above the other — `pick` raises `AmbiguousTarget`, which
the agent turns into a question naming the candidates' boxes and a phrase that picks each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from schemas import AmbiguousTarget, InvalidInput, LabelledBox

from .embedded.colours import COLOURS, SYNONYMS

Key = Literal["left", "right", "top", "bottom", "top left", "top right", "bottom left", "bottom right", "centre",
              "middle", "largest", "smallest"]
"""How candidates are ordered, the one meant first: by place, by distance to the picture's centre, along the middle of
their spread, or by size."""
Relation = Literal["near", "left", "right", "above", "below"]
"""Where the object meant is beside another: next to it, or on one side of it."""

SCORE_TIE = 0.5  # with no selector, a runner-up scoring at least this share of the best fits as well
PLACE_TIE = 0.3  # two places closer than this share of the objects' mean size are the same place
SIZE_TIE = 0.9  # two areas within this ratio are the same size
MAX_FRAME = 10_000_000

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
             "ninth": 9, "tenth": 10}
_NUMBERED = re.compile(r"(\d+)(?:st|nd|rd|th)")
_LEFT = frozenset({"left", "leftmost", "lefthand"})
_RIGHT = frozenset({"right", "rightmost", "righthand"})
_TOP = frozenset({"top", "topmost", "upper", "uppermost", "highest", "upmost"})
_BOTTOM = frozenset({"bottom", "bottommost", "lower", "lowest", "lowermost"})
_LARGEST = frozenset({"largest", "biggest", "larger", "bigger", "big", "large", "huge", "hugest"})
_SMALLEST = frozenset({"smallest", "tiniest", "smaller", "small", "tiny", "little", "littlest", "tinier"})
_CENTRE = frozenset({"centre", "center", "central", "centremost", "centermost", "centered", "centred"})
_MIDDLE = frozenset({"middle", "midmost", "middlemost"})
_NEAR = frozenset({"nearest", "closest", "near", "close"})
_DIRECTIONS = {**dict.fromkeys(_LEFT, "left"), **dict.fromkeys(_RIGHT, "right"), **dict.fromkeys(_TOP, "top"),
               **dict.fromkeys(_BOTTOM, "bottom")}
_VERBS = _words("""
segment segmentation segmenting seg track tracking follow following find locate select selecting mask outline highlight
isolate pick get show cut extract detect ground grounding take choose mark point refer referring please can could would
you me us just only
""")
_STOP = _words("""
the a an this that these those of to from in on at by with near and or is are was which who whose there here its it
side corner corners half part edge end position place picture image photo photograph frame frames video clip
scene shot view out up one ones
""")
_GENERIC = _words("""
object objects thing things item items shape shapes blob blobs region regions area areas patch patches spot spots
piece pieces stuff something entity target
""")
_MODIFIERS = frozenset({"light", "dark", "bright", "pale", "deep", "coloured", "colored", "colour", "color"})
_OPPOSITE: dict[str, Key] = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
_BESIDE = frozenset({"beside", "alongside"})
_CLOSE = frozenset({"near", "nearest", "closest", "close", "nearer", "closer"})
_ABOVE = frozenset({"above", "atop"})
_BELOW = frozenset({"below", "under", "underneath", "beneath"})
_RELATION_WORDS: dict[str, str] = {"near": "next to", "left": "left of", "right": "right of", "above": "above",
                                   "below": "below"}
_CLAUSE = ","  # the token a comma leaves: a relation's anchor ends there ("the cup next to the plate, the left one")
SAME_OBJECT = 0.5  # a candidate overlapping the anchor this much (IoU) is the anchor, not an object beside it
_PLACE_WORDS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
                "top left": "at the top left", "top right": "at the top right", "bottom left": "at the bottom left",
                "bottom right": "at the bottom right", "centre": "nearest the centre", "middle": "in the middle"}


@dataclass(frozen=True)
class Selector:
    """Which candidate a phrase means: the `ordinal`-th in `key`'s order (1 the first, -1 the last), among those in
    the part of the picture `within` names (none: anywhere)."""

    key: Key
    ordinal: int = 1
    within: Key | None = None


@dataclass(frozen=True)
class Phrase:
    """What a command refers to. `subject`: what to find, in the user's words ("red car"; "" when the command names
    nothing); `noun`: its words that are neither colours nor generic nouns ("car"; None for "the red object");
    `colours`: the named colours, in order; `selector`: how to pick among several; `frame`: a named frame (-1: the
    last)."""

    text: str
    subject: str = ""
    noun: str | None = None
    colours: tuple[str, ...] = ()
    selector: Selector | None = None
    frame: int | None = None
    relation: Relation | None = None  # where it is beside `anchor`
    anchor: Phrase | None = None  # the other object a relation names ("the plate" of "the cup next to the plate")

    @property
    def names_something(self) -> bool:
        """Whether there is anything to find: a noun, a colour, a selector or a relation ("segment it" names
        nothing)."""
        return bool(self.noun or self.colours or self.selector or self.relation)

    @property
    def what(self) -> str:
        """What the candidates are: the subject ("red car"), or for a generic one its colours and 'object' ("red
        object"); what a grounding detector is asked for, and what messages call them."""
        if self.noun:
            return self.subject
        return " ".join([*dict.fromkeys(self.colours), "object"])

    def described(self) -> str:
        """The phrase as read back: 'the second red object from the left', 'the cup next to the plate'."""
        if self.relation is not None and self.anchor is not None:
            alone = replace(self, relation=None, anchor=None).described()
            return f"{alone} {_RELATION_WORDS[self.relation]} {self.anchor.described()}"
        if self.selector is None:
            return f"the {self.what}"
        s = self.selector
        if s.ordinal == -1 and s.key in _OPPOSITE:  # "the last from the left": the one on the right
            s = Selector(_OPPOSITE[s.key], 1, s.within)
        nth = _ordinal_words(s.ordinal)
        if s.key in ("largest", "smallest"):
            head = f"the {nth + ' ' if nth else ''}{s.key} {self.what}"
        elif s.key in ("middle", "centre") or not nth:
            head = f"the {nth + ' ' if nth else ''}{self.what} {_PLACE_WORDS[s.key]}"
        else:
            head = f"the {nth} {self.what} from the {s.key}"
        return f"{head} {_PLACE_WORDS[s.within]}" if s.within else head


def _ordinal_words(ordinal: int) -> str:
    if ordinal == 1:
        return ""
    if ordinal == -1:
        return "last"
    if ordinal < 0:
        return f"{_nth(-ordinal)} to last"
    return _nth(ordinal)


def _nth(n: int) -> str:
    names = {v: k for k, v in _ORDINALS.items()}
    if n in names:
        return names[n]
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# -- reading -------------------------------------------------------------------------------------------------------

def _tokens(text: str) -> list[str]:
    # "the left-hand cup" is a place; "the left hand" is a hand
    text = re.sub(r"\b(left|right)-hand(ed)?\b", r"\1hand", text.lower())
    tokens = re.findall(r"\d+(?:st|nd|rd|th)\b|\d+|[a-z]+|,", text)
    return _without_motion(tokens)


def _without_motion(tokens: list[str]) -> list[str]:
    """The words without a motion ("moving from left to right", "top to bottom"): it says where the object goes, not
    which one it is."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i + 1 if tokens[i] == "from" else i
        j += 1 if tokens[j : j + 1] == ["the"] else 0
        if j < len(tokens) and tokens[j] in _DIRECTIONS:
            k = j + 1
            if tokens[k : k + 1] == ["to"]:
                k += 2 if tokens[k + 1 : k + 2] == ["the"] else 1
                if k < len(tokens) and tokens[k] in _DIRECTIONS and _DIRECTIONS[tokens[k]] != _DIRECTIONS[tokens[j]]:
                    i = k + 1
                    continue
        out.append(tokens[i])
        i += 1
    return out


def _ordinal_of(token: str) -> int | None:
    if token in _ORDINALS:
        return _ORDINALS[token]
    match = _NUMBERED.fullmatch(token)
    return int(match[1]) if match and len(match[1]) <= 7 else None


def _bad(problem: str, text: str) -> InvalidInput:
    return InvalidInput(f"{problem} in {text[:120]!r}", field="command",
                        fix="say one place, size or order, e.g. 'the second red object from the left', or give a "
                            "region")


def _take_frame(tokens: list[str], text: str) -> tuple[list[str], int | None]:
    """The frame a phrase names ("in frame 12", "on the third frame", "the last frame") and the words left."""
    frame: int | None = None
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("frame", "frames"):
            found: int | None = None
            if i + 1 < len(tokens) and tokens[i + 1].isdigit():
                if len(tokens[i + 1]) > 7 or int(tokens[i + 1]) > MAX_FRAME:
                    raise _bad(f"frame {tokens[i + 1]} is too far", text)
                found, i = int(tokens[i + 1]), i + 2
            elif out and (out[-1] == "last" or (nth := _ordinal_of(out[-1])) is not None):
                if out[-1] != "last" and nth == 0:
                    raise _bad("frames are counted from the first", text)
                found = -1 if out[-1] == "last" else nth - 1
                out.pop()
                i += 1
            else:
                out.append(token)
                i += 1
                continue
            if frame is not None and frame != found:
                raise _bad("two frames are named", text)
            frame = found
            while out and out[-1] in ("the", "in", "on", "at", "of", "from"):
                out.pop()
            continue
        out.append(token)
        i += 1
    return out, frame


def _take_ordinal(tokens: list[str], text: str) -> tuple[list[str], int | None, str | None]:
    """The ordinal ("second", "3rd", "last", "second to last") and its direction ("from the left"), and the words
    left."""
    ordinal: int | None = None
    direction: str | None = None
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nth = _ordinal_of(token)
        if token == "penultimate":
            nth = -2
        if nth is not None or token == "last":
            value = -1 if nth is None else nth
            rest = tokens[i + 1 :]
            # "second last", "second to last", "next to last"
            if nth is not None and nth > 0 and rest[:1] == ["last"]:
                value, i = -nth, i + 1
            elif nth is not None and nth > 0 and rest[:2] == ["to", "last"]:
                value, i = -nth, i + 2
            if value == 0:
                raise _bad("there is no 0th", text)
            if ordinal is not None and ordinal != value:
                raise _bad("two orders are named", text)
            ordinal = value
            i += 1
            continue
        if token == "next" and tokens[i + 1 : i + 3] == ["to", "last"]:
            if ordinal is not None and ordinal != -2:
                raise _bad("two orders are named", text)
            ordinal, i = -2, i + 3
            continue
        if token == "from":
            j = i + 1
            while j < len(tokens) and tokens[j] in ("the", "its", "their"):
                j += 1
            if j < len(tokens) and tokens[j] in _DIRECTIONS:
                said = _DIRECTIONS[tokens[j]]
                if direction is not None and direction != said:
                    raise _bad("two directions are named", text)
                direction, i = said, j + 1
                continue
        out.append(token)
        i += 1
    return out, ordinal, direction


def _take_centre(tokens: list[str]) -> tuple[list[str], bool]:
    """Whether the phrase asks for the one nearest the picture's centre ("nearest the centre", "closest to the
    middle", "in the centre"), and the words left."""
    out: list[str] = []
    centre = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _NEAR:
            j = i + 1
            while j < len(tokens) and tokens[j] in ("to", "the", "of"):
                j += 1
            if j < len(tokens) and (tokens[j] in _CENTRE or tokens[j] in _MIDDLE):
                centre, i = True, j + 1
                continue
        if token in _CENTRE:
            centre = True
            i += 1
            continue
        out.append(token)
        i += 1
    return out, centre


def _relation_at(tokens: list[str], i: int) -> tuple[Relation, int] | None:
    """The relation whose words start at `tokens[i]` ("next to", "beside", "close to", "left of", "on top of",
    "under"…) and where its anchor's words start; None when none does."""
    token, after = tokens[i], tokens[i + 1 : i + 2]
    if token == "next" and after == ["to"] and tokens[i + 2 : i + 3] != ["last"]:  # "next to last": an ordinal
        return "near", i + 2
    if token in _BESIDE:
        return "near", i + 1
    if token in _CLOSE:
        return "near", i + 2 if after == ["to"] else i + 1
    if token in ("left", "right") and after == ["of"]:
        return token, i + 2  # type: ignore[return-value]
    if token == "top" and after == ["of"] and tokens[i - 1 : i] == ["on"]:
        return "above", i + 2
    if token in _ABOVE:
        return "above", i + 1
    if token in _BELOW:
        return "below", i + 1
    return None


def _names_a_thing(tokens: list[str]) -> bool:
    """Whether words name an object (a noun, a colour, "one", "object"…), not only a part of the picture ("left of
    the centre", "at the top of the image")."""
    known = _STOP | _VERBS | _CENTRE | _MIDDLE | _NEAR | _LARGEST | _SMALLEST | _MODIFIERS | frozenset(_DIRECTIONS)
    for token in tokens:
        if token in ("one", "ones") or token in _GENERIC or SYNONYMS.get(token, token) in COLOURS:
            return True
        if token not in known and token not in (_CLAUSE, "last", "next", "penultimate") and not token.isdigit() \
                and _ordinal_of(token) is None:
            return True
    return False


def _take_relation(tokens: list[str]) -> tuple[list[str], Relation | None, list[str]]:
    """The first relation to another object and that object's words (to the end of the clause), and the words
    left."""
    for i in range(len(tokens)):
        found = _relation_at(tokens, i)
        if found is None:
            continue
        relation, start = found
        end = tokens.index(_CLAUSE, start) if _CLAUSE in tokens[start:] else len(tokens)
        if _names_a_thing(tokens[start:end]):
            return tokens[:i] + tokens[end:], relation, tokens[start:end]
    return tokens, None, []


def parse_phrase(command: str) -> Phrase:
    """Read a command's referring phrase; `InvalidInput` (field `command`) for one that contradicts itself ('the left
    one on the right', two frames)."""
    if not isinstance(command, str):
        raise InvalidInput(f"the command is {type(command).__name__}, not text", field="command",
                           fix="give the command as text")
    tokens = _tokens(command)
    tokens, frame = _take_frame(tokens, command)
    tokens, relation, anchor_words = _take_relation(tokens)
    phrase = _read(tokens, command, frame)
    if relation is None:
        return phrase
    return replace(phrase, relation=relation, anchor=_read(anchor_words, command, None))


def _read(tokens: list[str], command: str, frame: int | None) -> Phrase:
    """The phrase these words (a frame and any relation taken out) say."""
    tokens, ordinal, direction = _take_ordinal(tokens, command)
    tokens, centre = _take_centre(tokens)
    places: dict[str, str] = {}  # axis → direction
    size: str | None = None
    middle = False
    subject: list[str] = []
    for token in tokens:
        if token in _DIRECTIONS:
            said = _DIRECTIONS[token]
            axis = "x" if said in ("left", "right") else "y"
            if places.get(axis, said) != said:
                raise _bad(f"both {places[axis]!r} and {said!r} are named", command)
            places[axis] = said
        elif token in _LARGEST or token in _SMALLEST:
            said = "largest" if token in _LARGEST else "smallest"
            if size not in (None, said):
                raise _bad("both 'largest' and 'smallest' are named", command)
            size = said
        elif token in _MIDDLE:
            middle = True
        elif token in _VERBS or token in _STOP or token == _CLAUSE:
            continue
        else:
            subject.append(token)
    colours = tuple(SYNONYMS.get(t, t) for t in subject if SYNONYMS.get(t, t) in COLOURS)
    noun = [t for t in subject if SYNONYMS.get(t, t) not in COLOURS and t not in _GENERIC and t not in _MODIFIERS
            and not t.isdigit()]
    selector = _selector(places, size, middle, centre, ordinal, direction, command)
    return Phrase(text=command, subject=" ".join(t for t in subject if not t.isdigit()),
                  noun=" ".join(noun) or None, colours=colours, selector=selector, frame=frame)


_ANSWER = _words("i mean meant want wanted please yes sorry oh ok okay thanks thank is was s")
"""Words of conversation around a pick ("oh, I meant the left one please")."""


def picks(answer: str, command: str) -> bool:
    """Whether `answer` only picks one of the candidates that `command` found ("the right one", "the red object on
    the left", "second"): a place, size or order, said in the command's words, the phrase's own and a few of
    conversation. Anything else ("make the left one blue") is a new request."""
    try:
        if not isinstance(answer, str) or parse_phrase(answer).selector is None:
            return False
    except InvalidInput:
        return False
    known = set(_tokens(command)) | _STOP | _VERBS | _ANSWER | {_CLAUSE}
    tokens = _tokens(answer)
    return len(tokens) <= 12 and all(token in known or _ordinal_of(token) is not None
                                     or parse_phrase(token).selector is not None for token in tokens)


def _place(places: dict[str, str]) -> Key | None:
    if "x" in places and "y" in places:
        return f"{places['y']} {places['x']}"  # type: ignore[return-value]
    return places.get("x") or places.get("y")  # type: ignore[return-value]


def _selector(places: dict[str, str], size: str | None, middle: bool, centre: bool, ordinal: int | None,
              direction: str | None, text: str) -> Selector | None:
    nth = ordinal or 1
    if direction is not None:  # "the second from the left (at the top)"
        axis = "x" if direction in ("left", "right") else "y"
        if places.get(axis, direction) != direction:
            raise _bad(f"both {places[axis]!r} and {direction!r} are named", text)
        rest = {a: d for a, d in places.items() if a != axis}
        within = _place(rest) or ("centre" if centre or middle else None)
        if size is not None:
            raise _bad(f"an order from the {direction} and {size!r} are both named", text)
        return Selector(direction, nth, within)  # type: ignore[arg-type]
    place = _place(places)
    if size is not None:  # "the (second) largest (on the left)"
        return Selector(size, nth, place or ("centre" if centre or middle else None))  # type: ignore[arg-type]
    if centre:  # "the (second) nearest the centre (on the left)"
        return Selector("centre", nth, place)
    if middle:
        if ordinal is not None:
            raise _bad("an order and 'the middle' are both named", text)
        return Selector("middle", 1, place)
    if place is not None:  # "the (second) one on the left": ordinals count from that side
        return Selector(place, nth)
    if ordinal is not None:  # "the second red object": in reading order
        return Selector("left", nth)
    return None


# -- picking -------------------------------------------------------------------------------------------------------

def _centre(box: LabelledBox) -> tuple[float, float]:
    x1, y1, x2, y2 = box.box
    return (x1 + x2) / 2, (y1 + y2) / 2


def _area(box: LabelledBox) -> float:
    if box.area is not None:
        return float(box.area)
    x1, y1, x2, y2 = box.box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _extent(box: LabelledBox, key: Key) -> float:
    """A box's size along the direction `key` compares."""
    x1, y1, x2, y2 = box.box
    if key in ("left", "right"):
        return x2 - x1
    if key in ("top", "bottom"):
        return y2 - y1
    return (x2 - x1 + y2 - y1) / 2


def _value(box: LabelledBox, key: Key, size: tuple[int, int]) -> float:
    """Where a candidate stands in `key`'s order: the smaller, the sooner."""
    cx, cy = _centre(box)
    width, height = size
    return {
        "left": cx, "right": -cx, "top": cy, "bottom": -cy,
        "top left": cx + cy, "top right": -cx + cy, "bottom left": cx - cy, "bottom right": -cx - cy,
        "centre": math.hypot(cx - width / 2, cy - height / 2), "middle": 0.0,
        "largest": -_area(box), "smallest": _area(box),
    }[key]


def _tie(a: LabelledBox, b: LabelledBox, key: Key, size: tuple[int, int]) -> bool:
    """Whether `key` cannot tell `a` and `b` apart."""
    if key in ("largest", "smallest"):
        small, large = sorted((_area(a), _area(b)))
        return large <= 0 or small / large >= SIZE_TIE
    gap = abs(_value(a, key, size) - _value(b, key, size))
    return gap < PLACE_TIE * (_extent(a, key) + _extent(b, key)) / 2


def _inside(box: LabelledBox, within: Key, size: tuple[int, int]) -> bool:
    cx, cy = _centre(box)
    width, height = size
    if within in ("centre", "middle"):
        return abs(cx - width / 2) <= width / 4 and abs(cy - height / 2) <= height / 4
    return all({"left": cx < width / 2, "right": cx > width / 2, "top": cy < height / 2,
                "bottom": cy > height / 2}[part] for part in within.split())


def where(box: LabelledBox, size: tuple[int, int]) -> str:
    """Where a box is in the picture, in words: 'at the top left', 'in the middle', 'on the right'."""
    cx, cy = _centre(box)
    width, height = size
    column = "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else ""
    row = "top" if cy < height / 3 else "bottom" if cy > 2 * height / 3 else ""
    if row and column:
        return f"at the {row} {column}"
    if row:
        return f"at the {row}"
    return f"on the {column}" if column else "in the middle"


class _Tied(Exception):
    """Several candidates fit equally: their indices, in the selector's order."""

    def __init__(self, tied: list[int]) -> None:
        super().__init__(tied)
        self.tied = tied


def pick(phrase: Phrase, candidates: Sequence[LabelledBox], size: tuple[int, int],
         anchors: Sequence[LabelledBox] = ()) -> int:
    """The index of the candidate `phrase` means, in a picture of `size` (width, height); `anchors`: the candidates
    found for the object its relation names ("the plate" of "the cup next to the plate").

    `InvalidInput` when none or too few are there ("the third" of two); `AmbiguousTarget` when the phrase fits
    several equally (no selector and scores alike, or a selector that cannot tell them apart)."""
    near = _anchors(phrase, anchors, size)
    pool = _pool(phrase, candidates, size, near)
    try:
        return _choose(phrase, candidates, pool, size, near)
    except _Tied as tie:
        raise _ambiguous(phrase, candidates, tie.tied, pool, size) from None


def _anchors(phrase: Phrase, anchors: Sequence[LabelledBox], size: tuple[int, int]) -> list[LabelledBox]:
    """The boxes of the object the phrase's relation names: the one its words pick, or all that fit them equally."""
    if phrase.relation is None or phrase.anchor is None:
        return []
    pool = _pool(phrase.anchor, anchors, size)
    try:
        return [anchors[_choose(phrase.anchor, anchors, pool, size)]]
    except _Tied as tie:
        return [anchors[i] for i in tie.tied]


def _pool(phrase: Phrase, candidates: Sequence[LabelledBox], size: tuple[int, int],
          near: Sequence[LabelledBox] = ()) -> list[int]:
    """The candidates the phrase may mean: all, or those in the part of the picture it names, and on the side of the
    anchor its relation names (never the anchor itself)."""
    what = phrase.what
    if not candidates:
        raise InvalidInput(f"no {what} was found", field="command",
                           fix="name what is in the picture, or give a region (a box, points or a scribble)")
    pool = list(range(len(candidates)))
    selector = phrase.selector
    if selector is not None and selector.within is not None:
        pool = [i for i in pool if _inside(candidates[i], selector.within, size)]
        if not pool:
            raise InvalidInput(f"none of the {len(candidates)} {what} candidates is {_PLACE_WORDS[selector.within]}",
                               field="command", fix="say where it is, or give a region (a box, points or a scribble)")
    if near and phrase.relation is not None and phrase.anchor is not None:
        pool = [i for i in pool if _beside(candidates[i], near, phrase.relation) is not None]
        if not pool:
            anchor = phrase.anchor.described()
            problem = (f"no {what} was found apart from {anchor} itself" if phrase.relation == "near" else
                       f"no {what} is {_RELATION_WORDS[phrase.relation]} {anchor}")
            raise InvalidInput(problem, field="command",
                               fix="say where it is, or give a region (a box, points or a scribble)")
    return pool


def _box_iou(a: LabelledBox, b: LabelledBox) -> float:
    w = max(0.0, min(a.box[2], b.box[2]) - max(a.box[0], b.box[0]))
    h = max(0.0, min(a.box[3], b.box[3]) - max(a.box[1], b.box[1]))
    union = _box_area(a) + _box_area(b) - w * h
    return w * h / union if union > 0 else 0.0


def _box_area(box: LabelledBox) -> float:
    x1, y1, x2, y2 = box.box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _beside(box: LabelledBox, near: Sequence[LabelledBox], relation: Relation) -> tuple[float, float] | None:
    """How far `box` is from the nearest anchor it stands in `relation` to: (the gap between the boxes, the distance
    between their centres); None when it is on no anchor's side, or is an anchor."""
    if any(_box_iou(box, anchor) >= SAME_OBJECT for anchor in near):
        return None
    cx, cy = _centre(box)
    best: tuple[float, float] | None = None
    for anchor in near:
        ax, ay = _centre(anchor)
        if not {"near": True, "left": cx < ax, "right": cx > ax, "above": cy < ay, "below": cy > ay}[relation]:
            continue
        x1, y1, x2, y2 = box.box
        a1, b1, a2, b2 = anchor.box
        gap = math.hypot(max(0.0, a1 - x2, x1 - a2), max(0.0, b1 - y2, y1 - b2))
        far = (gap, math.hypot(cx - ax, cy - ay))
        best = far if best is None or far < best else best
    return best


def _score(box: LabelledBox) -> float:
    return 1.0 if box.score is None else box.score


def _choose(phrase: Phrase, candidates: Sequence[LabelledBox], pool: list[int], size: tuple[int, int],
            near: Sequence[LabelledBox] = ()) -> int:
    """The index `pick` gives, or `_Tied`."""
    selector = phrase.selector
    if selector is None and near and phrase.relation is not None:
        return _nearest(candidates, pool, near, phrase.relation)
    if selector is None:
        order = sorted(pool, key=lambda i: (-_score(candidates[i]), i))
        tied = [i for i in order if _score(candidates[i]) >= SCORE_TIE * _score(candidates[order[0]])]
        if len(tied) > 1:
            raise _Tied(tied)
        return order[0]
    if selector.key == "middle":
        return _middle(candidates, pool, size)
    order = sorted(pool, key=lambda i: (_value(candidates[i], selector.key, size), i))
    n = len(order)
    index = selector.ordinal - 1 if selector.ordinal > 0 else n + selector.ordinal
    if not 0 <= index < n:
        counted = f"{n} {phrase.what} candidate{'s' if n != 1 else ''}"
        place = f" {_PLACE_WORDS[selector.within]}" if selector.within else ""
        raise InvalidInput(f"{phrase.described()!r} asks for the {_ordinal_words(selector.ordinal) or 'first'}, but "
                           f"there {'is' if n == 1 else 'are'} only {counted}{place}", field="command",
                           fix="count again, or give a region (a box, points or a scribble)")
    return _untied(candidates, order, index, selector.key, size)


def _untied(candidates: Sequence[LabelledBox], order: list[int], index: int, key: Key, size: tuple[int, int],
            tied: tuple[int, ...] = ()) -> int:
    """`order[index]`, unless it ties with a neighbour in the order (or `tied` names several already): `_Tied`."""
    chosen = order[index]
    group = set(tied) | {chosen}
    for step in (-1, 1):  # the neighbours in the order, as far as they tie
        j = index + step
        while 0 <= j < len(order) and _tie(candidates[order[j]], candidates[chosen], key, size):
            group.add(order[j])
            j += step
    if len(group) > 1:
        raise _Tied(sorted(group, key=order.index))
    return chosen


def _nearest(candidates: Sequence[LabelledBox], pool: list[int], near: Sequence[LabelledBox],
             relation: Relation) -> int:
    """The candidate nearest the anchor (by the gap between their boxes, then their centres); `_Tied` with those that
    neither measure tells apart from it."""
    far = {i: _beside(candidates[i], near, relation) for i in pool}
    order = sorted(pool, key=lambda i: (far[i], i))
    first = order[0]

    def alike(i: int) -> bool:
        margin = PLACE_TIE * (_extent(candidates[i], "centre") + _extent(candidates[first], "centre")) / 2
        return all(abs(a - b) < margin for a, b in zip(far[i], far[first], strict=True))  # type: ignore[arg-type]

    tied = [i for i in order if alike(i)]
    if len(tied) > 1:
        raise _Tied(tied)
    return first


def _middle(candidates: Sequence[LabelledBox], pool: list[int], size: tuple[int, int]) -> int:
    """The median candidate along the direction they are spread in (a row: left to right; a column: top down); of
    an even number, the two in the middle tie."""
    centres = [_centre(candidates[i]) for i in pool]
    xs, ys = [c[0] for c in centres], [c[1] for c in centres]
    key: Key = "left" if max(xs) - min(xs) >= max(ys) - min(ys) else "top"
    order = sorted(pool, key=lambda i: (_value(candidates[i], key, size), i))
    n = len(order)
    tied = () if n % 2 else (order[n // 2 - 1],)
    return _untied(candidates, order, n // 2, key, size, tied)


_SUGGESTED: tuple[Key, ...] = ("left", "right", "top", "bottom", "largest", "smallest")


def _suggestion(phrase: Phrase, candidates: Sequence[LabelledBox], pool: list[int], index: int,
                size: tuple[int, int]) -> str | None:
    """A phrase that picks candidate `index` of the pool without a tie, if a simple one does (its relation kept: the
    pool holds only the candidates it allows)."""
    within = phrase.selector.within if phrase.selector is not None else None
    for ordinal in (1, 2):
        for key in _SUGGESTED:
            asked = replace(phrase, selector=Selector(key, ordinal, within), frame=None)
            try:
                if _choose(asked, candidates, pool, size) == index:
                    return asked.described()
            except (InvalidInput, _Tied):
                continue
    return None


def _ambiguous(phrase: Phrase, candidates: Sequence[LabelledBox], tied: list[int], pool: list[int],
               size: tuple[int, int]) -> AmbiguousTarget:
    """The question to ask when `tied` fit equally: each with its box, where it is, and a phrase that picks it (in the
    selector's order; with none, from the left)."""
    if phrase.selector is None:
        tied = sorted(tied, key=lambda i: _centre(candidates[i]))
    parts, said = [], []
    for i in tied:
        box = candidates[i]
        coordinates = "(" + ", ".join(f"{round(v)}" for v in box.box) + ")"
        suggestion = _suggestion(phrase, candidates, pool, i, size)
        if suggestion is not None:
            said.append(suggestion)
        frame = f" on frame {box.frame}" if box.frame else ""
        parts.append(f"{suggestion or 'the one ' + where(box, size)} at {coordinates}{frame}")
    listing = ", ".join(parts[:-1]) + f" or {parts[-1]}"
    question = f"{len(tied)} candidates fit {phrase.described()!r}. Which do you mean: {listing}?"
    example = f"e.g. {said[0]!r}" if said else "e.g. 'the one on the left'"
    return AmbiguousTarget(question, boxes=[candidates[i].box for i in tied],
                           fix=f"say which one ({example}), or give a region (a box, points or a scribble)")
