"""The mini planner's training data, generated from templates: requests with their words tagged.

A request is read the way joint intent and slot-filling models read an utterance: one intent for the whole text
(`plan`, `question`, `vague`, `undo`, `show`) and, for a plan, a tag on every word (`tags.TAGS`: the object to
segment, the words of an edit, a description to generate, the background an edit acts on…). The steps are not in
the data: `compose.compose` builds them from the tagged spans, for the generated requests as for the user's.

Phrasings are clause templates; each template belongs to exactly one split (train, val, test), and so do the
object nouns (`object_nouns`: over a thousand), so the test split is written only in phrasings and about objects
the model never trained on (a quarter of the objects are made-up words). The vocabulary of edits, verbs and
colours is shared by all splits.
Template mini-language: `{slot}` is filled (see `_Writer._slot`); `[words]` are tagged as a segmentation request
(`SEG`), `<words>` as background (`BG`), `(words)` as an edit (`EDIT`), `«words»` as animation (`ANIM`); everything
else is untagged.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .compose import Context, Span, Step, compose

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
Intent = Literal["plan", "question", "vague", "undo", "show"]

@dataclass(frozen=True)
class Example:
    """A request, what the session held when it was written, and its gold reading (intent and tagged spans)."""

    text: str
    intent: Intent
    spans: tuple[Span, ...]
    context: Context
    template: str  # which phrasings wrote it, e.g. "seg#3+conn#1+edit_pron#0"

    @property
    def steps(self) -> tuple[Step, ...]:
        """The gold plan: the composition of the gold spans."""
        return tuple(compose(self.text, self.spans, self.context)) if self.intent == "plan" else ()

    @property
    def modules(self) -> str:
        return "".join(step.module for step in self.steps)


# --- vocabulary ---------------------------------------------------------------------------------------------

NOUNS = (
    "car", "dog", "cat", "cup", "person", "horse", "bird", "tree", "bicycle", "boat", "chair", "ball", "zebra",
    "clock", "bottle", "house", "flower", "bus", "train", "umbrella", "kite", "laptop", "phone", "lamp", "sheep",
    "cow", "elephant", "giraffe", "bench", "guitar", "hat", "bag", "shoe", "apple", "banana", "pizza", "truck",
    "plane", "motorbike", "child", "woman", "man", "vase", "suitcase", "skateboard", "surfboard", "book", "table",
    "sofa", "duck", "fox", "rabbit", "teddy bear", "polar bear", "fire hydrant", "lion", "tiger", "penguin",
    "owl", "parrot", "dolphin", "whale", "shark", "camel", "goat", "pig", "chicken", "frog", "turtle", "snake",
    "butterfly", "bee", "spider", "robot", "rocket", "astronaut", "satellite", "drone", "helicopter", "tractor",
    "scooter", "kayak", "canoe", "sailboat", "submarine", "lighthouse", "windmill", "castle", "bridge", "tower",
    "church", "fountain", "statue", "mailbox", "traffic light", "street sign", "lamp post", "balloon", "candle",
    "teapot", "kettle", "mug", "bowl", "plate", "fork", "spoon", "knife", "violin", "piano", "drum", "trumpet",
    "cello", "microphone", "camera", "television", "keyboard", "mouse", "backpack", "wallet", "watch", "necklace",
    "ring", "glasses", "helmet", "crown", "scarf", "jacket", "dress", "shirt", "boots", "sneaker", "sock",
    "pillow", "blanket", "mirror", "window", "door", "fence", "gate", "ladder", "bucket", "shovel", "barrel",
    "tent", "campfire", "snowman", "cactus", "sunflower", "rose", "tulip", "mushroom", "pumpkin", "strawberry",
    "lemon", "orange", "pineapple", "cake", "donut", "sandwich", "burger", "ice cream", "coffee cup", "wine glass",
    "skier", "runner", "cyclist", "dancer", "surfer", "swimmer", "skater", "football player", "baby", "boy",
    "girl", "grandma", "chef", "police officer", "firefighter", "face", "hand", "hair", "sky", "cloud", "moon",
    "sun", "mountain", "river", "road", "wave", "sand", "grass", "leaf", "rock", "log", "wheel", "licence plate",
    "sign", "flag", "kite surfer", "jellyfish", "octopus", "crab", "deer", "wolf", "bear", "panda", "koala",
    "kangaroo", "flamingo", "peacock", "swan", "eagle", "hummingbird", "squirrel", "hedgehog", "llama", "alpaca",
    "wall", "sea", "floor", "ceiling", "field", "lake", "beach", "building", "street", "fur", "skin", "lips", "logo",
    "text", "watermark", "screen", "roof", "people", "kid", "eyes", "water", "snow", "trees", "power lines",
    "number plate", "tourist", "crowd", "skyline", "curtains", "carpet", "headlights",
)
"""Object nouns written for this generator (see `object_nouns` for all of them)."""
STUFF = frozenset((
    "sky", "water", "grass", "wall", "sea", "floor", "road", "hair", "face", "eyes", "skin", "tree", "trees", "field",
    "building", "street", "car", "person", "people", "man", "woman", "kid", "dog", "cat", "shirt", "dress", "jacket",
    "hat", "logo", "text", "watermark", "sign", "screen", "window", "door", "roof", "fence", "clouds", "cloud", "snow",
    "sand", "leaf", "river", "lake", "beach", "mountain", "flower", "bird", "bus", "boat", "cup", "bottle", "lemon",
    "apple", "cake", "crowd", "power lines", "number plate", "licence plate", "tourist", "curtains", "carpet",
))
"""What photo edits are most often about: a fifth of the objects drawn come from here (those of the split)."""


@functools.cache
def object_nouns() -> tuple[str, ...]:
    """Every object noun the generator names: `NOUNS`, then the ImageNet and COCO category names torchvision ships
    with its weights' metadata (no download), so the tagger meets a thousand real object names, not two hundred.
    A share of them (chosen per seed) appears only in the test split."""
    from torchvision.models import ResNet50_Weights
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = [*ResNet50_Weights.IMAGENET1K_V1.meta["categories"],
             *FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]]
    seen = set(NOUNS)
    extra = []
    for name in names:
        name = name.lower().replace("-", " ")
        if re.fullmatch(r"[a-z]+(?: [a-z]+){0,2}", name) and name not in seen and name != "n a":
            seen.add(name)
            extra.append(name)
    return NOUNS + tuple(extra)
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "pink", "brown", "white", "black",
           "gray", "grey", "gold", "silver", "teal", "navy", "beige", "turquoise", "maroon", "lavender", "crimson",
           "cream", "light blue", "dark green", "navy blue", "bright red", "pale yellow", "hot pink", "olive green",
           "deep purple", "baby blue", "dark grey", "matte black", "burgundy", "coral", "mustard", "ivory", "copper",
           "bronze", "emerald", "indigo", "charcoal", "mint green")
ADJECTIVES = ("big", "small", "tall", "little", "large", "tiny", "old", "shiny", "striped", "wooden", "left",
              "right", "front", "second", "nearest", "furry", "metal", "rusty")
PARTICIPLES = ("standing", "sitting", "walking", "lying", "parked", "hanging", "running", "leaning")
"""Words users put between an object and its place ("the man standing on the left")."""
POSITIONS = ("on the left", "on the right", "in the back", "in front", "in the middle", "near the window",
             "at the top", "at the bottom", "in the corner", "behind the fence", "next to the door",
             "in the background", "in the foreground", "behind the statue", "by the window", "behind her",
             "behind him", "next to her", "in front of him", "behind them")
SCENES = ("on a beach", "in the snow", "at sunset", "in a forest", "on the moon", "in a city street", "under water",
          "in a desert", "on a table", "in the rain", "in a garden", "on a mountain", "at night", "in space",
          "in a kitchen", "by a lake", "in a wheat field", "over a harbour", "in the fog", "on a rooftop")
ACTIONS = ("running", "flying", "spinning", "driving", "jumping", "swimming", "floating", "dancing", "rolling",
           "walking", "sliding", "turning around", "blinking", "waving", "sleeping", "crashing")
STYLES = ("a watercolour", "an oil painting", "a pencil sketch", "a cartoon", "an old photo", "a comic",
          "pop art", "a charcoal drawing", "a neon sign", "a van gogh painting", "pixel art", "an anime still",
          "a vintage postcard", "a blueprint", "a stained glass window", "a claymation scene", "a mosaic",
          "a pastel drawing", "an ink drawing", "a 3d render", "a polaroid", "a woodcut", "a lego model")
MATERIALS = ("golden", "metallic", "wooden", "glassy", "frozen", "shiny", "rusty", "glowing", "furry", "transparent",
             "marble", "old", "wet", "snowy", "sparkly", "matte", "faded", "neon")
COMPARATIVES = ("warmer", "cooler", "brighter", "darker", "sharper", "softer", "more vivid", "less saturated",
                "more colourful", "moodier", "lighter", "more contrasty", "blurrier", "less noisy", "greener", "bluer",
                "redder", "less bright", "more muted", "crisper")
QUALITIES = ("dramatic", "vivid", "colourful", "saturated", "contrasty", "moody", "realistic", "natural",
             "visible", "vibrant", "faded", "detailed")
MOODS = ("night", "winter", "summer", "sunset", "rainy", "foggy", "snowy", "autumn", "spring", "stormy", "dreamy",
         "sunny", "gloomy", "golden hour", "underwater", "futuristic")
THINGS = ("a party hat", "a crown", "sunglasses", "a scarf", "a red bow", "a top hat", "wings", "a flower",
          "a sunset", "a rainbow", "snow", "a beach", "fireworks", "a moustache", "a cape", "stars",
          "clouds", "a forest", "a brick wall", "flames")
SURFACES = ("sky", "wall", "walls", "floor", "water", "sea", "road", "grass", "ground", "ceiling", "field", "lake",
            "clouds", "mountains", "river", "sand", "snow", "street", "trees", "hills")
SCENERY = ("a starry night", "a sunset", "a stormy sky", "a clear blue sky", "a night sky", "a galaxy",
           "the northern lights", "a brick wall", "marble", "wooden planks", "fresh snow", "sand", "a meadow",
           "a cityscape", "autumn leaves", "a waterfall", "lava", "a tiled floor")
SURFACE_EDITS = ("replace {o} with {u}", "swap {o} for {u}", "change {o} to {u}", "turn {o} into {u}",
                 "make {o} look like {u}", "make {o} {c}", "make {o} {k}", "recolour {o} {c}", "darken {o}",
                 "brighten {o}", "blur {o}", "remove {o}", "replace {o} by {u}")
"""Edits of a surface of the scene ("replace the sky with a starry night"): the surface is the object edited, never
the background, though the words that replace it are the same as a new background's."""

