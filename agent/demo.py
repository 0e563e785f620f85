"""The main job on a fresh machine: in plain English, segment the cup in scikit-image's coffee photo, then edit it.

Two turns of one session, planned by the mini planner that ships with vitron (no GPU, no weights to fetch):
the first segments the cup inside a box and makes it blue, the second blurs the background around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from schemas import ArtifactRef, BoxRegion, Invocation, JobFailed, Plan, PlanStep, VitronSettings

# The cup and saucer in skimage.data.coffee() (600x400), in pixels.
CUP_BOX = BoxRegion(box=(72, 14, 484, 396))
TURNS = ("segment the cup and saucer, then make it blue", "now blur the background around the cup")


@dataclass
class DemoResult:
    photo: ArtifactRef
    mask: ArtifactRef
    edits: dict[str, ArtifactRef]
    session_id: str = ""
    plans: list[str] = field(default_factory=list)  # what the planner wrote for each turn, in the grammar


def run_demo(settings: VitronSettings, progress: Callable[[float, str], None]) -> DemoResult:
    """Run the two turns; every step's progress goes to `progress`. A failed step raises its error."""
    from skimage import data  # the photo ships with scikit-image; nothing is downloaded

    from agent.api import VitronAgent
    from agent.planners.grammar import format_plan

    with VitronAgent.from_settings(settings, planner="mini") as agent:
        session = agent.session(title="vitron demo")
        photo = agent.memory.store.put_image(data.coffee())
        made: list[ArtifactRef] = []
        plans = []
        for text, upload in ((TURNS[0], {"image": photo, "region": CUP_BOX}), (TURNS[1], {})):
            turn = session.stream(text, **upload)
            for event in turn:
                if event["event"] == "progress":
                    progress(event["fraction"], event["message"])
                elif event["event"] == "step_failed":
                    raise JobFailed(f"the demo's step {event['position']} ({event['module']}) failed: {event['error']}")
            reply = turn.reply
            invocations = [Invocation.model_validate({k: v for k, v in s.invocation.items() if k != "signal"})
                           for s in reply.steps]  # the signal's tensors stay in the store: the grammar marks them
            plans.append(format_plan(Plan(steps=[PlanStep(invocation=i, signal_tokens=1) for i in invocations])))
            made += [entry.ref for entry in reply.artifacts]
    masks = [ref for ref in made if ref.kind == "mask"]
    images = [ref for ref in made if ref.kind == "image"]
    if len(masks) != 1 or len(images) != 2:
        raise JobFailed(f"the demo expected a mask and two edits, the planner made {[r.kind for r in made]}")
    edits = {"make it blue": images[0], "blur the background": images[1]}
    return DemoResult(photo=photo, mask=masks[0], edits=edits, session_id=session.id, plans=plans)
