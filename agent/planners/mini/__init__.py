"""vitron-mini: a small planner fine-tuned from MiniLM that plans offline on CPU (docs/ARCHITECTURE.md).

`MiniPlanner` plans through the Planner protocol with the checkpoint shipped in `checkpoint/`; `train` makes such
a checkpoint from scratch and `evaluate` prints its figures. `python -m agent.planners.mini train|eval`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHECKPOINT", "MiniPlanner", "evaluate", "load_checkpoint", "train"]


def __getattr__(name: str) -> Any:
    # the checkpoint loads only when a planner is asked for, not when the package is imported
    if name == "CHECKPOINT":
        from .inference import CHECKPOINT

        return CHECKPOINT
    if name in ("MiniPlanner", "load_checkpoint"):
        from . import planner

        return getattr(planner, name)
    raise AttributeError(name)


def train(out_folder: Any, seed: int = 0, progress: Any = print, config: Any = None) -> dict[str, Any]:
    """Train the mini planner from scratch into `out_folder`; see `agent.planners.mini.train.train`."""
    from .train import train as run

    return run(out_folder, seed=seed, progress=progress, config=config)


def evaluate(folder: Any = None, **options: Any) -> dict[str, Any]:
    """The checkpoint's figures on the held-out test split, as one JSON-able dict (also printed)."""
    from .evaluate import evaluate as run

    return run(folder, **options)