VERBS: dict[str, tuple[str, ...]] = {
    "seg": ("segment", "cut out", "outline", "mask", "select", "isolate", "extract", "pick out", "separate",
            "trace", "mask out", "segmentate", "cutout", "find", "highlight", "circle", "get", "detect"),
    "segd": ("segmented", "cut out", "masked", "outlined", "isolated", "selected", "extracted", "separated"),
    "track": ("track", "follow", "segment", "mask", "outline", "cut out", "isolate", "trace", "keep track of"),
    "gen": ("generate", "create", "draw", "make", "render", "produce", "paint", "design", "sketch",
            "come up with", "illustrate", "imagine"),
    "vgen": ("generate a video of", "make a clip of", "create a video showing", "produce a short video of",
             "render a video of", "make a movie of", "generate a clip of", "create footage of", "shoot a video of",
             "make an animation of", "film"),
    "anim": ("animate", "turn into a video", "bring to life", "make a video from", "make a clip from",
             "convert to video", "turn into a clip", "make a moving video from", "make a gif from", "animate"),
}
MOVES = ("zoom in", "zoom out", "pan left", "pan right", "slowly zoom in", "push in", "pull back", "pan up",
         "pan down", "zoom into it", "slowly pan left", "a slow zoom out", "zooming in", "panning left",
         "with a slow zoom", "orbit around it", "tilt up", "a dolly zoom")
