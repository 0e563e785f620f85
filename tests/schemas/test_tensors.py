"""The tensor field: shape and dtype checks with clear errors, JSON as artifact refs, fuzzing."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from schemas import SignalEmbedding, TensorSpec


class Prompt(BaseModel):
    embedding: Annotated[Any, TensorSpec(("k", 256))]


def test_accepts_numpy_and_torch_of_the_declared_shape():
    assert Prompt(embedding=np.zeros((3, 256), np.float32)).embedding.shape == (3, 256)
    assert isinstance(Prompt(embedding=torch.zeros(1, 256, dtype=torch.float16)).embedding, torch.Tensor)


def test_wrong_shape_names_field_expected_and_received():
    with pytest.raises(ValidationError) as info:
        Prompt(embedding=np.zeros((3, 128), np.float32))
    err = info.value.errors()[0]
    assert err["loc"] == ("embedding",)
    assert "[k, 256]" in err["msg"] and "[3, 128]" in err["msg"]


def test_wrong_dtype_and_non_finite_are_refused():
    with pytest.raises(ValidationError, match="int64"):
        Prompt(embedding=np.zeros((2, 256), np.int64))
    bad = np.zeros((2, 256), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        Prompt(embedding=bad)


def test_symbolic_dimensions_must_agree_within_a_tensor():
    class Square(BaseModel):
        m: Annotated[Any, TensorSpec(("n", "n"))]

    Square(m=np.eye(3, dtype=np.float32))
    with pytest.raises(ValidationError, match=r"\[n, n\]"):
        Square(m=np.zeros((3, 4), np.float32))


def test_json_is_a_ref_to_safetensors_never_numbers(store):
    value = np.arange(512, dtype=np.float32).reshape(2, 256)
    dumped = Prompt(embedding=value).model_dump(mode="json", context={"store": store})
    ref = dumped["embedding"]
    assert set(ref) >= {"sha256", "kind", "media_type", "shape"}
    assert ref["kind"] == "embedding" and ref["media_type"] == "application/vnd.safetensors"
    assert ref["shape"] == [2, 256]
    assert len(json.dumps(dumped)) < 400  # a ref, not 512 numbers
    back = Prompt.model_validate(dumped, context={"store": store})
    np.testing.assert_array_equal(back.embedding, value)


def test_json_without_a_store_is_a_clear_error():
    with pytest.raises(PydanticSerializationError, match="context=\\{'store'"):
        Prompt(embedding=np.zeros((1, 256), np.float32)).model_dump(mode="json")


def test_ref_without_a_store_or_of_the_wrong_kind_is_refused(store):
    ref = store.put_tensor(np.zeros((1, 256), np.float32))
    with pytest.raises(ValidationError, match="no store"):
        Prompt.model_validate({"embedding": ref.model_dump()})
    image_ref = store.put_image(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValidationError, match="kind 'embedding'"):
        Prompt.model_validate({"embedding": image_ref.model_dump()}, context={"store": store})


def test_json_schema_describes_a_ref_with_shape():
    schema = Prompt.model_json_schema()
    prop = schema["properties"]["embedding"]
    assert prop["x-tensor-shape"] == ["k", 256] and prop["x-tensor-dtype"] == "float"
    assert "sha256" in json.dumps(schema)


def test_signal_embedding_round_trip(store):
    sig = SignalEmbedding(task_specific=np.ones((2, 256), np.float32), task_invariant=np.ones((1, 64), np.float32))
    data = sig.model_dump(mode="json", context={"store": store})
    again = SignalEmbedding.model_validate(data, context={"store": store})
    assert again.task_specific.shape == (2, 256) and again.task_invariant.shape == (1, 64)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    arrays(st.sampled_from([np.float32, np.float64, np.int32, np.uint8, np.bool_]), array_shapes(max_dims=4)),
    st.lists(st.lists(st.floats(allow_nan=True), max_size=4), max_size=4),
    st.none(), st.text(), st.integers(), st.dictionaries(st.text(), st.text()),
))
def test_fuzz_only_typed_errors(value):
    with contextlib.suppress(ValidationError):
        Prompt(embedding=value)
