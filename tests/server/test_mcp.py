"""The MCP server under `/mcp` of a real `vitron serve` (uvicorn in its own process), reached with the official SDK's
streamable HTTP client, behind the server's API keys: the conversation of tests/agent/test_mcp_server.py, and a key
that reaches its owner's threads only."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.agent.test_mcp_server import _error_of, judge, run_async, segment_and_recolour
from tests.cli import one_json, vitron, vitron_serve
from tests.scenes import render_scene


def connect(url: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"},
                              timeout=httpx2.Timeout(30.0, read=300.0))
    return Client(streamable_http_client(url, http_client=http))


def test_mcp_over_streamable_http_behind_the_api_keys(env):
    alice = one_json(vitron(env, "keys", "create", "--owner", "alice", "--json"))["key"]
    bob = one_json(vitron(env, "keys", "create", "--owner", "bob", "--json"))["key"]
    scene = render_scene(0)
    with vitron_serve(env) as base:
        url = f"{base}/mcp"
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                             headers={"Accept": "application/json, text/event-stream"})
        assert refused.status_code == 401 and refused.json()["error"]["field"] == "Authorization"

        async def main() -> tuple[dict[str, Any], Any, str]:
            async with connect(url, alice) as client:
                seen = await segment_and_recolour(client, scene)
            async with connect(url, bob) as client:  # alice's thread is no thread of bob's
                stolen = await client.call_tool("image_segmentation", {"thread": seen["thread"], "image": "@img1"})
                read = await _error_of(client.read_resource(
                    f"vitron://threads/{seen['thread']}/artifacts/img2"))
            return seen, stolen, read

        seen, stolen, read = run_async(main)
    judge(seen, scene)
    assert stolen.is_error and "no thread" in stolen.content[0].text
    assert "no thread" in read
