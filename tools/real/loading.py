"""Loading real weights: the models-file entry, paths checked, device and dtype chosen, once per process."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from schemas import MODELS_SETTING, BackendUnavailable, InvalidInput, ModelSpec, resolve_module

from ..base import ToolContext
from ..model_cache import model_cache

T = TypeVar("T")
N = TypeVar("N", int, float)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def model_spec(ctx: ToolContext, module: str, backend: str) -> ModelSpec:
    """The models-file entry of `module`; `BackendUnavailable` naming the file when it has none for `backend`."""
    spec = ctx.models.spec(module)
    name = resolve_module(module).name
    if spec is None or spec.backend != backend:
        where = ctx.models.path or ctx.settings.models_path
        raise BackendUnavailable(
            f"{name} has no {backend!r} weights configured in {where}",
            field=MODELS_SETTING,
            fix=f"add `{name}: {{backend: {backend}, weights: /path/to/weights}}` to {where} "
            f"(or point {MODELS_SETTING} at a file that has it), or pass --backend {backend} --weights PATH",
        )
    return spec


def weights_path(spec: ModelSpec, module: str, role: str = "main", *,
                 expect: Literal["folder", "file", "transformers"] = "folder") -> Path:
    """The path of one weights role, checked: a clear error naming the setting and the path if it is wrong.

    `expect`: a diffusers folder (`folder`), a transformers folder (`transformers`: config.json beside the weights
    and processor), or a single file."""
    name = resolve_module(module).name
    path = spec.weights.get(role)
    what = {"folder": "a diffusers folder (save_pretrained layout)", "file": "a weights file",
            "transformers": "a transformers folder (save_pretrained layout, with config.json)"}[expect]
    if path is None:
        raise BackendUnavailable(
            f"{name} ({spec.backend}) needs weights for {role!r}", field=MODELS_SETTING,
            fix=f"give `{role}: /path/to/{'file' if expect == 'file' else 'folder'}` under {name} in the models "
            f"file ({what})",
        )
    marker = {"folder": "model_index.json", "transformers": "config.json"}.get(expect)
    ok = path.is_dir() and (path / marker).is_file() if marker else path.is_file()
    if not ok:
        problem = "does not exist" if not path.exists() else f"is not {what}"
        raise BackendUnavailable(
            f"{name} ({spec.backend}) weights {role!r} at {path} {problem}", field=MODELS_SETTING,
            fix=f"fix the path under {name} in the models file, or download the weights there first "
            "(vitron never downloads at run time)",
        )
    return path


def device_of(spec: ModelSpec) -> torch.device:
    """`auto` is the first CUDA device when there is one, else the CPU."""
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {spec.device!r} is configured but this machine has no CUDA GPU",
                                 field=MODELS_SETTING, fix="set `device: auto` or `device: cpu` in the models file")
    return device


def dtype_of(spec: ModelSpec, device: torch.device) -> torch.dtype:
    """`auto` is float16 on CUDA and float32 on the CPU (half precision is slow or unsupported there)."""
    if spec.dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[spec.dtype]


def cached(spec: ModelSpec, role: str, load: Callable[[], T]) -> T:
    """`load()` once per process for this backend, role, weights, variant, device and dtype (the model cache)."""
    key = (spec.backend, role, str(spec.weights.get(role)), spec.variant, spec.device, spec.dtype, spec.cpu_offload)
    return model_cache().get(key, load)


def load_pipeline(pipeline_class: Any, spec: ModelSpec, module: str, role: str = "main", **kwargs: Any) -> Any:
    """A diffusers pipeline from a local folder, on the spec's device and dtype, cached; never the network."""
    path = weights_path(spec, module, role)

    def load() -> Any:
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        device = device_of(spec)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Our own progress reports go to the job's events; the libraries' loading bars would only clutter stderr.
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
        try:
            pipe = pipeline_class.from_pretrained(path, torch_dtype=dtype_of(spec, device), local_files_only=True,
                                                  **kwargs)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(
                f"cannot load {pipeline_class.__name__} from {path}: {exc}", field=MODELS_SETTING,
                fix=f"point {role!r} of {resolve_module(module).name} at a folder saved with save_pretrained "
                f"for {pipeline_class.__name__}",
            ) from exc
        if spec.cpu_offload and device.type == "cuda":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return cached(spec, role, load)


def generator(seed: int | None, device: torch.device) -> torch.Generator:
    """A generator for the pipeline's noise: seeded, a run is reproducible; unseeded, a fresh random seed."""
    gen = torch.Generator(device="cpu" if device.type == "mps" else device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def step_progress(ctx: ToolContext, label: str, total_steps: int, *, start: float = 0.0,
                  end: float = 1.0) -> Callable[..., dict[str, Any]]:
    """A diffusers `callback_on_step_end` reporting each denoising step as progress between `start` and `end`.

    Progress reports are also where a cancelled job stops (the callback raises `JobCancelled`)."""
    total = max(total_steps, 1)

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        done = min(step + 1, total)
        ctx.progress(start + (end - start) * done / total, f"{label}: step {done}/{total}")
        return kwargs

    return callback


def step_callback(ctx: ToolContext, label: str, total_steps: int, *, start: float = 0.0,
                  end: float = 1.0) -> Callable[[int, Any, Any], None]:
    """The same progress as `step_progress`, for pipelines that only take the older `callback(step, timestep,
    latents)` (GLIGEN, text-to-video)."""
    report = step_progress(ctx, label, total_steps, start=start, end=end)

    def callback(step: int, timestep: Any, latents: Any) -> None:
        report(None, step, timestep, {})

    return callback


def option(spec: ModelSpec, name: str, default: N, *, low: float | None = None, high: float | None = None) -> N:
    """A numeric backend option from the models file, of the default's type and within bounds; a clear error
    naming `options.NAME` otherwise."""
    raw = spec.options.get(name, default)
    kind = type(default)
    try:
        if isinstance(raw, bool) or (kind is int and float(raw) != int(raw)):
            raise ValueError
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or (low is not None and value < low) or (high is not None and value > high):
        bounds = "".join(part for part, bound in ((f" ≥ {low}", low), (f" ≤ {high}", high)) if bound is not None)
        raise InvalidInput(f"option {name}={raw!r} of the {spec.backend} backend is not valid",
                           field=f"options.{name}",
                           fix=f"set `options: {{{name}: …}}` in the models file to a {kind.__name__}{bounds}")
    return value


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's global generator for the block, restoring it after.

    Some pipelines (GLIGEN, I2VGenXL) draw part of their noise (the VAE's latent sample, inpainting noise) from
    the global generator rather than the one they are given, so a seeded run needs both to be reproducible."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def multiple_of_8(side: int) -> int:
    """The nearest size a Stable Diffusion VAE takes (its latents are 8 times smaller)."""
    return max(8, round(side / 8) * 8)