MOTIONS = ("the clouds drift", "the water ripples", "the trees sway", "the leaves blow in the wind", "the flag waves",
           "the waves roll in", "her hair moves", "the smoke rises", "the lights flicker", "the snow falls",
           "the grass moves in the wind", "the river flows", "the candle flickers", "the birds fly away")
"""What moves in an animation, said as a sentence ("so the clouds drift")."""
EDITS: dict[str, tuple[str, ...]] = {
    # {o} the object, {c} a colour, {t} a thing to add or swap in; whole phrase tagged EDIT except {o}
    "recolour": ("make {o} {c}", "paint {o} {c}", "recolour {o} {c}", "recolor {o} to {c}", "turn {o} {c}",
                 "change {o} to {c}", "colour {o} {c}", "dye {o} {c}", "change the colour of {o} to {c}",
                 "tint {o} {c}", "set {o} to {c}", "give {o} a {c} colour", "make {o} look {c}"),
    "remove": ("remove {o}", "erase {o}", "delete {o}", "get rid of {o}", "take out {o}", "eliminate {o}",
               "make {o} disappear", "wipe out {o}"),
    "blur": ("blur {o}", "blur out {o}", "soften {o}", "make {o} out of focus", "make {o} blurry", "smudge {o}"),
    "pixelate": ("pixelate {o}", "censor {o}", "mosaic {o}", "hide {o}", "anonymise {o}", "black out {o}",
                 "redact {o}", "cover up {o}"),
    "gray": ("make {o} black and white", "make {o} grayscale", "desaturate {o}", "make {o} monochrome",
             "turn {o} gray"),
    "light": ("brighten {o}", "make {o} brighter", "darken {o}", "make {o} darker", "lighten {o}",
              "make {o} dark", "make {o} glow"),
    "style": ("give {o} a sepia look", "turn {o} into {s}", "make {o} look like {s}", "make {o} look vintage",
              "cartoonify {o}", "render {o} as {s}", "give {o} the look of {s}", "style {o} like {s}",
              "redo {o} as {s}", "make {o} into {s}", "apply {s} style to {o}", "transform {o} into {s}"),
    "adjust": ("make {o} more {q}", "make {o} less {q}", "make {o} look more {q}", "give {o} a more {q} look",
               "make {o} a bit more {q}"),
    "texture": ("make {o} look {m}", "make {o} {m}", "give {o} a {m} look", "turn {o} {m}", "change {o} to {m}"),
    "comparative": ("make {o} {k}", "make {o} a bit {k}", "make {o} look {k}", "make {o} slightly {k}",
                    "make {o} a little {k}", "make {o} much {k}"),
    "replace": ("replace {o} with {t}", "swap {o} for {t}", "change {o} into {t}", "turn {o} into {t}",
                "replace {o} by {t}", "swap out {o} for {t}"),
}
SHORT_EDITS = ("make {o} {c}", "turn {o} {c}", "make {o} {k}", "paint {o} {c}", "make {o} a bit {k}",
               "make {o} a little {k}", "make {o} look {k}", "make {o} slightly {k}", "colour {o} {c}",
               "make {o} much {k}", "{k}", "a bit {k}", "a little {k}", "slightly {k}", "make {o} {m}",
               "make {o} look {m}", "try {c}", "try {c} instead", "{c} instead", "how about {c}", "maybe {c}",
               "in {c} instead")
"""A colour or a comparative said of "it" in a few words ("make it gold", "make it a bit warmer"): without them
the intent head reads an unfamiliar "make it <word>" as vague, like "make it pop"."""
ADDS = ("put {t} on {o}", "add {t} to {o}", "give {o} {t}", "place {t} on {o}")
"""Additions: the whole phrase, object included, is the edit (nothing is segmented first)."""
WHOLE = ("make {w} look like {s}", "make {w} {s}", "turn {w} into {s}", "render {w} as {s}", "make {w} look {m}",
         "give {w} a {m} look", "add a {c} tint to {w}", "make {w} more colourful", "make {w} moody",
         "make {w} look like it was taken at night", "make {w} look like winter", "add a glow to {w}",
         "make {w} a {e} scene", "turn {w} into a {e} scene", "make {w} look {e}", "give {w} a {e} mood",
         "make {w} black and white", "make {w} grayscale", "turn {w} into a pencil sketch", "give {w} a sepia look",
         "brighten {w}", "make {w} brighter", "darken {w}", "sharpen {w}", "invert the colours of {w}",
         "invert {w}", "make {w} warmer", "make {w} cooler", "cartoonify {w}", "make {w} look vintage",
         "make {w} look like a cartoon", "give {w} a cartoon look", "make {w} sepia", "desaturate {w}",
         "boost the contrast of {w}", "make {w} look like an oil painting", "turn {w} {c}", "make {w} {c}",
         "blur {w}", "pixelate {w}", "add more contrast to {w}", "make {w} a pencil sketch", "tint {w} {c}",
         "denoise {w}", "make {w} sharper", "make {w} less blurry", "increase the saturation of {w}", "cool {w} down",
         "warm {w} up", "make {w} look sharper", "sharpen {w} a little", "make {w} less noisy", "make {w} cooler",
         "make {w} {c}", "turn {w} {c}")
WHOLE_WORDS = ("it", "the photo", "this picture", "the image", "the whole photo", "the whole image", "this",
               "everything", "the picture", "my photo", "the entire image", "the result", "the new image")
VIDEO_WORDS = ("it", "the video", "this clip", "the clip", "the whole video", "the footage", "my video", "this")
PRONOUNS = ("it", "them", "that", "him", "her", "the mask", "the segmented part", "the cutout", "the selection",
            "that region", "the masked area")
BACKGROUNDS = ("the background", "everything else", "the rest", "the rest of the image", "the surroundings",
               "the backdrop", "everything around it", "everything around {p}", "the area around it", "all around it",
               "the rest of the picture", "the background behind it", "the scenery", "what's behind it")
BG_VERBS = ("blur", "darken", "remove", "pixelate", "desaturate", "erase", "brighten", "grey out", "recolour",
            "blur out", "get rid of", "crop out", "white out", "fade out")

