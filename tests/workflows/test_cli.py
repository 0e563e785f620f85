"""`vitron workflow …` and `vitron sessions export` as a user runs them: a batch killed with -9 goes on with only
the items not done; an exported session runs again to the same files."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import yaml
from sqlalchemy import create_engine, text

from tests.cli import VITRON, png, vitron
from tests.scenes import render_scene

from .conftest import CUTOUT


def write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_validate_names_the_step_and_field_and_exits_2(env, tmp_path):
    good = write(tmp_path / "good.yaml", CUTOUT)
    ok = vitron(env, "workflow", "validate", str(good))
    assert ok.returncode == 0 and "seg → paint" in ok.stdout
    bad = dict(CUTOUT, steps=[CUTOUT["steps"][0], {**CUTOUT["steps"][1], "mask": "$steps.seg.box"}])
    refused = vitron(env, "workflow", "validate", str(write(tmp_path / "bad.yaml", bad)))
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: steps[1].mask: expected mask, got region from $steps.seg.box (give a mask)"
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nsteps: [\n")
    assert "not valid YAML" in vitron(env, "workflow", "validate", str(broken)).stderr


def test_run_json_gives_each_output_as_a_file_and_a_second_run_comes_from_the_cache(env, tmp_path):
    scene = render_scene(2)
    photo = png(tmp_path / "photo.png", scene.image)
    args = ["workflow", "run", "product_cutout", "--input", f"photo={photo}",
            "--input", "box=" + ",".join(map(str, scene.box)), "--set", "background=black", "--json"]
    first = vitron(env, *args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert set(result["outputs"]) == {"cutout", "mask", "box"}
    cutout = result["outputs"]["cutout"]
    assert cutout["kind"] == "image" and Path(cutout["path"]).is_file() and cutout["path"].endswith(".png")
    assert result["outputs"]["box"] == {"kind": "region", "value": {"kind": "box", "box": result["outputs"]["box"]
                                                                    ["value"]["box"]}}
    again = json.loads(vitron(env, *args).stdout)
    assert again["outputs"] == result["outputs"] and all(s["cached"] for s in again["steps"].values())
    fresh = json.loads(vitron(env, *args, "--no-cache").stdout)
    assert not any(s["cached"] for s in fresh["steps"].values()) and fresh["outputs"] == result["outputs"]


def test_describe_and_blocks(env):
    described = json.loads(vitron(env, "workflow", "describe", "photo_to_clip", "--json").stdout)
    assert described["inputs"]["frames"] == {"kind": "number", "required": False, "default": 24,
                                             "description": "Frames in the clip."}
    assert described["outputs"]["clip"] == {"kind": "video", "from": "$steps.animate.video"}
    blocks = json.loads(vitron(env, "workflow", "blocks", "--json").stdout)
    assert {"name": "masks", "kind": "masks", "required": False,
            "description": "Per-frame masks from video segmentation."} in next(
        b for b in blocks if b["type"] == "video_editing@v1")["inputs"]


def _items(engine) -> dict[int, tuple[str, int]]:
    with engine.connect() as conn:
        return {p: (s, a) for p, s, a in conn.execute(text("SELECT position, status, attempts FROM batch_items"))}


def test_a_batch_killed_with_9_goes_on_with_only_the_items_not_done(env, home, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(8):
        png(photos / f"p{seed}.png", render_scene(seed).image)
    (photos / "p8.png").write_bytes(b"not a png")  # a bad item: recorded with its error, the batch goes on
    flow = write(tmp_path / "flow.yaml", {
        "version": 1, "inputs": {"photo": "image"},
        "steps": [{"name": "sketch", "type": "C", "image": "$inputs.photo", "command": "make it a pencil sketch"},
                  {"name": "cartoon", "type": "C", "image": "$inputs.photo", "command": "make it look like a cartoon"},
                  {"name": "blur", "type": "C", "image": "$steps.cartoon.image", "command": "blur it"}],
        "outputs": {"sketch": "$steps.sketch.image", "cartoon": "$steps.blur.image"}})
    args = ["workflow", "batch", str(flow), "--input", f"photo={photos}/*.png", "--parallel", "1", "--json"]
    proc = subprocess.Popen([VITRON, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    engine = create_engine(f"sqlite:///{home / 'vitron.db'}")
    deadline = time.monotonic() + 120
    done_before: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            items = _items(engine)
        except Exception:  # the database is not made yet
            items = {}
        done_before = {p for p, (status, _) in items.items() if status == "succeeded"}
        if len(done_before) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None and len(done_before) >= 3, "the batch never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = _items(engine)
    assert any(status != "succeeded" for status, _ in killed.values())  # it really stopped part-way
    again = vitron(env, *args)
    assert again.returncode == 1  # one item failed
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert [line["position"] for line in lines] == list(range(9))
    assert [line["status"] for line in lines] == ["succeeded"] * 8 + ["failed"]
    assert "p8.png" in lines[8]["inputs"]["photo"] and lines[8]["error"]["field"] == "inputs.photo"
    after = _items(engine)
    for position in done_before | {p for p, (s, _) in killed.items() if s == "succeeded"}:
        assert after[position] == ("succeeded", 1)  # done once, never again
    assert all(Path(line["outputs"]["sketch"]["path"]).is_file() for line in lines[:8])
    # Unchanged and run again: nothing left to do but the bad item.
    third = vitron(env, *args[:-1])
    assert third.returncode == 1 and "8 of 9 items succeeded (8 done before this run)" in third.stdout


def test_a_manifest_gives_one_item_per_line(env, tmp_path):
    for seed in range(2):
        png(tmp_path / f"p{seed}.png", render_scene(seed).image)
    manifest = tmp_path / "items.jsonl"
    manifest.write_text('{"photo": "p0.png", "look": "pencil sketch"}\n\n{"photo": "p1.png"}\n')
    flow = write(tmp_path / "flow.yaml", {
        "version": 1, "inputs": {"photo": "image", "look": {"type": "text", "default": "sepia"}},
        "steps": [{"name": "style", "type": "C", "image": "$inputs.photo", "command": "make it a {look}"}],
        "outputs": {"result": "$steps.style.image"}})
    done = vitron(env, "workflow", "batch", str(flow), "--input", str(manifest), "--json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["inputs"].get("look") for line in lines] == ["pencil sketch", None]
    assert lines[0]["outputs"]["result"]["sha256"] != lines[1]["outputs"]["result"]["sha256"]


def test_an_exported_session_runs_again_to_the_same_files(env, tmp_path):
    scene = render_scene(4)
    box = ", ".join(map(str, scene.box))
    photo = png(tmp_path / "photo.png", scene.image)
    first = vitron(env, "run", "--image", str(photo), "--json",
                   f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
                   "<module>C</module><instruction>make it blue</instruction><input>@1</input>")
    session = json.loads(first.stdout)["session"]
    second = vitron(env, "run", "--session", session, "--json",
                    "<module>C</module><instruction>blur the background</instruction><input>@img2</input>"
                    "<input>@mask1</input>")
    made = {a["alias"]: a["sha256"] for turn in (first, second) for a in json.loads(turn.stdout)["artifacts"]}
    assert set(made) == {"mask1", "img2", "img3"}
    exported = tmp_path / "session.yaml"
    assert vitron(env, "sessions", "export", session[:8], "--out", str(exported)).returncode == 0
    document = yaml.safe_load(exported.read_text())
    assert list(document["inputs"]) == ["img1"] and len(document["steps"]) == 3
    rerun = vitron(env, "workflow", "run", str(exported), "--no-cache", "--json")
    assert rerun.returncode == 0, rerun.stderr
    outputs = json.loads(rerun.stdout)["outputs"]
    assert {alias: o["sha256"] for alias, o in outputs.items()} == made  # byte-identical, recomputed
    # One turn alone: what earlier turns made becomes an input.
    turn = yaml.safe_load(vitron(env, "sessions", "export", session, "--turn", "3").stdout)
    assert sorted(turn["inputs"]) == ["img2", "mask1"] and list(turn["outputs"]) == ["img3"]
