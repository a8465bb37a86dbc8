"""Cropped execution of a plan (auto-cropping and auto-padding, paper section 3.1)."""

from __future__ import annotations

import operator
import time
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate

from tracenet.rft.capture import is_inplace
from tracenet.rft.context import Computed
from tracenet.rft.errors import describe
from tracenet.rft.lru import keep, recall
from tracenet.rft.plan import Layout, Plan, Step
from tracenet.rft.regions import Rect
from tracenet.rft.rules import IdentityRule, WholeRule, call_original
from tracenet.rft.segment import segment_for
from tracenet.rft.sliding import ConvRule


class RunEnv:
    """Values of one run: computed windows of input-dependent nodes, and constants evaluated on demand."""

    def __init__(self, layout: Layout, x: torch.Tensor) -> None:
        self.layout = layout
        self.values: dict[fx.Node, Computed] = {}
        self.cached: set[fx.Node] = set()
        self.consts: dict[fx.Node, Any] = {}
        # wall time: finding (or compiling) the whole-map segment, running it, running the cropped steps
        self.seconds: dict[str, float] = {"segment": 0.0, "whole_map": 0.0, "cropped": 0.0}
        ph = layout.cap.placeholder
        self.values[ph] = Computed(x, Rect.full(x.shape[-2], x.shape[-1]) if x.dim() >= 2 else None)

    def get(self, node: fx.Node) -> Computed:
        return self.values[node]

    def is_cached(self, node: fx.Node) -> bool:
        return node in self.cached

    def eval_const(self, node: fx.Node) -> Any:
        """Value of a node that does not depend on the input (parameters, buffers, arithmetic on them)."""
        if node in self.consts:
            return self.consts[node]
        gm = self.layout.cap.gm
        if node.op == "get_attr":
            value = operator.attrgetter(str(node.target))(gm)
        else:
            args = map_aggregate(node.args, lambda a: self.eval_const(a) if isinstance(a, fx.Node) else a)
            kwargs = map_aggregate(node.kwargs, lambda a: self.eval_const(a) if isinstance(a, fx.Node) else a)
            value = call_original(self.layout.op(node), args, kwargs)
        self.consts[node] = value
        return value


def execute(layout: Layout, plan: Plan, x: torch.Tensor, cached: dict[fx.Node, Computed] | None = None) -> RunEnv:
    """Run ``plan`` on input ``x``; returns the run's values (each node the window the plan asked for).

    The steps computed over whole maps from whole inputs run first, as one compiled segment (plain eager code of
    the model, see :mod:`tracenet.rft.segment`); only the values leaving it are kept. The cropped steps then run
    node by node through their rules.
    """
    if tuple(x.shape) != tuple(plan.input_shape):
        raise ValueError(f"plan was made for input shape {plan.input_shape}, got {tuple(x.shape)}")
    env = RunEnv(layout, x)
    for step in plan.steps:
        if step.kind == "cached":
            env.values[step.node] = cached[step.node]
            env.cached.add(step.node)
    start = time.perf_counter()
    seg = segment_for(layout, plan, layout.cap.segments)
    env.seconds["segment"] = time.perf_counter() - start
    start = time.perf_counter()
    if seg is not None:
        args = [env.values[n].value for n in seg.inputs]
        try:
            results = seg.module(*args)
        except Exception as exc:
            if not seg.optimised:
                raise RuntimeError(f"the whole-map part of the plan failed: {exc}") from exc
            # the rewrite did not suit this model (e.g. an in-place addition whose operand's dtype cannot hold the
            # sum): run the model's own code (the rewrite overwrites only the segment's own intermediates)
            seg = segment_for(layout, plan, layout.cap.segments, optimised=False)
            try:
                results = seg.module(*args)
            except Exception as exc2:
                raise RuntimeError(f"the whole-map part of the plan failed: {exc2}") from exc2
        for node, value in zip(seg.outputs, results):
            rect = layout.full_rect(node)
            _check_window(node, value, rect)
            env.values[node] = Computed(value, rect)
    env.seconds["whole_map"] = time.perf_counter() - start
    start = time.perf_counter()
    cropped = [s for s in plan.steps if s.kind != "cached" and not (seg is not None and s.node in seg.nodes)]
    relu_of, applied = relu_epilogues(layout, cropped, plan) if FUSE else ({}, set())
    for group in cropped_order(layout, cropped):
        if group[0].node in applied:
            continue  # a ReLU (or the Identity before it) already applied by the convolution it follows
        fused = group[0].node in relu_of
        extra = {"epilogue": torch.relu_} if fused else {}  # only ConvRule takes an epilogue
        if len(group) == 1:
            step = group[0]
            try:
                values = [step.rule.run(layout.op(step.node), env, step.rect, **extra)]
            except Exception as exc:
                raise RuntimeError(f"cropped execution failed at {describe(step.node)} for window {step.rect}: "
                                   f"{exc}") from exc
        else:
            try:
                values = group[0].rule.run_batch([layout.op(s.node) for s in group], env, [s.rect for s in group],
                                                 **extra)
            except Exception as exc:
                names = ", ".join(describe(s.node) for s in group)
                raise RuntimeError(f"cropped execution failed at {names} (run as one batch): {exc}") from exc
        for step, value in zip(group, values):
            rect = layout.full_rect(step.node) if isinstance(step.rule, WholeRule) else step.rect
            _check_window(step.node, value, rect)
            # with an epilogue the value is the ReLU's: only the ReLU node gets it (the convolution's own value,
            # and the Identity's, were read by nothing else, see relu_epilogues)
            env.values[relu_of[step.node] if fused else step.node] = Computed(value, rect)
    env.seconds["cropped"] = time.perf_counter() - start
    return env