# --- clause templates by group --------------------------------------------------------------------------------

CLAUSES: dict[str, tuple[str, ...]] = {
    # segmentation requests: [seg words] {obj}
    "seg": ("[{seg}] {obj}", "[{seg}] {obj} for me", "can you [{seg}] {obj}?", "i need [a mask of] {obj}",
            "[{seg}] {obj} in the picture", "[{seg}] {obj} in this photo", "{obj}: [{seg}] it",
            "find {obj} and [{seg}] it", "i want {obj} [{segd}]", "[{seg}] {obj} here", "[give me a mask of] {obj}",
            "could you [{seg}] {obj} please", "[{seg}] {obj} from the background", "[{seg}] {obj} in the box",
            "[{seg}] just {obj}", "[{seg}] {obj} out", "help me [{seg}] {obj}", "[{seg}] {obj} i marked",
            "[{seg}] {obj} i drew around", "i drew a box around {obj}, [{seg}] that",
            "[{seg}] {obj} in {src}", "in {src}, [{seg}] {obj}", "{src}: [{seg}] {obj}", "[mask of] {obj} please",
            "[{seg}] {obj} ({src})", "{obj} should be [{segd}]", "where is {obj}? [{seg}] it"),
    "seg_it": ("[{seg}] it", "[{seg}] that", "[{seg}] what i marked", "[{seg}] the boxed area",
               "[{seg}] the thing in the box", "[{seg}] the selected object", "[{seg}] this"),
    "track": ("[{track}] {obj}", "[{track}] {obj} through the clip", "[{track}] {obj} in every frame",
              "[{track}] {obj} throughout the video", "[{seg}] {obj} in every frame", "[{track}] {obj} in this clip",
              "[{track}] {obj} across all frames", "can you [{track}] {obj} in my video", "[{track}] {obj} in {src}",
              "in {src}, [{track}] {obj} over time", "i need {obj} [{segd}] in every frame",
              "[per-frame masks of] {obj}", "[{track}] {obj} frame by frame"),
    "more": ("and {obj} too", "now {obj}", "{obj} as well", "also {obj}", "and {obj}", "now the one {pos}",
             "the one {pos} too", "what about {obj}?", "{obj} too please", "same for {obj}"),
    # edits of an object (segmented first): {edit} is an edit phrase around {obj}
    "edit_obj": ("{edit}", "{edit} please", "can you {edit}?", "i want to {edit}", "{edit} for me",
                 "could you {edit}", "{edit} in this photo", "{edit} in the picture", "{obj}: {edit_it}",
                 "{edit} in {src}", "in {src}, {edit}", "{src}: {edit}", "please {edit}", "{edit} here",
                 "help me {edit}", "i'd like to {edit}", "{edit} in every frame", "{edit} throughout the video",
                 "{edit} in the clip"),
    # edits after a segmentation in the same request, or of the latest result: the object is a pronoun
    "edit_pron": ("{edit_it}", "{edit_it} afterwards", "then {edit_it}", "use the mask to {edit_it}",
                  "{edit_it} using the mask", "and {edit_it}", "{edit_it} there", "with that mask, {edit_it}",
                  "{edit_it} in every frame", "{edit_it} too", "{edit_it} a bit more", "{edit_it} instead"),
    "edit_short": ("{edit_it}", "{edit_it}", "{whole}", "{whole}", "{edit_it} please", "{whole} please",
                   "{whole} now", "now {edit_it}", "just {whole}", "{short}", "{short}", "now {short}",
                   "{short} instead", "just {short}", "{short} now"),
    "edit_whole": ("{whole}", "{whole} please", "can you {whole}?", "{whole} for me", "i want to {whole}",
                   "could you {whole}", "please {whole}", "{whole} in {src}", "{src}: {whole}", "{whole} a bit",
                   "{whole} instead", "{whole} too", "{whole} a bit more"),
    "edit_add": ("{add}", "{add} please", "can you {add}?", "i want you to {add}", "{add} in the picture"),
    # edits of the background: <bg words> around an object, or the object kept and the rest edited
    "edit_bg": ("{bgedit}", "{bgedit} please", "{bgedit} behind {obj}", "{verb_bg} <everything except> {obj}",
                "{verb_bg} <everything but> {obj}", "[keep] {obj} sharp and {bgedit}", "[keep] {obj} and {bgedit}",
                "[cut] {obj} [out] and {bgedit}", "{bgedit} but keep {obj}", "{bgedit}, keep {obj} as it is",
                "[keep] {obj} in colour and {bgedit}", "(make) <everything except> {obj} {c}", "{bgedit} around {obj}",
                "{verb_bg} <the area around> {obj}", "(make) <the rest> {c} but [keep] {obj}",
                "(put) {obj} (on a) {c} <background>", "(give) {obj} (a) {c} <background>",
                "(change) <the background> (to) {c} behind {obj}", "(put) {obj} (in front of a) {c} <backdrop>",
                "{bgedit} but keep {obj} in colour", "(set) <the background> (to) {c}, not {obj}",
                "[keep only] {obj} and {bgedit}", "{bgedit} and [keep only] {obj}", "{bgedit} so only {obj} is left"),
    "edit_bg_it": ("{bgedit}", "now {bgedit}", "{bgedit} instead", "{verb_bg} <everything except it>",
                   "{verb_bg} <everything but {p}>", "{bgedit} too", "and {bgedit}",
                   "(put) {p} (on a) {c} <background>", "(change) <the background> (to) {c}",
                   "(give) {p} (a) {c} <background>"),
    # another object, same kind of edit, said in a few words after an edit ("and the door blue")
    "edit_surface": ("{surface}", "{surface} please", "can you {surface}?", "{surface} in this photo",
                     "i want to {surface}", "{surface} for me", "please {surface}", "could you {surface}",
                     "{surface} in the picture", "{surface} in every frame"),
    "edit_more": ("and {obj} {c}", "{obj} {c} too", "now {obj} {c}", "and {obj} {c} as well", "also {obj} {c}",
                  "{obj} in {c} too", "now do {obj} in {c}", "same for {obj}, {c}"),
    # generation
    "gen": ("{gen} {desc}", "i'd love a picture of {desc}", "can i get an image of {desc}",
            "{desc} please, as a picture", "make art of {desc}", "{gen} me {desc}", "generate: {desc}",
            "a photo of {desc} please", "paint me {desc}", "i want an image with {desc}", "{gen} an image of {desc}",
            "{gen} a picture of {desc}", "{gen} a photo of {desc}",
            "i want a picture of {desc}", "make me an image showing {desc}", "picture of {desc}",
            "show me a new image of {desc}", "an image of {desc}", "i need an illustration of {desc}",
            "could you {gen} {desc} for me", "new image: {desc}", "{gen} a drawing of {desc}",
            "give me a picture with {desc}", "{gen} a watercolour of {desc}", "{gen} {desc} please"),
    "vgen": ("{vgen} {vdesc}", "i'd like a clip of {vdesc}", "animate a scene of {vdesc}", "a video: {vdesc}",
             "can i get footage of {vdesc}", "{vgen} {vdesc} please", "i want a video of {vdesc}",
             "{vdesc} as a video", "can you {vgen} {vdesc}",
             "make a short clip: {vdesc}", "video of {vdesc}", "i need footage of {vdesc}", "new video: {vdesc}",
             "a clip showing {vdesc}", "show me a video where {vdesc}", "make a 5 second video of {vdesc}"),
    "anim": ("{anim} {w} and {move}", "{anim} {w}: {move}", "{anim} {w}, {move}", "{anim} {w} with {move}",
             "«set» {w} «in motion» {move}", "«make» {w} «into an animation»", "«give» {w} «some motion»",
             "«make» {w} «come alive»", "«make a moving picture of» {w}", "«let» {w} «move»: {move}",
             "«turn» {w} «into a gif»", "«create a video from» {w}, {move}", "«add camera motion to» {w}: {move}",
             "{anim} {w}", "{anim} {w} {move}", "{anim} it", "then {anim} it", "and {anim} {w}",
             "{move} «in a video made from» {w}", "«turn» {w} «into a short clip» {move}", "{anim} {src} and {move}",
             "«make» {w} «move:» {move}", "{anim} the result", "now {anim} it", "{anim} it, {move}",
             "{anim} {w} so {motion}", "{anim} {w} so that {motion}", "{anim} {w} and make {motion}",
             "{anim} it so {motion}", "«make» {w} «move so» {motion}"),
}
QUESTIONS = (
    "what is in {w}?", "what's in this picture", "how many {noun}s are there?", "how many {noun}s are in {w}",
    "describe {w}", "describe what you see", "what colour is the {noun}?", "what color is it?",
    "is there a {noun} in {w}", "are there any {noun}s here?", "what happens in {w}?", "what happens here?",
    "where is the {noun}?", "where is the {noun} {pos}?", "caption {w}", "caption {w} for me",
    "write a caption for {w}", "tell me about {w}", "how big is {w}", "how big is it?", "what size is {w}",
    "what can you do?", "who is in {w}?", "can you see a {noun}?", "which {noun} is bigger?",
    "what is the {noun} doing?", "explain {w}", "what kind of {noun} is that?", "is it daytime in {w}?",
    "does {w} show a {noun}?", "what's happening in {w}", "what is this?", "count the {noun}s",
    "how long is the video?", "what are the main colours?", "which objects are in {w}?",
    "what are you able to do?", "what can this do?", "what features do you have?", "what do you see?",
    "is this a {noun}?", "what is the {noun} made of?", "how do i use this?",
)
VAGUE = (
    "make it better", "fix this", "fix it", "do something cool with it", "change the thing", "edit", "hmm",
    "improve it", "can you help?", "do your magic", "make it nicer", "enhance", "something", "do something",
    "change it", "edit this", "work on this photo", "make it pop", "make it look good", "surprise me", "hello",
    "hi there", "ok", "what now?", "go on", "do the thing", "make it awesome", "help", "idk, whatever",
    "make it more interesting", "modify it", "adjust it", "tweak the image", "change something",
    "can you improve this?", "make it look better",
)
UNDOS = (
    "undo", "undo that", "go back", "revert", "go back to the original", "undo the last edit", "take that back",
    "i liked it better before", "revert to the previous version", "undo the animation", "restore the original",
    "back to the previous one", "cancel that change", "undo the last step", "undo it", "revert that",
    "go back one step", "that's wrong, undo", "please undo the last thing you did", "put it back the way it was",
    "reset to the original",
    "roll back the last change", "back to before", "remove the last edit",
    "discard the last change", "revert the last change", "cancel the last edit", "never mind, undo it",
)
SHOWS = (
    "show me the mask again", "show the original again", "show me the masks", "show me the first photo",
    "let me see the result again", "display the mask", "can i see the original?", "show it again",
    "bring up the last image", "show the mask", "show me the original picture", "show the last result",
    "let me see the masks again", "open the first image again", "show me what you made", "show the video again",
    "display the original", "show me the previous image", "can you show the mask?", "see the mask again",
    "give me the mask again", "send me the mask", "i want to see the mask", "can i have the cutout again",
    "where's the mask?", "show me the cutout", "give me the original back", "let me look at the first image",
)
FOLLOW_PRE = ("", "", "", "now ", "and ", "thanks! now ", "ok, ", "great, now ", "perfect. ", "also ", "next, ",
              "cool. ", "nice, now ", "alright, ", "hmm, ", "actually, ")
