"""The official `openai` client against the server: a completion, streamed and not; an image in as a data URL, an
image link out; a follow-up that edits the previous result through the resent conversation alone."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from openai import APIError, BadRequestError, InternalServerError, OpenAI
from PIL import Image

from schemas import BackendUnavailable
from tests.measure import hue, hue_gap, luminance, shrink
from tests.scenes import render_scene
from tools.embedded.colours import COLOURS

from .conftest import png_bytes

LINK = re.compile(r"!\[(\w+)\]\((\S+)\)")


@pytest.fixture
def openai(client) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key="not-needed", http_client=client)


def data_url(rgb: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode()


def fetch(client, url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.get(url).content)).convert("RGB"))


def test_models_and_a_completion_with_an_image_in_and_out(openai, client):
    assert [m.id for m in openai.models.list().data][:2] == ["vitron-mini", "vitron-explicit"]
    scene = render_scene(3)
    box = ", ".join(map(str, scene.box))
    plan = (f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
            "<module>C</module><instruction>make it blue</instruction><input>@1</input>")
    answer = openai.chat.completions.create(model="vitron-explicit", messages=[{"role": "user", "content": [
        {"type": "text", "text": plan}, {"type": "image_url", "image_url": {"url": data_url(scene.image)}}]}])
    content = answer.choices[0].message.content
    links = dict(LINK.findall(content))
    assert "Made @mask1, @img2" in content and set(links) == {"img2"}
    edited = fetch(client, links["img2"])
    inside = shrink(scene.mask, 3)
    assert np.median(hue_gap(hue(edited[inside]), hue(COLOURS["blue"])[0])) < 20  # judged by its pixels
    assert answer.choices[0].message.model_extra["images"][0]["image_url"]["url"] == links["img2"]

    # A stateless follow-up: the client resends the conversation; the last result is what gets edited.
    follow = openai.chat.completions.create(model="vitron-explicit", stream=True, messages=[
        {"role": "user", "content": [{"type": "text", "text": plan},
                                     {"type": "image_url", "image_url": {"url": data_url(scene.image)}}]},
        {"role": "assistant", "content": content},
        {"role": "user", "content": "<module>C</module><instruction>make it black and white</instruction>"}])
    chunks = list(follow)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"
    ((_, url),) = LINK.findall(streamed)
    grey = fetch(client, url).astype(int)
    assert np.abs(grey[..., 0] - grey[..., 2]).max() <= 2  # black and white …
    of_edit, of_photo = luminance(edited)[inside], luminance(scene.image)[inside]
    assert np.abs(grey[..., 0][inside] - of_edit).mean() < 3  # … of the blue edit …
    assert np.abs(grey[..., 0][inside] - of_photo).mean() > 10  # … not of the photo


def test_errors_come_in_openais_shape(openai):
    with pytest.raises(BadRequestError) as caught:
        openai.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    error = caught.value.body
    assert error["param"] == "model" and "vitron-mini" in error["message"]
    with pytest.raises(BadRequestError) as caught:
        openai.chat.completions.create(model="vitron-mini", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]}])
    assert "VITRON_FETCH_URLS" in caught.value.body["message"]


def test_a_failed_turn_is_an_error_streamed_or_not(openai, monkeypatch):
    from agent.server.runs import RunManager

    def unavailable(self, session, request):
        raise BackendUnavailable("the segmenter's weights are missing", field="VITRON_MODELS",
                                 fix="run `vitron models pull`")

    monkeypatch.setattr(RunManager, "_events", unavailable)
    asked = [{"role": "user", "content": "segment the cup"}]
    with pytest.raises(InternalServerError) as caught:
        openai.with_options(max_retries=0).chat.completions.create(model="vitron-explicit", messages=asked)
    assert caught.value.status_code == 503 and caught.value.body["param"] == "VITRON_MODELS"
    with pytest.raises(APIError) as caught:
        for _ in openai.chat.completions.create(model="vitron-explicit", messages=asked, stream=True):
            pass
    assert "weights are missing" in caught.value.message
