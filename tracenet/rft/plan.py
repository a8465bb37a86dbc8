"""Back-tracing (paper section 3.1): from the requested output windows to the input, which window of every node
must be computed.

The graph's node list is in topological order, so walking it backwards visits every node after all of its
consumers: the post-order depth-first search of the paper, each node and edge touched once (O(N + E)). A node's
window is the bounding rectangle of what its consumers need (eq. 4), clipped to its map; the overhang is not lost,
each consumer re-derives it at run time and zero-fills it (auto-padding).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx

from tracenet.rft.capture import Captured, ShapeInfo
from tracenet.rft.context import Computed, OpContext
from tracenet.rft.dispatch import choose_rule
from tracenet.rft.errors import UnsupportedOpError
from tracenet.rft.regions import Rect
from tracenet.rft.rules import IdentityRule, PassThroughRule, PointwiseRule, Rule, WholeRule
from tracenet.rft.sliding import SlidingWindowRule

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
    _order: dict[fx.Node, int] | None = None
    # how the cropped steps of a run are grouped and which ReLUs their convolutions apply, by the steps' nodes
    # (see tracenet.rft.execute: both depend on which nodes are cropped, not on their windows)
    schedules: OrderedDict[tuple, Any] = field(default_factory=OrderedDict)

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

    def node_order(self) -> dict[fx.Node, int]:
        """Each graph node's position in graph (topological) order; computed once."""
        if self._order is None:
            self._order = {n: i for i, n in enumerate(self.cap.gm.graph.nodes)}
        return self._order

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
    # compute step -> the request keys whose windows reach it (back_trace fills it)
    owners: dict[fx.Node, frozenset[Any]] = field(default_factory=dict)
    # whether every computed window is a translate of its requests' (none cut by a border or made whole, each on
    # a map of its requests' size through rules that move windows one for one, see _moves_with_its_request)
    translatable: bool = False

    def translated(self, layout: Layout, requests: dict[Any, Rect]) -> Plan | None:
        """The plan ``back_trace`` makes for ``requests`` (same keys and window sizes, same cached values), as this
        plan's windows moved by each request's offset; ``None`` where that is not certain: this plan is not a pure
        translate (see :attr:`translatable`), a window size differs, or a moved window would leave its map.

        Why it is the same plan: each computed node's window is the union of its requests' windows pushed through
        chains of rules whose windows move one for one with their output's on maps of one size (clipping at a
        border and making a window whole do not: neither happened here, and a move that would clip is refused);
        a node serving several requests is moved only when they all move alike. The same nodes are visited
        (which inputs a rule needs does not depend on the window); cached values are whole maps, which contain
        any window; MACs depend on window sizes only."""
        if not self.translatable or requests.keys() != self.requests.keys():
            return None
        shift: dict[Any, tuple[int, int]] = {}
        for key, rect in requests.items():
            old = self.requests[key]
            if (rect.height, rect.width) != (old.height, old.width):
                return None
            shift[key] = (rect.r0 - old.r0, rect.c0 - old.c0)
        steps = []
        for s in self.steps:
            if s.kind != "compute":
                steps.append(s)
                continue
            moves = {shift[key] for key in self.owners[s.node]}
            if len(moves) != 1:
                return None
            dr, dc = moves.pop()
            r = s.rect
            moved = Rect(r.r0 + dr, r.r1 + dr, r.c0 + dc, r.c1 + dc)
            if moved != r and not layout.full_rect(s.node).contains(moved):
                return None
            steps.append(Step(s.node, s.kind, s.rule, moved, s.macs))
        return Plan(input_shape=self.input_shape, requests=dict(requests), outputs=self.outputs, steps=steps,
                    full_node_macs=self.full_node_macs, owners=self.owners, translatable=True)

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


def _moves_with_its_request(layout: Layout, node: fx.Node, rule: Rule, op: OpContext, rect: Rect | None,
                            owners: set[Any], outputs: dict[Any, fx.Node]) -> bool:
    """Does ``node``'s window move by exactly its requests' offset when they all move by one offset? True for a
    spatial node on a map of the size of each of those requests' outputs, computed by a rule whose window follows
    its output's one for one (pointwise, identity, pass-through, stride-1 convolution and pooling)."""
    if rect is None:
        return False
    full = layout.full_rect(node)
    if any(layout.full_rect(outputs[key]) != full for key in owners):
        return False
    if isinstance(rule, (PointwiseRule, IdentityRule, PassThroughRule)):
        return True
    if isinstance(rule, SlidingWindowRule):
        return rule.geometry(op)[2] == (1, 1)
    return False


