"""The page's on-device mode in headless Chromium, next to the Python engines, on the same photos and taps.

Serves the app (bundled model and its ONNX export) on 127.0.0.1, opens it in Debian's Chromium (Playwright) and
times, inside the page (the same worker the app uses): the encoder per photo and the decoder per tap, plus the
page's mask upsampling and selection per tap. Two browser settings: cross-origin isolated (the app's COOP/COEP
headers: WebAssembly threads, ``--threads`` of them) and not isolated (headers stripped: one thread). Then the
Python engines on the same photos and taps, all interleaved: onnxruntime (``tracenet.load(engine="onnx")``) and PyTorch
(``tracenet.load()``, TraceNet first tap = set_image + predict, repeat tap = predict). Medians; photos are the
package's examples at their own size (the model resizes them to 384 px). Writes bench.json and bench.md to --out.

    python benchmarks/browser_device.py --out results/device
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.conftest import LiveServer  # noqa: E402
from tests.app.test_app_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tracenet.app import create_app  # noqa: E402
from tracenet.app.device import ISOLATION_HEADERS  # noqa: E402
from tracenet.io import load_image  # noqa: E402

EXAMPLES = ROOT / "tracenet" / "examples"
_STRIP = {k.lower().encode() for k in ISOLATION_HEADERS}

PAGE_START = """async (threads) => {
  const device = await import("/static/device/device.js");
  window.benchEngine = await device.startEngine({ threads });
  return window.benchEngine.info;
}"""
PAGE_PASS = """async ([names, taps]) => {
  const engine = window.benchEngine, out = { encoder_ms: [], decoder_ms: [], select_ms: [], tap_ms: [] };
  for (const [i, name] of names.entries()) {
    const blob = await (await fetch(`/api/examples/${name}`)).blob();
    out.encoder_ms.push((await engine.setImage(blob, name)).encoder_ms);
    for (const [x, y] of taps[i]) {
      const t = await engine.tap(x, y);
      out.decoder_ms.push(t.decoder_ms); out.select_ms.push(t.select_ms); out.tap_ms.push(t.tap_ms);
    }
  }
  return out;
}"""


class NotIsolated:
    """ASGI wrapper that drops the cross-origin isolation headers (the page then runs WebAssembly on one thread)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def strip(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(k, v) for k, v in message["headers"] if k.lower() not in _STRIP]}
            await send(message)

        await self.app(scope, receive, strip)


