"""Interpolation (``F.interpolate`` / ``nn.Upsample``) on crops.

Each output row (col) of nearest or bilinear resizing reads one or two input rows (cols) with fixed weights. Those
taps depend on the *full* map's sizes and on how PyTorch rounds its scale, so instead of re-deriving PyTorch's
index arithmetic we ask PyTorch itself: resizing a 1-D ramp ``0, 1, ..., n-1`` (float64) with the same arguments
gives, at every output index, the source position ``i0 + w1`` (exact for nearest; for bilinear ``i0 = floor``,
``w1`` the fractional part). The cropped run then gathers those rows and cols from the crop.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft.context import OpContext, crop
from tracenet.rft.regions import Rect
from tracenet.rft.rules import Env, Needs, Rule

LOCAL_MODES = ("nearest", "nearest-exact", "bilinear")
_NAMES = ("input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias")


def interpolate_params(op: OpContext) -> dict[str, Any]:
    """The ``F.interpolate`` arguments of a node, with static values resolved."""
    node = op.node
    if node.op == "call_module":
        m: nn.Upsample = op.module
        return {"input": node.args[0], "size": m.size, "scale_factor": m.scale_factor, "mode": m.mode,
                "align_corners": m.align_corners, "recompute_scale_factor": m.recompute_scale_factor,
                "antialias": False}
    p = {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None,
         "recompute_scale_factor": None, "antialias": False}
    p.update(zip(_NAMES, node.args))
    p.update(node.kwargs)
    return {k: (v if k == "input" else op.resolve(v)) for k, v in p.items()}


def is_local_interpolation(op: OpContext) -> bool:
    p = interpolate_params(op)
    return p["mode"] in LOCAL_MODES and not p["antialias"] and len(op.shape(p["input"])) == 4


def _axis_arg(v: Any, axis: int) -> Any:
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return v[axis] if len(v) > 1 else v[0]
    return v


@lru_cache(maxsize=512)
def _taps(in_size: int, out_size: int, scale: float | None, mode: str, align_corners: bool | None,
          recompute: bool | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source taps along one axis: ``(i0, i1, w1)`` with ``out[o] = (1 - w1[o]) * x[i0[o]] + w1[o] * x[i1[o]]``."""
    ramp = torch.arange(in_size, dtype=torch.float64).reshape(1, 1, in_size, 1)
    kwargs: dict[str, Any] = {"mode": mode}
    if mode == "bilinear":
        kwargs["align_corners"] = align_corners
    if scale is not None:
        kwargs.update(scale_factor=(scale, 1.0), recompute_scale_factor=recompute)
    else:
        kwargs.update(size=(out_size, 1))
    pos = F.interpolate(ramp, **kwargs).reshape(-1)
    if pos.numel() != out_size:
        raise AssertionError(f"interpolation probe gave {pos.numel()} outputs, expected {out_size}")
    i0 = torch.floor(pos).to(torch.int64).clamp(0, in_size - 1)
    w1 = (pos - i0).clamp(0.0, 1.0)
    i1 = torch.where(w1 > 0, (i0 + 1).clamp(max=in_size - 1), i0)
    return i0, i1, w1


class InterpolateRule(Rule):
    """Nearest / nearest-exact / bilinear (either ``align_corners``), given ``size`` or ``scale_factor``."""

    name = "interpolate"

    def axis_taps(self, op: OpContext) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        p = interpolate_params(op)
        in_h, in_w = op.hw(p["input"])
        out_h, out_w = op.hw()
        taps = []
        for axis, (n_in, n_out) in enumerate(((in_h, out_h), (in_w, out_w))):
            scale = _axis_arg(p["scale_factor"], axis)
            taps.append(_taps(n_in, n_out, None if scale is None else float(scale), p["mode"],
                              p["align_corners"], p["recompute_scale_factor"]))
        return taps[0], taps[1]

    def needs(self, op: OpContext, out: Rect) -> Needs:
        (ri0, ri1, _), (ci0, ci1, _) = self.axis_taps(op)
        rect = Rect(int(ri0[out.r0:out.r1].min()), int(ri1[out.r0:out.r1].max()) + 1,
                    int(ci0[out.c0:out.c1].min()), int(ci1[out.c0:out.c1].max()) + 1)
        return [(interpolate_params(op)["input"], rect)]

    def run(self, op: OpContext, env: Env, out: Rect) -> torch.Tensor:
        (src_rect,) = [r for _, r in self.needs(op, out)]
        src = interpolate_params(op)["input"]
        x = crop(env.get(src), src_rect)
        (ri0, ri1, rw), (ci0, ci1, cw) = self.axis_taps(op)
        x = _gather(x, -2, ri0[out.r0:out.r1] - src_rect.r0, ri1[out.r0:out.r1] - src_rect.r0, rw[out.r0:out.r1])
        return _gather(x, -1, ci0[out.c0:out.c1] - src_rect.c0, ci1[out.c0:out.c1] - src_rect.c0, cw[out.c0:out.c1])


def _gather(x: torch.Tensor, dim: int, i0: torch.Tensor, i1: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    lo = x.index_select(dim, i0)
    if not bool((w1 > 0).any()):
        return lo
    hi = x.index_select(dim, i1)
    shape = [1] * x.dim()
    shape[dim] = -1
    w1 = w1.to(x.dtype).reshape(shape)
    return lo * (1 - w1) + hi * w1
