"""How long a command takes from a cold start: a new `vitron` process each time, as a user runs it. Prints one JSON
line (medians of 3 runs, in seconds):

- `help_s`: `vitron --help` (goal ≤ 0.5);
- `plan_cold_s`: `vitron plan "make it sepia"` with the default planner (it loads vitron-mini and its encoder);
- `run_one_step_cold_s`: `vitron run --image photo.png "make it sepia"`, a fresh data folder each time (the database
  made, the planner loaded, one embedded image edit);
- `tool_s`: that step's own time, from its record (goal: `run_one_step_cold_s` ≤ `tool_s` + 2.5);
- `overhead_s`: `run_one_step_cold_s` − `tool_s`.

Run: .venv/bin/python bench/cold_start.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
from skimage import data

VITRON = str(Path(sys.executable).with_name("vitron"))
RUNS = 3


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([VITRON, *args], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"vitron {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - started, proc.stdout


def main() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "coffee.png"
        cv2.imwrite(str(photo), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
        helps, plans, runs, tools = [], [], [], []
        for index in range(RUNS):
            env = {**base, "VITRON_HOME": str(Path(folder) / f"home{index}")}
            helps.append(timed(["--help"], env)[0])
            plans.append(timed(["plan", "--json", "make it sepia"], env)[0])
            seconds, printed = timed(["run", "--json", "--image", str(photo), "make it sepia"], env)
            runs.append(seconds)
            session = json.loads(printed)["session"]
            shown = json.loads(timed(["sessions", "show", session, "--json"], env)[1])
            tools.append(sum(step["duration_s"] or 0.0 for step in shown["steps"]))
    run_s, tool_s = statistics.median(runs), statistics.median(tools)
    print(json.dumps({"help_s": round(statistics.median(helps), 3), "plan_cold_s": round(statistics.median(plans), 3),
                      "run_one_step_cold_s": round(run_s, 3), "tool_s": round(tool_s, 3),
                      "overhead_s": round(run_s - tool_s, 3)}))


if __name__ == "__main__":
    main()
