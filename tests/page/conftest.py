"""The web page in a real browser: Debian's Chromium driven by Playwright, against `vitron serve` started as a user
starts it. Screenshots go to `test-artifacts/page/` (kept by CI, looked at by people)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import cli_env, vitron, vitron_serve

CHROMIUM = os.environ.get("VITRON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "page"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set VITRON_CHROMIUM)"
        if os.environ.get("VITRON_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The default server: embedded tools, the default planner, no keys."""
    env = cli_env(tmp_path_factory.mktemp("page"))
    with vitron_serve(env) as base:
        yield base


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A server with API keys and approval before heavy steps: its base URL and a key."""
    env = {**cli_env(tmp_path_factory.mktemp("guarded")), "VITRON_APPROVAL": "true"}
    made = vitron(env, "keys", "create", "--owner", "ada", "--json")
    assert made.returncode == 0, made.stderr
    import json

    key = json.loads(made.stdout)["key"]
    with vitron_serve(env) as base:
        yield base, key


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh tab (its own session storage) at 1440×900; a script error on the page fails the test."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, errors
