"""An error quotes what was wrong, but never the whole of a huge bad input: its middle is left out past
`VITRON_ERROR_ECHO_CHARS` (default 2,000 characters), and the count says how much."""

from __future__ import annotations

from schemas import InvalidInput, error_text
from tests.cli import cli_env, vitron


def test_a_huge_bad_input_is_quoted_in_part(monkeypatch):
    monkeypatch.delenv("VITRON_ERROR_ECHO_CHARS", raising=False)
    huge = "(1, 2, " * 300_000
    error = InvalidInput(f"bad region {huge!r}", field="region", fix="give four numbers")
    assert len(error.message) < 2_200 and error.message.startswith("region: bad region '(1, 2, (1, 2,")
    assert "characters left out" in error.message and error.message.endswith("(give four numbers)")
    assert len(error_text(ValueError(huge))) < 2_200
    monkeypatch.setenv("VITRON_ERROR_ECHO_CHARS", "200")
    assert len(InvalidInput(huge).message) < 300
    assert len(InvalidInput("short and clear").message) == len("short and clear")


def test_the_command_line_answers_a_huge_bad_line_in_one_short_line(tmp_path):
    bad = "<module>B</module><instruction>x</instruction><region>(" + "9, " * 30_000 + ")</region>"
    proc = vitron(cli_env(tmp_path / "home"), "plan", bad)
    assert proc.returncode == 2 and len(proc.stderr) < 4_000 and "characters left out" in proc.stderr
    assert "Traceback" not in proc.stderr
