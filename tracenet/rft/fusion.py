"""Rewrites of a compiled whole-map segment that make it run faster than the model's own eager code.

The segment (:mod:`tracenet.rft.segment`) computes whole maps exactly as the full run does. Two rewrites make it
cheaper without changing what it computes:

* **Convolution + activation in one oneDNN call.** A ``Conv2d`` (zero padding, integer padding) that the full run
  sends to oneDNN (PyTorch's own backend choice for its full-run shapes) runs through
  ``torch.ops.mkldnn._convolution_pointwise`` (the kernel ``torch.compile`` uses on CPU); an activation that is its
  only reader (ReLU, ReLU6 / Hardtanh, SiLU, Hardswish, LeakyReLU) is applied inside the convolution, on the
  finished sums, instead of in a second pass over the map. Other dtypes and devices fall back to ``F.conv2d`` + the
  activation. Values: the same oneDNN sums (equal in our tests, at most float32 rounding of the activation).
* **In place where nothing else reads.** An activation or an addition whose first operand was freshly computed
  inside the segment, is read by nothing else and is not handed out, overwrites that operand instead of
  allocating a new map (bit-identical values).

Folding BatchNorm into the convolutions was tried and dropped: on the tests' calibrated ResNet-FPN it moved values
by up to 9e-5 (the folded weights round differently and BatchNorm's mean subtraction cancels), outside the
tracer's promise ``allclose(rtol=1e-4, atol=1e-5)``. Models that want it fold before tracing (as the predictor
does, for TraceNet and FullNet alike).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

def conv_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: list[int],
             stride: list[int], dilation: list[int], groups: int, attr: str, scalars: list, algorithm: str
             ) -> torch.Tensor:
    """``act(conv2d(x, weight, bias))`` in one oneDNN call where oneDNN serves it, else in two eager ops.
    ``attr``: ``"none"`` or a oneDNN post-op name with its ``scalars`` (e.g. ``"hardtanh", [0.0, 6.0]``)."""
    if (x.dtype is torch.float32 and weight.dtype is torch.float32 and x.device.type == "cpu" and x.dim() == 4
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups, attr,
                                                        scalars, algorithm)
    y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _EAGER_ACT[attr](y, *scalars)


def hardtanh_(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return F.hardtanh(x, lo, hi, inplace=True)


def silu_(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x, inplace=True)


def hardswish_(x: torch.Tensor) -> torch.Tensor:
    return F.hardswish(x, inplace=True)


def leaky_relu_(x: torch.Tensor, slope: float) -> torch.Tensor:
    return F.leaky_relu(x, slope, inplace=True)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# oneDNN post-op name -> the same activation in place, in eager PyTorch (called as fn(x, *scalars))
_EAGER_ACT: dict[str, Callable[..., torch.Tensor]] = {
    "none": _identity, "relu": torch.relu_, "hardtanh": hardtanh_, "swish": silu_, "hardswish": hardswish_,
    "leaky_relu": leaky_relu_,
}


def _activation(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, list] | None:
    """``(onednn_attr, scalars)`` of a supported elementwise activation node, else ``None``."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is nn.ReLU:
            return "relu", []
        if type(m) is nn.ReLU6:
            return "hardtanh", [0.0, 6.0]
        if type(m) is nn.Hardtanh:
            return "hardtanh", [float(m.min_val), float(m.max_val)]
        if type(m) is nn.SiLU:
            return "swish", []
        if type(m) is nn.Hardswish:
            return "hardswish", []
        if type(m) is nn.LeakyReLU:
            return "leaky_relu", [float(m.negative_slope)]
        return None
    single = len(node.args) == 1 and not node.kwargs
    if node.op == "call_function" and node.target in (F.relu, torch.relu) and single:
        return "relu", []
    if node.op == "call_method" and node.target == "relu" and single:
        return "relu", []
    return None


# ops whose result is a new tensor (never a view of an operand): safe to overwrite once nothing else reads it
_FRESH_FUNCTIONS = {F.conv2d, torch.conv2d, conv_act, operator.add, operator.sub, operator.mul, operator.truediv,
                    torch.add, torch.sub, torch.mul, F.interpolate, torch.cat, F.relu, torch.relu, F.max_pool2d,
                    F.avg_pool2d}
_FRESH_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.LeakyReLU,
                  nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)


