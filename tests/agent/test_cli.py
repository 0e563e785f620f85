"""The `vitron` command as a user runs it: one JSON object on stdout, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.scenes import iou, render_scene, render_video

VITRON = str(Path(sys.executable).with_name("vitron"))


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "VITRON_HOME": str(tmp_path / "home")}
    for name in ("VITRON_DEBUG", "VITRON_BROKER_URL"):  # the embedded default: jobs run in the command's process
        env.pop(name, None)

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([VITRON, *args], capture_output=True, text=True, env=env, timeout=300)

    return call


def _png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _one_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def test_tools_json_lists_the_eight_modules(run):
    rows = _one_json(run("tools", "--json"))
    assert [r["code"] for r in rows if r["kind"] == "tool"] == list("ABCDEFGH")
    flows = {r["module"]: r for r in rows if r["kind"] == "workflow"}  # the examples that ship, at least
    assert {"product_cutout", "video_privacy", "photo_to_clip"} <= set(flows)
    assert flows["product_cutout"]["inputs"]["photo"]["kind"] == "image"
    assert {r["module"]: r.get("backends") for r in rows}["image_segmentation"] == ["opencv", "sam"]


def test_invoke_segmentation_then_edit_with_files(run, tmp_path):
    scene = render_scene(3)
    image = _png(tmp_path / "scene.png", scene.image)
    box = ",".join(map(str, scene.box))
    seg = _one_json(run("invoke", "B", "--image", str(image), "--box", box, "--json"))
    assert seg["module"] == "image_segmentation"
    mask_row = next(a for a in seg["artifacts"] if a["kind"] == "mask")
    mask = cv2.imread(mask_row["path"], cv2.IMREAD_GRAYSCALE) > 127
    assert iou(mask, scene.mask) > 0.85

    edit = _one_json(run("invoke", "image_editing", "--image", str(image), "--mask", mask_row["path"],
                         "--command", "make it green", "--json"))
    (row,) = edit["artifacts"]
    assert row["kind"] == "image" and Path(row["path"]).is_file() and len(row["sha256"]) == 64


def test_invoke_image_to_video(run, tmp_path):
    image = _png(tmp_path / "scene.png", render_scene(1, 160, 120).image)
    out = _one_json(run("invoke", "G", "--image", str(image), "--command", "zoom in", "--frames", "12",
                        "--fps", "6", "--json"))
    (row,) = out["artifacts"]
    assert row["kind"] == "video" and row["path"].endswith(".mp4")


def test_invoke_video_segmentation_from_a_file(run, tmp_path):
    clip = render_video(2, frames=10, width=160, height=120)
    path = tmp_path / "clip.mp4"
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for frame in clip.frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    out = _one_json(run("invoke", "E", "--video", str(path), "--box", ",".join(map(str, clip.box(0))), "--json"))
    assert {a["kind"] for a in out["artifacts"]} == {"masks", "boxes"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["invoke", "Z", "--command", "x"], "unknown module 'Z'"),
        (["invoke", "A", "--command", "a cat"], "VITRON_MODELS_FILE"),
        (["invoke", "B", "--image", "missing.png", "--box", "1,1,5,5"], "no file at missing.png"),
        (["invoke", "B", "--image", "{bad}", "--box", "1,1,5,5"], "not a readable image"),
        (["invoke", "B", "--image", "{good}", "--box", "1,2,3"], "cannot read a box"),
        (["invoke", "B", "--image", "{good}", "--box", "0,0,900,10"], "leaves the 64x48 image"),
        (["invoke", "B", "--image", "{good}", "--fps", "3"], "takes no --fps"),
        (["invoke", "C", "--image", "{good}", "--command", "make it sparkle"], "make it sparkle"),
    ],
)
def test_bad_input_is_one_line_on_stderr(run, tmp_path, args, needle):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    _png(tmp_path / "good.png", np.zeros((48, 64, 3), np.uint8))
    args = [a.format(bad=tmp_path / "bad.png", good=tmp_path / "good.png") for a in args]
    proc = run(*args, "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["worker", "--queues", "gpu,bogus"], "unknown queue bogus"),
    (["worker"], "VITRON_BROKER_URL"),  # the fixture's environment names no broker
])
def test_a_worker_that_cannot_start_says_why_in_one_line(run, args, needle):
    proc = run(*args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


def test_demo_json(run):
    rows = _one_json(run("demo", "--json"))
    assert set(rows) == {"photo", "mask", "make it blue", "blur the background"}
    assert all(Path(p).is_file() for p in rows.values())
    mask = cv2.imread(rows["mask"], cv2.IMREAD_GRAYSCALE) > 127
    assert 0.3 < mask.mean() < 0.7  # the cup and saucer, not the whole table
    # the pictures it shows: the cup on its saucer as drawn by hand (rim, coffee and spoon in), painted blue and
    # nothing else, then the table blurred around it and the cup as it was
    from tests.ground_truth import hand_drawn

    drawn = next(o for o in hand_drawn() if o.name == "coffee_cup_saucer")
    assert iou(mask, drawn.mask) >= 0.9
    photo, blue, blurred = (cv2.imread(rows[k]).astype(int) for k in ("photo", "make it blue", "blur the background"))
    assert np.abs(blue - photo)[~mask].max() == 0 and (np.abs(blue - photo).max(-1)[mask] > 0).mean() > 0.95
    assert np.abs(blurred - blue)[mask].max() == 0 and np.abs(blurred - photo)[~mask].mean() > 5


def test_models_shows_what_each_module_will_use(run, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    weights = tmp_path / "sam.pth"
    weights.write_bytes(b"not really weights")
    (home / "models.yaml").write_text(f"B:\n  backend: sam\n  weights: {weights}\nA:\n  backend: stable_diffusion\n"
                                      f"  weights: {tmp_path / 'absent'}\n")
    shown = _one_json(run("models", "--json"))
    assert shown["models_file"] == str(home / "models.yaml")
    rows = {row["code"]: row for row in shown["modules"]}
    assert rows["B"]["backend"] == "sam" and rows["B"]["ready"] and rows["B"]["weights"]["main"]["exists"]
    assert not rows["A"]["ready"] and "does not exist" in rows["A"]["problem"]
    assert rows["C"]["backend"] == "opencv" and rows["C"]["source"] == "embedded"
    assert not rows["D"]["ready"]  # no embedded backend, nothing configured
    table = run("models")
    assert table.returncode == 0 and "sam" in table.stdout


def test_invoke_runs_real_weights_for_one_call_reproducibly_by_seed(run, tmp_path):
    from diffusers import StableDiffusionPipeline

    from tests.tools.tiny_gligen import save_sd

    weights = save_sd(StableDiffusionPipeline, tmp_path / "sd")
    args = ("invoke", "A", "--backend", "stable_diffusion", "--weights", str(weights), "--command", "a red cat",
            "--width", "64", "--height", "64", "--json")
    first = _one_json(run(*args, "--seed", "7"))
    assert first["backend"] == "stable_diffusion" and [a["kind"] for a in first["artifacts"]] == ["image"]
    assert cv2.imread(first["artifacts"][0]["path"]).shape == (64, 64, 3)
    assert _one_json(run(*args, "--seed", "7"))["artifacts"] == first["artifacts"]  # same seed, same bytes
    assert _one_json(run(*args, "--seed", "8"))["artifacts"] != first["artifacts"]


def test_invoke_with_missing_weights_names_the_setting_and_the_path(run, tmp_path):
    image = _png(tmp_path / "scene.png", render_scene(3).image)
    proc = run("invoke", "B", "--image", str(image), "--box", "10,10,50,50", "--backend", "sam",
               "--weights", str(tmp_path / "nope.pth"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "VITRON_MODELS_FILE" in proc.stderr and str(tmp_path / "nope.pth") in proc.stderr