FUSE = True
"""Whether a cropped convolution whose only reader is a ReLU (directly or through the ``nn.Identity`` BatchNorm
folding leaves) applies the ReLU to its own fresh output, in place, instead of running the ReLU as a step of its
own (benchmarks and tests switch it off to compare)."""

_RELU_FUNCTIONS = (torch.relu, torch.relu_, F.relu)
_RELU_METHODS = ("relu", "relu_")


def _is_relu(layout: Layout, node: fx.Node) -> bool:
    if node.op == "call_module":
        return type(layout.cap.modules[str(node.target)]) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    return node.op == "call_method" and node.target in _RELU_METHODS


def relu_epilogues(layout: Layout, steps: list[Step], plan: Plan) -> tuple[dict[fx.Node, fx.Node], set[fx.Node]]:
    """The ReLUs among the cropped ``steps`` that their convolution can apply: each convolution step (a
    :class:`~tracenet.rft.sliding.ConvRule`) whose only reader is a ReLU step on the same window, or an
    ``nn.Identity`` step whose only reader is, with neither the convolution nor the Identity a requested output.

    Returns ``({convolution: its ReLU}, {the Identity and ReLU nodes so applied})``: the convolution runs with the
    ReLU applied in place to its fresh output and its value is stored as the ReLU's; the Identity and the ReLU steps
    are skipped (the convolution's and the Identity's own values are read by nothing else). A convolution of a
    batched group (see :func:`cropped_order`) runs with the epilogue only if every convolution step calling its
    module qualifies, so a group never splits. ReLU(x) is exact, so the values are the unfused run's, bit for bit.

    The chains (which nodes follow which convolution) depend only on which nodes are cropped and which are
    requested: they are found once per such set (:attr:`Layout.schedules`); the windows are compared on every
    call."""
    relu_of: dict[fx.Node, fx.Node] = {}
    applied: set[fx.Node] = set()
    if not steps:
        return relu_of, applied
    key = ("relu", tuple(s.node for s in steps), frozenset(plan.outputs.values()))
    found = recall(layout.schedules, key)
    if found is None:
        found = keep(layout.schedules, key, _relu_chains(layout, steps, plan), MAX_SCHEDULES)
    chains, calls = found
    if not chains:
        return relu_of, applied
    rects = {s.node: s.rect for s in steps}
    same = {conv: chain for conv, chain in chains.items() if all(rects[n] == rects[conv] for n in chain)}
    for conv, chain in same.items():
        if conv.op == "call_module" and not all(n in same for n in calls[conv.target]):
            continue
        relu_of[conv] = chain[-1]
        applied.update(chain)
    return relu_of, applied


