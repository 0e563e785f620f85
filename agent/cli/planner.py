"""`vitron planner train|eval|align`: reproduce the mini planner's checkpoint, print its figures, and align a
planner's signals with the configured backends."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .console import clear_errors, err

planner_app = typer.Typer(help="The planners: train the mini planner from scratch, measure a checkpoint, or align "
                               "a planner's signals with the configured backends.", no_args_is_help=True)


def _say(message: str) -> None:
    err.print(f"[dim]{message}[/dim]", highlight=False)


@planner_app.command("train")
@clear_errors
def train_cmd(
    out: Annotated[Path | None, typer.Option(help="Folder to write (default: the shipped checkpoint).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the data and the weights.")] = 0,
) -> None:
    """Train the three stages (instruction tuning, embedding alignment, cross-task synergy); ~18 min, 2 idle cores."""
    from agent.planners.mini import CHECKPOINT
    from agent.planners.mini.train import train

    folder = out or CHECKPOINT
    train(folder, seed=seed, progress=_say)
    err.print(f"wrote {folder}")


@planner_app.command("eval")
@clear_errors
def eval_cmd(
    checkpoint: Annotated[Path | None, typer.Option(help="Folder to measure (default: the shipped one).")] = None,
    conversations: Annotated[Path | None, typer.Option("--set", help="Score a planner on a file of hand-written "
                                                                     "conversations instead (one JSON line).")] = None,
    planner: Annotated[str | None, typer.Option(help="The planner --set scores: mini, explicit, chat or vitron "
                                                     "(default VITRON_PLANNER).")] = None,
) -> None:
    """Print the checkpoint's figures on the test split as one JSON line (progress on stderr); with --set, a
    planner's figures on hand-written conversations (bench/planner_heldout.jsonl, never trained on)."""
    if conversations is None:
        from agent.planners.mini.evaluate import evaluate

        evaluate(checkpoint, progress=_say)
        return
    import json

    from agent.service import score_planner

    print(json.dumps(score_planner(conversations, planner=planner, progress=_say)))


@planner_app.command("align")
@clear_errors
def align_cmd(
    module: Annotated[str, typer.Option(help="The module whose backend reads the signal: letter (B), name or "
                                             "title.")],
    planner: Annotated[str | None, typer.Option(help="The planner whose signals are aligned: mini or vitron "
                                                     "(default VITRON_PLANNER).")] = None,
    pairs: Annotated[int, typer.Option(help="Signal/target pairs to fit on.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the generated requests and the held-out split.")] = 0,
) -> None:
    """Fit an adapter from the planner's signals for MODULE to the backend the models file configures for it (its
    own conditioning of the same instructions), stored under VITRON_HOME/adapters and loaded with the backend.
    Prints one JSON line: the adapters written and how well they fit (progress on stderr)."""
    import json

    from agent.alignment import align_signals

    print(json.dumps(align_signals(module, planner=planner, pairs=pairs, seed=seed, progress=_say)))
