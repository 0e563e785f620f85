"""vitron-mini's figures side by side, one JSON line: the generated test split (phrasings and objects never trained
on), the hand-written development set (`bench/planner_dev.jsonl`, read while building the planner) and the
hand-written held-out set (`bench/planner_heldout.jsonl`, never trained or tuned on), against the planner issue's
goals.

Run: .venv/bin/python bench/planner.py [--checkpoint DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/ (it holds memory.py)

from agent.planners.conversations import load_conversations, score_conversations
from agent.planners.mini.evaluate import evaluate
from agent.planners.mini.planner import MiniPlanner

HERE = Path(__file__).parent
GOALS = {"module_exact": ">= 0.95", "keyword_recall": ">= 0.95", "follow_up_target_accuracy": ">= 0.95",
         "silent_wrong_rate": "<= 0.02", "ask_rate_on_clear": "<= 0.05", "generated module_exact": ">= 0.95"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=None)
    args = parser.parse_args()
    with contextlib.redirect_stdout(io.StringIO()):  # evaluate prints its own line
        generated = evaluate(args.checkpoint, progress=None)
    planner = MiniPlanner.from_checkpoint(args.checkpoint)
    sets = {name: score_conversations(planner, load_conversations(HERE / f"planner_{name}.jsonl"))
            for name in ("dev", "heldout")}
    print(json.dumps({"generated": {k: v for k, v in generated.items() if k != "ablation_no_synergy"}, **sets,
                      "goals": GOALS}))


if __name__ == "__main__":
    main()
