"""`vitron run` and `vitron plan` as a user runs them; a turn killed with -9 mid-plan resumes where it stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import cv2

from memory import ArtifactStore, SessionMemory
from schemas import VitronSettings
from tests.cli import VITRON, one_json, png, vitron
from tests.scenes import iou, render_scene, render_video


def test_run_json_then_a_second_turn_on_the_same_session(env, tmp_path):
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    first = one_json(vitron(env, "run", "--image", str(png(tmp_path / "in.png", scene.image)), "--json",
                            f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
                            "<module>C</module><instruction>make it blue</instruction><input>@1</input>"))
    assert [(s["module"], s["status"]) for s in first["steps"]] == [("image_segmentation", "succeeded"),
                                                                   ("image_editing", "succeeded")]
    assert [(a["kind"], a["alias"]) for a in first["artifacts"]] == [("mask", "mask1"), ("image", "img2")]
    mask = cv2.imread(first["artifacts"][0]["path"], cv2.IMREAD_GRAYSCALE) > 127
    assert iou(mask, scene.mask) >= 0.9

    second = one_json(vitron(env, "run", "--session", first["session"][:8], "--json",
                             "<module>C</module><instruction>pixelate it</instruction>"))
    assert second["session"] == first["session"] and [a["alias"] for a in second["artifacts"]] == ["img3"]


def test_plan_json_prints_the_plan_without_running_it(env, home):
    plan = one_json(vitron(env, "plan", "--json", "<Module>Video Segmentation</Module><Instruction>track the clock"
                                                  "</Instruction><module>F</module><instruction>blur it</instruction>"
                                                  "<input>@1</input>"))
    assert [s["module"] for s in plan["steps"]] == ["video_segmentation", "video_editing"]
    assert plan["steps"][0]["instruction"] == "track the clock" and plan["steps"][1]["inputs"] == {"masks": "@1"}
    assert not (home / "vitron.db").exists()  # nothing was recorded


def test_a_bad_plan_is_a_reply_and_bad_flags_are_one_line(env):
    refused = vitron(env, "run", "--json", "<module>Q</module><instruction>x</instruction>")
    assert refused.returncode == 2  # no plan could run: the reply says why, in full
    reply = json.loads(refused.stdout)
    assert reply["steps"] == [] and "unknown module" in reply["reply"]
    proc = vitron(env, "run", "--planner", "nope", "hello")
    assert proc.returncode == 2 and "VITRON_PLANNER" in proc.stderr and "Traceback" not in proc.stderr


def test_a_turn_killed_mid_plan_resumes_without_repeating_finished_steps(env, home, tmp_path):
    scene = render_scene(1)
    video = render_video(3, frames=400)
    store = ArtifactStore(tmp_path / "files")
    clip = store.path(store.put_video(video.frames, video.fps))
    box, vbox = ", ".join(map(str, scene.box)), ", ".join(map(str, video.box(0)))
    text = (f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
            f"<module>E</module><instruction>track it</instruction><region>({vbox})</region>"
            "<module>C</module><instruction>make it blue</instruction><input>@1</input>")
    proc = subprocess.Popen([VITRON, "run", "--json", "--image", str(png(tmp_path / "in.png", scene.image)),
                             "--video", str(clip), text], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    settings = VitronSettings(home=home)
    before = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not (home / "vitron.db").exists():
            continue
        with SessionMemory.from_settings(settings) as memory:
            sessions = memory.list_sessions()
            steps = memory.steps(sessions[0].id) if sessions else []
        statuses = [s.status for s in steps]
        if statuses[:2] == ["succeeded", "running"]:  # B is done, E (tracking 400 frames) is under way
            before = steps
            break
    assert before is not None, f"never saw B done and E running (exit {proc.poll()})"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    resumed = one_json(vitron(env, "run", "--session", before[0].session_id, "--json"))
    assert [(s["module"], s["status"]) for s in resumed["steps"]] == [
        ("image_segmentation", "succeeded"), ("video_segmentation", "succeeded"), ("image_editing", "succeeded")]
    with SessionMemory.from_settings(settings) as memory:
        after = memory.steps(before[0].session_id)
        table = memory.artifact_table(before[0].session_id)
    assert len(after) == 3  # the same steps, none planned twice
    assert after[0].started_at == before[0].started_at and after[0].finished_at == before[0].finished_at
    assert [a.alias for a in table] == ["img1", "video1", "mask1", "masks1", "boxes1", "img2"]
    assert resumed["reply"] == "Made @mask1, @masks1, @boxes1, @img2."


def test_chat_takes_turns_from_the_keyboard(env, tmp_path):
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    lines = [f"/image {png(tmp_path / 'in.png', scene.image)}",
             f"<module>B</module><instruction>segment it</instruction><region>({box})</region>",
             "<module>C</module><instruction>make it blue</instruction>", "/quit"]
    proc = subprocess.run([VITRON, "chat"], input="\n".join(lines) + "\n", capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Made @mask1." in proc.stdout and "Made @img2." in proc.stdout


def test_jobs_cancel_stops_a_running_video_step_from_another_process(env, tmp_path):
    video = render_video(2, frames=400)
    store = ArtifactStore(tmp_path / "files")
    clip = store.path(store.put_video(video.frames, video.fps))
    vbox = ", ".join(map(str, video.box(0)))
    proc = subprocess.Popen([VITRON, "run", "--json", "--video", str(clip),
                             f"<module>E</module><instruction>track it</instruction><region>({vbox})</region>"
                             "<module>F</module><instruction>blur it</instruction><input>@1</input>"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = None
    deadline = time.monotonic() + 120
    while job is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        listed = vitron(env, "jobs", "list", "--json")
        running = [j for j in json.loads(listed.stdout or '{"jobs": []}')["jobs"] if j["status"] == "running"]
        job = running[0]["job_id"] if running else None
    assert job is not None, "the tracking job never showed as running"
    cancelled = vitron(env, "jobs", "cancel", job)
    assert cancelled.returncode == 0, cancelled.stderr
    stdout, _ = proc.communicate(timeout=120)
    reply = json.loads(stdout.strip().splitlines()[-1])
    assert [(s["module"], s["status"]) for s in reply["steps"]] == [("video_segmentation", "cancelled"),
                                                                   ("video_editing", "skipped")]
    assert "cancelled" in reply["reply"] and reply["artifacts"] == []
    again = vitron(env, "jobs", "cancel", job)
    assert again.returncode == 2 and "already ended" in again.stderr
