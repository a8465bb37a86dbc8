#!/usr/bin/env bash
# Reproduce tracenet/app/static/vendor/onnxruntime-web/ from the npm registry at a pinned version: the files the
# on-device mode of `tracenet app` loads (ES module bundle + the one WebAssembly binary, SIMD with optional
# threads) and the package's licence. Run from anywhere; needs npm and sha256sum. The files are committed, so
# users and CI never run this; it is here to show where they come from and to upgrade them.
set -euo pipefail
VERSION="${1:-1.30.0}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/tracenet/app/static/vendor/onnxruntime-web"
FILES=(ort.wasm.bundle.min.mjs ort-wasm-simd-threaded.wasm)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "onnxruntime-web@$VERSION" >/dev/null && tar xzf "onnxruntime-web-$VERSION.tgz")
rm -rf "$DEST" && mkdir -p "$DEST"
for f in "${FILES[@]}"; do cp "$TMP/package/dist/$f" "$DEST/$f"; done
# The npm package declares "license": "MIT" in package.json but ships no licence file; write the project's
# (github.com/microsoft/onnxruntime LICENSE, the same text the onnxruntime PyPI wheel ships).
node -e 'const p = require(process.argv[1]); if (p.license !== "MIT") { console.error(`licence is ${p.license}`); process.exit(1); }' \
  "$TMP/package/package.json"
cat > "$DEST/LICENSE" <<'LICENSE_TEXT'
MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
LICENSE_TEXT
{
  echo "onnxruntime-web $VERSION (npm), MIT licence (LICENSE). Reproduce: scripts/vendor_ort_web.sh $VERSION"
  (cd "$DEST" && sha256sum "${FILES[@]}" LICENSE)
} > "$DEST/VERSION.txt"
du -b "$DEST"/* | sort -k2
