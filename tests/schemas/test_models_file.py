"""The models file: flat or nested weight roles, any module spelling, clear errors for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import MODELS_SETTING, InvalidInput, ModelsFile, ModelSpec

EXAMPLE = """
B:
  backend: sam
  weights: ~/models/sam_vit_b.pth
  variant: vit_b
Image Generation:
  backend: stable_diffusion
  weights: /models/sd15
  gligen: /models/gligen
  dtype: float16
  options: {num_inference_steps: 20}
image_editing:
  backend: stable_diffusion
  weights: {inpaint: /models/inpaint, instruct: /models/ip2p}
  device: cuda:1
  cpu_offload: true
"""


def test_a_models_file_reads_every_spelling_and_both_ways_of_giving_weights(tmp_path: Path):
    path = tmp_path / "models.yaml"
    path.write_text(EXAMPLE)
    models = ModelsFile.load(path)
    assert set(models.modules) == {"image_segmentation", "image_generation", "image_editing"}
    sam = models.spec("image_segmentation")
    assert sam.backend == "sam" and sam.variant == "vit_b"
    assert sam.weights == {"main": Path.home() / "models/sam_vit_b.pth"}  # ~ expanded
    sd = models.spec("A")
    assert sd.weights == {"main": Path("/models/sd15"), "gligen": Path("/models/gligen")}
    assert sd.dtype == "float16" and sd.options == {"num_inference_steps": 20}
    edit = models.spec("Image Editing")
    assert edit.weights == {"inpaint": Path("/models/inpaint"), "instruct": Path("/models/ip2p")}
    assert edit.device == "cuda:1" and edit.cpu_offload
    assert models.spec("video_generation") is None  # not configured: its embedded backend (or none)


def test_a_missing_file_configures_nothing(tmp_path: Path):
    assert ModelsFile.load(tmp_path / "absent.yaml").modules == {}


@pytest.mark.parametrize(("text", "problem"), [
    ("Z:\n  backend: x\n", "unknown module 'Z'"),
    ("B: [1, 2]\n", "image_segmentation"),
    ("B:\n  weights: /x\n", "backend"),
    ("B:\n  backend: sam\n  device: gpu\n", "unknown device 'gpu'"),
    ("B:\n  backend: sam\n  dtype: float8\n", "dtype"),
    ("- just\n- a list\n", "must map modules"),
    ("B: {backend: sam\n", "cannot read"),
])
def test_every_mistake_names_the_setting_and_what_is_wrong(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=problem) as caught:
        ModelsFile.load(path)
    assert caught.value.field == MODELS_SETTING
    assert str(path) in caught.value.problem


def test_invoke_overrides_one_module_for_one_call():
    models = ModelsFile.parse({"image_editing": {"backend": "stable_diffusion", "weights": {"inpaint": "/a"}}})
    same_backend = models.with_override("C", weights="/b")
    assert same_backend.spec("C").weights == {"inpaint": Path("/a"), "main": Path("/b")}
    other = models.with_override("B", backend="sam", weights="/sam.pth")
    assert other.spec("B") == ModelSpec(backend="sam", weights={"main": Path("/sam.pth")})
    assert models.spec("B") is None  # the original is untouched
    with pytest.raises(InvalidInput, match="weights need a backend"):
        models.with_override("D", weights="/x")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12))
_yaml_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_yaml_values, st.dictionaries(
    st.sampled_from(["B", "A", "image_editing", "Video Generation", "nope"]),
    st.dictionaries(st.sampled_from(["backend", "weights", "variant", "device", "dtype", "cpu_offload", "options",
                                     "gligen"]), _yaml_values, max_size=5), max_size=3)))
def test_any_parsed_yaml_gives_a_models_file_or_invalid_input(raw):
    try:
        ModelsFile.parse(raw)
    except InvalidInput as exc:
        assert exc.field == MODELS_SETTING


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_file_text_gives_a_models_file_or_invalid_input(tmp_path_factory, text: str):
    path = tmp_path_factory.mktemp("models") / "models.yaml"
    path.write_text(text)
    try:
        models = ModelsFile.load(path)
    except InvalidInput as exc:
        assert exc.field == MODELS_SETTING
    else:
        assert yaml.safe_load(text) in (None, {}) or models.modules
