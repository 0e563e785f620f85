"""The page as a person uses it, in Chromium: upload, sketch a region, send, watch the plan and the progress, read the
result's pixels; points and scribbles reach the run; a reload mid-run loses and repeats nothing; an approval is
answered and a step cancelled from the page; a bad upload is an error the thread survives; threads are renamed and
deleted; keys are asked for; the layout at 375 px and 1440 px."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.measure import hue, hue_gap, shrink
from tests.page.conftest import SHOTS
from tests.scenes import iou, render_scene, render_video
from tests.server.test_threads import _mp4
from tools.embedded.colours import COLOURS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def open_page(page, base: str, thread: str | None = None) -> None:
    page.goto(f"{base}/" + (f"#thread={thread}" if thread else ""))
    page.wait_for_selector("body[data-ready]")


def attach(page, path: Path) -> None:
    page.set_input_files("#file", str(path))
    page.wait_for_selector("#attachment:not([hidden]) canvas.sketch")
    page.wait_for_function("() => { const m = document.querySelector('#stage img, #stage video');"
                           " return m.tagName === 'IMG' ? m.complete && m.naturalWidth > 0 : m.readyState >= 2; }")


def to_screen(page, x: float, y: float) -> tuple[float, float]:
    """A picture pixel's place on the screen, over the sketch canvas."""
    box = page.locator("canvas.sketch").bounding_box()
    width, height = page.evaluate("() => [document.querySelector('canvas.sketch').width, "
                                  "document.querySelector('canvas.sketch').height]")
    return box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / height


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 6) -> None:
    page.mouse.move(*to_screen(page, *start))
    page.mouse.down()
    page.mouse.move(*to_screen(page, *end), steps=steps)
    page.mouse.up()


def box_around(page, box, margin: int = 2) -> tuple[int, int, int, int]:
    """Drag a box a few pixels around `box` (picture pixels); the box drawn."""
    x1, y1, x2, y2 = box
    drag(page, (x1 - margin, y1 - margin), (x2 + margin, y2 + margin))
    return x1 - margin, y1 - margin, x2 + margin, y2 + margin


def click_at(page, x: float, y: float) -> None:
    page.mouse.click(*to_screen(page, x, y))


def send(page, text: str, by_keyboard: bool = False) -> None:
    """Send a turn; back once the page shows its run."""
    runs = page.locator("li.run").count()
    if by_keyboard:
        page.focus("#text")
        page.keyboard.type(text)
        page.keyboard.press("Enter")
    else:
        page.fill("#text", text)
        page.click("#send")
    page.wait_for_function(f"() => document.querySelectorAll('li.run').length > {runs}")


def last_run(page, status: str = "success", timeout: float = 60_000):
    run = page.locator("li.run").last
    run.locator(f"xpath=self::*[@data-status='{status}']").wait_for(timeout=timeout)
    return run


def history(base: str, page) -> dict:
    thread = page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('thread')")
    return httpx.get(f"{base}/threads/{thread}/history", timeout=30).json()


def fetch_pixels(url: str, grey: bool = False) -> np.ndarray:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L" if grey else "RGB"))


def scene_file(tmp_path: Path, seed: int, width: int = 240, height: int = 160):
    scene = render_scene(seed, width, height)
    path = tmp_path / f"scene{seed}.png"
    Image.fromarray(scene.image).save(path)
    return scene, path


def video_file(tmp_path: Path, seed: int, frames: int):
    video = render_video(seed, frames=frames, width=160, height=120)
    path = tmp_path / f"clip{seed}.mp4"
    path.write_bytes(_mp4(video))
    return video, path


def box_and_send(page, server: str, path: Path, box, text: str) -> None:
    """A fresh page: upload the file, draw a box around `box` on it, send `text`."""
    open_page(page, server)
    attach(page, path)
    box_around(page, box)
    send(page, text)


