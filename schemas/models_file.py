"""The models file: which real backend each module uses, and where its weights are.

A YAML file (`VITRON_MODELS_FILE`, default `$VITRON_HOME/models.yaml`), one entry per module (letter, name or
title as key)::

    image_segmentation:
      backend: sam
      weights: /models/sam_vit_b_01ec64.pth
      variant: vit_b
    image_generation:
      backend: stable_diffusion
      weights: /models/stable-diffusion-v1-5          # a diffusers folder (save_pretrained layout)
      gligen: /models/gligen-1-4-generation-text-box  # optional: used when the invocation has phrase boxes
      dtype: float16
    image_editing:
      backend: stable_diffusion
      weights:                                        # several weights: one per role
        inpaint: /models/stable-diffusion-inpainting
        instruct: /models/instruct-pix2pix

`weights` is a path, or a mapping from role to path; a single path is the role `main`. Other unknown keys of an
entry are roles too (`gligen:` above), so simple files stay flat. A module not in the file uses its embedded
backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import InvalidInput, UnknownModule
from .modules import ModuleName, resolve_module

MODELS_SETTING = "VITRON_MODELS_FILE"
MAIN = "main"

DType = Literal["auto", "float16", "bfloat16", "float32"]
"""`auto`: float16 on CUDA, float32 on the CPU."""


class ModelSpec(BaseModel):
    """One module's real backend: its name, its weights by role, and where and how it runs."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field(min_length=1, description="Backend name, one of the tool's backends.")
    weights: dict[str, Path] = Field(default_factory=dict, description="Weights by role; a single path is `main`.")
    variant: str | None = Field(default=None, description="Architecture variant, e.g. SAM's vit_b, vit_l or vit_h.")
    device: str = Field(default="auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
    dtype: DType = "auto"
    cpu_offload: bool = Field(default=False, description="Keep weights on the CPU; parts go to the GPU in turn.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend-specific settings (steps, guidance…).")

    @model_validator(mode="before")
    @classmethod
    def _roles(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        weights = data.get("weights")
        weights = {} if weights is None else dict(weights) if isinstance(weights, dict) else {MAIN: weights}
        for key in [k for k in data if k not in cls.model_fields]:  # flat roles: `gligen: /path`
            weights[key] = data.pop(key)
        data["weights"] = weights
        return data

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        head, _, index = value.partition(":")
        if head not in {"auto", "cpu", "cuda", "mps"} or (index and not (head == "cuda" and index.isdigit())):
            raise ValueError(f"unknown device {value!r}: use auto, cpu, cuda or cuda:N")
        return value

    @field_validator("weights")
    @classmethod
    def _expand(cls, value: dict[str, Path]) -> dict[str, Path]:
        return {role: Path(path).expanduser() for role, path in value.items()}


class ModelsFile(BaseModel):
    """Every configured module, by canonical name; read with `ModelsFile.load(path)`."""

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    modules: dict[ModuleName, ModelSpec] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> ModelsFile:
        """Read a models file; a missing file configures nothing. Any mistake raises `InvalidInput` naming it."""
        import yaml

        path = Path(path).expanduser()
        if not path.is_file():
            return cls(path=path)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read the models file {path}: {exc}", field=MODELS_SETTING,
                               fix="map each module to its backend and weights in YAML") from exc
        return cls.parse({} if raw is None else raw, path)  # an empty file configures nothing

    @classmethod
    def parse(cls, raw: Any, path: Path | None = None) -> ModelsFile:
        """The models file from already-parsed YAML (a mapping of module → entry)."""
        where = str(path) if path else "the models file"
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must map modules to entries, not a {type(raw).__name__}",
                               field=MODELS_SETTING, fix="write `image_segmentation: {backend: sam, weights: …}`")
        modules: dict[str, ModelSpec] = {}
        for key, entry in raw.items():
            try:
                name = resolve_module(str(key)).name
            except UnknownModule as exc:
                raise InvalidInput(f"{where}: {exc.problem}", field=MODELS_SETTING, fix=exc.fix) from None
            try:
                modules[name] = ModelSpec.model_validate(entry)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise InvalidInput(f"{where}: {name}{'.' + loc if loc else ''}: {err['msg']}", field=MODELS_SETTING,
                                   fix="each entry takes backend, weights, variant, device, dtype, cpu_offload, "
                                   "options and weight roles") from None
        return cls(path=path, modules=modules)

    def spec(self, module: str) -> ModelSpec | None:
        """The entry for a module (any spelling), or None when it uses its embedded backend."""
        return self.modules.get(resolve_module(module).name)

    def with_override(self, module: str, backend: str | None = None, weights: str | Path | None = None) -> ModelsFile:
        """A copy where one module's backend and/or main weights are replaced (one call's override)."""
        name = resolve_module(module).name
        current = self.modules.get(name)
        if backend is None and current is None:
            raise InvalidInput(f"weights need a backend: {name} has none configured", field="backend",
                               fix="name the backend the weights are for")
        data = current.model_dump() if current is not None else {}
        if backend is not None and backend != data.get("backend"):
            data = {"backend": backend, "weights": {}}  # another backend: the old entry's roles don't apply
        if weights is not None:
            data["weights"] = {**data.get("weights", {}), MAIN: Path(weights)}
        return ModelsFile(path=self.path, modules={**self.modules, name: ModelSpec.model_validate(data)})

    def with_options(self, module: str, options: dict[str, Any]) -> ModelsFile:
        """A copy where one module's backend options are updated by `options` (one step's own options)."""
        name = resolve_module(module).name
        current = self.modules.get(name)
        if current is None:
            raise InvalidInput(f"{name} has no real backend configured, and only real backends take options",
                               field="options", fix=f"configure {name} in the models file ({MODELS_SETTING}), "
                                                    "or leave the step's options out")
        merged = current.model_copy(update={"options": {**current.options, **options}})
        return ModelsFile(path=self.path, modules={**self.modules, name: merged})
