"""What goes wrong around vitron, said in one line through the real `vitron` command: exit 2, the field (or setting)
and the fix, never an internal error with a traceback. Empty files, text that is not UTF-8, a read-only data folder,
a full disk, a session database that is not one, a job broker that is down, and no stray libpng line."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from memory import ArtifactStore
from memory.inputs import StoreUnwritable
from tests.cli import VITRON, png, vitron


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """The one line a failed command printed, after checking it exited 2 with no traceback and names `needles`."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


@pytest.fixture
def photo(tmp_path) -> Path:
    return png(tmp_path / "photo.png", np.zeros((20, 30, 3), np.uint8))


@pytest.mark.parametrize("flag", ["--image", "--mask", "--scribble"])
def test_an_empty_file_is_named_as_such(env, tmp_path, photo, flag):
    empty = tmp_path / "empty.png"
    empty.touch()
    args = {"--image": ["B", "--image", str(empty), "--box", "0,0,5,5"],
            "--mask": ["C", "--image", str(photo), "--mask", str(empty), "--command", "make it blue"],
            "--scribble": ["B", "--image", str(photo), "--scribble", str(empty)]}[flag]
    field = flag.removeprefix("--") + ":"
    one_error_line(vitron(env, "invoke", *args), field, f"{empty} is empty (0 bytes)")


def test_text_that_is_not_utf8_is_refused_naming_the_field(env, photo):
    # argv bytes that are not UTF-8 reach Python as lone surrogates, which no database or file can take.
    proc = subprocess.run([VITRON, "run", b"make it \xff red", "--image", str(photo)], capture_output=True,
                          text=True, env=env, timeout=300)
    one_error_line(proc, "text:", "not UTF-8", "byte 0xff")
    proc = subprocess.run([VITRON, "invoke", "C", "--image", str(photo), "--box", "0,0,5,5", "--command",
                           b"make it \xff red"], capture_output=True, text=True, env=env, timeout=300)
    one_error_line(proc, "command:", "not UTF-8")


@pytest.fixture
def read_only_home(tmp_path, env) -> tuple[Path, dict[str, str], list[str]]:
    """A data folder this user cannot write; its environment, and what to run `vitron` under. Root writes anywhere,
    so as root the command runs in a user namespace of its own, as the files' owner without root's powers."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
        if shutil.which("unshare") is None or subprocess.run([*prefix, "true"]).returncode != 0:
            pytest.skip("running as root, and no user namespace to drop root's powers in")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    yield home, {**env, "VITRON_HOME": str(home)}, prefix
    home.chmod(0o755)


@pytest.mark.parametrize("args", [["invoke", "B", "--box", "0,0,5,5"], ["run", "make it blue"], ["sessions", "list"]])
def test_a_read_only_data_folder_is_named(read_only_home, photo, args):
    home, env, prefix = read_only_home
    args = [*args, "--image", str(photo)] if args[0] != "sessions" else args
    proc = subprocess.run([*prefix, VITRON, *args], capture_output=True, text=True, env=env, timeout=300)
    line = one_error_line(proc, "VITRON_HOME:", str(home))
    assert "database server" not in line, line


def test_a_full_disk_says_so_and_where(env, photo, monkeypatch):
    """ENOSPC while an object is written (simulated: its flush to disk fails), through the CLI's own code in this
    process, and through the store for a video."""
    from agent.cli import app

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    home = Path(env["VITRON_HOME"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("memory.artifacts.sync_and_hash", full)
    result = CliRunner().invoke(app, ["invoke", "C", "--image", str(photo), "--box", "0,0,10,10", "--command",
                                      "make it blue"])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "VITRON_HOME:" in line, result.stderr
    assert f"the disk of the artifact store at {home / 'artifacts'} is full" in line, line
    store = ArtifactStore(home / "artifacts")
    with pytest.raises(StoreUnwritable, match="is full"):
        store.put_video([np.zeros((16, 16, 3), np.uint8)] * 3, fps=5)
    assert not any((home / "artifacts" / "tmp").iterdir())  # nothing half-written left behind


def not_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    return f"sqlite:///{path}"


@pytest.mark.parametrize(("url", "says"), [
    ("sqlite:////etc/passwd", "sqlite:////etc/passwd"),
    (not_sqlite, "not a database"),
    ("postgresql://vitron@127.0.0.1:1/vitron", "database server is running"),
    ("not a url at all", "cannot read a database URL"),
])
def test_a_database_url_that_is_not_a_database(env, tmp_path, url, says):
    url = url(tmp_path) if callable(url) else url
    line = one_error_line(vitron({**env, "VITRON_DATABASE_URL": url}, "sessions", "list"), "VITRON_DATABASE_URL:",
                          says)
    if url.startswith("sqlite"):
        assert "database server" not in line, line


@pytest.mark.parametrize("command", ["check", "workers"])
def test_jobs_with_the_broker_down_name_the_setting(env, command):
    proc = vitron({**env, "VITRON_BROKER_URL": "redis://127.0.0.1:1/0"}, "jobs", command, timeout=60)
    one_error_line(proc, "VITRON_BROKER_URL:", "redis://127.0.0.1:1/0", "not answer")


def test_a_setting_that_does_not_parse_is_named(env, photo):
    proc = vitron({**env, "VITRON_MAX_PIXELS": "lots"}, "invoke", "B", "--image", str(photo), "--box", "0,0,5,5")
    one_error_line(proc, "VITRON_MAX_PIXELS:", "'lots'")


def test_no_libpng_warning_for_an_odd_colour_profile(env, tmp_path):
    odd = tmp_path / "odd.png"
    Image.new("RGB", (30, 20), (200, 10, 10)).save(odd, icc_profile=b"not an ICC profile" * 8)
    proc = vitron(env, "invoke", "C", "--image", str(odd), "--command", "make it black and white", "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
