"""Invocation-oriented instruction data for the mini planner, generated from templates.

Every example is a user's request (text), the context the planner sees (this turn's uploads, the session's
aliases, whether a region was drawn) and the gold plan: per step the module letter, the instruction (a task word
plus words copied from the text, typos included), the input references (`@1`, `@img2`) and a task-free object
phrase (the target of the task-invariant signal head). Phrasings are clause templates; each template belongs to
exactly one split, so the test split is written only in phrasings the model never trained on.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")

PREFIX: dict[str, str] = {
    "A": "generation:",
    "B": "segmentation:",
    "C": "editing:",
    "D": "video generation:",
    "E": "video segmentation:",
    "F": "video editing:",
    "G": "image to video:",
}
"""The task word each module's instruction starts with (VITRON writes `segmentation: zebra`)."""

REGION_MODULES = frozenset("BCEF")
"""Modules that read a region; a drawn region goes to the first such step."""

STOPWORDS = frozenset((
    "a", "an", "the", "it", "its", "them", "that", "this", "these", "those", "of", "to", "in", "on", "at",
    "from", "with", "and", "into", "onto", "for", "by", "as", "is", "be", "please", "me", "my", "i", "you",
    "your", "there", "then", "so", "up",
))

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case words of `text`, as keyword recall compares them."""
    return _WORD.findall(text.lower())


def keywords_of(text: str) -> tuple[str, ...]:
    """The content words of an instruction: what a specialist needs to read in it."""
    return tuple(w for w in words(text) if w not in STOPWORDS and len(w) > 1)


def context_line(inputs: Sequence[str], memory: Sequence[str], region: bool) -> str:
    """The short second segment the encoder reads after the user's text."""
    return (f"inputs: {' '.join(inputs) or 'none'}; memory: {' '.join(memory) or 'none'}; "
            f"region: {'yes' if region else 'no'}")


@dataclass(frozen=True)
class Step:
    """One gold step: module letter, instruction, the text spans it copies, inputs and a task-free object phrase."""

    module: str
    instruction: str
    spans: tuple[tuple[int, int], ...]
    inputs: tuple[str, ...]
    object_phrase: str

    @property
    def keywords(self) -> tuple[str, ...]:
        return keywords_of(self.instruction.split(":", 1)[1] if ":" in self.instruction else self.instruction)


@dataclass(frozen=True)
class Example:
    """A request, its context and its gold plan."""

    text: str
    inputs: tuple[str, ...]  # this turn's upload aliases
    memory: tuple[str, ...]  # the session's other aliases, oldest first
    region: bool
    steps: tuple[Step, ...]
    template: str  # which clause templates and connector wrote it, e.g. "B.first#3+conn#1+C.seg#0"

    @property
    def context(self) -> str:
        return context_line(self.inputs, self.memory, self.region)

    @property
    def modules(self) -> str:
        return "".join(step.module for step in self.steps)


# --- vocabulary (shared by every split: only whole phrasings are held out) ---------------------------------

NOUNS = (
    "car", "dog", "cat", "cup", "person", "horse", "bird", "tree", "bicycle", "boat", "chair", "ball",
    "zebra", "clock", "bottle", "house", "flower", "bus", "train", "umbrella", "kite", "laptop", "phone",
    "lamp", "sheep", "cow", "elephant", "giraffe", "bench", "guitar", "hat", "bag", "shoe", "apple", "banana",
    "pizza", "truck", "plane", "motorbike", "child", "woman", "man", "vase", "suitcase", "skateboard",
    "surfboard", "book", "table", "sofa", "duck", "fox", "rabbit", "teddy bear", "polar bear", "fire hydrant",
)
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown", "white", "black",
           "gray", "grey")
SIZES = ("big", "small", "tall", "little", "large", "tiny", "old", "shiny", "striped", "wooden")
POSITIONS = ("on the left", "on the right", "in the back", "in front", "in the middle", "near the window",
             "at the top", "at the bottom")
SCENES = ("on a beach", "in the snow", "at sunset", "in a forest", "on the moon", "in a city street", "under water",
          "in a desert", "on a table", "in the rain", "in a garden", "on a mountain", "at night", "in space",
          "in a kitchen", "by a lake")
ACTIONS = ("running", "flying", "spinning", "driving", "jumping", "swimming", "floating", "dancing", "rolling",
           "walking", "sliding", "turning around")

