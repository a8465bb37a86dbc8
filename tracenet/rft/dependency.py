"""The exact set of contributing positions, for measuring what the rectangle approximation costs.

Where the planner keeps one bounding rectangle per node (paper eq. 4), this walks the same graph with a boolean
map per node: ``True`` where a position influences a requested output. It uses the same geometry as the rules, so
the two differ only by the approximation. Meant for benchmarks (it is slower than planning), not for execution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx

from tracenet.rft.plan import Layout
from tracenet.rft.regions import Rect
from tracenet.rft.resample import InterpolateRule, interpolate_params
from tracenet.rft.rules import PadRule, PassThroughRule, PointwiseRule
from tracenet.rft.sliding import SlidingWindowRule


def exact_masks(layout: Layout, outputs: dict[Any, fx.Node], requests: dict[Any, list[tuple[int, int]]]
                ) -> dict[fx.Node, torch.Tensor]:
    """``node -> bool [H, W]`` of the positions that influence the requested ``(row, col)`` output locations."""
    masks: dict[fx.Node, torch.Tensor] = {}
    for key, points in requests.items():
        node = outputs[key]
        mask = masks.get(node)
        if mask is None:
            mask = masks[node] = torch.zeros(layout.op(node).hw(), dtype=torch.bool)
        for r, c in points:
            mask[r, c] = True
    for node in reversed(layout.cap.gm.graph.nodes):
        if node not in masks or node.op in ("placeholder", "output") or node in layout.info.static:
            continue
        op = layout.op(node)
        rule = layout.rule(node)
        out = masks[node]
        for arg, m in _input_masks(rule, op, out):
            prev = masks.get(arg)
            masks[arg] = m if prev is None else (prev | m)
    return masks


def _input_masks(rule, op, out: torch.Tensor) -> list[tuple[fx.Node, torch.Tensor]]:
    if isinstance(rule, SlidingWindowRule):
        src, kernel, stride, pad, dilation = rule.geometry(op)
        h, w = op.hw(src)
        m = torch.zeros((h, w), dtype=torch.bool)
        rows, cols = torch.nonzero(out, as_tuple=True)
        for ti in range(kernel[0]):
            r = rows * stride[0] - pad[0] + ti * dilation[0]
            for tj in range(kernel[1]):
                c = cols * stride[1] - pad[1] + tj * dilation[1]
                ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
                m[r[ok], c[ok]] = True
        return [(src, m)] + [(a, _all(op, a)) for a in op.tensor_args() if a is not src]
    if isinstance(rule, PointwiseRule):
        result = []
        for arg in op.tensor_args():
            shp = op.shape(arg)
            if len(shp) < 2:
                continue
            m = out
            if shp[-2] != out.shape[0]:
                m = m.any(dim=0, keepdim=True)
            if shp[-1] != out.shape[1]:
                m = m.any(dim=1, keepdim=True)
            result.append((arg, m.expand(shp[-2], shp[-1]).clone()))
        return result
    if isinstance(rule, InterpolateRule):
        src = interpolate_params(op)["input"]
        (ri0, ri1, rw), (ci0, ci1, cw) = rule.axis_taps(op)
        h, w = op.hw(src)
        rows = torch.zeros((h, out.shape[1]), dtype=torch.bool)
        rows.index_put_((ri0,), out, accumulate=True)
        rows.index_put_((ri1[rw > 0],), out[rw > 0], accumulate=True)
        full_t = torch.zeros((w, h), dtype=torch.bool)
        full_t.index_put_((ci0,), rows.t(), accumulate=True)
        full_t.index_put_((ci1[cw > 0],), rows.t()[cw > 0], accumulate=True)
        return [(src, full_t.t().clone())]
    if isinstance(rule, PadRule):
        src, (left, _r, top, _b), _v = rule.params(op)
        h, w = op.hw(src)
        m = torch.zeros((h, w), dtype=torch.bool)
        rows, cols = torch.nonzero(out, as_tuple=True)
        r, c = rows - top, cols - left
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        m[r[ok], c[ok]] = True
        return [(src, m)]
    if isinstance(rule, PassThroughRule):
        return [(op.node.args[0], out.clone())]
    return [(a, _all(op, a)) for a in op.tensor_args() if len(op.shape(a)) >= 2]  # whole


def _all(op, arg: fx.Node) -> torch.Tensor:
    return torch.ones(op.hw(arg), dtype=torch.bool)


def rect_vs_exact(layout: Layout, plan, masks: dict[fx.Node, torch.Tensor]) -> dict[str, int]:
    """Positions and convolution MACs: the planned rectangles vs the exact dependency sets."""
    rect_pos = exact_pos = rect_macs = exact_macs = 0
    for step in plan.steps:
        if step.kind != "compute" or step.rect is None or step.node not in masks:
            continue
        exact = int(masks[step.node].sum())
        area = step.rect.area
        rect_pos += area
        exact_pos += exact
        full_area = Rect.full(*layout.op(step.node).hw()).area
        per_position = step.rule.macs(layout.op(step.node), None) / max(1, full_area)
        rect_macs += int(area * per_position)
        exact_macs += int(exact * per_position)
    return {"rect_positions": rect_pos, "exact_positions": exact_pos, "rect_macs": rect_macs,
            "exact_macs": exact_macs}
