"""`vitron serve` as a real uvicorn process: LangGraph's own SDK drives threads and runs; 50 threads over 5 keys at
once all finish, with no error and no cross-talk; without keys the server refuses to listen beyond loopback."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.cli import cli_env, vitron, vitron_serve
from tests.scenes import render_scene

from .conftest import png_bytes


@pytest.fixture
def served(tmp_path):
    """`vitron serve` with the explicit planner: (base URL, env)."""
    env = {**cli_env(tmp_path / "home"), "VITRON_PLANNER": "explicit"}
    with vitron_serve(env) as base:
        yield base, env


def test_langgraphs_sdk_drives_threads_and_runs(served):
    from langgraph_sdk import get_sync_client

    base, _ = served
    sdk = get_sync_client(url=base)
    scene = render_scene(5, 200, 150)
    photo = httpx.post(f"{base}/artifacts", content=png_bytes(scene.image)).json()
    thread = sdk.threads.create(metadata={"title": "sdk"})
    box = ", ".join(map(str, scene.box))
    text = f"<module>B</module><instruction>segment it</instruction><region>({box})</region>"
    parts = list(sdk.runs.stream(thread["thread_id"], "vitron-explicit",
                                 input={"text": text, "image": photo["sha256"]}))
    assert parts[0].event == "metadata" and parts[-1].event == "end"
    assert parts[-1].data["status"] == "success" and parts[-1].data["reply"]["artifacts"][0]["alias"] == "mask1"
    assert sdk.threads.get(thread["thread_id"])["status"] == "idle"
    assert httpx.get(f"{base}/readyz").json()["checks"]["database"] == "ok"


def test_fifty_threads_over_five_keys_all_finish_without_cross_talk(tmp_path):
    env = {**cli_env(tmp_path / "home"), "VITRON_PLANNER": "explicit"}
    keys = {f"owner{i}": json.loads(vitron(env, "keys", "create", "--owner", f"owner{i}", "--json").stdout)["key"]
            for i in range(5)}
    with vitron_serve(env) as base:
        image = png_bytes(np.full((32, 32, 3), 90, np.uint8))

        def one(index: int) -> tuple[str, str, str]:
            owner = f"owner{index % 5}"
            headers = {"Authorization": f"Bearer {keys[owner]}"}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                photo = http.post("/artifacts", content=image).json()
                thread = http.post("/threads").json()["thread_id"]
                run = http.post(f"/threads/{thread}/runs/wait", json={"input": {
                    "text": "<module>C</module><instruction>make it sepia</instruction>",
                    "image": photo["sha256"]}}).json()
                return owner, thread, run["status"]

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(one, range(50)))
        assert [status for _, _, status in results] == ["success"] * 50
        for owner, key in keys.items():
            seen = {t["thread_id"] for t in httpx.get(f"{base}/threads", params={"limit": 100},
                                                      headers={"Authorization": f"Bearer {key}"}).json()}
            assert seen == {thread for who, thread, _ in results if who == owner}  # its own ten, no other
        listed = json.loads(vitron(env, "keys", "list", "--json").stdout)["keys"]
        assert sorted(k["owner"] for k in listed) == sorted(keys) and all("key" not in k for k in listed)
        first = next(k for k in listed if k["owner"] == "owner0")
        assert vitron(env, "keys", "revoke", first["id"]).returncode == 0
        revoked = httpx.get(f"{base}/threads", headers={"Authorization": f"Bearer {keys['owner0']}"})
        assert revoked.status_code == 401  # at once (the server rechecks keys on every request)


def test_without_keys_it_listens_on_loopback_only(tmp_path):
    refused = vitron(cli_env(tmp_path / "home"), "serve", "--host", "0.0.0.0", timeout=60)
    assert refused.returncode == 2 and "loopback only" in refused.stderr and "vitron keys create" in refused.stderr
