"""`vitron run`, `vitron plan` and `vitron chat` as a user types them: an approval pause answered from the command
line, regions as points and scribbles, a failed step in the exit status, plans in a session's context, and the chat's
own commands (help, regions, approvals, a bad path that leaves later turns alone)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np

from tests.cli import VITRON, one_json, png, vitron
from tests.measure import shrink
from tests.scenes import iou, render_scene, render_video


def mask_of(reply: dict) -> np.ndarray:
    (path,) = [a["path"] for a in reply["artifacts"] if a["kind"] == "mask"]
    return cv2.imread(path, cv2.IMREAD_GRAYSCALE) > 127


def scribble_file(path: Path, mask: np.ndarray) -> Path:
    """A stroke down the middle of the object, as a person paints one."""
    ys, xs = np.nonzero(shrink(mask, 3))
    painted = np.zeros(mask.shape, np.uint8)
    x = int(np.median(xs))
    cv2.line(painted, (x, int(ys.min())), (x, int(ys.max())), 255, 3)
    cv2.imwrite(str(path), painted)
    return path


def clip_file(tmp_path: Path, video) -> Path:
    from memory import ArtifactStore

    store = ArtifactStore(tmp_path / "files")
    return store.path(store.put_video(video.frames, video.fps))


def test_an_approval_pause_is_answered_with_approve_or_deny(env, tmp_path):
    env = {**env, "VITRON_APPROVAL": "true", "VITRON_PLANNER": "explicit"}
    video = render_video(1, frames=12, width=96, height=64)
    track = f"<module>E</module><instruction>track it</instruction><region>{tuple(video.box(0))}</region>"
    paused = one_json(vitron(env, "run", "--json", "--video", str(clip_file(tmp_path, video)), track))
    assert paused["approval"]["steps"][0]["module"] == "video_segmentation"
    assert paused["steps"][0]["status"] == "pending"
    done = one_json(vitron(env, "run", "--session", paused["session"][:8], "--approve", "--json"))
    assert done["approval"] is None and [s["status"] for s in done["steps"]] == ["succeeded"]
    assert [a["kind"] for a in done["artifacts"]] == ["masks", "boxes"]

    again = one_json(vitron(env, "run", "--session", paused["session"], "--json", track))
    assert again["approval"] is not None
    denied = one_json(vitron(env, "run", "--session", paused["session"], "--deny", "--json"))
    assert [s["status"] for s in denied["steps"]] == ["skipped"] and denied["artifacts"] == []

    for args in (["--approve", "--deny", "--session", paused["session"]], ["--approve", "text"], ["--deny"]):
        proc = vitron(env, "run", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, args
    nothing = vitron(env, "run", "--session", paused["session"], "--approve")
    assert nothing.returncode != 0 and "no step is waiting for approval" in nothing.stderr


def test_run_takes_points_and_a_scribble(env, tmp_path):
    scene = render_scene(5)
    image = str(png(tmp_path / "in.png", scene.image))
    ys, xs = np.nonzero(shrink(scene.mask, 3))
    points = f"{int(np.median(xs))},{int(np.median(ys))},1;4,4,0"
    by_points = one_json(vitron(env, "run", "--json", "--image", image, "--points", points, "segment the object"))
    assert iou(mask_of(by_points), scene.mask) >= 0.8
    scribble = scribble_file(tmp_path / "scribble.png", scene.mask)
    by_scribble = one_json(vitron(env, "run", "--json", "--image", image, "--scribble", str(scribble),
                                  "segment the object"))
    assert iou(mask_of(by_scribble), scene.mask) >= 0.8
    both = vitron(env, "run", "--image", image, "--points", points, "--box", "1,1,20,20", "segment the object")
    assert both.returncode != 0 and "give one" in both.stderr and "Traceback" not in both.stderr


def test_run_exits_3_when_a_step_failed_and_2_when_no_plan_runs(env, tmp_path):
    grey = np.full((64, 96, 3), 128, np.uint8)  # nothing to find, and no region: the segmentation fails
    proc = vitron(env, "run", "--json", "--planner", "explicit", "--image", str(png(tmp_path / "grey.png", grey)),
                  "<module>B</module><instruction>segment it</instruction>")
    assert proc.returncode == 3
    reply = json.loads(proc.stdout)  # the reply is still printed in full
    assert [s["status"] for s in reply["steps"]] == ["failed"] and "region" in reply["reply"]
    refused = vitron(env, "run", "--json", "--planner", "explicit", "--image", str(png(tmp_path / "g.png", grey)),
                     "<module>C</module><instruction>make it blue</instruction><input>@img9</input>")
    assert refused.returncode == 2 and "could not make a plan" in json.loads(refused.stdout)["reply"]


def test_plan_with_a_session_plans_the_next_turn_in_its_context(env, tmp_path):
    scene = render_scene(3)
    image = str(png(tmp_path / "in.png", scene.image))
    first = one_json(vitron(env, "run", "--json", "--image", image, "--box", ",".join(map(str, scene.box)),
                            "segment the object"))
    alone = one_json(vitron(env, "plan", "--json", "now make it green"))
    in_session = one_json(vitron(env, "plan", "--json", "--session", first["session"][:8], "now make it green"))
    assert alone["steps"][0]["inputs"] == {}  # nothing to edit without the session
    assert in_session["steps"][0]["module"] == "image_editing" and in_session["steps"][0]["inputs"]["image"] == "@img1"
    upload = one_json(vitron(env, "plan", "--json", "--session", first["session"], "--image", image, "blur it"))
    assert upload["steps"][0]["inputs"]["image"] == "@img2"  # the upload is named as the session's next image


def test_chat_answers_help_itself_survives_a_bad_path_and_takes_regions_and_approvals(env, tmp_path):
    env = {**env, "VITRON_APPROVAL": "true"}
    scene = render_scene(5)
    video = render_video(1, frames=12, width=96, height=64)
    ys, xs = np.nonzero(shrink(scene.mask, 3))
    lines = ["/help",
             "/image /no/such/photo.png",  # refused at once: nothing is attached
             "/nonsense",
             f"/image {png(tmp_path / 'in.png', scene.image)}",
             f"/points {int(np.median(xs))},{int(np.median(ys))},1",
             "segment the object",
             f"/video {clip_file(tmp_path, video)}",
             f"/box {','.join(map(str, video.box(0)))}",
             "track the object",
             "/approve",
             "/quit"]
    proc = subprocess.run([VITRON, "chat"], input="\n".join(lines) + "\n", capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "/approve, /deny" in proc.stdout  # the help, answered without a turn
    assert "no file '/no/such/photo.png'" in proc.stderr and "no command /nonsense" in proc.stderr
    assert "Made @mask1." in proc.stdout  # the points reached the turn; the bad path poisoned nothing
    assert "waiting for approval of 1. video_segmentation" in proc.stdout
    assert "Made @masks1, @boxes1." in proc.stdout  # approved from the chat
