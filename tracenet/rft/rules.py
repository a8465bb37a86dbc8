"""Back-tracing and cropped execution rules (paper eq. 1-3).

A rule answers two questions for one node:

* ``needs(op, out)``: to produce the window ``out`` of this node's output, which window of each input-dependent
  tensor input is needed? (``None`` = the whole tensor.) Windows are clipped to the input's map by the planner.
* ``run(op, env, out)``: compute exactly the ``out`` window from those inputs, padding where the full run pads.

and reports the multiply-accumulates it spends (``macs``) for a window or, with ``out=None``, for the full map.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate

from tracenet.rft.capture import is_inplace
from tracenet.rft.context import Computed, OpContext, crop, slice_hw, window
from tracenet.rft.regions import Rect

Needs = list[tuple[fx.Node, "Rect | None"]]


class Env(Protocol):
    """Values of the nodes already computed in this run."""

    def get(self, node: fx.Node) -> Computed: ...

    def is_cached(self, node: fx.Node) -> bool: ...

    def eval_const(self, node: fx.Node) -> Any: ...


class Rule:
    name = "rule"

    def needs(self, op: OpContext, out: Rect) -> Needs:
        raise NotImplementedError

    def run(self, op: OpContext, env: Env, out: Rect) -> Any:
        raise NotImplementedError

    def macs(self, op: OpContext, out: Rect | None) -> int:
        return 0


def call_original(op: OpContext, args: tuple, kwargs: dict) -> Any:
    """Call the node's own op (module, function or method) on the given arguments."""
    node = op.node
    if node.op == "call_module":
        return op.module(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    self_arg, *rest = args
    return getattr(self_arg, node.target)(*rest, **kwargs)


def _materialise(op: OpContext, env: Env, value: Any, tensor_fn) -> Any:
    """Replace every node in ``value`` by its value: input-dependent tensors through ``tensor_fn(node, computed)``,
    constants and static values as they are."""

    def one(v: Any) -> Any:
        if not isinstance(v, fx.Node):
            return v
        if v in op.info.static:
            return op.info.static[v]
        if v in op.cap.dynamic:
            return tensor_fn(v, env.get(v))
        return env.eval_const(v)

    return map_aggregate(value, one)


def _full_value(_node: fx.Node, comp: Computed) -> Any:
    return crop(comp, comp.rect) if comp.rect is not None else comp.value


class WholeRule(Rule):
    """Global ops (GroupNorm, LayerNorm, adaptive pooling, flatten + linear, attention, reshapes ...): their inputs
    are made whole, they run unchanged, and consumers crop their output. Always exact; saves nothing."""

    name = "whole"

    def needs(self, op: OpContext, out: Rect) -> Needs:
        result: Needs = []
        for arg in op.tensor_args():
            shp = op.shape(arg)
            result.append((arg, Rect.full(shp[-2], shp[-1]) if len(shp) >= 2 else None))
        return result

    def run(self, op: OpContext, env: Env, out: Rect) -> Any:
        for arg in op.tensor_args():
            comp = env.get(arg)
            if comp.rect is not None and comp.rect != Rect.full(*op.hw(arg)):
                raise AssertionError(f"internal error: whole op {op.node.name} got a partial input {arg.name}")
        args = _materialise(op, env, op.node.args, _full_value)
        kwargs = _materialise(op, env, op.node.kwargs, _full_value)
        return call_original(op, args, kwargs)

    def macs(self, op: OpContext, out: Rect | None) -> int:
        node = op.node
        if node.op == "call_module" and isinstance(op.module, nn.Linear):
            return _numel(op.shape()) * op.module.in_features
        if node.op == "call_function" and node.target in (F.linear, torch.matmul, torch.bmm):
            a, b = node.args[0], node.args[1]
            if op.is_tensor_node(a):
                return _numel(op.shape()) * op.shape(a)[-1]
            if node.target is not F.linear and op.is_tensor_node(b):  # constant first operand: K from the second
                b_shape = op.shape(b)
                return _numel(op.shape()) * (b_shape[-2] if len(b_shape) > 1 else b_shape[0])
        return 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class PointwiseRule(Rule):
    """Ops that map each spatial position to itself: activations, BatchNorm in eval, elementwise arithmetic with
    broadcasting, dtype casts, and ops acting on leading (batch/channel) dims only (channel concat, channel
    reductions, channel slicing, chunk/split along channels). Broadcast inputs of size 1 in a spatial dim need
    their single row/col; constant tensors of full spatial size are cropped alongside."""

    name = "pointwise"

    def needs(self, op: OpContext, out: Rect) -> Needs:
        out_h, out_w = op.hw()
        result: Needs = []
        for arg in op.tensor_args():
            shp = op.shape(arg)
            if len(shp) < 2:
                result.append((arg, None))
                continue
            rows = (out.r0, out.r1) if shp[-2] == out_h else (0, 1)
            cols = (out.c0, out.c1) if shp[-1] == out_w else (0, 1)
            result.append((arg, Rect(rows[0], rows[1], cols[0], cols[1])))
        return result

    def run(self, op: OpContext, env: Env, out: Rect) -> Any:
        plain = op.memo.get("plain_args", ())
        if plain == ():
            plain = op.memo["plain_args"] = _plain_tensor_args(op)
        if plain is not None:  # fast path: only same-size tensor inputs, each computed on exactly this window
            comps = [env.get(a) for a in plain]
            if all(c.rect == out for c in comps) and not (
                    env.is_cached(plain[0]) and is_inplace(op.node, op.cap.modules)):
                return call_original(op, tuple(c.value for c in comps), {})
        out_h, out_w = op.hw()
        needs = dict(self.needs(op, out))

        def dyn(node: fx.Node, comp: Computed) -> Any:
            want = needs[node]
            if want is None:
                return _slice_like_output(comp.value, out, out_h, out_w)
            return crop(comp, want)

        def const_crop(v: Any) -> Any:
            return _slice_like_output(v, out, out_h, out_w) if isinstance(v, torch.Tensor) else v

        args = _materialise(op, env, op.node.args, dyn)
        kwargs = _materialise(op, env, op.node.kwargs, dyn)
        # constants (parameters, buffers) that carry a spatial extent are cropped to the same window
        args = tuple(_crop_constants(a, op, const_crop) for a in zip(op.node.args, args))
        kwargs = {k: _crop_constants((op.node.kwargs[k], v), op, const_crop) for k, v in kwargs.items()}
        first = op.node.args[0] if op.node.args else None
        if isinstance(first, fx.Node) and env.is_cached(first) and is_inplace(op.node, op.cap.modules):
            args = (args[0].clone(), *args[1:])  # never overwrite a cached value (readers were rewired at capture)
        return call_original(op, args, kwargs)


def _plain_tensor_args(op: OpContext) -> tuple[fx.Node, ...] | None:
    """The node's arguments if all are input-dependent tensors with the node's own spatial size (no keyword
    arguments, no constants), else ``None``."""
    args = op.node.args
    if op.node.kwargs or not args or not all(op.is_tensor_node(a) for a in args):
        return None
    hw = op.hw()
    if any(len(op.shape(a)) < 2 or op.hw(a) != hw for a in args):
        return None
    return tuple(args)


def _crop_constants(pair: tuple[Any, Any], op: OpContext, fn) -> Any:
    raw, value = pair
    if isinstance(raw, fx.Node) and raw not in op.cap.dynamic:
        return fn(value)
    if isinstance(raw, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(value)(_crop_constants(p, op, fn) for p in zip(raw, value))
    return value


def _slice_like_output(value: torch.Tensor, out: Rect, out_h: int, out_w: int) -> torch.Tensor:
    """Slice a broadcast operand to the output window along every trailing dim that matches the map size."""
    if value.dim() >= 2:
        rows = (out.r0, out.r1) if value.shape[-2] == out_h and out_h != 1 else None
        cols = (out.c0, out.c1) if value.shape[-1] == out_w and out_w != 1 else None
        return slice_hw(value, rows, cols)
    if value.dim() == 1 and value.shape[0] == out_w and out_w != 1:
        return value[out.c0:out.c1]
    return value


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


class PadRule(Rule):
    """``F.pad`` / ``ZeroPad2d`` / ``ConstantPad2d`` on the last one or two dims, constant mode (negative pads crop)."""

    name = "pad"

    def params(self, op: OpContext) -> tuple[fx.Node, tuple[int, int, int, int], float]:
        if op.node.op == "call_module":
            m = op.module
            pads, value = tuple(m.padding), float(m.value)
        else:
            args = dict(zip(("input", "pad", "mode", "value"), op.node.args))
            args.update(op.node.kwargs)
            pads, value = tuple(op.resolve(args["pad"])), args.get("value")
            value = 0.0 if value is None else float(op.resolve(value))
        pads = tuple(pads) + (0,) * (4 - len(pads))
        return op.node.args[0], pads, value

    def needs(self, op: OpContext, out: Rect) -> Needs:
        src, (left, _r, top, _b), _v = self.params(op)
        return [(src, Rect(out.r0 - top, out.r1 - top, out.c0 - left, out.c1 - left))]

    def run(self, op: OpContext, env: Env, out: Rect) -> torch.Tensor:
        src, (left, _r, top, _b), value = self.params(op)
        return window(env.get(src), Rect(out.r0 - top, out.r1 - top, out.c0 - left, out.c1 - left), op.hw(src), value)


class IdentityRule(Rule):
    """``nn.Identity`` (what folding BatchNorm into a convolution leaves behind): its input's value, same window,
    without calling anything (it is a fifth of the nodes of a folded model's heads)."""

    name = "identity"

    def needs(self, op: OpContext, out: Rect) -> Needs:
        return [(op.node.args[0], out)]

    def run(self, op: OpContext, env: Env, out: Rect) -> Any:
        return crop(env.get(op.node.args[0]), out)


class PassThroughRule(Rule):
    """``getitem`` on a tuple result (e.g. of ``chunk`` along channels): same window as its source."""

    name = "passthrough"

    def needs(self, op: OpContext, out: Rect) -> Needs:
        return [(op.node.args[0], out)]

    def run(self, op: OpContext, env: Env, out: Rect) -> Any:
        return crop(env.get(op.node.args[0]), out)[op.resolve(op.node.args[1])]
