"""The public face of the Receptive Field Tracer.

>>> tracer = ReceptiveFieldTracer(model.eval())
>>> vals = tracer.gather(x, {"p3": [(10, 12)], "p7": [(0, 1)]})   # key -> Tensor[B, C, N]
>>> plan = tracer.plan(tuple(x.shape), {"p3": [(10, 12)]})
>>> plan.macs, plan.full_macs

Keys address the model's output: a dict output's keys, a tuple/list output's indices, ``0`` for a single tensor.
Locations are ``(row, col)`` in that output's own grid.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from tracenet.rft.capture import capture, propagate_shapes
from tracenet.rft.context import Computed, crop
from tracenet.rft.errors import QueryError, TracerError
from tracenet.rft.execute import RunEnv, execute
from tracenet.rft.lru import keep, recall
from tracenet.rft.plan import Layout, Plan, back_trace, merge_plans, request_groups
from tracenet.rft.regions import Rect

Points = list[tuple[int, int]]
Request = Points | Rect | None  # points (row, col), a window, or None for the whole map


_CACHE_VERSIONS = itertools.count()

TRANSLATE = True
"""Whether a plan that reuses a cache is put together from its groups' earlier plans or their translates
(:meth:`ReceptiveFieldTracer._plan_with_cache`) instead of being back-traced whole (benchmarks and tests switch it
off to compare)."""

MAX_GROUP_PLANS = 1024
"""How many group splits and group plans a tracer keeps (a lite0 level's plan: ~30 steps)."""


class TraceCache:
    """Values computed for one input tensor, reused by later runs on the same tensor (e.g. a second tap).

    After each run it keeps the *frontier* of what was computed whole: every node computed over its whole map that
    feeds a node computed only partly (or is an output). A later request whose windows fall inside cached values
    stops back-tracing there. Bound to a tracer (graph nodes) and to one input: a different tensor clears it.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self.values: dict[fx.Node, Computed] = {}
        self.version = next(_CACHE_VERSIONS)  # changes whenever ``values`` does (unique across caches)
        self._signature: tuple | None = None  # (version, signature), see :attr:`signature`

    def bind(self, x: torch.Tensor) -> None:
        key = (x.data_ptr(), x._version, tuple(x.shape), x.dtype)
        if key != self._key:
            self.values.clear()
            self._key = key
            self.version = next(_CACHE_VERSIONS)

    def clear(self) -> None:
        self.values.clear()
        self._key = None
        self.version = next(_CACHE_VERSIONS)

    @property
    def signature(self) -> tuple:
        """What a plan depends on of this cache: which nodes it holds and the window of each (not their values),
        as ``((node name, rect), ...)``; recomputed only when :attr:`version` changes. Two caches of different
        photos of one size usually share it, so a plan made for a tap on one photo serves the other."""
        if self._signature is None or self._signature[0] != self.version:
            names = tuple(sorted((node.name, comp.rect) for node, comp in self.values.items()))
            self._signature = (self.version, names)
        return self._signature[1]

    @property
    def nbytes(self) -> int:
        total = 0
        for comp in self.values.values():
            vals = comp.value if isinstance(comp.value, (tuple, list)) else [comp.value]
            total += sum(v.numel() * v.element_size() for v in vals if isinstance(v, torch.Tensor))
        return total

    def absorb(self, layout: Layout, plan: Plan, env: RunEnv) -> None:
        outputs = set(plan.outputs.values())
        rects = {s.node: s.rect for s in plan.steps}
        for step in plan.steps:
            node = step.node
            comp = env.values.get(node)  # values inside the whole-map segment are not kept (nor needed here)
            if step.kind != "compute" or comp is None:
                continue
            if comp.rect is not None and comp.rect != layout.full_rect(node):
                continue
            partial_user = any(
                u in rects and rects[u] is not None and rects[u] != layout.full_rect(u) for u in layout.cap.users[node]
            )
            if (partial_user or node in outputs) and self.values.get(node) is not comp:
                self.values[node] = comp
                self.version = next(_CACHE_VERSIONS)


class ReceptiveFieldTracer:
    """Run a convolutional model only where the requested outputs need it; values there equal the full run's.

    Args:
        model: any ``nn.Module`` with one tensor input whose forward torch.fx can capture; used in eval mode.
        max_plans: how many plans (per input shape and query set) to keep.
    """

    def __init__(self, model: nn.Module, *, max_plans: int = 64) -> None:
        self.model = model
        self._submodules = list(model.named_modules())  # checked for training mode on every run
        self.captured = capture(model)
        self._layouts: dict[tuple, Layout] = {}
        self._plans: OrderedDict[tuple, Plan] = OrderedDict()
        # plans that reuse a cache: how request keys split into groups, and each group's plans (by windows, and
        # translatable ones by window sizes)
        self._groups: OrderedDict[tuple, list[tuple[Any, ...]]] = OrderedDict()
        self._group_plans: OrderedDict[tuple, Plan] = OrderedDict()
        self._max_plans = max_plans
        self.last_plan: Plan | None = None  # the plan of the latest run (its MACs, windows)
        # wall time of the latest run's stages: "shapes", "plan", "whole_map" (compiled segment), "cropped"
        self.last_seconds: dict[str, float] = {}
        self._outputs: dict[Any, fx.Node] | None = None

    # ----------------------------------------------------------------------------------------------- structure
    def layout(self, input_shape: tuple[int, ...]) -> Layout:
        """Shapes of every node for ``input_shape`` (computed once per shape, on fake tensors)."""
        key = tuple(input_shape)
        lay = self._layouts.get(key)
        if lay is None:
            lay = self._layouts[key] = Layout(self.captured, propagate_shapes(self.captured, key))
        return lay

    def output_nodes(self) -> dict[Any, fx.Node]:
        """Output key -> graph node (dict keys, tuple/list indices, or 0 for one tensor). Computed once."""
        if self._outputs is None:
            self._outputs = self._find_outputs()
        return self._outputs

    def _find_outputs(self) -> dict[Any, fx.Node]:
        out = self.captured.output.args[0]
        if isinstance(out, fx.Node):
            return {0: out}
        if isinstance(out, Mapping):
            return {k: v for k, v in out.items() if isinstance(v, fx.Node)}
        if isinstance(out, (tuple, list)):
            return {i: v for i, v in enumerate(out) if isinstance(v, fx.Node)}
        raise TracerError(f"unsupported model output structure {type(out).__name__}")

    def output_hw(self, input_shape: tuple[int, ...], key: Any) -> tuple[int, int]:
        """Full grid size ``(rows, cols)`` of output ``key`` for ``input_shape``."""
        lay = self.layout(input_shape)
        node = self._output(key)
        shp = lay.info.shapes.get(node)
        if shp is None or isinstance(shp, list) or len(shp) < 2:
            raise QueryError(f"output {key!r} is not a tensor with a spatial grid; it cannot be queried by location")
        return shp[-2], shp[-1]

    def _output(self, key: Any) -> fx.Node:
        outs = self.output_nodes()
        if key not in outs:
            raise QueryError(f"the model has no output {key!r}; its outputs are {list(outs)}")
        return outs[key]

    def full_macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulates of the full (untraced) run for ``input_shape`` (what every plan's ``full_macs``
        says; no planning needed)."""
        return sum(self.layout(input_shape).full_macs().values())

    # -------------------------------------------------------------------------------------------------- plans
    def _requests(self, input_shape: tuple[int, ...], queries: Mapping[Any, Request]) -> dict[Any, Rect]:
        requests: dict[Any, Rect] = {}
        for key, query in queries.items():
            h, w = self.output_hw(input_shape, key)
            if query is None:
                rect = Rect.full(h, w)
            elif isinstance(query, Rect):
                rect = query
            else:
                points = _points(key, query)
                rect = Rect.around_points(points)
            if rect.is_empty() or not Rect.full(h, w).contains(rect):
                raise QueryError(f"query {query!r} for output {key!r} falls outside its {h}x{w} grid")
            requests[key] = rect
        return requests

    def plan(self, input_shape: tuple[int, ...], queries: Mapping[Any, Request],
             cache: TraceCache | None = None) -> Plan:
        """Which window of every node a run computes for these queries (plus traced and full MACs)."""
        requests = self._requests(input_shape, queries)
        lay = self.layout(input_shape)
        if cache is not None and cache.values:
            return self._plan_with_cache(lay, requests, cache)
        key = (tuple(input_shape), tuple(sorted(((repr(k), tuple(r)) for k, r in requests.items()))))
        plan = recall(self._plans, key)
        if plan is None:
            plan = back_trace(lay, self.output_nodes(), requests)
            keep(self._plans, key, plan, self._max_plans)
        return plan

    def _plan_with_cache(self, lay: Layout, requests: dict[Any, Rect], cache: TraceCache) -> Plan:
        """A plan that reuses ``cache``, equal to ``back_trace``'s. When earlier plans with the same cached windows
        (:attr:`TraceCache.signature`: a plan does not depend on the cached values, so any photo of this size
        counts) and request keys split the requests into groups with disjoint computed nodes
        (:func:`request_groups`: one per pyramid level of a detection head), each group is planned on its own and
        the parts are merged (:func:`merge_plans`); a group's plan is the one made before for the same windows, or a
        translate of one made for windows of the same size (:meth:`Plan.translated`: a tap away from the maps'
        borders), else back-traced. Anything uncertain back-traces the whole request."""
        if not TRANSLATE:
            return back_trace(lay, self.output_nodes(), requests, cache.values)
        base = (lay.info.input_shape, cache.signature)
        gkey = (*base, tuple(sorted(repr(k) for k in requests)))
        groups = recall(self._groups, gkey)
        if groups is None:
            plan = back_trace(lay, self.output_nodes(), requests, cache.values)
            keep(self._groups, gkey, request_groups(plan) or [], MAX_GROUP_PLANS)
            return plan
        if groups:
            parts = [self._group_plan(lay, {k: requests[k] for k in group}, cache, base) for group in groups]
            plan = merge_plans(lay, requests, parts)
            if plan is not None:
                return plan
        return back_trace(lay, self.output_nodes(), requests, cache.values)

    def _group_plan(self, lay: Layout, requests: dict[Any, Rect], cache: TraceCache, base: tuple) -> Plan:
        items = sorted(((repr(k), tuple(r)) for k, r in requests.items()))
        exact = (*base, tuple(items))
        plan = recall(self._group_plans, exact)
        if plan is not None:
            return plan
        sized = (*base, tuple((k, r[1] - r[0], r[3] - r[2]) for k, r in items))
        template = recall(self._group_plans, sized)
        plan = template.translated(lay, requests) if template is not None else None
        if plan is None:
            plan = back_trace(lay, self.output_nodes(), requests, cache.values)
            if plan.translatable:
                keep(self._group_plans, sized, plan, MAX_GROUP_PLANS)
        keep(self._group_plans, exact, plan, MAX_GROUP_PLANS)
        return plan

    # ---------------------------------------------------------------------------------------------------- runs
    def run(self, x: torch.Tensor, queries: Mapping[Any, Request],
            cache: TraceCache | None = None) -> dict[Any, tuple[torch.Tensor, Rect]]:
        """Compute the requested windows. Returns ``key -> (values, rect)`` where ``values`` is
        ``full_out[key][..., rect.r0:rect.r1, rect.c0:rect.c1]`` (the bounding window of the query)."""
        self._check_eval()
        if cache is not None:
            cache.bind(x)
        t0 = time.perf_counter()
        lay = self.layout(tuple(x.shape))
        t1 = time.perf_counter()
        plan = self.plan(tuple(x.shape), queries, cache)
        self.last_plan = plan
        t2 = time.perf_counter()
        with torch.no_grad():
            env = execute(lay, plan, x, cache.values if cache is not None else None)
        if cache is not None:
            cache.absorb(lay, plan, env)
        self.last_seconds = {"shapes": t1 - t0, "plan": t2 - t1, **env.seconds}
        return {key: (crop(env.get(plan.outputs[key]), rect), rect) for key, rect in plan.requests.items()}

    def gather(self, x: torch.Tensor, queries: Mapping[Any, Iterable[tuple[int, int]]],
               cache: TraceCache | None = None) -> dict[Any, torch.Tensor]:
        """Values at the queried ``(row, col)`` locations: ``key -> Tensor[B, C, N]`` equal to
        ``full_out[key][..., rows, cols]``."""
        points = {k: _points(k, q) for k, q in queries.items()}
        windows = self.run(x, points, cache)
        result = {}
        for key, pts in points.items():
            values, rect = windows[key]
            rows = torch.tensor([p[0] - rect.r0 for p in pts])
            cols = torch.tensor([p[1] - rect.c0 for p in pts])
            result[key] = values[..., rows, cols]
        return result

    def _check_eval(self) -> None:
        training = [name or type(self.model).__name__ for name, m in self._submodules if m.training]
        if training:
            raise TracerError(
                f"the model is in training mode ({', '.join(training[:3])}{'...' if len(training) > 3 else ''}); "
                "BatchNorm would use batch statistics over the crop. Call model.eval() first."
            )


def _points(key: Any, query: Any) -> Points:
    try:
        points = [(int(r), int(c)) for r, c in query]
    except (TypeError, ValueError) as exc:
        raise QueryError(f"query for output {key!r} must be a list of (row, col) pairs, got {query!r}") from exc
    if not points:
        raise QueryError(f"query for output {key!r} is empty")
    return points
