"""Several clients at once on a real uvicorn server: images and masks never mix, the server stays up."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

# aligned to the stand-in's 8 px cells, so every tap inside a box snaps to a point inside it
BOXES = [(8, 8, 32, 24), (40, 16, 88, 56), (8, 32, 48, 64), (64, 0, 96, 32), (16, 16, 72, 40), (0, 0, 96, 8)]


def test_concurrent_clients_on_different_images_never_mix(helpers, live_server_cls):
    import httpx

    from tracenet.app import create_app

    segmenter = helpers.FloodFillSegmenter(delay_s=0.003)  # raises if its image changes mid-predict
    app = create_app(lambda: segmenter)
    with live_server_cls(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        ids = []
        for i, box in enumerate(BOXES):
            png = helpers.png_bytes(helpers.rect_image(box=box, color=(200, 30 + 30 * i, 40)))
            ids.append(
                http.post("/api/images", files={"file": (f"{i}.png", png, "image/png")}).json()["image_id"]
            )

        def client(i: int) -> list[str]:
            errors = []
            x0, y0, x1, y1 = BOXES[i]
            with httpx.Client(base_url=server.url, timeout=30) as own:
                for k in range(8):
                    # taps move over the box so most are new tap_keys (no cache hits)
                    x, y = x0 + (k * 5) % (x1 - x0), y0 + (k * 3) % (y1 - y0)
                    r = own.post("/api/segment", data={"image_id": ids[i], "x": x, "y": y})
                    if r.status_code != 200:
                        errors.append(f"client {i}: {r.status_code} {r.text}")
                        continue
                    reply = r.json()
                    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["mask_png"])))) > 127
                    if reply["image_id"] != ids[i] or reply["box"] != [float(v) for v in BOXES[i]]:
                        errors.append(f"client {i} got box {reply['box']} of another image")
                    elif mask.sum() != (x1 - x0) * (y1 - y0):
                        errors.append(f"client {i} got a mask of {mask.sum()} px")
                edit = own.post(
                    "/api/edit",
                    data={"image_id": ids[i], "taps": f"{x0 + 1},{y0 + 1}", "effect": "cutout", "feather": 0},
                )
                if edit.status_code != 200:
                    return [*errors, f"client {i}: edit {edit.status_code} {edit.text}"]
                alpha = np.asarray(Image.open(io.BytesIO(edit.content)))[..., 3]
                ys, xs = np.nonzero(alpha)
                if (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) != BOXES[i]:
                    errors.append(f"client {i}: cutout of another image")
            return errors

        with ThreadPoolExecutor(len(BOXES)) as pool:
            problems = [e for errs in pool.map(client, range(len(BOXES))) for e in errs]
        assert not problems, "\n".join(problems)
        assert http.get("/api/health").json()["status"] == "ok"
