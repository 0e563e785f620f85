"""What the agent adds around the tools, and what a checkpoint costs. Prints one JSON line.

- `overhead_ratio`: a 3-step chained plan (each step reads the one before) whose tools take 100 ms on average,
  run through the whole graph with the local executor: the turn's wall time over the sum of the tools' own
  times (goal ≤ 1.05). Median of 9 turns. The photo's size is set from a first turn so that the steps average
  100 ms on this machine (its speed varies from day to day); `tool_ms_per_step` says what they took.
- `checkpoint_bytes_per_step_small` / `_large`: bytes the LangGraph checkpointer stored for a 3-step turn
  (checkpoints, their metadata and pending writes), per step, with a 0.3 MP and an 8 MP input photo
  (goal ≤ 8 KB, the same at both sizes: the state holds refs, never pixels).

Run: .venv/bin/python bench/agent_overhead.py
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent import VitronAgent
from schemas import VitronSettings

# Three chained edits on the embedded OpenCV backend; their time grows with the photo's pixels.
STEP_MS = 100.0
PLAN = ("<module>C</module><instruction>pencil sketch</instruction>"
        "<module>C</module><instruction>cartoon</instruction><input>@1</input>"
        "<module>C</module><instruction>sepia</instruction><input>@2</input>")


def photo(megapixels: float) -> np.ndarray:
    base = data.astronaut()
    side = int((megapixels * 1e6) ** 0.5)
    return cv2.resize(base, (side, side), interpolation=cv2.INTER_CUBIC)


def turn(session, image) -> tuple[float, float]:
    """(wall seconds, sum of the tools' own seconds) of one turn."""
    tools = 0.0
    start = time.perf_counter()
    for event in session.stream(PLAN, image=image):
        if event["event"] == "step_finished":
            tools += event["seconds"]
        elif event["event"] == "step_failed":
            raise RuntimeError(event["error"])
    return time.perf_counter() - start, tools


def checkpoint_bytes(db: Path, thread_id: str) -> int:
    with sqlite3.connect(db) as conn:
        checkpoints = conn.execute("SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0) FROM checkpoints"
                                   " WHERE thread_id = ?", (thread_id,)).fetchone()[0]
        writes = conn.execute("SELECT coalesce(sum(length(value)), 0) FROM writes WHERE thread_id = ?",
                              (thread_id,)).fetchone()[0]
    return checkpoints + writes


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = VitronSettings(home=Path(tmp))
        with VitronAgent.from_settings(settings, planner="explicit") as agent:  # the plan is written out
            size_mp = 0.6
            image = agent.memory.store.put_image(photo(size_mp))
            turn(agent.session(), image)  # imports and first-call costs out of the way
            for _ in range(2):  # the size at which the steps average STEP_MS here (time grows with the pixels)
                size_mp *= STEP_MS / (turn(agent.session(), image)[1] / 3 * 1000)
                image = agent.memory.store.put_image(photo(size_mp))
            ratios, tool_ms = [], []
            for _ in range(9):
                wall, tools = turn(agent.session(), image)
                ratios.append(wall / tools)
                tool_ms.append(tools / 3 * 1000)
            sizes = {}
            for name, megapixels in (("small", 0.3), ("large", 8.0)):
                session = agent.session()
                turn(session, agent.memory.store.put_image(photo(megapixels)))
                sizes[name] = checkpoint_bytes(settings.home / "vitron-checkpoints.db", session.id) / 3
    print(json.dumps({
        "overhead_ratio": round(statistics.median(ratios), 3),
        "tool_ms_per_step": round(statistics.median(tool_ms), 1), "megapixels": round(size_mp, 2),
        "checkpoint_bytes_per_step_small": round(sizes["small"]),
        "checkpoint_bytes_per_step_large": round(sizes["large"]),
    }))


if __name__ == "__main__":
    main()
