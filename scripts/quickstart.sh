#!/usr/bin/env bash
# Quick start: set up, then run the main job on the embedded default (no GPU, no weights, no network).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/vitron demo "$@"
