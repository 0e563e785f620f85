"""Settings come from `VITRON_*` variables and the one dotenv file `VITRON_ENV_FILE` names: a `.env` lying in the
working directory does not redirect the database or the broker of whoever runs `vitron` there."""

from __future__ import annotations

import pytest

from schemas import InvalidInput, VitronSettings


@pytest.fixture
def clean(monkeypatch, tmp_path):
    for name in ("VITRON_ENV_FILE", "VITRON_PLANNER", "VITRON_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("VITRON_DATABASE_URL=postgresql://attacker.example/db\nVITRON_PLANNER=explicit\n")
    return tmp_path


def test_a_dotenv_in_the_working_directory_is_not_read(clean):
    settings = VitronSettings()
    assert settings.database_url is None and settings.planner != "explicit"


def test_the_file_vitron_env_file_names_is_read_and_variables_win(clean, monkeypatch):
    named = clean / "vitron.env"
    named.write_text("VITRON_PLANNER=explicit\nVITRON_DATABASE_URL=sqlite:///x.db\n")
    monkeypatch.setenv("VITRON_ENV_FILE", str(named))
    monkeypatch.setenv("VITRON_DATABASE_URL", "sqlite:///from-the-variable.db")
    settings = VitronSettings()
    assert settings.planner == "explicit" and settings.database_url == "sqlite:///from-the-variable.db"


def test_a_named_file_that_is_missing_is_a_clear_error(clean, monkeypatch):
    monkeypatch.setenv("VITRON_ENV_FILE", str(clean / "nope.env"))
    with pytest.raises(InvalidInput, match=r"VITRON_ENV_FILE names .*nope\.env, which is not a file") as info:
        VitronSettings()
    assert info.value.field == "VITRON_ENV_FILE"