SEG = ("segment", "cut out", "outline", "mask", "select", "isolate", "extract", "pick out", "separate", "trace",
       "mask out", "segmentate", "cutout")
SEGD = ("segmented", "cut out", "masked", "outlined", "isolated", "selected", "extracted", "separated")
TRACK = ("track", "follow", "segment", "mask", "outline", "cut out", "isolate", "trace")
GEN = ("generate", "create", "draw", "make", "render", "produce", "paint", "design", "sketch up", "come up with")
VGEN = ("generate a video of", "make a clip of", "create a video showing", "produce a short video of",
        "render a video of", "make a movie of", "generate a clip of", "create footage of", "shoot a video of")
ANIM = ("animate", "turn into a video", "bring to life", "make a video from", "make a clip from", "convert to video",
        "turn into a clip", "make a moving video from")
SEG_PRONOUNS = ("the mask", "the segmented part", "it", "the cutout", "that region", "the selection")
GEN_PRONOUNS = ("it", "that", "the result", "the generated image", "the picture", "the image")

_EDITS: dict[str, tuple[str, ...]] = {
    # {o} is the object (or a pronoun), {c} a colour
    "recolour": ("make {o} {c}", "paint {o} {c}", "recolour {o} {c}", "recolor {o} to {c}", "turn {o} {c}",
                 "change {o} to {c}", "colour {o} {c}", "dye {o} {c}", "change the colour of {o} to {c}",
                 "tint {o} {c}", "set {o} to {c}"),
    "remove": ("remove {o}", "erase {o}", "delete {o}", "get rid of {o}", "take out {o}", "eliminate {o}"),
    "blur": ("blur {o}", "blur out {o}", "soften {o}", "make {o} out of focus"),
    "pixelate": ("pixelate {o}", "censor {o}", "mosaic {o}"),
    "gray": ("make {o} black and white", "make {o} grayscale", "desaturate {o}", "make {o} monochrome"),
    "light": ("brighten {o}", "make {o} brighter", "darken {o}", "make {o} darker", "lighten {o}"),
    "style": ("give {o} a sepia look", "turn {o} into a pencil sketch", "make {o} look like a cartoon",
              "make {o} look vintage"),
    "background": ("blur the background behind {o}", "make the background behind {o} {c}"),
}
_MOVES = ("zoom in on {o}", "zoom out from {o}", "pan left across {o}", "pan right past {o}", "slowly zoom in on {o}",
          "push in on {o}", "pull back from {o}", "pan up over {o}", "pan down to {o}", "zoom into {o}",
          "slowly pan left over {o}", "do a slow zoom out from {o}")

POLITE_PRE = ("", "", "", "please ", "could you ", "can you please ", "hey, ", "i'd like you to ", "kindly ",
              "hi! ", "would you ", "ok so ")
POLITE_POST = ("", "", "", " please", " thanks", " thank you!", "!", ".", " asap", " pls", " if you can", " :)")

# --- clause templates: (module, role) -> phrasings ------------------------------------------------------------
# Slots: {seg} {segd} {track} {gen} {vgen} {anim} verbs; {obj} object; {img} {vid} {img2} {mask} {masks} sources;
# {edit} an edit phrase, {move} a camera move, {desc}/{vdesc} a description (these three are copied whole).

