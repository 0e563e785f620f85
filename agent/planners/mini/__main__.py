"""`python -m agent.planners.mini train [--out DIR] [--seed N]` and `... eval [--checkpoint DIR]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .inference import CHECKPOINT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.planners.mini", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train the mini planner from scratch")
    train.add_argument("--out", default=str(CHECKPOINT), help="folder to write (default: the shipped checkpoint)")
    train.add_argument("--seed", type=int, default=0)
    evaluate = commands.add_parser("eval", help="print the checkpoint's figures as one JSON line")
    evaluate.add_argument("--checkpoint", default=str(CHECKPOINT))
    args = parser.parse_args(argv)
    if args.command == "train":
        from .train import train as run_train

        run_train(args.out, seed=args.seed)
    else:
        from .evaluate import evaluate as run_evaluate

        run_evaluate(args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
