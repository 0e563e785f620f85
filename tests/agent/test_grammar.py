"""The invocation grammar: every accepted form, every error with its place, print/parse round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.planners import SIGNAL_TOKENS, format_plan, parse_plan
from schemas import (
    MODULES,
    ArtifactRef,
    BoxRegion,
    InvalidInput,
    Invocation,
    Plan,
    PlanStep,
    PlanSyntaxError,
    PointsRegion,
    ScribbleRegion,
    parse_points,
)


def _step(module: str, command: str, signals: int = 0, **fields) -> PlanStep:
    return PlanStep(invocation=Invocation(module=module, command=command, **fields), signal_tokens=signals)


# --- accepted forms ------------------------------------------------------------------------------------------


def test_vitron_released_form():
    plan = parse_plan("Sure, I'll take the zebra farthest away. <module>B</module><instruction>segmentation: zebra "
                      "farthest from you</instruction><region>(23, 35, 110, 126)</region>")
    assert plan == Plan(reply="Sure, I'll take the zebra farthest away.", steps=[
        _step("image_segmentation", "segmentation: zebra farthest from you", region=BoxRegion(box=(23, 35, 110, 126))),
    ])
    assert plan.steps[0].invocation.signal is None


def test_paper_form():
    plan = parse_plan("<Module>Video Segmentation</Module><Instruction>segmentation: clock</Instruction>")
    assert plan == Plan(steps=[_step("video_segmentation", "segmentation: clock")])


@pytest.mark.parametrize("spelling", ["E", "e", "video_segmentation", "Video Segmentation", "VIDEO SEGMENTATION",
                                      " video-segmentation "])
@pytest.mark.parametrize("tags", [("module", "instruction"), ("MODULE", "Instruction"), ("Module", "INSTRUCTION")])
def test_module_spellings_and_tag_case(spelling, tags):
    module, instruction = tags
    plan = parse_plan(f"<{module}>{spelling}</{module}><{instruction}>track it</{instruction.lower()}>")
    assert plan.steps[0].invocation.module == "video_segmentation"


@pytest.mark.parametrize("info", MODULES, ids=lambda m: m.code)
def test_every_module_title(info):
    plan = parse_plan(f"<module>{info.title}</module><instruction>x</instruction>")
    assert plan.steps[0].invocation.module == info.name


def test_multi_step_with_step_refs_aliases_and_named_inputs():
    plan = parse_plan(
        "First I find the car, then paint it. "
        "<module>B</module><instruction>segmentation: the car</instruction><input>@img1</input>"
        "<module>C</module><instruction>paint it red</instruction>"
        '<input>@img1</input><input name="mask">@1</input><input>@mask2</input>'
    )
    assert plan.reply == "First I find the car, then paint it."
    assert [s.invocation.module for s in plan.steps] == ["image_segmentation", "image_editing"]
    assert plan.steps[0].invocation.inputs == {"input": "@img1"}
    assert plan.steps[1].invocation.inputs == {"input": "@img1", "mask": "@1", "input2": "@mask2"}


def test_points_region_with_labels():
    plan = parse_plan("<module>B</module><instruction>segment</instruction><region>points: (10, 20, 1), (30.5, 40, 0)"
                      "</region>")
    assert plan.steps[0].invocation.region == PointsRegion(points=((10, 20), (30.5, 40)), labels=(1, 0))
    assert parse_plan("<module>B</module><instruction>x</instruction><region>Points:(1,2)</region>") \
        .steps[0].invocation.region == PointsRegion(points=((1, 2),), labels=(1,))


def test_box_in_brackets_and_floats():
    plan = parse_plan("<module>B</module><instruction>x</instruction><region> [1.5, 2, 3e1, 4.25] </region>")
    assert plan.steps[0].invocation.region == BoxRegion(box=(1.5, 2, 30, 4.25))


def test_signal_tokens_count_per_block():
    plan = parse_plan("<module>B</module><signal/><instruction>x</instruction>[SIG]<SIG>"
                      "<module>C</module><instruction>y</instruction><SIGNAL /><signal></signal>"
                      "<module>A</module><instruction>z</instruction>")
    assert [s.signal_tokens for s in plan.steps] == [3, 2, 0]


def test_a_planner_adds_its_own_signal_tokens():
    text = "<module>B</module><instruction>x</instruction><vid_sig_0><vid_sig_0>"
    assert parse_plan(text).steps[0].signal_tokens == 0  # unknown spelling: ordinary reply text
    assert parse_plan(text).reply == "<vid_sig_0><vid_sig_0>"
    plan = parse_plan(text, signal_tokens=SIGNAL_TOKENS | {"<vid_sig_0>"})
    assert (plan.reply, plan.steps[0].signal_tokens) == ("", 2)


def test_reply_is_text_outside_blocks_whitespace_normalised():
    plan = parse_plan("  Sure.\n\n <module>B</module> here <instruction>x</instruction>\tand   done. ")
    assert plan.reply == "Sure. here and done."
    assert parse_plan("just   chatting,\n a < b and c > d, <b>bold</b> & <modules>").reply == \
        "just chatting, a < b and c > d, <b>bold</b> & <modules>"
    assert parse_plan("") == Plan()


def test_instruction_escaping_and_free_text():
    plan = parse_plan("<module>C</module><instruction> replace &lt;a&gt; &amp; [SIG] <b> with &amp;lt; </instruction>")
    assert plan.steps[0].invocation.command == "replace <a> & [SIG] <b> with &lt;"
    assert plan.steps[0].signal_tokens == 0  # inside an instruction, a token is just text
    assert parse_plan(format_plan(plan)) == plan
    assert "&lt;a&gt; &amp; [SIG] &lt;b&gt;" in format_plan(plan)


def test_empty_instruction_is_allowed():
    assert parse_plan("<module>A</module><instruction></instruction>").steps[0].invocation.command == ""


def test_format_is_vitron_released_form():
    plan = Plan(reply="On it.", steps=[
        _step("image_segmentation", "segmentation: zebra", 1, region=BoxRegion(box=(23, 35, 110.5, 126)),
              inputs={"input": "@img1"}),
        _step("image_editing", "a < b & c", 2, region=PointsRegion(points=((1, 2), (3, 4)), labels=(1, 0)),
              inputs={"mask": "@1", "input": "@img1"}),
    ])
    assert format_plan(plan) == (
        "On it. <module>B</module><instruction>segmentation: zebra</instruction><region>(23, 35, 110.5, 126)</region>"
        "<input>@img1</input><signal/>"
        "<module>C</module><instruction>a &lt; b &amp; c</instruction><region>points: (1, 2, 1), (3, 4, 0)</region>"
        '<input name="mask">@1</input><input>@img1</input><signal/><signal/>'
    )
    assert parse_plan(format_plan(plan)) == plan
    assert format_plan(Plan(reply="hello")) == "hello"
    assert format_plan(Plan(steps=plan.steps[:1])).startswith("<module>B</module>")


def test_input_keys_named_like_unnamed_ones_round_trip():
    plan = Plan(steps=[_step("image_editing", "x", inputs={"input2": "@a", "input": "@b", "input3": "@c"})])
    text = format_plan(plan)
    assert '<input name="input2">@a</input><input>@b</input><input name="input3">@c</input>' in text
    assert parse_plan(text) == plan


def test_format_refuses_what_the_grammar_cannot_say():
    ref = ArtifactRef(sha256="a" * 64, kind="mask", media_type="image/png", shape=(4, 4))
    assert "<input>@mask1</input>" in format_plan(
        Plan(steps=[_step("image_editing", "x", inputs={"input": ref.model_copy(update={"alias": "mask1"})})]))
    for step in (_step("image_editing", "x", inputs={"input": ref}),
                 _step("image_editing", "x", inputs={"my field": "@1"}),
                 _step("image_segmentation", "x", region=ScribbleRegion(mask=ref))):
        with pytest.raises(InvalidInput):
            format_plan(Plan(steps=[step]))


def test_parse_points_reads_tuples_and_the_old_form():
    assert parse_points("(1, 2, 1), (3, 4, 0)") == parse_points("1,2,1; 3,4,0")
    for bad in ("(1, 2, 1) (3, 4, 0)", "(1, (2, 1))", "(1, 2, 1),"):
        with pytest.raises(InvalidInput):
            parse_points(bad)


# --- errors: what, where, what was expected -------------------------------------------------------------------

B = "<module>B</module>"
I = "<instruction>x</instruction>"  # noqa: E741


@pytest.mark.parametrize(("text", "at", "expected"), [  # `at`: the error is at its last occurrence; "" is the end
    # unknown module, with the known ones in the fix
    ("<module>Z</module><instruction>x</instruction>", "Z<", "module letter"),
    ("<module> </module><instruction>x</instruction>", "</module>", "module letter"),
    # a block without an instruction: reported where the block ends
    (B, "", "<instruction>"),
    (B + "<region>(1, 2, 3, 4)</region><module>C</module>" + I, "<module>C", "<instruction>"),
    # unclosed tags
    (B + "<instruction>x", "", "</instruction>"),
    ("<module>B" + I, "<instruction>", "</module>"),
    (B + I + "<region>(1, 2, 3, 4)", "", "</region>"),
    (B + I + "<input>@1<input>", "<input>", "</input>"),
    (B + I + "<region (1, 2, 3, 4)</region>", "</region>", "'>'"),
    (B + I + "<signal", "", "'>'"),
    # tags outside any block
    ("<region>(1, 2, 3, 4)</region>" + B + I, "<region>", "<module> first"),
    ("Sure. <instruction>x</instruction>", "<instruction>", "<module> first"),
    ("[SIG] " + B + I, "[SIG]", "<module> first"),
    ("</module>", "</module>", "<module> before it"),
    (B + I + "</region>", "</region>", "<region> before it"),
    # malformed tags and duplicates
    (B + I + "<input nam='x'>@1</input>", "nam=", 'name="field"'),
    (B + I + '<input name="a b">@1</input>', 'name=', 'name="field"'),
    (B + I + "</instruction x>", "x>", "'>'"),
    (B + I + I, I, "one <instruction>"),
    (B + I + "<region>(1, 2, 3, 4)</region><region>(1, 2, 3, 4)</region>", "<region>", "one <region>"),
    (B + I + '<input>@a</input><input name="input">@b</input>', '<input name', "each input name once"),
    # bad regions
    (B + I + "<region>(1, 2, 3)</region>", "(1, 2, 3)", "a box (x1, y1, x2, y2)"),
    (B + I + "<region>(a, b, c, d)</region>", "(a, b", "a box (x1, y1, x2, y2)"),
    (B + I + "<region>(5, 5, 1, 9)</region>", "(5, 5", "x1 < x2"),
    (B + I + "<region>(5, 5, 9, 5)</region>", "(5, 5", "y1 < y2"),
    (B + I + "<region>(-1, 0, 4, 4)</region>", "(-1", "0 <= x1"),
    (B + I + "<region>(0, 0, 1e999, 4)</region>", "(0, 0, 1e999", "a box"),
    (B + I + "<region></region>", "</region>", "a box"),
    (B + I + "<region>points: (1, 2, 7)</region>", "points", "labels 0 or 1"),
    (B + I + "<region>points: (1, 2, 0)</region>", "points", "at least one 1"),
    # bad input references
    (B + I + "<input>mask2</input>", "mask2", "@N"),
    (B + I + "<input>@</input>", "@<", "@N"),
    (B + I + "<input>@1x</input>", "@1x", "@N"),
    (B + I + "<input>@mask 2</input>", "@mask 2", "@N"),
    # forward and self references; steps count from 1
    (B + I + "<input>@1</input>", "@1<", "step 1 comes first"),
    (B + I + B + I + "<input>@2</input>", "@2", "@1 to @1"),
    (B + I + B + I + "<input>@3</input>", "@3", "@1 to @1"),
    (B + I + B + I + "<input>@0</input>", "@0", "@1 to @1"),
    (B + I + B + I + "<input>@99999999999999999999</input>", "@9999", "@1 to @1"),
])
def test_errors_say_what_where_and_what_was_expected(text, at, expected):
    with pytest.raises(PlanSyntaxError) as info:
        parse_plan(text)
    error = info.value
    assert error.position == (text.rindex(at) if at else len(text)), error.message
    assert expected in error.expected, error.message
    assert error.field == "plan"
    assert f"offset {error.position}" in error.message
    assert error.expected in error.message


def test_error_message_has_line_and_column():
    text = "Sure.\nHere:\n  <module>Q</module><instruction>x</instruction>"
    with pytest.raises(PlanSyntaxError) as info:
        parse_plan(text)
    error = info.value
    assert (error.line, error.column, error.position) == (3, 11, text.index("Q"))
    assert "line 3, column 11" in error.message and "unknown module 'Q'" in error.message
    assert "B=image_segmentation" in error.fix
    assert isinstance(error, InvalidInput) and isinstance(error, ValueError)


def test_forward_reference_names_the_steps():
    with pytest.raises(PlanSyntaxError, match="step 2 cannot use @2"):
        parse_plan(B + I + B + I + "<input>@2</input>")


def test_missing_instruction_points_back_at_its_module():
    with pytest.raises(PlanSyntaxError, match=r"step 2 \(<module> at line 1, column 47\) has no <instruction>"):
        parse_plan(B + I + B)


# --- properties ----------------------------------------------------------------------------------------------

_coord = st.one_of(st.integers(0, 4096).map(float), st.floats(0, 1e9, allow_nan=False, allow_infinity=False))
_LETTERS = "abcxyzABCXYZ_"
_identifier = st.builds(str.__add__, st.sampled_from(_LETTERS), st.text(alphabet=_LETTERS + "0129", max_size=7))
_alias = _identifier.map("@".__add__)
_field = st.one_of(st.sampled_from(["input", "input2", "input3", "image", "mask"]), _identifier)
_tricky = st.sampled_from(["<", ">", "&", "&lt;", "&amp;", "&gt;", "</instruction>", "<module>", "[SIG]", "<signal/>",
                           " ", "\n", "@1", "(1, 2, 3, 4)"])
_instruction = st.one_of(st.text(max_size=30), st.lists(st.one_of(_tricky, st.text(max_size=4)), max_size=8)
                         .map("".join)).map(str.strip)
_reply = (st.text(alphabet=st.characters(exclude_characters="<", exclude_categories=("Cs",)), max_size=40)
          .map(lambda text: " ".join(text.split())).filter(lambda text: "[SIG]" not in text))


@st.composite
def _regions(draw):
    if draw(st.booleans()):
        xs = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
        ys = sorted(draw(st.lists(_coord, min_size=2, max_size=2, unique=True)))
        return BoxRegion(box=(xs[0], ys[0], xs[1], ys[1]))
    points = draw(st.lists(st.tuples(_coord, _coord), min_size=1, max_size=4))
    labels = draw(st.lists(st.sampled_from([0, 1]), min_size=len(points), max_size=len(points)))
    labels[draw(st.integers(0, len(points) - 1))] = 1
    return PointsRegion(points=tuple(points), labels=tuple(labels))


@st.composite
def _plans(draw):
    steps = []
    for number in range(1, draw(st.integers(0, 4)) + 1):
        refs = _alias if number == 1 else st.one_of(_alias, st.integers(1, number - 1).map(lambda k: f"@{k}"))
        keys = draw(st.lists(_field, unique=True, max_size=4))
        invocation = Invocation(module=draw(st.sampled_from([m.name for m in MODULES])), command=draw(_instruction),
                                region=draw(st.none() | _regions()), inputs={key: draw(refs) for key in keys})
        steps.append(PlanStep(invocation=invocation, signal_tokens=draw(st.integers(0, 3))))
    return Plan(reply=draw(_reply), steps=steps)


@settings(max_examples=300, deadline=None)
@given(_plans())
def test_print_then_parse_gives_the_plan_back(plan):
    assert parse_plan(format_plan(plan)) == plan


_fragments = st.sampled_from([
    "<module>", "</module>", "<Module>", "<MODULE >", "<instruction>", "</instruction>", "</Instruction >",
    "<region>", "</region>", "<region>(", "<region>points: (", "<input>", "</input>", '<input name="mask">',
    "<input name=", "<signal/>", "<signal>", "</signal>", "[SIG]", "<SIG>", "@", "@1", "@2", "@0", "@a", "0", "1",
    "2", "10", "1e999", ",", ", ", " ", "(", ")", "[", "]", "B", "c", "Image Editing", "video_generation", "Z",
    "&lt;", "&", "<", ">", "/", "\n", "-", ".", "e", "x", "ſignal", "İnput", "<\u212a>",
])


def _parse_or_syntax_error(text: str) -> None:
    try:
        plan = parse_plan(text)
    except PlanSyntaxError as error:
        assert 0 <= error.position <= len(text)
        assert error.expected and error.expected in error.message
    else:  # whatever parses prints back to the same plan
        assert parse_plan(format_plan(plan)) == plan


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_any_text_raises_only_plan_syntax_errors(text):
    _parse_or_syntax_error(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_fragments, st.text(max_size=3)), max_size=30).map("".join))
def test_fuzz_tag_fragments_raise_only_plan_syntax_errors(text):
    _parse_or_syntax_error(text)


@st.composite
def _near_misses(draw):
    """A printed plan with a few slices replaced by fragments: often still valid, often broken in one place."""
    text = format_plan(draw(_plans()))
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(0, len(text)))
        stop = draw(st.integers(start, min(len(text), start + 8)))
        text = text[:start] + draw(st.one_of(st.just(""), _fragments, st.text(max_size=3))) + text[stop:]
    return text


@settings(max_examples=200, deadline=None)
@given(_near_misses())
def test_fuzz_damaged_plans_raise_only_plan_syntax_errors(text):
    _parse_or_syntax_error(text)
