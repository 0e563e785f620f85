"""What the HTTP server adds around the agent, measured against a real `vitron serve` process. Prints one JSON line.

- `api_overhead_ratio`: a 3-step chained plan (pencil sketch, cartoon, sepia on a ~1 MP photo) streamed through
  `POST /threads/{id}/runs/stream` until its `end` event, against the same plan through `session.send` in this
  process (goal ≤ 1.05). Median of 15 runs each, the two sides taking turns.
- `first_event_ms_p50`: from sending the POST to receiving the `plan` event, for a one-step explicit plan (goal ≤ 30).
- `concurrent_threads`, `errors`: 50 threads, each uploading a photo and waiting for a run, all at once.
- `openai_roundtrip_ms_p50`: a one-step edit through the official `openai` client (a 256×256 image in as a data
  URL, a link out), median of 10.

Run: .venv/bin/python bench/api.py
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import VitronAgent
from schemas import VitronSettings
from tests.cli import cli_env, vitron_serve

PLAN = ("<module>C</module><instruction>pencil sketch</instruction>"
        "<module>C</module><instruction>cartoon</instruction><input>@1</input>"
        "<module>C</module><instruction>sepia</instruction><input>@2</input>")
ONE_STEP = "<module>C</module><instruction>make it black and white</instruction>"
VITRON = str(Path(sys.executable).with_name("vitron"))


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def events(http: httpx.Client, thread: str, body: dict, until: str = "end") -> tuple[float, float | None]:
    """(seconds to the `until` event, seconds to the `plan` event) of a streamed run."""
    started = time.perf_counter()
    plan_at = None
    with http.stream("POST", f"/threads/{thread}/runs/stream", json=body) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
                if name == "plan" and plan_at is None:
                    plan_at = time.perf_counter() - started
                if name == until:
                    return time.perf_counter() - started, plan_at
    raise RuntimeError(f"the stream ended before {until}")


def main() -> None:
    photo = cv2.resize(data.astronaut(), (1000, 1000), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**cli_env(Path(tmp) / "server"), "VITRON_PLANNER": "explicit"}
        with vitron_serve(env) as base:
            settings = VitronSettings(home=Path(tmp) / "local", planner="explicit")
            with httpx.Client(base_url=base, timeout=300) as http, VitronAgent.from_settings(settings) as agent:
                big = http.post("/artifacts", content=png(photo)).json()["sha256"]
                local_photo = agent.memory.store.put_image(photo)
                for _ in range(2):  # first calls out of the way on both sides
                    events(http, http.post("/threads").json()["thread_id"], {"input": {"text": PLAN, "image": big}})
                    agent.session().send(PLAN, image=local_photo)
                over_http, in_process = [], []
                for _ in range(15):
                    over_http.append(events(http, http.post("/threads").json()["thread_id"],
                                            {"input": {"text": PLAN, "image": big}})[0])
                    started = time.perf_counter()
                    agent.session().send(PLAN, image=local_photo)
                    in_process.append(time.perf_counter() - started)
                tiny = http.post("/artifacts", content=png(small)).json()["sha256"]
                first = [events(http, http.post("/threads").json()["thread_id"],
                                {"input": {"text": ONE_STEP, "image": tiny}})[1] for _ in range(20)]

                def one(index: int) -> bool:
                    with httpx.Client(base_url=base, timeout=300) as client:
                        sha = client.post("/artifacts", content=png(np.roll(small, index, axis=1))).json()["sha256"]
                        thread = client.post("/threads").json()["thread_id"]
                        done = client.post(f"/threads/{thread}/runs/wait",
                                           json={"input": {"text": ONE_STEP, "image": sha}})
                        return done.status_code == 200 and done.json()["status"] == "success"

                with ThreadPoolExecutor(max_workers=50) as pool:
                    outcomes = list(pool.map(one, range(50)))

                from openai import OpenAI

                client = OpenAI(base_url=f"{base}/v1", api_key="none")
                url = "data:image/png;base64," + base64.b64encode(png(small)).decode()
                roundtrips = []
                for _ in range(10):
                    started = time.perf_counter()
                    client.chat.completions.create(model="vitron-explicit", messages=[{"role": "user", "content": [
                        {"type": "text", "text": ONE_STEP}, {"type": "image_url", "image_url": {"url": url}}]}])
                    roundtrips.append(time.perf_counter() - started)
    print(json.dumps({
        "api_overhead_ratio": round(statistics.median(over_http) / statistics.median(in_process), 3),
        "plan_seconds_over_http": round(statistics.median(over_http), 3),
        "plan_seconds_in_process": round(statistics.median(in_process), 3),
        "first_event_ms_p50": round(statistics.median(first) * 1000, 1),
        "concurrent_threads": len(outcomes), "errors": outcomes.count(False),
        "openai_roundtrip_ms_p50": round(statistics.median(roundtrips) * 1000, 1),
    }))


if __name__ == "__main__":
    main()