def _relu_chains(layout: Layout, steps: list[Step], plan: Plan
                 ) -> tuple[dict[fx.Node, list[fx.Node]], dict[Any, list[fx.Node]]]:
    """For :func:`relu_epilogues`, windows aside: ``{convolution: [Identity nodes..., its ReLU]}`` for each
    convolution step whose only reader (through at most one ``nn.Identity``, all cropped steps, none requested) is
    a ReLU, and ``{convolution module: its cropped convolution steps}``."""
    cropped = {s.node for s in steps}
    users = layout.cap.users
    outputs = set(plan.outputs.values())
    chains: dict[fx.Node, list[fx.Node]] = {}
    for s in steps:
        if not isinstance(s.rule, ConvRule) or s.node in outputs:
            continue
        between: list[fx.Node] = []
        node = s.node
        while True:
            readers = users[node]
            if len(readers) != 1 or readers[0] not in cropped:
                break
            nxt = readers[0]
            if _is_relu(layout, nxt):
                chains[s.node] = [*between, nxt]
                break
            if between or nxt in outputs or not isinstance(layout.rule(nxt), IdentityRule):
                break
            between.append(nxt)
            node = nxt
    calls: dict[Any, list[fx.Node]] = {}  # convolution modules -> their cropped steps
    for s in steps:
        if isinstance(s.rule, ConvRule) and s.node.op == "call_module":
            calls.setdefault(s.node.target, []).append(s.node)
    return chains, calls


MAX_SCHEDULES = 512
"""Entries :attr:`Layout.schedules` keeps, least recently used first out (a run's cropped steps differ by which
pyramid levels and branches a tap reaches; a few dozen sets in practice)."""


BATCH = True
"""Whether cropped convolutions calling one module (a head shared by pyramid levels) run as one batch
(benchmarks and tests switch it off to compare)."""


def cropped_order(layout: Layout, steps: list[Step]) -> list[list[Step]]:
    """The cropped ``steps`` (graph order) as groups to run one after another: one step each, except that steps of
    :class:`~tracenet.rft.sliding.ConvRule` calling the same module at the same depth form one group (run as a
    batch). Depth is the longest path to the end of the cropped part, so the same layer of parallel branches
    (one head on several pyramid levels) lines up; every step's inputs have a greater depth, and steps are run
    by decreasing depth. With an in-place op among the steps the graph order is kept (an in-place op must not
    move past a reader of the value it overwrites). The grouping depends only on the steps' nodes: it is found
    once per set of nodes (:attr:`Layout.schedules`)."""
    if not BATCH or len(steps) < 2:
        return [[s] for s in steps]
    key = ("order", tuple(s.node for s in steps))
    order = recall(layout.schedules, key)
    if order is None:
        order = keep(layout.schedules, key, _group_indices(layout, steps), MAX_SCHEDULES)
    return [[steps[i] for i in group] for group in order]


def _group_indices(layout: Layout, steps: list[Step]) -> list[list[int]]:
    """:func:`cropped_order` as positions in ``steps``."""
    alone = [[i] for i in range(len(steps))]
    modules = layout.cap.modules
    convs = 0
    for s in steps:
        op = layout.op(s.node)
        inplace = op.memo.get("inplace")
        if inplace is None:
            inplace = op.memo["inplace"] = is_inplace(s.node, modules)
        if inplace:
            return alone
        convs += isinstance(s.rule, ConvRule) and s.node.op == "call_module"
    if convs < 2:
        return alone
    index = {s.node: i for i, s in enumerate(steps)}
    users = layout.cap.users
    depth = [0] * len(steps)
    for i in range(len(steps) - 1, -1, -1):
        deepest = -1
        for u in users[steps[i].node]:
            j = index.get(u)
            if j is not None and depth[j] > deepest:
                deepest = depth[j]
        depth[i] = deepest + 1
    groups: list[list[int]] = []
    shared: dict[tuple, list[int]] = {}
    for i in sorted(range(len(steps)), key=lambda k: (-depth[k], k)):
        s = steps[i]
        if isinstance(s.rule, ConvRule) and s.node.op == "call_module":
            key = (depth[i], s.node.target)
            group = shared.get(key)
            if group is not None:
                group.append(i)
                continue
            group = shared[key] = [i]
            groups.append(group)
        else:
            groups.append([i])
    return groups


def _check_window(node: fx.Node, value: Any, rect: Rect | None) -> None:
    """Refuse to hand on a tensor whose spatial size is not the planned window (never a silently wrong value)."""
    first = value[0] if isinstance(value, (tuple, list)) and value else value
    if rect is None or not isinstance(first, torch.Tensor):
        return
    shape = first.shape
    if len(shape) < 2 or shape[-2] != rect.r1 - rect.r0 or shape[-1] != rect.c1 - rect.c0:
        raise AssertionError(
            f"{describe(node)} produced a {tuple(first.shape[-2:])} window where {rect} "
            f"({rect.height}x{rect.width}) was planned"
        )
