"""The whole-map part of a plan, run as one generated ``torch.fx.GraphModule`` instead of node by node.

In a typical plan most of the work is computed over whole maps (a backbone whose deepest level sees the whole
image, an FPN, a mask branch); only the heads around the queries are cropped. Those whole-map nodes need nothing of
the tracer: they are the model's own code on the model's own tensors. :func:`whole_segment` cuts them out of the
captured graph into a small graph of their own (inputs: the model input and any cached values they read; outputs:
what the cropped part, the requested outputs or the cache need) and compiles it with torch.fx's code generator.
The generated ``forward`` is plain eager PyTorch: no per-node dispatch, and every intermediate is freed after its
last use, as in the full run. Its values are therefore the full run's values.

Segments are cached by *which* nodes they hold, not by input shape: a new input shape whose plan computes the same
nodes whole reuses the compiled code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.fx as fx

from tracenet.rft.capture import Captured, is_inplace
from tracenet.rft.inplace import optimise


@dataclass
class WholeSegment:
    """Plan steps computed over whole maps, compiled.

    ``inputs``: captured-graph nodes whose values the module takes, in order (the model input and cached nodes);
    ``outputs``: the nodes whose values it returns (a tuple, same order); ``nodes``: every node it computes.
    ``optimised``: whether :func:`tracenet.rft.inplace.optimise` rewrote it (in place where nothing else reads).
    """

    module: fx.GraphModule
    inputs: tuple[fx.Node, ...]
    outputs: tuple[fx.Node, ...]
    nodes: frozenset[fx.Node]
    optimised: bool = False


def whole_nodes(layout: Any, plan: Any) -> list[fx.Node]:
    """Compute steps of ``plan`` that produce their whole map from whole inputs only (graph order)."""
    cap: Captured = layout.cap
    available = {cap.placeholder}
    for step in plan.steps:
        if step.kind == "cached" and (step.rect is None or step.rect == layout.full_rect(step.node)):
            available.add(step.node)
    chosen: list[fx.Node] = []
    for step in plan.steps:
        if step.kind != "compute":
            continue
        node = step.node
        full = layout.full_rect(node)
        if step.rect is not None and full is not None and step.rect != full:
            continue
        inputs = [a for a in node.all_input_nodes if a in cap.dynamic and a not in layout.info.static]
        if all(a in available for a in inputs):
            chosen.append(node)
            available.add(node)
    return chosen


def build_segment(cap: Captured, static: dict[fx.Node, Any], nodes: list[fx.Node], inputs: list[fx.Node],
                  outputs: list[fx.Node], shapes: dict[fx.Node, Any] | None = None) -> WholeSegment:
    """Copy ``nodes`` (graph order) into a graph of their own and compile it.

    Values read from shapes (``static``) are read again inside the segment when they come from values it has (so
    the code serves every input shape), else they become constants (the full run's values).
    Constants of the model (parameters, arithmetic on them) are copied along. An in-place op whose operand is an
    input of the segment (a cached value) or one of its outputs is given a copy, so nothing handed out is
    overwritten. With ``shapes`` (full-run shapes of the captured graph's nodes) the segment is also rewritten
    to overwrite what nothing else reads (:func:`tracenet.rft.inplace.optimise`).
    """
    graph = fx.Graph()
    env: dict[fx.Node, Any] = {}
    for i, node in enumerate(inputs):
        env[node] = graph.placeholder(f"in_{i}_{node.name}")
    handed_out = set(inputs) | set(outputs)

    available = set(inputs) | set(nodes)

    def value_of(arg: fx.Node) -> Any:
        if arg in env:
            return env[arg]
        if arg in static and not _recomputable(arg, available, static, cap.dynamic):
            return static[arg]
        if arg in static:  # a shape read of a whole value: read it in the segment (shape-independent code)
            env[arg] = graph.node_copy(arg, value_of)
            return env[arg]
        if arg in cap.dynamic:
            raise AssertionError(f"internal error: segment input {arg.name} is neither computed nor an input")
        env[arg] = graph.node_copy(arg, value_of)  # a constant of the model (get_attr, arithmetic on weights)
        return env[arg]

    for node in nodes:
        first = node.args[0] if node.args else None
        if isinstance(first, fx.Node) and first in handed_out and is_inplace(node, cap.modules):
            copy = graph.call_method("clone", (value_of(first),))
            env[node] = graph.node_copy(node, lambda a, f=first, c=copy: c if a is f else value_of(a))
        else:
            env[node] = graph.node_copy(node, value_of)
    graph.output(tuple(env[n] for n in outputs))
    module = fx.GraphModule(cap.gm, graph)
    seg = WholeSegment(module=module, inputs=tuple(inputs), outputs=tuple(outputs), nodes=frozenset(nodes))
    if shapes is not None:
        keep = {env[n] for n in (*inputs, *outputs)}
        seg_shapes = {env[n]: shapes[n] for n in nodes if n in shapes and n in env}
        optimise(module, keep, seg_shapes)
        seg.optimised = True
    return seg


REWRITE = True
"""Whether whole-map segments get :func:`tracenet.rft.inplace.optimise`'s rewrite (benchmarks switch it off to
compare)."""


def segment_for(layout: Any, plan: Any, store: dict, max_stored: int = 32, optimised: bool | None = None
                ) -> WholeSegment | None:
    """The compiled whole-map segment of ``plan`` (``None`` when nothing runs whole), from ``store`` if the same
    nodes, inputs and outputs were compiled before.
    ``optimised=False``: the plain copy of the model's code, without rewrites (default: :data:`REWRITE`)."""
    optimised = REWRITE if optimised is None else optimised
    nodes = whole_nodes(layout, plan)
    if not nodes:
        return None
    chosen = set(nodes)
    cap: Captured = layout.cap
    planned = {s.node for s in plan.steps}
    inputs: list[fx.Node] = []
    for node in nodes:
        for a in node.all_input_nodes:
            if a in cap.dynamic and a not in chosen and a not in layout.info.static and a not in inputs:
                inputs.append(a)
    wanted = set(plan.outputs.values())
    outputs = [n for n in nodes if n in wanted or any(u in planned and u not in chosen for u in cap.users[n])]
    key = (tuple(n.name for n in nodes), tuple(n.name for n in inputs), tuple(n.name for n in outputs),
           _static_key(layout, nodes, inputs), optimised)
    seg = store.get(key)
    if seg is None:
        if len(store) >= max_stored:
            store.pop(next(iter(store)))
        shapes = layout.info.shapes if optimised else None
        seg = store[key] = build_segment(cap, layout.info.static, nodes, inputs, outputs, shapes)
    return seg


def _static_key(layout: Any, nodes: list[fx.Node], inputs: list[fx.Node]) -> tuple:
    """The shape-derived values the segment bakes in as constants (they differ between input shapes)."""
    static = layout.info.static
    available = set(nodes) | set(inputs)
    seen = []
    for node in nodes:
        for a in node.all_input_nodes:
            if a in static and not _recomputable(a, available, static, layout.cap.dynamic):
                seen.append((a.name, repr(static[a])))
    return tuple(seen)


def _recomputable(node: fx.Node, available: set[fx.Node], static: dict[fx.Node, Any], dynamic: set[fx.Node]
                  ) -> bool:
    """Can a shape-derived value be read again from tensors the segment holds whole?"""
    for a in node.all_input_nodes:
        if a in static:
            if not _recomputable(a, available, static, dynamic):
                return False
        elif a in dynamic and a not in available:
            return False
    return True