POLITE_PRE = ("", "", "", "", "please ", "could you ", "can you please ", "hey, ", "i'd like you to ", "kindly ",
              "hi! ", "would you ", "ok so ")
POLITE_POST = ("", "", "", "", " please", " thanks", " thank you!", "!", ".", " asap", " pls", " if you can", " :)",
               "?", "!!!")
CONNECTORS = (", then ", " and then ", ". then ", "; after that ", " and ", ", and afterwards ", ". next, ",
              " then ", ", followed by: ", " - then ", ". after that, ", ", finally ", ". once done, ", ", next ",
              " and after that ", ". also ", " & then ", ", after which ", ", ", ". ", " and also ", ", and ")

# Plans: (weight, clause groups in order, media). Media: which kind of picture the request works on.
PLANS: tuple[tuple[float, tuple[str, ...], str], ...] = (
    (1.0, ("seg",), "image"), (0.4, ("seg_it",), "image"), (1.0, ("track",), "video"),
    (0.5, ("more",), "image"), (0.3, ("more",), "video"),
    (0.7, ("edit_surface",), "image"), (0.2, ("edit_surface",), "video"),
    (2.6, ("edit_obj",), "image"), (1.0, ("edit_obj",), "video"), (0.9, ("edit_pron",), "image"),
    (0.5, ("edit_pron",), "video"), (0.9, ("edit_whole",), "image"), (0.6, ("edit_whole",), "video"),
    (0.4, ("edit_add",), "image"), (1.6, ("edit_short",), "image"), (0.4, ("edit_short",), "video"),
    (1.0, ("edit_bg",), "image"), (0.6, ("edit_bg",), "video"),
    (0.6, ("edit_bg_it",), "image"), (0.3, ("edit_bg_it",), "video"),
    (0.8, ("gen",), "none"), (0.9, ("vgen",), "none"), (0.8, ("anim",), "image"),
    (1.2, ("seg", "edit_pron"), "image"), (0.7, ("track", "edit_pron"), "video"),
    (0.4, ("seg_it", "edit_pron"), "image"),
    (0.6, ("seg", "edit_bg_it"), "image"), (0.4, ("track", "edit_bg_it"), "video"),
    (0.5, ("seg", "seg_more"), "image"), (0.4, ("edit_more",), "image"),
    (0.3, ("edit_obj", "edit_more"), "image"), (0.4, ("seg", "anim"), "image"), (0.5, ("edit_obj", "anim"), "image"),
    (0.4, ("edit_whole", "anim"), "image"), (0.4, ("edit_obj", "edit_bg_it"), "image"),
    (0.5, ("gen", "anim"), "none"), (0.5, ("gen", "edit_whole_it"), "none"), (0.3, ("gen", "seg_gen"), "none"),
    (0.4, ("vgen", "edit_whole_it"), "none"), (0.3, ("vgen", "track_gen"), "none"),
    (0.5, ("seg", "edit_pron", "edit_bg_it"), "image"), (0.4, ("seg", "edit_pron", "anim"), "image"),
    (0.3, ("gen", "edit_whole_it", "anim"), "none"), (0.3, ("edit_obj", "edit_bg_it", "anim"), "image"),
)
INTENT_WEIGHTS = {"plan": 0.78, "question": 0.07, "vague": 0.05, "undo": 0.05, "show": 0.05}

