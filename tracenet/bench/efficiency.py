"""Efficiency table (paper table 3): parameters, MACs, first-tap and repeat-tap CPU latency, throughput.

TraceNet (traced) and FullNet (``use_rft=False``) run the same weights on the same photo and taps, in one process,
interleaved, so their numbers compare. "First tap" is the first ``predict`` after ``set_image`` on a new photo
(graph shapes for this input size already known, as for every photo after the first of a size); "repeat tap" is a
later tap on the same photo. MobileSAM and SAM ViT-B (random weights: timing only) are measured the same way when
their packages are installed: the image encoder is the first tap, prompt encoder + mask decoder a repeat tap.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from tracenet.io import load_image
from tracenet.model import build_model, preset
from tracenet.predictor import TapSegmenter

EXAMPLE = "coffee.png"


@dataclass
class Row:
    method: str
    params_m: float
    macs_first_g: float | None
    macs_repeat_g: float | None
    first_ms: float
    repeat_ms: float
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_per_s(self) -> float:
        return 1e3 / self.first_ms

    @property
    def repeat_per_s(self) -> float:
        return 1e3 / self.repeat_ms


def photo(width: int, height: int) -> np.ndarray:
    """The bundled coffee photo resized to ``width x height`` (real image content, fixed size)."""
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parents[1] / "examples" / EXAMPLE
    return np.asarray(Image.fromarray(load_image(path)).resize((width, height), Image.BILINEAR))


def taps_for(width: int, height: int, n: int = 6) -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    return [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(n)]


def tracenet_rows(name: str, image: np.ndarray, taps: list[tuple[int, int]], repeats: int) -> list[Row]:
    """TraceNet, FullNet and TraceNet with the mask over the box, for one model preset (random head weights;
    backbones as the preset says), interleaved photo by photo so that their ratios compare on a shared machine."""
    cfg = preset(name, pretrained_backbone=name.startswith("lite"))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    size = max(image.shape[:2])
    seg = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False, max_side=size)
    boxed = TapSegmenter(model, cfg, min_score=0.0, require_tap_inside=False, max_side=size, mask_region="box")
    seg.set_image(image)
    refs = {tap: seg.predict(tap).mask for tap in taps[1:]}  # image-wide masks (deterministic), warms the shapes
    seg.predict(taps[0], use_rft=False)
    boxed.set_image(image)
    boxed.predict(taps[0])
    timings: dict[str, list[float]] = {}
    macs: dict[str, int] = {}
    ious: list[float] = []
    for i in range(repeats):
        for key, engine, use_rft in (("rft", seg, True), ("full", seg, False), ("box", boxed, True)):
            engine.set_image(image)
            first = engine.predict(taps[i % len(taps)], use_rft=use_rft)
            timings.setdefault(f"{key}_first", []).append(first.latency_ms)
            macs[f"{key}_first"] = first.macs
            for tap in taps[1:]:
                rep = engine.predict(tap, use_rft=use_rft)
                timings.setdefault(f"{key}_repeat", []).append(rep.latency_ms)
                macs[f"{key}_repeat"] = rep.macs
                if key == "box" and i == 0:  # the boxed masks are deterministic too: one IoU per tap
                    union = np.logical_or(refs[tap], rep.mask).sum()
                    ious.append(float(np.logical_and(refs[tap], rep.mask).sum() / union) if union else 1.0)
    med = {k: statistics.median(v) for k, v in timings.items()}
    full = first.full_macs
    iou = float(np.mean(ious)) if ious else float("nan")
    return [
        Row(f"TraceNet-{name}", params, macs["rft_first"] / 1e9, macs["rft_repeat"] / 1e9, med["rft_first"],
            med["rft_repeat"], extra={"full_macs_g": full / 1e9}),
        Row(f"FullNet-{name}", params, full / 1e9, 0.0, med["full_first"], med["full_repeat"],
            notes="repeat taps reuse the full output"),
        Row(f"TraceNet-{name} (mask over box)", params, macs["box_first"] / 1e9, macs["box_repeat"] / 1e9,
            med["box_first"], med["box_repeat"], notes=f"mask IoU vs image-wide mask {iou:.3f}",
            extra={"mask_iou_vs_image": iou}),
    ]


def sam_rows(image: np.ndarray, taps: list[tuple[int, int]], repeats: int) -> list[Row]:
    """MobileSAM and SAM ViT-B (random weights), if their packages are installed."""
    rows = []
    for label, builder in _sam_builders().items():
        try:
            sam = builder().eval().requires_grad_(False)
            rows.append(_time_sam(label, sam, image, taps, repeats))
        except Exception as exc:  # optional baselines: report, do not fail the table
            rows.append(Row(label, float("nan"), None, None, float("nan"), float("nan"), notes=f"failed: {exc}"))
    return rows


def _sam_builders() -> dict[str, Any]:
    builders = {}
    try:
        from segment_anything import sam_model_registry

        builders["SAM ViT-B"] = lambda: sam_model_registry["vit_b"](checkpoint=None)
    except ImportError:
        pass
    try:
        from mobile_sam import sam_model_registry as mobile_registry

        builders["MobileSAM"] = lambda: mobile_registry["vit_t"](checkpoint=None)
    except ImportError:
        pass
    return builders


def _time_sam(label: str, sam: torch.nn.Module, image: np.ndarray, taps, repeats: int) -> Row:
    from torch.utils.flop_counter import FlopCounterMode

    size = sam.image_encoder.img_size
    h, w = image.shape[:2]
    scale = size / max(h, w)
    x = torch.zeros(1, 3, size, size)
    x[..., : int(h * scale), : int(w * scale)] = torch.nn.functional.interpolate(
        torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float(), size=(int(h * scale), int(w * scale)))
    params = sum(p.numel() for p in sam.parameters()) / 1e6
    with torch.no_grad():
        with FlopCounterMode(display=False) as enc_flops:
            emb = sam.image_encoder(x)
        dense_pe = sam.prompt_encoder.get_dense_pe()

        def decode(tap):
            pts = torch.tensor([[[tap[0] * scale, tap[1] * scale]]]), torch.ones(1, 1, dtype=torch.int)
            sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
            return sam.mask_decoder(image_embeddings=emb, image_pe=dense_pe, sparse_prompt_embeddings=sparse,
                                    dense_prompt_embeddings=dense, multimask_output=True)

        with FlopCounterMode(display=False) as dec_flops:
            decode(taps[0])
        first, repeat = [], []
        for i in range(repeats):
            t0 = time.perf_counter()
            sam.image_encoder(x)
            first.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            decode(taps[i % len(taps)])
            repeat.append((time.perf_counter() - t0) * 1e3)
    dec_ms = statistics.median(repeat)
    return Row(label, params, (enc_flops.get_total_flops() + dec_flops.get_total_flops()) / 2e9,
               dec_flops.get_total_flops() / 2e9, statistics.median(first) + dec_ms, dec_ms,
               notes=f"random weights; {size}x{size} padded input")


def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "", "| method | params (M) | GMACs first tap | GMACs repeat tap | first tap (ms) | "
             "repeat tap (ms) | first taps/s | repeat taps/s | notes |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        def g(v):
            return "-" if v is None else f"{v:.2f}"
        lines.append(f"| {r.method} | {r.params_m:.2f} | {g(r.macs_first_g)} | {g(r.macs_repeat_g)} | "
                     f"{r.first_ms:.0f} | {r.repeat_ms:.1f} | {r.first_per_s:.2f} | {r.repeat_per_s:.1f} | {r.notes} |")
    by = {r.method: r for r in rows}
    savings = []
    for r in rows:
        if r.method.startswith("TraceNet-") and "(" not in r.method and f"FullNet-{r.method[9:]}" in by:
            f = by[f"FullNet-{r.method[9:]}"]
            savings.append(f"{r.method[9:]}: first tap does {100 * (1 - r.macs_first_g / f.macs_first_g):.1f}% less "
                           f"work than FullNet ({r.macs_first_g:.2f} vs {f.macs_first_g:.2f} GMACs), "
                           f"{f.first_ms / r.first_ms:.2f}x its speed")
    return "\n".join(lines + [""] + [f"- {s}" for s in savings] + ratio_table(rows)) + "\n"


# issue 16's targets: traced first tap, the same with the mask over the box, and a repeat tap, each over FullNet's
# first tap (wall time, measured interleaved in one run)
RATIO_TARGETS = (("", "first_ms", 0.65, "first tap"), (" (mask over box)", "first_ms", 0.55,
                 "first tap, mask over the box"), ("", "repeat_ms", 0.05, "repeat tap"))


def ratio_table(rows: list[Row]) -> list[str]:
    """Markdown lines: TraceNet's wall times over FullNet's first tap, per preset, against the targets."""
    by = {r.method: r for r in rows}
    lines = ["", "| preset | measure | TraceNet (ms) | FullNet first tap (ms) | ratio | target |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        if not r.method.startswith("FullNet-"):
            continue
        name = r.method[len("FullNet-"):]
        for suffix, attr, target, label in RATIO_TARGETS:
            t = by.get(f"TraceNet-{name}{suffix}")
            if t is None:
                continue
            ratio = getattr(t, attr) / r.first_ms
            lines.append(f"| {name} | {label} | {getattr(t, attr):.1f} | {r.first_ms:.1f} | {ratio:.3f} | "
                         f"<= {target}: {'met' if ratio <= target else 'not met'} |")
    return lines if len(lines) > 3 else []


def rows_as_json(rows: list[Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = asdict(r)
        d.update(first_per_s=r.first_per_s, repeat_per_s=r.repeat_per_s)
        out.append(d)
    return out
