#!/usr/bin/env bash
# Install the browser the page tests drive (Debian's Chromium; Playwright's own download is not used) if missing.
set -uo pipefail
if [ -n "${VITRON_CHROMIUM:-}" ] || command -v chromium >/dev/null; then exit 0; fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "browser: installing Debian's chromium for the page tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "browser: could not install chromium; the page tests will say so" >&2
else
  echo "browser: no chromium (install Debian's chromium package, or set VITRON_CHROMIUM); the page tests skip" >&2
fi
exit 0
