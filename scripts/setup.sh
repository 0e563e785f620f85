#!/usr/bin/env bash
# Create .venv (once) and install the project with its test extra. Safe to run again: it reinstalls only
# when pyproject.toml changed. Torch comes from the local wheel cache where the machine has one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python 3.11 or newer is needed (set PYTHON=/path/to/python)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.vitron-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing vitron-agent and its dependencies into .venv (the first time takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c 'import agent, tools, memory, schemas, cv2, av, torch' || {
    echo "setup: the install did not complete; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
