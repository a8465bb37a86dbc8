"""Back-tracing (paper section 3.1): from the requested output windows to the input, which window of every node
must be computed.

The graph's node list is in topological order, so walking it backwards visits every node after all of its
consumers: the post-order depth-first search of the paper, each node and edge touched once (O(N + E)). A node's
window is the bounding rectangle of what its consumers need (eq. 4), clipped to its map; the overhang is not lost,
each consumer re-derives it at run time and zero-fills it (auto-padding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx

from tracenet.rft.capture import Captured, ShapeInfo
from tracenet.rft.context import Computed, OpContext
from tracenet.rft.dispatch import choose_rule
from tracenet.rft.errors import UnsupportedOpError
from tracenet.rft.regions import Rect
from tracenet.rft.rules import Rule, WholeRule

_WHOLE = WholeRule()


@dataclass
class Layout:
    """Per input shape: full-run shapes plus the rule of every node (chosen lazily)."""

    cap: Captured
    info: ShapeInfo
    rules: dict[fx.Node, Rule] = field(default_factory=dict)
    contexts: dict[fx.Node, OpContext] = field(default_factory=dict)
    _full_macs: dict[str, int] | None = None
    _full_rects: dict[fx.Node, Rect | None] = field(default_factory=dict)

    def op(self, node: fx.Node) -> OpContext:
        ctx = self.contexts.get(node)
        if ctx is None:
            ctx = self.contexts[node] = OpContext(node=node, cap=self.cap, info=self.info)
        return ctx

    def rule(self, node: fx.Node) -> Rule:
        rule = self.rules.get(node)
        if rule is None:
            rule = self.rules[node] = choose_rule(self.op(node))
        return rule

    def full_rect(self, node: fx.Node) -> Rect | None:
        """The node's whole map as a window (``None`` below two dims); memoised (planning and every run ask)."""
        try:
            return self._full_rects[node]
        except KeyError:
            shp = self.info.shapes[node]
            shp = shp[0] if isinstance(shp, list) else shp
            rect = self._full_rects[node] = Rect.full(shp[-2], shp[-1]) if len(shp) >= 2 else None
            return rect

    def full_macs(self) -> dict[str, int]:
        """MACs of every node in the full (untraced) run; ops without a rule count 0. Computed once."""
        if self._full_macs is not None:
            return self._full_macs
        result = {}
        for node in self.cap.gm.graph.nodes:
            if node in self.cap.dynamic and node in self.info.shapes and node.op.startswith("call"):
                try:
                    result[node.name] = self.rule(node).macs(self.op(node), None)
                except UnsupportedOpError:
                    result[node.name] = 0
        self._full_macs = result
        return result


@dataclass
class Step:
    """One node of a plan: ``kind`` is ``"compute"`` (run ``rule`` for ``rect``) or ``"cached"`` (reuse)."""

    node: fx.Node
    kind: str
    rule: Rule | None
    rect: Rect | None
    macs: int = 0


@dataclass
class Plan:
    """What a traced run computes for one input shape and one set of requested output windows."""

    input_shape: tuple[int, ...]
    requests: dict[Any, Rect]
    outputs: dict[Any, fx.Node]
    steps: list[Step]
    full_node_macs: dict[str, int]

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the traced run (convolutions, linear layers, pooling)."""
        return sum(s.macs for s in self.steps)

    @property
    def full_macs(self) -> int:
        """Multiply-accumulates of the full run of the same graph."""
        return sum(self.full_node_macs.values())

    @property
    def ratio(self) -> float:
        return self.macs / self.full_macs if self.full_macs else 1.0

    def node_table(self) -> list[dict[str, Any]]:
        """Per node: name, rule, computed window ``(r0, r1, c0, c1)`` or ``None``, traced and full MACs."""
        by_name = {s.node.name: s for s in self.steps}
        rows = []
        for name, full in self.full_node_macs.items():
            step = by_name.get(name)
            rows.append({"node": name, "rule": step.rule.name if step and step.rule else (step.kind if step else "-"),
                         "rect": tuple(step.rect) if step and step.rect else None,
                         "macs": step.macs if step else 0, "full_macs": full})
        return rows

    def format_table(self, min_macs: int = 0) -> str:
        """The per-node table as aligned text (nodes with fewer than ``min_macs`` full MACs are left out)."""
        lines = [f"{'node':40s} {'rule':12s} {'window (r0,r1,c0,c1)':26s} {'traced MACs':>14s} {'full MACs':>14s}"]
        for row in self.node_table():
            if row["full_macs"] < min_macs and row["macs"] < min_macs:
                continue
            lines.append(f"{row['node'][:40]:40s} {row['rule']:12s} {str(row['rect']):26s} "
                         f"{row['macs']:14,d} {row['full_macs']:14,d}")
        lines.append(f"{'total':40s} {'':12s} {'':26s} {self.macs:14,d} {self.full_macs:14,d}")
        return "\n".join(lines)


WHOLE_FRACTION = 0.5
"""A window covering at least this share of its map is computed whole: the few extra MACs buy plain eager code
(the compiled whole-map segment) instead of a crop, and the full run's own kernel on the full run's shapes."""


def _mostly_whole(rect: Rect | None, full: Rect | None) -> bool:
    return rect is not None and full is not None and rect != full and rect.area >= WHOLE_FRACTION * full.area


def back_trace(layout: Layout, outputs: dict[Any, fx.Node], requests: dict[Any, Rect],
               cached: dict[fx.Node, Computed] | None = None) -> Plan:
    """Plan the windows every node must compute so that ``outputs[key]`` is exact on ``requests[key]``.

    ``cached`` values whose window covers a node's need are reused, and their inputs are not traced further.
    """
    cap, info = layout.cap, layout.info
    cached = cached or {}
    need: dict[fx.Node, Rect | None] = {}
    for key, rect in requests.items():
        node = outputs[key]
        need[node] = rect.union(need.get(node))
    steps: list[Step] = []
    for node in reversed(cap.gm.graph.nodes):
        if node not in need or node.op in ("placeholder", "output") or node in info.static:
            continue
        rect = need[node]
        hit = cached.get(node)
        if hit is not None and (hit.rect is None or (rect is not None and hit.rect.contains(rect))):
            steps.append(Step(node, "cached", None, hit.rect))
            continue
        rule = layout.rule(node)
        op = layout.op(node)
        if isinstance(rule, WholeRule) or _mostly_whole(rect, layout.full_rect(node)):
            rect = layout.full_rect(node)
        # a node whose own output has fewer than two dims needs every tensor input whole
        for arg, want in (rule if rect is not None else _WHOLE).needs(op, rect):
            if arg in need and need[arg] is None:
                continue  # already needed whole (non-spatial)
            if want is None:
                need[arg] = None
                continue
            h, w = op.hw(arg)
            clipped = want.clip(h, w)
            if clipped.is_empty():  # entirely in padding: keep one real pixel so dtype/shape are known
                r, c = min(max(want.r0, 0), h - 1), min(max(want.c0, 0), w - 1)
                clipped = Rect(r, r + 1, c, c + 1)
            need[arg] = clipped.union(need.get(arg))
        steps.append(Step(node, "compute", rule, rect, rule.macs(op, rect)))
    steps.reverse()
    return Plan(input_shape=info.input_shape, requests=dict(requests), outputs=outputs, steps=steps,
                full_node_macs=layout.full_macs())