def _fresh(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in _FRESH_FUNCTIONS and not node.kwargs.get("inplace", False)
    if node.op == "call_module":
        m = modules.get(str(node.target))
        return isinstance(m, _FRESH_MODULES) and not getattr(m, "inplace", False)
    return False


def optimise(gm: fx.GraphModule, keep: set[fx.Node], shapes: dict[fx.Node, Any], onednn: set[fx.Node]) -> None:
    """Apply the rewrites to ``gm`` (a compiled segment) in place and recompile it. ``keep``: nodes whose values
    leave the segment (never fused away or overwritten); ``shapes``: full-run shapes of ``gm``'s nodes (kept up
    to date for the nodes the rewrites create); ``onednn``: the convolution nodes the full run sends to oneDNN."""
    modules = dict(gm.named_modules())
    _fuse_conv_activation(gm, modules, keep, shapes, onednn)
    _in_place(gm, modules, keep, shapes)
    gm.graph.lint()
    gm.recompile()


def _conv_module(node: Any, modules: dict[str, nn.Module]) -> nn.Conv2d | None:
    if not isinstance(node, fx.Node) or node.op != "call_module":
        return None
    m = modules.get(str(node.target))
    if type(m) is not nn.Conv2d or m.padding_mode != "zeros" or isinstance(m.padding, str):
        return None
    return m


def _fuse_conv_activation(gm: fx.GraphModule, modules: dict[str, nn.Module], keep: set[fx.Node],
                          shapes: dict[fx.Node, Any], onednn: set[fx.Node]) -> None:
    for node in list(gm.graph.nodes):
        parts = _conv_parts(gm, node, modules) if node in onednn else None
        if parts is None:
            continue
        x, weight, bias, stride, padding, dilation, groups = parts
        users = list(node.users)
        act = _activation(users[0], modules) if len(users) == 1 and node not in keep else None
        if act is not None and users[0].args[0] is not node:
            act = None
        attr, scalars = (act[0], act[1]) if act is not None else ("none", [])
        with gm.graph.inserting_before(node):
            fused = gm.graph.call_function(conv_act, (x, weight, bias, list(padding), list(stride), list(dilation),
                                                      int(groups), attr, scalars, ""))
        if act is not None:
            _replace(gm, users[0], fused, keep, shapes)
        _replace(gm, node, fused, keep, shapes)


def _conv_parts(gm: fx.GraphModule, node: fx.Node, modules: dict[str, nn.Module]) -> tuple | None:
    """``(input, weight, bias, stride, padding, dilation, groups)`` of a ``Conv2d`` module call with integer
    padding, else ``None``."""
    conv = _conv_module(node, modules)
    if conv is None or len(node.args) != 1 or node.kwargs:
        return None
    with gm.graph.inserting_before(node):
        weight = gm.graph.get_attr(f"{node.target}.weight")
        bias = gm.graph.get_attr(f"{node.target}.bias") if conv.bias is not None else None
    return node.args[0], weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups


def _in_place(gm: fx.GraphModule, modules: dict[str, nn.Module], keep: set[fx.Node],
              shapes: dict[fx.Node, Any]) -> None:
    for node in list(gm.graph.nodes):
        if not node.args or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if src in keep or len(src.users) != 1 or not _fresh(src, modules) or node in keep:
            continue
        act = _activation(node, modules)
        if act is not None:
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(_EAGER_ACT[act[0]], (src, *act[1]))
        elif (node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2
              and not node.kwargs and isinstance(node.args[1], fx.Node)
              and shapes.get(src) is not None and shapes.get(src) == shapes.get(node)):
            with gm.graph.inserting_before(node):
                new = gm.graph.call_method("add_", (src, node.args[1]))
        else:
            continue
        _replace(gm, node, new, keep, shapes)


def _replace(gm: fx.GraphModule, old: fx.Node, new: fx.Node, keep: set[fx.Node], shapes: dict[fx.Node, Any]) -> None:
    """Point every reader of ``old`` at ``new`` and drop ``old`` (its shape and 'handed out' mark move along)."""
    old.replace_all_uses_with(new)
    if old in shapes and new not in shapes:
        shapes[new] = shapes[old]
    if old in keep:
        keep.discard(old)
        keep.add(new)
    gm.graph.erase_node(old)