# groups whose phrasings live in the CLAUSES table under another name
_ALIASES = {"seg_more": "more", "edit_whole_it": "edit_pron", "seg_gen": "seg", "track_gen": "track"}


def template_splits(seed: int = 0) -> dict[str, dict[Split, list[int]]]:
    """Which phrasings of each group (clauses, connectors, intents' sentences, nouns) belong to which split."""
    rng = random.Random(f"splits-{seed}")
    groups = {**{key: len(value) for key, value in CLAUSES.items()}, "conn": len(CONNECTORS),
              "question": len(QUESTIONS), "vague": len(VAGUE), "undo": len(UNDOS), "show": len(SHOWS),
              "noun": len(object_nouns())}
    out: dict[str, dict[Split, list[int]]] = {}
    for key, count in groups.items():
        order = list(range(count))
        rng.shuffle(order)
        n_test = max(2, round(count * 0.15))
        n_val = max(1, round(count * 0.1))
        out[key] = {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
                    "train": sorted(order[n_test + n_val:])}
    return out


def generate(split: Split, count: int, seed: int = 0) -> list[Example]:
    """`count` examples of `split`, written only in that split's phrasings; the same for the same seed."""
    splits = template_splits(seed)
    rng = random.Random(f"{split}-{seed}")
    intents = list(INTENT_WEIGHTS)
    weights = list(INTENT_WEIGHTS.values())
    return [_Writer(rng, splits, split).write(rng.choices(intents, weights)[0]) for _ in range(count)]


def generate_splits(sizes: dict[Split, int], seed: int = 0) -> dict[Split, list[Example]]:
    return {split: generate(split, n, seed) for split, n in sizes.items()}


@dataclass
class _Piece:
    text: str
    tag: str | None = None
    begins: bool = True  # a tagged piece that starts a new span (else it continues the last span of its tag)
    protected: bool = False  # aliases: never given a typo


_EDIT_FORMS = [form for forms in EDITS.values() for form in forms]