def check_recoloured(edited: np.ndarray, scene, colour: str) -> None:
    want = hue(np.array(COLOURS[colour]))[0]
    assert np.mean(hue_gap(hue(edited[shrink(scene.mask, 3)]), want) < 15) > 0.9  # the object took the colour
    outside = ~cv2.dilate(scene.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.abs(edited.astype(int) - scene.image)[outside].max() <= 2  # nothing else moved


def test_a_drawn_box_segments_and_recolours_the_object(page, server, tmp_path):
    scene, path = scene_file(tmp_path, 3)
    assert scene.colour != "blue"
    open_page(page, server)
    attach(page, path)
    drawn = box_around(page, scene.box)
    assert page.input_value("#region-text") == ", ".join(map(str, drawn))
    send(page, "segment the object and then recolour it blue")

    run = last_run(page)
    steps = run.locator(".plan .step")
    assert steps.count() == 2  # the plan, shown as it was made
    assert steps.nth(0).locator(".module").inner_text() == "1. Segmentation"
    assert steps.nth(1).locator(".module").inner_text() == "2. Image editing"
    assert [steps.nth(i).get_attribute("data-status") for i in range(2)] == ["succeeded", "succeeded"]
    assert [steps.nth(i).locator("progress").evaluate("p => p.value") for i in range(2)] == [1, 1]
    logged = run.locator(".event-log li").evaluate_all("items => items.map(i => i.dataset.event)")
    assert logged[:3] == ["metadata", "plan", "step_started"] and "progress" in logged and logged[-1] == "end"

    # The result the page shows, read back from the link it shows it by.
    edited_src = run.locator('figure[data-alias="img2"] img').get_attribute("src")
    check_recoloured(fetch_pixels(edited_src), scene, "blue")
    mask = fetch_pixels(run.locator('figure[data-alias="mask1"] .overlay').evaluate(
        "o => o.style.maskImage.slice(5, -2)"), grey=True) > 127
    assert iou(mask, scene.mask) >= 0.9
    region = history(server, page)["turns"][1]["invocations"][0]["region"]
    assert region == {"kind": "box", "box": list(map(float, drawn))}

    # The mask's overlay toggles; every artifact downloads; the gallery tells the lineage.
    toggle = run.locator('figure[data-alias="mask1"] button.toggle')
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false"
    assert not run.locator('figure[data-alias="mask1"] .overlay').is_visible()
    toggle.click()
    assert run.locator('figure[data-alias="mask1"] .overlay').is_visible()
    for link in run.locator("a.download").all():
        assert httpx.get(link.get_attribute("href"), timeout=30).status_code == 200
    gallery = page.locator("#gallery-list").inner_text()
    assert "@img2 image, image editing of @img1, @mask1" in gallery.replace("\n", " ")

    # Opened again (a reload): the history shows the same results inline.
    page.reload()
    page.wait_for_selector("body[data-ready]")
    assert page.locator('#log figure[data-alias="img2"] img').get_attribute("src")
    assert page.locator("#log .turn.assistant .step").count() == 2


def test_the_issue_sentence_segments_and_makes_it_blue(page, server, tmp_path):
    scene, path = scene_file(tmp_path, 3)
    box_and_send(page, server, path, scene.box, "segment it and make it blue")
    run = last_run(page)
    edited = run.locator('figure[data-alias="img2"] img')
    assert edited.count() == 1
    check_recoloured(fetch_pixels(edited.get_attribute("src")), scene, "blue")


def test_points_and_a_scribble_reach_the_run(page, server, tmp_path):
    scene, path = scene_file(tmp_path, 5)
    ys, xs = np.nonzero(shrink(scene.mask, 3))
    inside = (int(np.median(xs)), int(np.median(ys)))
    open_page(page, server)
    attach(page, path)

    # Points: + on the object, − beside it; undone, cleared, and typed by keyboard too.
    page.click("[data-tool=positive]")
    click_at(page, *inside)
    page.click("[data-tool=negative]")
    click_at(page, 5, 5)
    assert page.input_value("#region-text") == f"+{inside[0]},{inside[1]} -5,5"
    page.click("#undo")
    assert page.input_value("#region-text") == f"+{inside[0]},{inside[1]}"
    page.click("#clear")
    assert page.input_value("#region-text") == ""
    page.click("#undo")
    page.fill("#region-text", f"+{inside[0]},{inside[1]} -5,5")
    page.press("#region-text", "Tab")
    assert page.evaluate("() => document.querySelector('#region-kind').textContent") == "(points)"
    send(page, "segment the object", by_keyboard=True)
    run = last_run(page)
    region = history(server, page)["turns"][1]["invocations"][0]["region"]
    assert region == {"kind": "points", "points": [list(map(float, inside)), [5.0, 5.0]], "labels": [1, 0]}
    mask_src = run.locator('figure[data-alias="mask1"] .overlay').evaluate("o => o.style.maskImage.slice(5, -2)")
    assert iou(fetch_pixels(mask_src, grey=True) > 127, scene.mask) >= 0.8

    # A scribble across the object: uploaded as a mask the run reads as its region.
    attach(page, path)
    page.click("[data-tool=scribble]")
    top = (int(xs[np.argmin(ys)]), int(ys.min()))
    bottom = (int(xs[np.argmax(ys)]), int(ys.max()))
    drag(page, top, bottom, steps=12)
    assert page.evaluate("() => document.querySelector('#region-kind').textContent") == "(scribble)"
    send(page, "segment the object")
    run = last_run(page)
    past = history(server, page)
    region = past["turns"][3]["invocations"][0]["region"]
    assert region["kind"] == "scribble" and region["mask"]["kind"] == "mask"
    link = httpx.get(f"{server}/artifacts/{region['mask']['sha256']}", timeout=30).json()["url"]
    painted = fetch_pixels(link, grey=True) > 127
    assert painted.shape == scene.mask.shape
    assert painted[top[1], top[0]] and painted[bottom[1], bottom[0]]  # the stroke's ends, in picture pixels
    assert painted.sum() < scene.mask.sum()  # a stroke, not a fill
    made = run.locator("figure.artifact.mask .overlay").last.evaluate("o => o.style.maskImage.slice(5, -2)")
    assert iou(fetch_pixels(made, grey=True) > 127, scene.mask) >= 0.8


def test_a_reload_mid_run_finishes_the_run_on_the_page_with_every_event_once(page, server, tmp_path):
    video, path = video_file(tmp_path, 3, frames=400)
    box_and_send(page, server, path, video.box(0), "track the object and blur it")
    page.wait_for_function("() => document.querySelectorAll('li.run .event-log li[data-event=progress]').length >= 3")
    shown_before = page.locator("li.run .event-log li").count()
    thread = page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('thread')")
    assert httpx.get(f"{server}/threads/{thread}", timeout=30).json()["status"] == "busy"  # reloaded mid-run
    page.reload()
    page.wait_for_selector("body[data-ready]")
    run = last_run(page)
    seqs = run.locator(".event-log li").evaluate_all("items => items.map(i => Number(i.dataset.seq))")
    run_id = run.get_attribute("data-run-id")
    whole = [line for line in httpx.get(f"{server}/threads/{thread}/runs/{run_id}/stream", timeout=30).text.splitlines()
             if line.startswith("id:")]
    assert seqs == list(range(1, len(whole) + 1))  # every event, once, in order
    assert len(whole) > shown_before  # some came before the reload, the rest after it
    statuses = run.locator(".plan .step").evaluate_all("steps => steps.map(s => s.dataset.status)")
    assert statuses == ["succeeded", "succeeded"]
    # The tracked masks play over their video, frame by frame.
    player = run.locator("figure.artifact.masks")
    player.locator("video").evaluate("v => { v.currentTime = v.duration / 2; }")
    page.wait_for_function("() => Number(document.querySelector('figure.artifact.masks canvas.overlay')"
                           "?.dataset.frame) > 100")


def test_a_running_step_is_cancelled_from_the_page(page, server, tmp_path):
    video, path = video_file(tmp_path, 4, frames=400)
    box_and_send(page, server, path, video.box(0), "track the object and blur it")
    cancel = page.locator("li.run .step[data-position='1'] button.cancel-step")
    cancel.wait_for(state="visible")
    cancel.click()
    run = last_run(page, "success")
    statuses = run.locator(".plan .step").evaluate_all("steps => steps.map(s => s.dataset.status)")
    assert statuses == ["failed", "skipped"]
    assert "cancel" in run.locator(".step[data-position='1']").inner_text().lower()
    assert [s["status"] for s in history(server, page)["steps"]] == ["cancelled", "skipped"]

    # The whole run, cancelled from its own button.
    video, path = video_file(tmp_path, 5, frames=400)
    attach(page, path)
    box_around(page, video.box(0))
    send(page, "track the object and blur it")
    page.locator("li.run").last.locator(".step[data-position='1'][data-status='running']").wait_for()
    page.locator("li.run").last.get_by_role("button", name="Cancel run").click()
    cancelled = last_run(page, "cancelled")
    assert cancelled.locator(".run-status").inner_text() == "cancelled"
    assert cancelled.locator(".step").evaluate_all("steps => steps.map(s => s.dataset.status)")[1] == "skipped"


def test_a_bad_upload_shows_its_error_and_the_thread_goes_on(page, server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture")
    scene, path = scene_file(tmp_path, 2)
    open_page(page, server)
    page.set_input_files("#file", str(fake))
    error = page.locator("#composer-error .error")
    error.wait_for()
    assert "neither an image" in error.inner_text() and "Fix: send an image or a video" in error.inner_text()
    assert page.locator("#attachment").is_hidden()
    attach(page, path)  # the same tab goes on
    assert page.locator("#composer-error").is_hidden()
    box_around(page, scene.box)
    send(page, "segment the object")
    run = last_run(page)
    assert run.locator('figure[data-alias="mask1"]').count() == 1


def test_threads_are_made_renamed_opened_and_deleted(page, server, tmp_path):
    open_page(page, server)
    page.click("#new-thread")
    page.wait_for_function("() => location.hash.startsWith('#thread=')")
    thread = page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('thread')")
    item = page.locator(f'#thread-list li[data-thread-id="{thread}"]')
    item.get_by_role("button", name="Rename").click()
    page.fill("#thread-list input", "Cat edits")
    page.press("#thread-list input", "Enter")
    page.locator(f'#thread-list li[data-thread-id="{thread}"] .thread-title', has_text="Cat edits").wait_for()
    assert httpx.get(f"{server}/threads/{thread}", timeout=30).json()["metadata"]["title"] == "Cat edits"
    assert page.inner_text("#thread-title") == "Cat edits"
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'#thread-list li[data-thread-id="{thread}"]').get_by_role("button", name="Delete").click()
    page.locator(f'#thread-list li[data-thread-id="{thread}"]').wait_for(state="detached")
    assert httpx.get(f"{server}/threads/{thread}", timeout=30).status_code == 404
    assert page.inner_text("#thread-title") == ""


def test_with_keys_the_page_asks_for_one_and_an_approval_is_answered(page, guarded_server, tmp_path):
    base, key = guarded_server
    video, path = video_file(tmp_path, 1, frames=24)
    page.goto(f"{base}/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.fill("#key-input", key)
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready]")
    assert page.evaluate("() => sessionStorage.getItem('vitron.key')") == key  # kept for the tab
    attach(page, path)
    box_around(page, video.box(0))
    send(page, "track the object")
    last_run(page, "interrupted")
    paused = page.locator("li.run").nth(0)
    approval = paused.locator("section.approval")
    assert approval.locator("li").count() == 1 and "Video segmentation" in approval.inner_text()
    assert paused.locator(".step").first.get_attribute("data-status") == "waiting"
    approval.get_by_role("button", name="Approve").click()
    done = last_run(page)
    assert done.locator(".step").first.get_attribute("data-status") == "succeeded", done.inner_text()
    assert done.locator("figure.artifact.masks video").count() == 1
    assert approval.get_attribute("data-answered") == "approve"

    # Denied: the heavy step is skipped, nothing is made, the thread goes on.
    send(page, "track the object")
    last_run(page, "interrupted")
    page.locator("li.run").nth(2).get_by_role("button", name="Deny").click()
    denied = last_run(page)
    assert denied.locator(".step").first.get_attribute("data-status") == "skipped"
    assert "not approved" in denied.inner_text()

    # Edited: the step runs with the command as changed on the page (by colour, no region needed).
    send(page, "track the object")
    last_run(page, "interrupted")
    asked = page.locator("li.run").nth(4)
    asked.locator("section.approval input").fill(f"track the {video.colour} object")
    asked.get_by_role("button", name="Run edited").click()
    edited = page.locator("li.run").nth(5)
    edited.locator("xpath=self::*[@data-status='success' or @data-status='interrupted']").wait_for()
    if edited.get_attribute("data-status") == "interrupted":  # the edited plan's heavy step waits its turn too
        edited.get_by_role("button", name="Approve").click()
        edited = last_run(page)
    assert edited.locator(".step").last.get_attribute("data-status") == "succeeded"
    assert f"track the {video.colour} object" in edited.inner_text()


def test_the_layout_at_375_and_1440_pixels(page, server, tmp_path):
    scene, path = scene_file(tmp_path, 1)
    box_and_send(page, server, path, scene.box, "segment the object and then recolour it blue")
    last_run(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "chat-1440.png"))
    attach(page, path)
    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=str(SHOTS / "composer-375.png"))
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= 375  # nothing runs off a phone's screen
    for selector in ("#send", "#upload", "#text", "#menu"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375, selector
    assert page.locator("#threads").is_hidden()
    page.click("#menu")
    assert page.locator("#threads").is_visible()
    page.screenshot(path=str(SHOTS / "threads-375.png"))
    page.keyboard.press("Escape")
    assert page.locator("#threads").is_hidden()
    page.click("#remove-attachment")
    page.locator("#log").evaluate("log => log.scrollTop = log.scrollHeight")
    page.screenshot(path=str(SHOTS / "chat-375.png"))
    for shot in ("chat-1440.png", "composer-375.png", "threads-375.png", "chat-375.png"):
        with Image.open(SHOTS / shot) as image:
            assert image.width in (375, 1440)
    assert json.loads(json.dumps(page.evaluate("() => document.title"))) == "vitron"


def test_a_region_sketched_on_a_chosen_frame_of_a_video(page, server, tmp_path):
    video, path = video_file(tmp_path, 2, frames=60)
    open_page(page, server)
    attach(page, path)
    page.wait_for_function("() => document.querySelector('#stage video').readyState >= 2")
    page.focus("#frame")
    page.keyboard.press("Home")
    for _ in range(40):  # the frame chosen from the keyboard
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#frame-number") == "40"
    shown = page.evaluate("() => document.querySelector('#stage video').currentTime")
    assert int(shown * video.fps) == 40  # the player shows that frame to draw on
    drawn = box_around(page, video.box(40))
    send(page, "track the object")
    run = last_run(page)
    region = history(server, page)["turns"][1]["invocations"][0]["region"]
    assert region == {"kind": "box", "box": list(map(float, drawn)), "frame": 40}
    assert "on frame 40" in page.locator("li.turn.user").last.inner_text()
    assert run.locator("figure.artifact.masks").count() == 1
    (made,) = [a for a in history(server, page)["artifacts"] if a["kind"] == "masks"]
    link = made["url"]
    for index in (0, 40, 59):  # followed back to the first frame and on to the last
        assert iou(fetch_pixels(f"{link}&frame={index}", grey=True) > 127, video.masks[index]) >= 0.8, index


def give_file(page, path: Path, target: str, event: str) -> None:
    """Dispatch `event` (JavaScript that reads `transfer`, a DataTransfer holding the file) on `target`."""
    where = "document" if target == "document" else f"document.querySelector('{target}')"
    page.evaluate(f"""bytes => {{
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], '{path.name}', {{type: 'image/png'}}));
        {where}.dispatchEvent(new {event});
    }}""", list(path.read_bytes()))


def test_an_image_dropped_or_pasted_is_attached(page, server, tmp_path):
    scene, path = scene_file(tmp_path, 6, 96, 64)
    open_page(page, server)
    give_file(page, path, "#chat", "DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true})")
    page.wait_for_selector("#attachment:not([hidden]) canvas.sketch")
    dropped = page.locator("#stage img").get_attribute("src")
    page.click("#remove-attachment")
    assert page.locator("#attachment").is_hidden()
    give_file(page, path, "document",
              "ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true})")
    page.wait_for_selector("#attachment:not([hidden]) canvas.sketch")
    pasted = page.locator("#stage img").get_attribute("src")
    assert dropped.split("?")[0] == pasted.split("?")[0]  # the same photo, stored once
    assert np.array_equal(fetch_pixels(pasted), scene.image)