CLAUSES: dict[str, tuple[str, ...]] = {
    "A.first": (
        "{gen} {desc}", "{gen} an image of {desc}", "i want a picture of {desc}", "{gen} a photo of {desc}",
        "make me an image showing {desc}", "picture of {desc}", "{gen} a picture: {desc}", "show me {desc}",
        "an image of {desc}", "i need an illustration of {desc}", "{desc}, {gen} that as an image",
        "could you {gen} {desc} for me", "new image: {desc}", "{gen} a drawing of {desc}",
        "what would {desc} look like? {gen} it", "give me a picture with {desc}",
    ),
    "B.first": (
        "{seg} {obj} in {img}", "{seg} {obj} from {img}", "in {img}, {seg} {obj}", "{img}: {seg} {obj}",
        "can you {seg} {obj} in {img}", "i need {obj} {segd} in {img}", "give me a mask of {obj} in {img}",
        "find {obj} in {img} and {seg} it", "show me just {obj} from {img}", "for {img}, i want {obj} {segd}",
        "mask of {obj} in {img}", "could you {seg} {obj} out of {img}", "{seg} {obj} ({img})",
        "which pixels are {obj} in {img}? {seg} them", "get {obj} {segd} from {img}", "{img} - {seg} {obj}",
        "{obj} in {img} needs to be {segd}", "take {img} and {seg} {obj}",
    ),
    "B.upload": (
        "{seg} {obj}", "{seg} {obj} in this picture", "{seg} {obj} in the photo", "i want {obj} {segd}",
        "{seg} {obj} here", "where is {obj}? {seg} it", "{obj}: {seg} it", "mask of {obj} in my image",
        "can you {seg} {obj} for me", "{obj} should be {segd}", "find and {seg} {obj}",
        "help me {seg} {obj} in this image",
    ),
    "B.follow": (
        "{seg} {obj} in it", "{seg} {obj}", "{seg} {obj} in the result", "{seg} {obj} from the generated image",
        "{seg} {obj} there", "{seg} {obj} in that picture", "get a mask of {obj} from it", "i want {obj} {segd}",
        "find {obj} in it and {seg} it", "{obj} should be {segd} afterwards",
    ),
    "C.first": (
        "{edit} in {img}", "in {img}, {edit}", "{img}: {edit}", "{edit} ({img})", "on {img}, {edit}",
        "take {img} and {edit}", "could you {edit} in {img}", "for {img} please {edit}", "i want to {edit} in {img}",
        "edit {img}: {edit}", "{img} - {edit}", "open {img} and {edit}", "{edit} in the picture {img}",
        "with {img}, {edit}", "using {img}, {edit}", "i'd love it if you could {edit} in {img}",
    ),
    "C.upload": (
        "{edit}", "{edit} in this photo", "{edit} in the picture", "in this image, {edit}", "{edit} here",
        "help me {edit}", "edit this: {edit}", "i need you to {edit}", "{edit} in my image", "can you {edit}",
        "photo edit - {edit}", "{edit} on the image i sent",
    ),
    "C.mask": (
        "{edit} in {img}", "in {img}, {edit}", "{img}: {edit}", "on {img}, {edit}", "take {img} and {edit}",
        "for {img}, {edit}", "edit {img}: {edit}", "{edit} ({img})", "could you {edit} in {img}",
        "with {img}, {edit}",
    ),
    "C.seg": (
        "{edit}", "{edit} afterwards", "use that to {edit}", "{edit} using the mask", "with the mask, {edit}",
        "{edit} in the image", "{edit} in the original", "{edit} there", "then use it to {edit}",
        "and finally {edit}",
    ),
    "C.follow": (
        "{edit}", "{edit} in it", "{edit} in the result", "{edit} in the new image", "edit it: {edit}",
        "{edit} afterwards", "then {edit} in that picture", "{edit} on the output",
    ),
    "D.first": (
        "{vgen} {vdesc}", "i want a video of {vdesc}", "{vdesc} as a video", "can you {vgen} {vdesc}",
        "make a short clip: {vdesc}", "video of {vdesc}", "{vdesc}, {vgen} that", "i need footage of {vdesc}",
        "new video: {vdesc}", "could you {vgen} {vdesc} for me", "a clip showing {vdesc}",
        "show me a video where {vdesc}", "make a 5 second video of {vdesc}",
    ),
    "E.first": (
        "{track} {obj} in {vid}", "{track} {obj} throughout {vid}", "in {vid}, {track} {obj}",
        "{vid}: {track} {obj} in every frame", "mask {obj} across all frames of {vid}",
        "follow {obj} through {vid} and {seg} it", "{track} {obj} in each frame of {vid}",
        "can you {track} {obj} in {vid}", "i need {obj} {segd} in every frame of {vid}",
        "{obj} in {vid} should be {segd} frame by frame", "per-frame masks of {obj} in {vid}",
        "{vid} - {track} {obj}", "take {vid} and {track} {obj}", "for {vid}, {track} {obj} over time",
    ),
    "E.upload": (
        "{track} {obj} in this video", "{track} {obj} throughout the clip", "{track} {obj} in every frame",
        "in this clip, {track} {obj}", "mask {obj} in all frames of the video", "can you {track} {obj} in my video",
        "{obj} in this footage: {track} it", "{track} {obj} across the video i sent",
        "video segmentation of {obj} please", "i need {obj} {segd} in every frame here",
    ),
    "E.follow": (
        "{track} {obj} in it", "{track} {obj} in the video", "{track} {obj} in every frame",
        "{track} {obj} in the clip", "{track} {obj} throughout the result", "{track} {obj} across its frames",
        "i want {obj} {segd} in each frame", "get masks of {obj} over the video",
    ),
    "F.first": (
        "{edit} in {vid}", "in {vid}, {edit}", "{vid}: {edit} in every frame", "{edit} throughout {vid}",
        "{edit} in all frames of {vid}", "could you {edit} in {vid}", "take {vid} and {edit}",
        "for the whole clip {vid}, {edit}", "{edit} across {vid}", "edit {vid}: {edit}", "{vid} - {edit}",
        "with {vid}, {edit} in each frame",
    ),
    "F.upload": (
        "{edit} in this video", "{edit} throughout the clip", "{edit} in every frame of my video",
        "in this clip, {edit}", "{edit} across the footage", "can you {edit} in the video i sent",
        "video edit: {edit}", "{edit} in all frames here",
    ),
    "F.seg": (
        "{edit} in every frame", "{edit} throughout", "{edit}", "{edit} across the video", "{edit} using the masks",
        "with those masks, {edit}", "{edit} in each frame", "use them to {edit} over the clip",
    ),
    "F.follow": (
        "{edit} in the video", "{edit} in every frame of it", "{edit} throughout the clip", "{edit} in it",
        "edit the video: {edit}", "{edit} across its frames",
    ),
    "G.first": (
        "{anim} {img} and {move}", "{anim} {img}: {move}", "{anim} {img}, {move}", "with {img}, {anim} and {move}",
        "{move} in a video made from {img}", "use {img} to make a clip that will {move}",
        "{img}: {anim} it and {move}", "{anim} {img} so the camera will {move}", "take {img}, {anim} it, {move}",
        "image to video on {img}: {move}", "can you {anim} {img}? {move}", "from {img}, {anim} and {move}",
    ),
    "G.upload": (
        "{anim} this photo and {move}", "{anim} this picture: {move}", "{anim} my image, {move}",
        "make this image move: {move}", "{move} in a video from this photo", "{anim} the image i sent and {move}",
        "turn this still into a video that will {move}", "{anim} it: {move}",
    ),
    "G.follow": (
        "{anim} it and {move}", "{anim} the result: {move}", "turn that into a video and {move}",
        "{move} as a video", "make a clip from it and {move}", "{anim} the image, {move}",
        "then {anim} it so the camera will {move}", "{anim} that: {move}",
    ),
    "B.two": (
        "{seg} {obj} in {img} and {obj2} in {img2}", "in {img}, {seg} {obj}; in {img2}, {seg} {obj2}",
        "{seg} {obj} from {img} and also {obj2} from {img2}", "{img}: {seg} {obj}. {img2}: {seg} {obj2}",
        "i need {obj} {segd} in {img} and {obj2} in {img2}", "{seg} both {obj} in {img} and {obj2} in {img2}",
        "for {img} {seg} {obj}, for {img2} {seg} {obj2}", "can you {seg} {obj} ({img}) and {obj2} ({img2})",
    ),
}
_REGION_OBJECTS = ("the {n} i marked", "the boxed {n}", "this {n}", "the {n} in the box", "the selected {n}",
                   "the {n} i circled", "the {n} i drew around", "the highlighted {n}")
