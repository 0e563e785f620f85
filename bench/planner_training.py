"""Fine-tuning the VITRON planner, one JSON line: tokens per second per stage, peak memory, the losses, and the
conversation figures of the trained planner on the hand-written development set's first conversations.

    .venv/bin/python bench/planner_training.py --tiny            # the CPU: a tiny random LLaVA, tiny SAM and SD
    .venv/bin/python bench/planner_training.py --tiny --family qwen2_vl   # …or another family's tiny model
    .venv/bin/python bench/planner_training.py --base DIR --device cuda [--steps N] [--models-file FILE]

The tiny run says whether the pipeline works and what it costs per token here; its planner is not one to use (a few
steps of a random model). The figures that matter come from a real base on a GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/ (it holds memory.py)

import torch

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random LLaVA-style model on the CPU")
    parser.add_argument("--family", default="llava", help="with --tiny: llava, llava_onevision, qwen2_vl, qwen2_5_vl")
    parser.add_argument("--base", type=Path, help="a model folder to fine-tune")
    parser.add_argument("--models-file", type=Path, help="the backends the signals are aligned to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--conversations", type=int, default=20, help="dev-set conversations scored after training")
    args = parser.parse_args()
    if not args.tiny and args.base is None:
        parser.error("give --tiny or --base DIR")

    from agent.planners.conversations import load_conversations, score_conversations
    from agent.planners.tiny_vitron import build_tiny_vitron
    from agent.planners.vitron import VitronPlanner, load_planner_model
    from agent.planners.vitron_train import VitronTrainConfig, train_vitron
    from schemas import VitronSettings
    from tests.tools.tiny_backends import tiny_models_file

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        models = args.models_file or (tiny_models_file(root) if args.tiny else None)
        base = build_tiny_vitron(root / "base", family=args.family, initializer_range=0.3) if args.tiny else args.base
        steps = args.steps or (40 if args.tiny else 500)
        config = VitronTrainConfig(steps=steps, head_steps=100, requests=200 if args.tiny else 5000,
                                   batch=2 if args.tiny else 8, lora_rank=4 if args.tiny else 16,
                                   lr=1e-2 if args.tiny else 2e-4, save_every=steps, device=args.device)
        settings = VitronSettings(home=root / "home", **({"models_file": models} if models else {}))
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        summary = train_vitron(base, root / "out", config, settings=settings)
        seconds = time.perf_counter() - started
        peak = (torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda")
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        planner = VitronPlanner(load_planner_model(root / "out", args.device), max_new_tokens=96)
        conversations = load_conversations(HERE / "planner_dev.jsonl")[:args.conversations]
        figures = score_conversations(planner, conversations)
    one, two, three = (summary["stages"].get(s, {}) for s in ("1", "2", "3"))
    print(json.dumps({
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "base": f"tiny random {args.family}" if args.tiny else str(args.base), "train_seconds": round(seconds, 1),
        "stage1_tokens_per_second": one.get("tokens_per_second"), "stage1_first_loss": one.get("first_loss"),
        "stage1_final_loss": one.get("final_loss"), "stage2_tokens_per_second": two.get("tokens_per_second"),
        "stage2_aligned": two.get("aligned"), "stage2_final_loss": two.get("final_loss"),
        "stage3_seconds": three.get("seconds"), "peak_memory_mb": round(peak, 1),
        "dev_conversations": len(conversations),
        **{k: figures[k] for k in ("turn_accuracy", "module_exact", "keyword_recall", "silent_wrong_rate",
                                   "ask_rate_on_clear", "plan_ms_p50")}}))


if __name__ == "__main__":
    main()
