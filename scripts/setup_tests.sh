#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine: the package with its dev, app and onnx extras, and Debian's
# Chromium for the end-to-end browser test (Playwright drives it; it never downloads a browser of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e ".[dev,app,onnx]"
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup_tests: could not install chromium; the browser test will skip" >&2
  else
    echo "setup_tests: no apt-get; the browser test will skip" >&2
  fi
fi
