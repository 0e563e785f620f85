"""`vitron planner train|merge|eval|align`: reproduce the mini planner's checkpoint or fine-tune a VITRON planner
(LoRA on a LLaVA-style model), fold its adapter in, print a planner's figures, and align a planner's signals with the
configured backends."""

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
    base: Annotated[Path | None, typer.Option(help="A LLaVA-style (or causal LM) model folder: fine-tune a "
                                                   "VITRON planner from it with LoRA, not vitron-mini.")] = None,
    stages: Annotated[str, typer.Option(help="With --base: the stages to run, e.g. 1,2,3.")] = "1,2,3",
    lora_rank: Annotated[int, typer.Option(help="With --base: the LoRA rank.")] = 16,
    steps: Annotated[int, typer.Option(help="With --base: optimizer steps of stage 1.")] = 200,
    batch: Annotated[int, typer.Option(help="With --base: requests per optimizer step.")] = 4,
    accumulate: Annotated[int, typer.Option(help="With --base: batches per optimizer step.")] = 1,
    requests: Annotated[int, typer.Option(help="With --base: generated requests to train on.")] = 2000,
    device: Annotated[str, typer.Option(help="With --base: cpu or cuda (bf16/fp16 there).")] = "cpu",
) -> None:
    """Train the three stages (instruction tuning, embedding alignment, cross-task synergy): vitron-mini (~15 min,
    2 idle cores), or with --base a VITRON planner whose folder VITRON_PLANNER_MODEL then names (resumable: run
    the same command again after a stop)."""
    import json

    if base is not None:
        from agent.planners.vitron_train import VitronTrainConfig, train_vitron
        from schemas import InvalidInput

        if out is None:
            raise InvalidInput("--base needs the folder to write", field="--out", fix="name it with --out DIR")
        try:
            chosen = tuple(int(s) for s in stages.split(",") if s.strip())
        except ValueError:
            raise InvalidInput(f"{stages!r} is not a list of stage numbers", field="--stages",
                               fix="write them as 1,2,3") from None
        config = VitronTrainConfig(stages=chosen, lora_rank=lora_rank, steps=steps, batch=batch,
                                   accumulate=accumulate, requests=requests, seed=seed, device=device)
        summary = train_vitron(base, out, config, progress=_say)
        print(json.dumps({stage: {k: v for k, v in figures.items() if not k.endswith("losses")}
                          for stage, figures in summary["stages"].items()}))
        err.print(f"wrote {out}: set VITRON_PLANNER_MODEL={out} (and VITRON_PLANNER=vitron) to plan with it")
        return
    from agent.planners.mini import CHECKPOINT
    from agent.planners.mini.train import train

    folder = out or CHECKPOINT
    train(folder, seed=seed, progress=_say)
    err.print(f"wrote {folder}")


@planner_app.command("merge")
@clear_errors
def merge_cmd(
    model: Annotated[Path, typer.Option(help="A trained VITRON planner folder (`train --base`).")],
    out: Annotated[Path, typer.Option(help="Folder to write the model with its adapter folded in.")],
) -> None:
    """Fold a trained planner's LoRA adapter into its base: one folder VITRON_PLANNER_MODEL can name, no base
    needed."""
    from agent.planners.vitron_train import merge

    err.print(f"wrote {merge(model, out)}")


@planner_app.command("eval")
@clear_errors
def eval_cmd(
    checkpoint: Annotated[Path | None, typer.Option(help="Folder to measure (default: the shipped one).")] = None,
    conversations: Annotated[Path | None, typer.Option("--set", help="Score a planner on a file of hand-written "
                                                                     "conversations instead (one JSON line).")] = None,
    planner: Annotated[str | None, typer.Option(help="The planner --set scores: mini, explicit, chat or vitron "
                                                     "(default VITRON_PLANNER).")] = None,
    model: Annotated[Path | None, typer.Option(help="With --planner vitron: its model folder (default "
                                                    "VITRON_PLANNER_MODEL).")] = None,
) -> None:
    """Print the checkpoint's figures on the test split as one JSON line (progress on stderr); with --set, a
    planner's figures on hand-written conversations (bench/planner_heldout.jsonl, never trained on)."""
    if conversations is None:
        from agent.planners.mini.evaluate import evaluate

        evaluate(checkpoint, progress=_say)
        return
    import json

    from agent.service import score_planner
    from schemas import VitronSettings

    settings = VitronSettings(**({"planner_model": model} if model is not None else {}))
    print(json.dumps(score_planner(conversations, planner=planner, settings=settings, progress=_say)))


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
