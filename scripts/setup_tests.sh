#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine: the package with its dev, app and onnx extras, Debian's
# Chromium for the end-to-end browser tests (Playwright drives it; it never downloads a browser of its own) and
# Node.js for the unit tests of the page's on-device JavaScript.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -e ".[dev,app,onnx]"
if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs; } >/dev/null 2>&1 \
    || echo "setup_tests: could not install nodejs; the on-device JavaScript unit tests will skip" >&2
fi
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
      || echo "setup_tests: could not install chromium; the browser test will skip" >&2
  else
    echo "setup_tests: no apt-get; the browser test will skip" >&2
  fi
fi