_MASK_OBJECTS = ("the {n} in {m}", "{m}'s {n}", "the {n} from {m}", "the {n} masked in {m}")

CONNECTORS = (", then ", " and then ", ". then ", "; after that ", " and ", ", and afterwards ", ". next, ",
              " then ", ", followed by: ", " - then ", ". after that, ", ", finally ", ". once done, ",
              ", next ", " and after that ", ". also ", " & then ", ", after which ")

# Plans: (weight, clause keys). Roles: first/upload take a source, seg follows a segmentation, follow a generation.
PLANS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (1.0, ("A",)), (1.0, ("B",)), (1.0, ("C",)), (0.6, ("Cm",)), (1.0, ("D",)), (1.0, ("E",)), (1.0, ("F",)),
    (1.0, ("G",)), (1.2, ("B", "C.seg")), (1.0, ("E", "F.seg")), (0.7, ("A", "B.follow")),
    (0.7, ("A", "C.follow")), (0.7, ("A", "G.follow")), (0.7, ("C", "G.follow")),
    (0.7, ("B", "C.seg", "G.follow")), (0.6, ("D", "E.follow")), (0.6, ("D", "F.follow")),
    (0.5, ("D", "E.follow", "F.seg")), (0.5, ("A", "B.follow", "C.seg")), (0.5, ("G", "E.follow")),
    (0.6, ("B.two",)),
)


