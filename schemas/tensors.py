"""A Pydantic field type for tensors with shape and dtype constraints.

In Python a tensor field holds a numpy array or a torch tensor. In JSON it is an `ArtifactRef` to a
safetensors artifact, never inline numbers: dumping with `mode="json"` writes the tensor to the store
given in the context, and validating a ref loads it back from there::

    class Signal(BaseModel):
        vec: Annotated[Any, TensorSpec(("k", 256))]

    data = Signal(vec=np.zeros((2, 256), "float32")).model_dump(mode="json", context={"store": store})
    Signal.model_validate(data, context={"store": store})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from .artifacts import ArtifactRef

DTypeFamily = Literal["float", "float16", "float32", "bfloat16", "int", "uint8", "bool", "any"]
"""Accepted dtypes: `float` takes any floating type, `int` any signed or unsigned integer."""

Dim = int | str | None
"""One dimension: an exact size, a symbol that must match itself within the tensor, or `None` (any)."""


class TensorStore(Protocol):
    """What a tensor field needs from a store to (de)serialise; `memory.ArtifactStore` is one."""

    def put_tensor(self, tensor: Any) -> ArtifactRef: ...

    def get_tensor(self, ref: ArtifactRef) -> np.ndarray: ...


def tensor_shape_dtype(value: Any) -> tuple[tuple[int, ...], str] | None:
    """(shape, dtype name) of a numpy array or torch tensor; None for anything else."""
    if isinstance(value, np.ndarray):
        return tuple(int(d) for d in value.shape), value.dtype.name
    if type(value).__module__.startswith("torch") and hasattr(value, "shape") and hasattr(value, "dtype"):
        return tuple(int(d) for d in value.shape), str(value.dtype).removeprefix("torch.")
    return None


def _in_family(dtype: str, family: DTypeFamily) -> bool:
    if family == "any":
        return True
    if family == "float":
        return dtype in {"float16", "float32", "float64", "bfloat16"}
    if family == "int":
        return dtype.startswith(("int", "uint"))
    return dtype == family


def _all_finite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all())
    import torch  # only reached with a torch tensor in hand, so torch is already imported

    return bool(torch.isfinite(value).all())


def _fmt(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join("*" if d is None else str(d) for d in shape) + "]"


@dataclass(frozen=True)
class TensorSpec:
    """Constraint attached with `Annotated[Any, TensorSpec(("k", 256), "float")]`."""

    shape: tuple[Dim, ...]
    dtype: DTypeFamily = "float"

    def describe(self) -> str:
        return f"{_fmt(self.shape)} {self.dtype}"

    def check(self, value: Any) -> Any:
        """Return `value` if it fits; raise a `PydanticCustomError` saying expected and received if not."""
        if isinstance(value, list | tuple):
            try:
                with np.errstate(over="ignore"):  # an overflow becomes inf, which the finite check refuses
                    value = np.asarray(value, dtype=np.float32 if self.dtype in ("float", "float32") else None)
            except (ValueError, TypeError) as exc:
                raise PydanticCustomError("tensor_type", "not a rectangular array of numbers: {err}",
                                          {"err": str(exc)}) from None
        found = tensor_shape_dtype(value)
        if found is None:
            raise PydanticCustomError(
                "tensor_type",
                "expected a tensor {expected} (numpy array, torch tensor or artifact ref), got {got}",
                {"expected": self.describe(), "got": type(value).__name__},
            )
        shape, dtype = found
        if not self._shape_fits(shape) or not _in_family(dtype, self.dtype):
            raise PydanticCustomError(
                "tensor_shape",
                "expected shape {expected}, got {got}",
                {"expected": self.describe(), "got": f"{_fmt(shape)} {dtype}"},
            )
        if _in_family(dtype, "float") and not _all_finite(value):
            raise PydanticCustomError("tensor_value", "tensor {shape} holds NaN or infinite values",
                                      {"shape": _fmt(shape)})
        return value

    def _shape_fits(self, shape: tuple[int, ...]) -> bool:
        if len(shape) != len(self.shape):
            return False
        bound: dict[str, int] = {}
        for want, got in zip(self.shape, shape, strict=True):
            if isinstance(want, int) and want != got:
                return False
            if isinstance(want, str) and bound.setdefault(want, got) != got:
                return False
        return True

    def _validate(self, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, dict) and "sha256" in value:
            value = ArtifactRef.model_validate(value)
        if isinstance(value, ArtifactRef):
            store = (info.context or {}).get("store")
            if store is None:
                raise PydanticCustomError(
                    "tensor_ref",
                    "got a tensor reference but no store to load it from; validate with context={{'store': store}}",
                )
            if value.kind != "embedding":
                raise PydanticCustomError("tensor_ref", "a tensor reference must be of kind 'embedding', got {kind!r}",
                                          {"kind": value.kind})
            value = store.get_tensor(value)
        return self.check(value)

    def _serialize(self, value: Any, info: Any) -> dict[str, Any]:
        store = (info.context or {}).get("store")
        if store is None:
            raise ValueError(
                "tensor fields serialise to artifact refs, never inline numbers: "
                "dump with mode='json', context={'store': store}"
            )
        return store.put_tensor(value).model_dump(mode="json")

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            self._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                self._serialize, info_arg=True, when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        json_schema = handler(ArtifactRef.__pydantic_core_schema__)
        return {
            "allOf": [json_schema],
            "description": f"Tensor {self.describe()}, passed as a reference to a safetensors artifact.",
            "x-tensor-shape": [d if d is not None else "*" for d in self.shape],
            "x-tensor-dtype": self.dtype,
        }