def back_trace(layout: Layout, outputs: dict[Any, fx.Node], requests: dict[Any, Rect],
               cached: dict[fx.Node, Computed] | None = None) -> Plan:
    """Plan the windows every node must compute so that ``outputs[key]`` is exact on ``requests[key]``.

    ``cached`` values whose window covers a node's need are reused, and their inputs are not traced further.
    """
    cap, info = layout.cap, layout.info
    cached = cached or {}
    need: dict[fx.Node, Rect | None] = {}
    # which request's windows reach each node, and whether every computed window is a plain translate of its
    # request's (see Plan.translated)
    owners: dict[fx.Node, set[Any]] = {}
    translatable = True
    for key, rect in requests.items():
        node = outputs[key]
        need[node] = rect.union(need.get(node))
        owners.setdefault(node, set()).add(key)
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
            translatable = False
        mine = owners[node]
        if translatable and not _moves_with_its_request(layout, node, rule, op, rect, mine, outputs):
            translatable = False
        # a node whose own output has fewer than two dims needs every tensor input whole
        for arg, want in (rule if rect is not None else _WHOLE).needs(op, rect):
            owners.setdefault(arg, set()).update(mine)
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
            if clipped != want and arg not in cached:
                translatable = False  # a computed window cut by its map's border
            need[arg] = clipped.union(need.get(arg))
        steps.append(Step(node, "compute", rule, rect, rule.macs(op, rect)))
    steps.reverse()
    return Plan(input_shape=info.input_shape, requests=dict(requests), outputs=outputs, steps=steps,
                full_node_macs=layout.full_macs(),
                owners={s.node: frozenset(owners[s.node]) for s in steps if s.kind == "compute"},
                translatable=translatable)


def request_groups(plan: Plan) -> list[tuple[Any, ...]] | None:
    """The plan's request keys split into groups that share no computed node (requests linked through a node
    that serves them both fall in one group: e.g. one group per pyramid level of a detection head), or ``None``
    when a computed window is not spatial. Each group can then be planned on its own (:func:`merge_plans`)."""
    parent: dict[Any, Any] = {key: key for key in plan.requests}

    def root(key: Any) -> Any:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for step in plan.steps:
        if step.kind != "compute":
            continue
        if step.rect is None:
            return None
        first, *rest = plan.owners[step.node]
        for key in rest:
            parent[root(key)] = root(first)
    groups: dict[Any, list[Any]] = {}
    for key in plan.requests:
        groups.setdefault(root(key), []).append(key)
    return [tuple(sorted(g, key=repr)) for g in groups.values()]


def merge_plans(layout: Layout, requests: dict[Any, Rect], parts: list[Plan]) -> Plan | None:
    """One plan from plans of disjoint groups of ``requests`` (each back-traced on its own with the same cached
    values): their steps in graph order. ``None`` when a node is computed by two parts or a computed window is
    not spatial; then the parts' needs could overlap and the whole plan must be back-traced.

    Why it equals ``back_trace(requests)``: a node computed in one part gets no need from another part (that
    part would have reached it too, and computed it as well, or found it cached, and cached values are the same
    for all), so its window is the union of the same consumers' needs."""
    steps: dict[fx.Node, Step] = {}
    owners: dict[fx.Node, frozenset[Any]] = {}
    for part in parts:
        for step in part.steps:
            if step.kind == "compute":
                if step.node in steps or step.rect is None:
                    return None
                owners[step.node] = part.owners[step.node]
            elif step.node in steps:
                continue
            steps[step.node] = step
    order = layout.node_order()
    merged = sorted(steps.values(), key=lambda s: order[s.node])
    return Plan(input_shape=layout.info.input_shape, requests=dict(requests), outputs=parts[0].outputs,
                steps=merged, full_node_macs=layout.full_macs(), owners=owners)