# --- generation ---------------------------------------------------------------------------------------------


def template_splits(seed: int = 0) -> dict[str, dict[Split, list[int]]]:
    """Which phrasings of each clause group (and which connectors) belong to train, val and test."""
    rng = random.Random(f"splits-{seed}")
    groups = {**{key: len(value) for key, value in CLAUSES.items()}, "conn": len(CONNECTORS)}
    out: dict[str, dict[Split, list[int]]] = {}
    for key, count in groups.items():
        order = list(range(count))
        rng.shuffle(order)
        n_test = max(2, round(count * 0.2))
        n_val = max(1, round(count * 0.12))
        out[key] = {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
                    "train": sorted(order[n_test + n_val:])}
    return out


def generate(split: Split, count: int, seed: int = 0) -> list[Example]:
    """`count` examples of `split`, written only in that split's phrasings; the same for the same seed."""
    splits = template_splits(seed)
    rng = random.Random(f"{split}-{seed}")
    weights = [w for w, _ in PLANS]
    examples = []
    while len(examples) < count:
        _, plan = rng.choices(PLANS, weights)[0]
        examples.append(_Writer(rng, splits, split).write(plan))
    return examples


def generate_splits(sizes: dict[Split, int], seed: int = 0) -> dict[Split, list[Example]]:
    return {split: generate(split, n, seed) for split, n in sizes.items()}


@dataclass
class _Piece:
    text: str
    copy: int | None = None  # index of the step whose instruction copies this piece
    protected: bool = False  # aliases: never given a typo


@dataclass
class _Source:
    """Where a step's input comes from: an alias (named in the text or left to the context) or a step."""

    ref: str  # "@img2" or "@1"
    phrase: str | None  # what the text calls it (None: the clause does not say)


