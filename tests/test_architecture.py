"""The structure docs/ARCHITECTURE.md draws holds in the code: imports only point down the packages' list, no
module imports itself back through others (imports inside functions count too), and nothing heavy loads at import
time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["schemas", "memory", "tools", "workflows", "agent"]  # each may import only those before it


def modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module `name` imports, anywhere in the file, resolved to a module of ours."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_imports_only_point_down_the_layers():
    known = modules()
    wrong = []
    for name, path in known.items():
        layer = LAYERS.index(name.split(".")[0])
        for target in imports_of(name, path, known):
            if LAYERS.index(target.split(".")[0]) > layer:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_module_imports_itself_back():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    # A package's __init__ re-exports its modules; a module importing its own package's public names is a
    # cycle only through that __init__, which Python resolves, so edges into a package's own __init__ are not
    # followed from inside the package.
    def edges(name: str) -> set[str]:
        return {t for t in graph[name] if not name.startswith(t + ".")}

    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges(node)):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize(("module", "absent"), [
    ("agent.cli", ["pydantic", "numpy", "langgraph", "sqlalchemy", "celery", "torch"]),  # what `vitron --help` loads
    ("agent", ["celery", "redis", "torch", "diffusers", "transformers"]),
    ("workflows", ["celery", "redis", "torch"]),
    ("tools.executors", ["celery", "redis"]),
])
def test_importing_loads_nothing_heavy(module, absent):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRON_")}
    code = (f"import sys, threading; import {module}; "
            f"print([m for m in {absent!r} if m in sys.modules], threading.active_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded, threads = done.stdout.strip().rsplit(" ", 1)
    assert loaded == "[]" and threads == "1"  # no thread pool starts at import either


def test_the_celery_app_is_built_when_first_used():
    code = ("import tools.celery_app as c; assert c._app is None; app = c.app; assert c._app is app; "
            "print(sorted(t for t in app.tasks if t.startswith('vitron.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "vitron.run_job" in done.stdout and "vitron.video_chunk" in done.stdout