def taps_for(names: list[str], n: int, seed: int = 0) -> list[list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        h, w = load_image(EXAMPLES / name).shape[:2]
        out.append([(int(x), int(y)) for x, y in zip(rng.integers(0, w, n), rng.integers(0, h, n))])
    return out


class PageEngine:
    """The page's engine in one Chromium page served with or without cross-origin isolation."""

    def __init__(self, browser, label: str, app, threads: int) -> None:
        self.server = LiveServer(app).__enter__()
        self.page = browser.new_page()
        self.page.goto(f"{self.server.url}/?mode=server")  # the page's own engine stays off; the bench starts one
        self.info = self.page.evaluate(PAGE_START, threads)
        self.label = f"{label}, {self.info['threads']} thread(s)"
        self.samples: dict[str, list[float]] = {}

    def run_pass(self, names, taps, photos) -> None:
        for k, v in self.page.evaluate(PAGE_PASS, [names, taps]).items():
            self.samples.setdefault(k, []).extend(v)

    def close(self) -> None:
        self.page.close()
        self.server.__exit__(None, None, None)


class OnnxEngine:
    def __init__(self, threads: int) -> None:
        import tracenet

        self.seg = tracenet.load(engine="onnx", threads=threads, zoom=False)
        self.label = f"Python onnxruntime, {threads} thread(s)"
        self.samples: dict[str, list[float]] = {"encoder_ms": [], "decoder_ms": []}

    def run_pass(self, names, taps, photos) -> None:
        for photo, tps in zip(photos, taps):
            t0 = time.perf_counter()
            self.seg.set_image(photo)
            self.samples["encoder_ms"].append((time.perf_counter() - t0) * 1e3)
            self.samples["decoder_ms"] += [self.seg.predict(xy).latency_ms for xy in tps]


class TorchEngine:
    def __init__(self, threads: int) -> None:
        import tracenet

        self.threads = threads
        self.seg = tracenet.load(zoom=False)
        self.label = f"Python PyTorch TraceNet, {threads} thread(s)"
        self.samples: dict[str, list[float]] = {"first_tap_ms": [], "repeat_tap_ms": []}

    def run_pass(self, names, taps, photos) -> None:
        import torch

        torch.set_num_threads(self.threads)
        for photo, tps in zip(photos, taps):
            t0 = time.perf_counter()
            self.seg.set_image(photo)
            self.seg.predict(tps[0])
            self.samples["first_tap_ms"].append((time.perf_counter() - t0) * 1e3)
            self.samples["repeat_tap_ms"] += [self.seg.predict(xy).latency_ms for xy in tps[1:]]


def run_all(names, taps, rounds: int, threads: int) -> list[dict]:
    """Every engine answers the same photos and taps, ``rounds`` times, interleaved (engine by engine within a
    round), so a busy machine slows them alike; the first round warms up and is not counted."""
    from playwright.sync_api import sync_playwright

    photos = [load_image(EXAMPLES / n) for n in names]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        engines = [PageEngine(browser, "Chromium, WebAssembly SIMD + threads (isolated)", create_app(), threads),
                   PageEngine(browser, "Chromium, WebAssembly SIMD (not isolated)", NotIsolated(create_app()), 1)]
        engines += [OnnxEngine(n) for n in sorted({threads, 1}, reverse=True)]
        engines += [TorchEngine(n) for n in sorted({threads, 1}, reverse=True)]
        for r in range(rounds + 1):
            for e in engines:
                if r == 0:
                    e.run_pass(names, taps, photos)
                    e.samples = {k: [] for k in e.samples}
                else:
                    e.run_pass(names, taps, photos)
            print(f"round {r} done", flush=True)
        rows = [{"engine": e.label, **_medians(e.samples, e.samples.keys())} for e in engines]
        for e in engines[:2]:
            rows[engines.index(e)]["load_ms"] = round(e.info["load_ms"])
            e.close()
        browser.close()
    return rows


def _medians(r: dict, keys) -> dict:
    return {k: round(statistics.median(r[k]), 1) for k in keys}


def table(rows: list[dict]) -> str:
    cols = [("encoder_ms", "encoder / photo (ms)"), ("decoder_ms", "decoder / tap (ms)"),
            ("tap_ms", "tap incl. mask to photo size (ms)"), ("first_tap_ms", "first tap (ms)"),
            ("repeat_tap_ms", "repeat tap (ms)"), ("load_ms", "page: model load (ms)")]
    lines = ["| engine | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in rows:
        lines.append(f"| {row['engine']} | " + " | ".join(str(row.get(k, "–")) for k, _ in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results/device"))
    ap.add_argument("--threads", type=int, default=2, help="threads for the isolated page and the Python engines")
    ap.add_argument("--taps", type=int, default=8, help="taps per photo")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all engines (after a warm-up)")
    args = ap.parse_args()
    names = sorted(p.name for p in EXAMPLES.glob("*.png"))
    taps = taps_for(names, args.taps)
    rows = run_all(names, taps, args.rounds, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    head = (f"Bundled model, photos {', '.join(names)} at their own size (network input 384 px on the long side), "
            f"{args.taps} random taps per photo, {args.rounds} interleaved rounds after a warm-up; medians. Machine: "
            f"{__import__('os').cpu_count()} CPU cores, shared with other jobs while measured.")
    (args.out / "bench.json").write_text(json.dumps({"setup": head, "rows": rows}, indent=1) + "\n")
    (args.out / "bench.md").write_text(head + "\n\n" + table(rows) + "\n")
    print(head + "\n\n" + table(rows))


if __name__ == "__main__":
    main()