@dataclass
class _Writer:
    rng: random.Random
    splits: dict[str, dict[Split, list[int]]]
    split: Split
    pieces: list[_Piece] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    memory: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)
    region: bool = False
    region_used: bool = False
    template_ids: list[str] = field(default_factory=list)

    def pick(self, group: str) -> str:
        index = self.rng.choice(self.splits[group][self.split])
        self.template_ids.append(f"{group}#{index}")
        return CONNECTORS[index] if group == "conn" else CLAUSES[group][index]

    def alias(self, prefix: str) -> str:
        """A fresh alias of a kind: img, mask, video (or vid), masks."""
        number = self.used.get(prefix, 0) + self.rng.randint(1, 3)
        self.used[prefix] = number
        return f"{prefix}{number}"

    def write(self, plan: tuple[str, ...]) -> Example:
        rng = self.rng
        # A region drawn this turn is read by the first segmentation or editing step.
        self.region = plan[0][0] in REGION_MODULES and plan[0] != "B.two" and rng.random() < 0.25
        self._distractors()
        steps: list[dict] = []
        pre, post = rng.choice(POLITE_PRE), rng.choice(POLITE_POST)
        if pre:
            self.pieces.append(_Piece(pre))
        for position, key in enumerate(plan):
            if position:
                self.pieces.append(_Piece(self.pick("conn")))
            steps.extend(self._clause(key, steps))
        if post:
            self.pieces.append(_Piece(post))
        text, spans = self._finish()
        gold = []
        for index, step in enumerate(steps):
            copied = [text[a:b] for a, b in spans.get(index, [])]
            instruction = " ".join([PREFIX[step["module"]], *copied])
            gold.append(Step(step["module"], instruction, tuple(spans.get(index, [])), tuple(step["inputs"]),
                             step["object"]))
        rng.shuffle(self.memory)
        self.memory.sort(key=lambda a: int(re.sub(r"\D", "", a) or 0))  # oldest first, as the table lists them
        return Example(text, tuple(self.inputs), tuple(self.memory), self.region, tuple(gold),
                       "+".join(self.template_ids))

    def _distractors(self) -> None:
        for _ in range(self.rng.randint(0, 4)):
            self.memory.append(self.alias(self.rng.choice(("img", "img", "mask", "video", "masks"))))

    # -- sources ---------------------------------------------------------------------------------------------

    def _source(self, kind: str, named: bool) -> _Source:
        """An image or video to work on: named in the text (from memory or this upload) or this turn's upload."""
        prefix = "img" if kind == "image" else self.rng.choice(("video", "video", "vid"))
        alias = self.alias(prefix)
        if named:
            (self.inputs if self.rng.random() < 0.4 else self.memory).append(alias)
            return _Source("@" + alias, alias)
        self.inputs.append(alias)
        return _Source("@" + alias, None)

    # -- slots -----------------------------------------------------------------------------------------------

    def _core(self) -> str:
        """The object itself ("red car"): drawn the same way for every module, so the task-invariant target
        (its embedding) says nothing about the task."""
        rng = self.rng
        noun = rng.choice(NOUNS)
        draw = rng.random()
        adjective = rng.choice(COLOURS) if draw < 0.4 else rng.choice(SIZES) if draw < 0.55 else ""
        return f"{adjective} {noun}".strip()

    def _object(self) -> tuple[str, str]:
        """(how the text says it, the task-free phrase)."""
        rng = self.rng
        core = self._core()
        where = rng.choice(POSITIONS) if rng.random() < 0.12 else ""
        determiner = rng.choice(("the ", "the ", "the ", "", "that ", "this ", "my "))
        return f"{determiner}{core} {where}".strip(), core

    def _region_object(self) -> tuple[str, str]:
        core = self._core()
        return self.rng.choice(_REGION_OBJECTS).format(n=core), core

    def _edit(self, obj: str | None, kinds: Sequence[str] = tuple(_EDITS)) -> str:
        rng = self.rng
        form = rng.choice(_EDITS[rng.choice(kinds)])
        return form.format(o=obj if obj is not None else "{o}", c=rng.choice(COLOURS))

    def _description(self, video: bool) -> tuple[str, str]:
        rng = self.rng
        core = self._core()
        article = "an" if core[0] in "aeiou" else "a"
        action = f" {rng.choice(ACTIONS)}" if video else ""
        scene = f" {rng.choice(SCENES)}" if rng.random() < 0.85 else ""
        return f"{rng.choice((article, article, 'one', 'some'))} {core}{action}{scene}", core

    # -- clauses ---------------------------------------------------------------------------------------------

    def _clause(self, key: str, earlier: list[dict]) -> list[dict]:
        """Append one clause's pieces; return its gold steps (one, or two for `B.two`)."""
        rng = self.rng
        letter, role = key[0], key.partition(".")[2]
        index = len(earlier)
        slots: dict[str, _Piece] = {}
        step: dict = {"module": letter[0]}
        if key == "B.two":
            first, second = self._source("image", True), self._source("image", True)
            obj, core = self._object()
            obj2, core2 = self._object()
            slots.update(img=_Piece(first.phrase, protected=True), img2=_Piece(second.phrase, protected=True),
                         obj=_Piece(obj, copy=index), obj2=_Piece(obj2, copy=index + 1))
            self._fill(self.pick("B.two"), slots)
            return [{"module": "B", "inputs": [first.ref], "object": core},
                    {"module": "B", "inputs": [second.ref], "object": core2}]
        if letter in ("A", "D"):
            desc, core = self._description(video=letter == "D")
            slots["vdesc" if letter == "D" else "desc"] = _Piece(desc, copy=index)
            step.update(inputs=[], object=core)
            self._fill(self.pick(f"{letter}.first"), slots)
            return [step]
        if role in ("seg", "follow"):
            source_step = earlier[-1]
            group = f"{letter}.{role}"
            step["inputs"] = self._follow_inputs(letter, role, earlier)
        else:
            kind = "video" if letter in ("E", "F") else "image"
            named = rng.random() < 0.6
            group = f"{letter}.first" if named else f"{letter}.upload"
            if letter == "C" and key == "Cm":
                named, group = True, "C.mask"
            source = self._source(kind, named)
            if source.phrase is not None:
                slots["vid" if kind == "video" else "img"] = _Piece(source.phrase, protected=True)
            step["inputs"] = [source.ref]
            source_step = None
        region_here = self.region and not self.region_used and letter in REGION_MODULES
        self.region_used = self.region_used or region_here
        if letter in ("B", "E"):
            obj, core = self._region_object() if region_here else self._object()
            slots["obj"] = _Piece(obj, copy=index)
        elif letter in ("C", "F"):
            if key == "Cm":
                mask = self.alias("mask")
                self.memory.append(mask)
                core = self._core()
                phrase = rng.choice(_MASK_OBJECTS).format(n=core, m=mask)
                edit = self._edit(phrase, ("recolour", "remove", "blur", "pixelate", "gray"))
                step["inputs"] = [*step["inputs"], "@" + mask]
            elif role == "seg":
                pronoun = rng.choice(SEG_PRONOUNS)
                edit, core = self._edit(pronoun, ("recolour", "remove", "blur", "pixelate", "gray", "light")), \
                    source_step["object"]
            elif role == "follow":
                if rng.random() < 0.5:
                    edit, core = self._edit(rng.choice(GEN_PRONOUNS)), source_step["object"]
                else:
                    obj, core = self._object()
                    edit = self._edit(obj)
            else:
                obj, core = self._region_object() if region_here else self._object()
                edit = self._edit(obj)
            slots["edit"] = _Piece(edit, copy=index)
        else:  # G
            if source_step is not None and rng.random() < 0.5:
                obj, core = rng.choice(("it", "the scene", "the subject", "the centre")), source_step["object"]
            else:
                obj, core = self._object()
            slots["move"] = _Piece(rng.choice(_MOVES).format(o=obj), copy=index)
        step["object"] = core
        self._fill(self.pick(group), slots)
        return [step]

    def _follow_inputs(self, letter: str, role: str, earlier: list[dict]) -> list[str]:
        previous = len(earlier)  # the step just before, numbered from 1
        if role == "seg":  # edit the segmented picture with its mask: [source of the segmentation, @mask]
            return [*earlier[-1]["inputs"][:1], f"@{previous}"]
        return [f"@{previous}"]

    def _fill(self, template: str, slots: dict[str, _Piece]) -> None:
        rng = self.rng
        verbs = {"seg": SEG, "segd": SEGD, "track": TRACK, "gen": GEN, "vgen": VGEN, "anim": ANIM}
        for part in re.split(r"(\{[a-z0-9]+\})", template):
            if not part:
                continue
            name = part[1:-1] if part.startswith("{") else None
            if name in slots:
                self.pieces.append(slots[name])
            elif name in verbs:
                self.pieces.append(_Piece(rng.choice(verbs[name])))
            else:
                self.pieces.append(_Piece(part))

    # -- noise -----------------------------------------------------------------------------------------------

    def _finish(self) -> tuple[str, dict[int, list[tuple[int, int]]]]:
        """Join the pieces (typos and casing applied); return the text and each step's copied spans."""
        rng = self.rng
        pieces = [_Piece(p.text, p.copy, p.protected) for p in self.pieces]
        for _ in range(rng.choices((0, 1, 2), (0.7, 0.24, 0.06))[0]):
            candidates = [p for p in pieces if not p.protected and re.search(r"[a-z]{4,}", p.text)]
            if candidates:
                piece = rng.choice(candidates)
                piece.text = _typo(piece.text, rng)
        text, spans, offset = "", {}, 0
        for piece in pieces:
            if piece.copy is not None:
                spans.setdefault(piece.copy, []).append((offset, offset + len(piece.text)))
            text += piece.text
            offset += len(piece.text)
        casing = rng.random()
        if casing < 0.12:
            text = text.upper()
        elif casing < 0.45:
            text = text[:1].upper() + text[1:]
        elif casing < 0.55:
            text = re.sub(r"\b([a-z])", lambda m: m[1].upper() if rng.random() < 0.3 else m[1], text)
        return text, spans


_NEIGHBOURS = {"a": "s", "e": "r", "i": "o", "o": "p", "n": "m", "t": "r", "s": "a", "r": "e", "l": "k", "m": "n"}


def _typo(text: str, rng: random.Random) -> str:
    """One keyboard slip in one word of 4+ letters: swap, drop, double or a neighbouring key."""
    matches = list(re.finditer(r"[a-z]{4,}", text))
    word = rng.choice(matches)
    i = rng.randrange(word.start() + 1, word.end() - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if kind == 1:
        return text[:i] + text[i + 1:]
    if kind == 2:
        return text[:i] + text[i] + text[i:]
    return text[:i] + _NEIGHBOURS.get(text[i], "e") + text[i + 1:]


def iter_steps(examples: Sequence[Example]) -> Iterator[tuple[Example, int, Step]]:
    for example in examples:
        for index, step in enumerate(example.steps):
            yield example, index, step