@dataclass
class _Writer:
    rng: random.Random
    splits: dict[str, dict[Split, list[int]]]
    split: Split
    pieces: list[_Piece] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    upload: str | None = None
    media: str = "image"
    region: bool = False
    template_ids: list[str] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)  # tags the current clause has already started a span of

    def pick(self, group: str, table: Sequence[str]) -> str:
        index = self.rng.choice(self.splits[group][self.split])
        self.template_ids.append(f"{group}#{index}")
        return table[index]

    def noun(self) -> str:
        if self.rng.random() < 0.25:
            return _pseudo_noun(self.rng)  # a word never seen: the tagger must read the context, not the word
        pool = self.splits["noun"][self.split]
        if self.rng.random() < 0.2:
            pool = _stuff_pool(tuple(pool)) or pool
        index = self.rng.choice(pool)
        # an extra name is redrawn half the time, so the common nouns written here come up more often
        while self.rng.random() < 0.5 and index >= len(NOUNS):
            index = self.rng.choice(pool)
        return object_nouns()[index]

    def write(self, intent: Intent) -> Example:
        rng = self.rng
        follow = rng.random() < 0.45  # a later turn of a session: no upload, the session holds earlier results
        if intent == "plan":
            _, groups, media = rng.choices(PLANS, [w for w, _, _ in PLANS])[0]
            self.media = media if media != "none" else "image"
            if media != "none" and not follow:
                self.upload = media
            self.region = media != "none" and rng.random() < 0.45
            self.pieces.append(_Piece(rng.choice(FOLLOW_PRE if follow else POLITE_PRE)))
            for position, group in enumerate(groups):
                if position:
                    self.pieces.append(_Piece(self.pick("conn", CONNECTORS)))
                self._clause(group)
            self.pieces.append(_Piece(rng.choice(POLITE_POST)))
        else:
            table = {"question": QUESTIONS, "vague": VAGUE, "undo": UNDOS, "show": SHOWS}[intent]
            self.media = rng.choice(("image", "image", "video"))
            self.upload = None if follow or intent in ("undo", "show") else self.media
            sentence = self.pick(intent, table)
            self.pieces.append(_Piece(rng.choice(FOLLOW_PRE) if follow else ""))
            self._fill(sentence)
            self.pieces.append(_Piece(rng.choice(("", "", "?", ".", " please", "!"))))
        text, spans = self._finish()
        memory = self._memory(follow or intent in ("undo", "show"))
        context = Context(upload=self.upload, memory=memory, region=self.region)
        return Example(text, intent, spans if intent == "plan" else (), context, "+".join(self.template_ids))

    def _memory(self, follow: bool) -> tuple[str, ...]:
        """The session's aliases: some earlier results on a follow-up (a mask after a segmentation…)."""
        rng = self.rng
        out = list(self.names)
        if follow:
            kinds = (("img", "mask", "img") if self.media == "image" else ("video", "masks", "video"))
            out += [f"{kind}{rng.randint(1, 3)}" for kind in kinds[:rng.randint(1, 3)]]
        if self.upload:
            out.append(f"{'img' if self.upload == 'image' else 'video'}{rng.randint(1, 4)}")
        return tuple(dict.fromkeys(out))

    # -- slots -----------------------------------------------------------------------------------------------

    def _object(self) -> str:
        rng = self.rng
        noun = self.noun()
        if rng.random() < 0.2:
            noun = _plural(noun)  # "the tulips", "the licence plates"
        if rng.random() < 0.35:
            # plainly "the lemon", as most requests name an object: "make the lemon green" must not read like
            # "make the photo green" or "make the selection green", whose words are always the same few
            return f"the {noun}"
        draw = rng.random()
        adjective = rng.choice(COLOURS) if draw < 0.2 else rng.choice(ADJECTIVES) if draw < 0.3 else ""
        where = rng.choice(POSITIONS) if rng.random() < 0.12 else ""
        if where and rng.random() < 0.3:
            where = f"{rng.choice(PARTICIPLES)} {where}"  # "the man standing on the left"
        elif not where and rng.random() < 0.06:
            where = rng.choice((f"of the {self.noun()}", f"on the {self.noun()}", f"in the {self.noun()}",
                                "of everyone", f"of all the {_plural(self.noun())}"))  # "the plates of the cars"
        owner = rng.random() < 0.06
        determiner = rng.choice(("the ", "the ", "the ", "the ", "", "that ", "this ", "my ", "her ", "his ", "every ",
                                 "all the ", "each ", "both "))
        core = f"{adjective} {noun}".strip()
        if owner:
            core = f"{self.noun()}'s {noun}"
        elif rng.random() < 0.05:
            core = f"{core} and {self.noun()}"  # one thing named twice: "the cup and saucer"
        elif rng.random() < 0.05:
            core = rng.choice(("object", "shape", "thing", "item", "main object", "subject", "figure"))
        return f"{determiner}{core} {where}".strip()

    def _source(self) -> str:
        """An alias the user names: one of the session's (or this turn's upload)."""
        rng = self.rng
        prefix = "img" if self.media == "image" else rng.choice(("video", "vid"))
        alias = f"{prefix}{rng.randint(1, 6)}"
        if rng.random() < 0.3:
            alias = "@" + alias
        self.names.append(alias.lstrip("@"))
        return alias

    def _description(self, video: bool) -> str:
        rng = self.rng
        noun = self.noun()
        adjective = rng.choice(COLOURS + ADJECTIVES) + " " if rng.random() < 0.35 else ""
        article = "an" if (adjective or noun)[0] in "aeiou" else "a"
        action = f" {rng.choice(ACTIONS)}" if video or rng.random() < 0.2 else ""
        scene = f" {rng.choice(SCENES)}" if rng.random() < 0.8 else ""
        extra = f" wearing {rng.choice(THINGS)}" if rng.random() < 0.1 else ""
        return f"{rng.choice((article, article, 'one', 'some', 'two'))} {adjective}{noun}{extra}{action}{scene}"

    def _tagged(self, text: str, tag: str | None) -> None:
        """A piece of the request; a tagged one starts a new span unless its clause already opened one of its tag
        (objects always start their own)."""
        begins = tag == "OBJ" or tag not in self.opened
        if tag is not None:
            self.opened.add(tag)
        self.pieces.append(_Piece(text, tag, begins))

    def _edit(self, obj: str | None) -> None:
        """An edit phrase: its words tagged EDIT, the object (when it is not a pronoun) tagged OBJ."""
        self._edit_form(self.rng.choice(_EDIT_FORMS), obj)

    def _edit_form(self, form: str, obj: str | None, object_tag: str | None = "OBJ") -> None:
        rng = self.rng
        for part in re.split(r"(\{[a-z]\})", form):
            if part == "{o}":
                # "it" mostly: "the selection", "the mask"… are a few fixed words, "the <noun>" is open-ended
                pronoun = rng.choice(PRONOUNS[:5] if rng.random() < 0.6 else PRONOUNS)
                self._tagged(pronoun if obj is None else obj, None if obj is None else object_tag)
            elif part:
                for name, choices in (("{c}", COLOURS), ("{t}", THINGS), ("{s}", STYLES), ("{m}", MATERIALS),
                                      ("{e}", MOODS), ("{q}", QUALITIES), ("{k}", COMPARATIVES),
                                      ("{u}", SCENERY)):
                    part = part.replace(name, rng.choice(choices))
                self._tagged(part, "EDIT")

    # -- clauses ---------------------------------------------------------------------------------------------

    def _clause(self, group: str) -> None:
        self.opened = set()
        group = _ALIASES.get(group, group)
        self._fill(self.pick(group, CLAUSES[group]))

    def _fill(self, template: str) -> None:
        for part in re.split(r"(\{[a-z_]+\}|\[[^\]]*\]|<[^>]*>|\([^)]*\)|«[^»]*»)", template):
            if not part:
                continue
            tag = {"[": "SEG", "<": "BG", "(": "EDIT", "«": "ANIM"}.get(part[0])
            if tag:
                for inner in re.split(r"(\{[a-z_]+\})", part[1:-1]):
                    if inner:
                        self._tagged(self._word(inner[1:-1]) if inner.startswith("{") else inner, tag)
            elif part.startswith("{"):
                self._slot(part[1:-1])
            else:
                self._tagged(part, None)

    def _word(self, name: str) -> str:
        """A verb or pronoun slot inside tagged words."""
        return self.rng.choice(VERBS[name] if name in VERBS else PRONOUNS[:5])

    def _slot(self, name: str) -> None:
        rng = self.rng
        tagged = self._tagged
        if name in ("seg", "segd", "track", "gen", "vgen"):
            tagged(rng.choice(VERBS[name]), None)
        elif name == "anim":
            tagged(rng.choice(VERBS["anim"]), "ANIM")
        elif name == "move":
            tagged(rng.choice(MOVES), "ANIM")
        elif name == "motion":
            tagged(rng.choice(MOTIONS), "ANIM")
        elif name == "obj":
            tagged(self._object(), "OBJ")
        elif name == "noun":
            tagged(self.noun(), None)
        elif name == "pos":
            tagged(rng.choice(POSITIONS), "OBJ")
        elif name == "src":
            self.pieces.append(_Piece(self._source(), protected=True))
        elif name == "desc":
            tagged(self._description(False), "GEN")
        elif name == "vdesc":
            tagged(self._description(True), "VGEN")
        elif name == "edit":
            self._edit(self._object())
        elif name == "edit_it":
            self._edit(None)
        elif name == "surface":
            surface = rng.choice(SURFACES)
            self._edit_form(rng.choice(SURFACE_EDITS), rng.choice(("the ", "the ", "the ", "the whole ", "")) + surface)
        elif name == "short":
            self._edit_form(rng.choice(SHORT_EDITS), None)
        elif name == "whole":
            form = rng.choice(WHOLE)
            whole = "it" if rng.random() < 0.35 else rng.choice(VIDEO_WORDS if self.media == "video" else WHOLE_WORDS)
            self._edit_form(form.replace("{w}", "{o}"), whole, object_tag=None)
        elif name == "add":
            self._edit_form(rng.choice(ADDS), self._object(), object_tag="EDIT")
        elif name == "verb_bg":
            tagged(rng.choice(BG_VERBS), "EDIT")
        elif name == "bgedit":
            verb = rng.choice((*BG_VERBS, "make", "make", "replace"))
            background = rng.choice(BACKGROUNDS).replace("{p}", rng.choice(PRONOUNS[:5]))
            tagged(verb, "EDIT")
            tagged(" ", None)
            tagged(background, "BG")
            if verb == "make":
                tagged(" " + rng.choice((*COLOURS, "black and white", "dark", "blurry", "grayscale")), "EDIT")
            elif verb == "replace":
                tagged(" with " + rng.choice(THINGS[8:]), "EDIT")
        elif name == "c":
            tagged(rng.choice(COLOURS), "EDIT")
        elif name == "p":
            tagged(rng.choice(PRONOUNS[:5]), None)
        elif name == "w":
            tagged(rng.choice(WHOLE_WORDS if self.media == "image" else VIDEO_WORDS), None)
        else:
            raise KeyError(f"unknown template slot {{{name}}}")

    # -- noise -----------------------------------------------------------------------------------------------

    def _finish(self) -> tuple[str, tuple[Span, ...]]:
        """Join the pieces (typos and casing applied); return the text and its tagged spans."""
        rng = self.rng
        pieces = [_Piece(p.text, p.tag, p.begins, p.protected) for p in self.pieces]
        for _ in range(rng.choices((0, 1, 2), (0.65, 0.27, 0.08))[0]):
            candidates = [p for p in pieces if not p.protected and re.search(r"[a-z]{4,}", p.text)]
            if candidates:
                piece = rng.choice(candidates)
                piece.text = _typo(piece.text, rng)
        text, spans = "", []
        for piece in pieces:
            start = len(text)
            text += piece.text
            if piece.tag is not None:
                stripped = piece.text.strip(" ,.:;!?")
                if stripped:
                    offset = start + piece.text.index(stripped)
                    spans.append(Span(offset, offset + len(stripped), piece.tag, piece.begins))
        casing = rng.random()
        if casing < 0.08:
            text = text.upper()
        elif casing < 0.45:
            text = text[:1].upper() + text[1:]
        elif casing < 0.52:
            text = re.sub(r"\b([a-z])", lambda m: m[1].upper() if rng.random() < 0.3 else m[1], text)
        return text, tuple(spans)


_ONSETS = ("b", "bl", "br", "c", "ch", "cr", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "l", "m", "n", "p",
           "pl", "qu", "r", "s", "sk", "sl", "sn", "sp", "st", "t", "tr", "v", "w", "z")
_VOWELS = ("a", "e", "i", "o", "u", "oo", "ea", "ai", "y")
_CODAS = ("", "", "n", "m", "t", "k", "p", "rt", "nd", "sh", "x", "ck", "ll", "rp", "ng", "s")


@functools.cache
def _stuff_pool(pool: tuple[int, ...]) -> list[int]:
    return [index for index in pool if object_nouns()[index] in STUFF]


def _plural(noun: str) -> str:
    """The English plural of a noun's last word, by the regular rules ("bus" → "buses", "cherry" → "cherries")."""
    if re.search(r"(?:s|x|z|ch|sh)$", noun):
        return noun + "es"
    if re.search(r"[^aeiou]y$", noun):
        return noun[:-1] + "ies"
    return noun + "s"


def _pseudo_noun(rng: random.Random) -> str:
    """A made-up object name ("skoondle", "brapt"): the names users type are open-ended."""
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(1, 2))) + rng.choice(_CODAS)
    return word + rng.choice(("", "", "", "er", "le", "o"))


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
