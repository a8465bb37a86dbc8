"""Time the web app's clickable-region view (``POST /api/clickable``) of an example photo at a 1024x768 network input.

Serves the app in-process (FastAPI's TestClient on 127.0.0.1, the bundled model with ``max_side`` 1024 so the
photo is not shrunk), opens the photo resized to 1024x768, taps it once (``/api/segment``, as the page does before
it asks for the view), then asks for the clickable region ``--requests`` times at that tap and prints each
request's wall time and what the reply says (model calls, groups, exact or not, tolerance).

    python benchmarks/clickable_view.py --threads 2
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from PIL import Image

import tracenet
from tracenet.app.server import create_app

EXAMPLES = Path(tracenet.__file__).resolve().parent / "examples"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default="cat.png", help="example photo (tracenet/examples)")
    ap.add_argument("--tap", default="220,150", help="tap x,y on the 1024x768 photo")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = (int(v) for v in args.tap.split(","))
    buf = io.BytesIO()
    Image.open(EXAMPLES / args.photo).convert("RGB").resize((1024, 768), Image.BILINEAR).save(buf, format="PNG")
    app = create_app(lambda: tracenet.load(max_side=1024), device_model=None)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        opened = client.post("/api/images", files={"file": ("photo.png", buf.getvalue(), "image/png")})
        image_id = opened.json()["image_id"]
        assert client.post("/api/segment", data={"image_id": image_id, "x": x, "y": y}).status_code == 200
        print("| request | seconds | model calls | groups | exact | tolerance |\n|---:|---:|---:|---:|---|---:|")
        for i in range(args.requests):
            start = time.perf_counter()
            reply = client.post("/api/clickable", data={"image_id": image_id, "x": x, "y": y})
            seconds = time.perf_counter() - start
            if reply.status_code != 200:
                print(f"request {i + 1}: HTTP {reply.status_code} {reply.text[:200]}", file=sys.stderr)
                return 1
            r = reply.json()
            print(f"| {i + 1} | {seconds:.2f} | {r.get('n_predictions')} | {r.get('n_groups')} | {r.get('exact')} | "
                  f"{r.get('tolerance', float('nan')):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
