"""Cropped execution of a plan (auto-cropping and auto-padding, paper section 3.1)."""

from __future__ import annotations

import operator
import time
from typing import Any

import torch
import torch.fx as fx
from torch.fx.node import map_aggregate

from tracenet.rft.context import Computed
from tracenet.rft.errors import describe
from tracenet.rft.plan import Layout, Plan
from tracenet.rft.regions import Rect
from tracenet.rft.rules import WholeRule, call_original
from tracenet.rft.segment import segment_for


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
    for step in plan.steps:
        node = step.node
        if step.kind == "cached" or (seg is not None and node in seg.nodes):
            continue
        op = layout.op(node)
        try:
            value = step.rule.run(op, env, step.rect)
        except Exception as exc:
            raise RuntimeError(f"cropped execution failed at {describe(node)} for window {step.rect}: {exc}") from exc
        rect = layout.full_rect(node) if isinstance(step.rule, WholeRule) else step.rect
        _check_window(node, value, rect)
        env.values[node] = Computed(value, rect)
    env.seconds["cropped"] = time.perf_counter() - start
    return env


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
