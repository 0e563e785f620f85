"""The eight specialist contracts (docs/ARCHITECTURE.md): input and output models, descriptions, backends."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from langchain_core.tools import InjectedToolArg
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas import ArtifactRef, BoxRegion, InvalidInput, Region, SignalEmbedding, ToolOutput

from .base import VisionTool
from .fields import BoxesRef, Command, ImageRef, MaskRef, MasksRef, OfKind, VideoRef, check_same_size, frame_size

Signal = Annotated[SignalEmbedding | None, InjectedToolArg(), Field(
    description="The planner's signal embedding; injected by the agent, never written by the model.")]

Seed = Annotated[int | None, Field(description="Seed of a diffusion backend's noise: the same seed, the same output.")]

_DIFFUSION_FIX = (
    "configure a diffusion backend with real weights on disk: set VITRON_MODELS_FILE to a models file "
    "naming one (default $VITRON_HOME/models.yaml)"
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # A field's validator, not the model's: its error is then located at the field (`region`), so a caller that
    # keeps only the errors of the fields a model writes (LangGraph's ToolNode) still shows it. Every contract
    # declares its image or video before the region and masks, so the media is in `info.data` by then.
    @field_validator("region", "mask", "masks", check_fields=False)
    @classmethod
    def _fits_media(cls, value: Any, info: ValidationInfo) -> Any:
        media = info.data.get("image") or info.data.get("video")
        if value is None or media is None:
            return value
        if info.field_name == "region":
            size = frame_size(media)
            if size is not None:
                value.check_within(*size)
            if value.frame:
                _check_frame(value.frame, media)
        else:
            check_same_size(media, value, info.field_name)
        return value


def _check_frame(frame: int, media: ArtifactRef) -> None:
    """A region drawn on a later frame: only of a video, and one of its frames."""
    if media.kind != "video":
        raise InvalidInput(f"a region on an image has no frame (got frame {frame})", field="region.frame",
                           fix="leave frame out, or 0")
    frames = media.shape[0] if media.shape else None
    if frames is not None and frame >= frames:
        raise InvalidInput(f"frame {frame} is past the video's last frame, {frames - 1}", field="region.frame",
                           fix=f"give a frame from 0 to {frames - 1}")


# -- B: image segmentation -----------------------------------------------------------------------

class SegmentImageInput(_Input):
    image: ImageRef
    command: Command = "segment the object"
    region: Region | None = Field(default=None, description="Box, points or scribble on the object.")
    signal: Signal = None


class SegmentImageOutput(ToolOutput):
    mask: MaskRef
    box: BoxRegion = Field(description="The mask's bounding box.")
    area: int = Field(description="Pixels inside the mask.")


class ImageSegmentation(VisionTool[SegmentImageInput, SegmentImageOutput]):
    name = "image_segmentation"
    description = (
        "Segment one object in an image. Point at it with a region (a box, points or a scribble) or name "
        "it in the command by colour, place, size or order ('the red object', 'the blue one on the left', "
        "'the second largest cat'). Returns a mask and its bounding box."
    )
    input_model = SegmentImageInput
    output_model = SegmentImageOutput
    backends = {"opencv": "tools.embedded.segmentation:segment_image", "sam": "tools.real.sam:segment_image"}
    preparer = "tools.grounded:image_region"  # a referring phrase, grounded to a box (SAM with a detector)


# -- C: image editing ----------------------------------------------------------------------------

Area = Annotated[Literal["object", "background"] | None, Field(
    description="Where the edit acts: on the object (inside the mask) or on the background (outside it, as in "
                "'blur everything else'); none: as the command says ('blur the background'), else the object.")]


class EditImageInput(_Input):
    image: ImageRef
    command: Command
    mask: MaskRef | None = Field(default=None, description="Where to edit; from an earlier segmentation.")
    region: Region | None = Field(default=None, description="Where to edit, when no mask is given.")
    area: Area = None
    seed: Seed = None
    signal: Signal = None


class EditImageOutput(ToolOutput):
    image: ImageRef
    operation: str = Field(description="The edit that was applied, e.g. 'recolour:blue'.")


class ImageEditing(VisionTool[EditImageInput, EditImageOutput]):
    name = "image_editing"
    description = (
        "Edit an image, inside a mask or region when given: recolour ('make it blue'), remove an object, "
        "blur, pixelate, brighten or darken, replace or blur the background, or stylise (pencil sketch, "
        "cartoon, sepia, black and white)."
    )
    input_model = EditImageInput
    output_model = EditImageOutput
    backends = {"opencv": "tools.embedded.editing:edit_image",
                "stable_diffusion": "tools.real.image_editing:edit_image"}
    random_backends = frozenset({"stable_diffusion"})


# -- E: video segmentation -----------------------------------------------------------------------

class SegmentVideoInput(_Input):
    video: VideoRef
    command: Command = "track the object"
    region: Region | None = Field(default=None, description="The object on the first frame.")
    signal: Signal = None


class SegmentVideoOutput(ToolOutput):
    masks: MasksRef = Field(description="One mask per frame.")
    boxes: BoxesRef = Field(description="Per-frame bounding boxes (JSON; null where the mask is empty).")


class VideoSegmentation(VisionTool[SegmentVideoInput, SegmentVideoOutput]):
    name = "video_segmentation"
    description = (
        "Track one object through a video. Point at it on the first frame with a region or name it by "
        "colour, place, size or order ('the red car on the left', 'the dog in frame 12'); returns a mask per frame."
    )
    input_model = SegmentVideoInput
    output_model = SegmentVideoOutput
    backends = {"opencv": "tools.embedded.video_segmentation:segment_video",
                "sam": "tools.real.video_segmentation:segment_video"}
    heavy = True
    # A referring phrase grounded on its frame; a region on a later frame then moved to the first.
    preparer = "tools.grounded:video_region"


# -- F: video editing ----------------------------------------------------------------------------

class EditVideoInput(_Input):
    video: VideoRef
    command: Command
    masks: MasksRef | None = Field(default=None, description="Per-frame masks from video segmentation.")
    region: Region | None = Field(default=None, description="The object on the first frame, tracked when no masks.")
    area: Area = None
    seed: Seed = None
    signal: Signal = None


class EditVideoOutput(ToolOutput):
    video: VideoRef
    operation: str


class VideoEditing(VisionTool[EditVideoInput, EditVideoOutput]):
    name = "video_editing"
    description = (
        "Edit every frame of a video with the image edits (recolour, remove, blur, stylise…), inside "
        "per-frame masks when given, else on the whole frame."
    )
    input_model = EditVideoInput
    output_model = EditVideoOutput
    backends = {"opencv": "tools.embedded.video_editing:edit_video",
                "stable_diffusion": "tools.real.video_editing:edit_video"}
    random_backends = frozenset({"stable_diffusion"})
    heavy = True
    preparer = "tools.anchor:first_frame_region"


# -- G: image to video ---------------------------------------------------------------------------

class ImageToVideoInput(_Input):
    image: ImageRef
    command: Command = "zoom in"
    num_frames: int = Field(default=16, ge=2, le=1200)
    fps: float = Field(default=8.0, gt=0, le=120)
    width: int | None = Field(default=None, ge=16, le=4096, description="Output width; default the image's.")
    height: int | None = Field(default=None, ge=16, le=4096, description="Output height; default the image's.")
    seed: Seed = None
    signal: Signal = None


class VideoOutput(ToolOutput):
    video: VideoRef


class ImageToVideo(VisionTool[ImageToVideoInput, VideoOutput]):
    name = "image_to_video"
    description = (
        "Animate an image into a video. The embedded backend moves a camera over it: zoom in or out, or "
        "pan left, right, up or down."
    )
    input_model = ImageToVideoInput
    output_model = VideoOutput
    backends = {"opencv": "tools.embedded.image_to_video:image_to_video",
                "i2vgen_xl": "tools.real.image_to_video:image_to_video"}
    random_backends = frozenset({"i2vgen_xl"})
    heavy = True
    queue = "gpu"  # generation: its real backend is a diffusion model (the camera moves are light CPU work)


# -- A and D: generation (diffusion backends only) ---------------------------------------------

class PhraseBox(BaseModel):
    phrase: str = Field(min_length=1)
    box: BoxRegion


class GenerateImageInput(_Input):
    command: Command
    width: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    boxes: Annotated[list[PhraseBox], OfKind("boxes")] = Field(default_factory=list,
                                                            description="Phrases to place in boxes (GLIGEN).")
    seed: Seed = None
    signal: Signal = None


class ImageOutput(ToolOutput):
    image: ImageRef


class ImageGeneration(VisionTool[GenerateImageInput, ImageOutput]):
    name = "image_generation"
    description = "Generate an image from a description, optionally placing phrases in boxes."
    input_model = GenerateImageInput
    output_model = ImageOutput
    backends = {"stable_diffusion": "tools.real.image_generation:generate_image"}
    random_backends = frozenset({"stable_diffusion"})
    heavy = True
    queue = "gpu"
    unavailable_fix = _DIFFUSION_FIX


class GenerateVideoInput(_Input):
    command: Command
    num_frames: int = Field(default=24, ge=2, le=240)
    fps: float = Field(default=8.0, gt=0, le=120)
    width: int = Field(default=576, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=320, ge=64, le=2048, multiple_of=8)
    seed: Seed = None
    signal: Signal = None


class VideoGeneration(VisionTool[GenerateVideoInput, VideoOutput]):
    name = "video_generation"
    description = "Generate a short video from a description."
    input_model = GenerateVideoInput
    output_model = VideoOutput
    backends = {"text_to_video": "tools.real.video_generation:generate_video"}
    random_backends = frozenset({"text_to_video"})
    heavy = True
    queue = "gpu"
    unavailable_fix = _DIFFUSION_FIX


# -- H: visual understanding ---------------------------------------------------------------------

UnderstandingTask = Literal["caption", "question", "grounding"]
"""What H is asked: a caption, an answer to a question, or the boxes of a phrase (grounding)."""

_PICTURE = r"(?:(?:this|that|the)\s+)?(?:image|picture|photo|photograph|video|clip|scene|frame)s?"
_CAPTION = re.compile(rf"(?:caption|captioning|describe|description)(?:\s*:)?(?:\s+(?:it|this|that|{_PICTURE}))?",
                      re.IGNORECASE)
_GROUNDING = re.compile(r"(?:grounding|ground|find|locate|detect|point\s+(?:to|at|out)|show\s+me|where\s+is|"
                        r"where\s+are|where's)\b\s*:?\s*(?P<rest>.*)", re.IGNORECASE | re.DOTALL)
_QUESTION = re.compile(r"(?:question|answer|vqa)\s*:\s*(?P<rest>.*)", re.IGNORECASE | re.DOTALL)


class UnderstandInput(_Input):
    image: ImageRef | None = Field(default=None, description="The image to look at (give an image or a video).")
    video: VideoRef | None = Field(default=None, description="The video to look at, as evenly spaced frames.")
    command: Command = "describe it"
    task: Annotated[UnderstandingTask | None, Field(
        description="caption, question or grounding; none: read from the command ('caption', 'find: the cat on the "
                    "left' or 'where is …' grounds, anything else is a question).")] = None
    region: BoxRegion | None = Field(default=None, description="The part of the picture to ask about; boxes are "
                                     "still in the whole picture's pixels.")
    num_frames: int = Field(default=8, ge=1, le=64, description="Frames of a video to look at, evenly spaced, the "
                            "first and the last included.")
    signal: Signal = None  # H takes no planner signal: one given is ignored

    @model_validator(mode="after")
    def _one_picture(self) -> UnderstandInput:
        if (self.image is None) == (self.video is None):
            raise InvalidInput("give an image or a video" if self.image is None else
                               "give an image or a video, not both", field="image",
                               fix="set `image` to an image artifact, or `video` to a video artifact")
        return self

    def reading(self) -> tuple[UnderstandingTask, str]:
        """The task and what it is about: the question, or the phrase to ground (the command without its `find:`
        or `question:`), or the command itself for a caption."""
        command = self.command.strip()
        bare = command.rstrip(" .!?")
        if self.task in (None, "caption") and _CAPTION.fullmatch(bare):
            return "caption", command
        grounding, question = _GROUNDING.fullmatch(command), _QUESTION.fullmatch(command)
        if self.task in (None, "grounding") and grounding and grounding["rest"].strip(" .!?"):
            return "grounding", grounding["rest"].strip(" .!?")
        if self.task is None or self.task == "question":
            return "question", question["rest"].strip() if question and question["rest"].strip() else command
        return self.task, command


class UnderstandOutput(ToolOutput):
    text: str = Field(description="The caption, the answer, or what was found, in words.")
    task: UnderstandingTask
    answered: bool = Field(description="False when this backend cannot answer it: the text then says which "
                                       "setting enables it.")
    boxes: BoxesRef | None = Field(default=None, description="What was found: labelled boxes with scores, best "
                                   "first (JSON, `schemas.LabelledBox`); none when nothing was grounded.")
    region: BoxRegion | None = Field(default=None, description="The best box, as a region a later step takes.")


class VisualUnderstanding(VisionTool[UnderstandInput, UnderstandOutput]):
    name = "visual_understanding"
    description = (
        "Look at an image or a video and answer in words: caption it, answer a question about it, or find a phrase "
        "('find: the cat on the left') and return its boxes, which a later step can take as its region. Without a "
        "vision-language model it answers only what the pixels tell exactly: size, duration, main colours, where "
        "the regions of a colour are, faces."
    )
    input_model = UnderstandInput
    output_model = UnderstandOutput
    backends = {"opencv": "tools.embedded.understanding:understand",
                "transformers": "tools.real.understanding:understand"}
    one_of = ("image", "video")
