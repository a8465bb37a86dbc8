"""A compiled whole-map segment rewritten to overwrite what nothing else reads, instead of allocating new maps.

The segment (:mod:`tracenet.rft.segment`) computes whole maps exactly as the full run does. An inference
BatchNorm (``BatchNorm2d`` in eval mode), an activation (ReLU, ReLU6 / Hardtanh, SiLU, Hardswish, LeakyReLU) or an
addition whose first operand was freshly computed inside the segment (a convolution's, BatchNorm's, activation's
... result, never a view), is read by nothing else and is not handed out, overwrites that operand: one full-size
map less to allocate and write, bit-identical values (the same kernels: BatchNorm through the ``out=`` variant of
``native_batch_norm``, which computes element by element). Measured on the bundled lite0 model at 1024x768 (one
thread, busy machine, interleaved in one process): the whole-map part's CPU time over FullNet's 0.614 -> 0.592
with malloc reusing freed memory, 0.631 -> 0.615 without (activations and additions; lite0's BatchNorm is folded
before tracing). On the R50-FPN benchmark (BatchNorm not folded), BatchNorm in place took the traced run from
0.50-0.52 to 0.44-0.48 of the full run's wall time (2 threads; the rewrite's own row in
``benchmarks/rft_benchmark.py``), where the plain segment stays at the eager backbone's 0.51.

``nn.Identity`` calls (what BatchNorm folding leaves between a convolution and its activation) are read through
first: until session 10 they hid every lite0 ReLU6 from the rewrite (32 out-of-place clamps per first tap at
1024x768, ~28 ms of CPU); with them gone the bundled model's traced first tap went 0.628 -> 0.584 of FullNet's.

Max pooling without indices becomes :func:`tracenet.rft.maxpool.max_pool2d` (rows, then columns, through
``torch.maximum``: the same values, 10 instead of 55-61 ms for the R50 stem's pooling at 1024x768; the benchmark's
traced / full wall 0.508 -> 0.498 in one idle run).

Tried and dropped (no measurable gain, see docs/PROFILE.md): oneDNN convolution + activation in one call
(``torch.ops.mkldnn._convolution_pointwise``; 0.614 -> 0.608 and 0.631 -> 0.642 in the same runs) and folding
BatchNorm into the convolutions (it moved values on the tests' calibrated ResNet-18-FPN by up to 9e-5, outside the
tracer's promise ``allclose(rtol=1e-4, atol=1e-5)``; models that want it fold before tracing, as the predictor
does for TraceNet and FullNet alike).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tracenet.rft import maxpool


def hardtanh_(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return F.hardtanh(x, lo, hi, inplace=True)


def silu_(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x, inplace=True)


def hardswish_(x: torch.Tensor) -> torch.Tensor:
    return F.hardswish(x, inplace=True)


def leaky_relu_(x: torch.Tensor, slope: float) -> torch.Tensor:
    return F.leaky_relu(x, slope, inplace=True)


_NO_STATS = torch.empty(0)


def batch_norm_(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, mean: torch.Tensor,
                var: torch.Tensor, eps: float) -> torch.Tensor:
    """Inference BatchNorm written over its input: the same kernel as ``F.batch_norm(training=False)`` (its
    ``out=`` variant, which computes element by element), so bit-identical, without a new map."""
    torch.ops.aten.native_batch_norm.out(x, weight, bias, mean, var, False, 0.0, eps, out=x,
                                         save_mean=_NO_STATS, save_invstd=_NO_STATS)
    return x


# activation name -> the same activation in place (called as fn(x, *scalars))
_IN_PLACE: dict[str, Callable[..., torch.Tensor]] = {
    "relu": torch.relu_, "hardtanh": hardtanh_, "swish": silu_, "hardswish": hardswish_, "leaky_relu": leaky_relu_,
}


def _activation(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, list] | None:
    """``(name, scalars)`` of a supported elementwise activation node, else ``None``."""
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
_FRESH_FUNCTIONS = {F.conv2d, torch.conv2d, operator.add, operator.sub, operator.mul, operator.truediv,
                    torch.add, torch.sub, torch.mul, F.interpolate, torch.cat, F.relu, torch.relu, F.max_pool2d,
                    F.avg_pool2d, maxpool.max_pool2d}
_FRESH_MODULES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.LeakyReLU,
                  nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)


_REWRITTEN = "tracenet_in_place"  # node.meta key of the ops optimise put in


def _fresh(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.meta.get(_REWRITTEN):  # put in by optimise: an in-place op on a fresh map returns that map
        return True
    if node.op == "call_function":
        return node.target in _FRESH_FUNCTIONS and not node.kwargs.get("inplace", False)
    if node.op == "call_module":
        m = modules.get(str(node.target))
        return isinstance(m, _FRESH_MODULES) and not getattr(m, "inplace", False)
    return False


def _eval_batch_norm(node: fx.Node, modules: dict[str, nn.Module]) -> nn.BatchNorm2d | None:
    """The module of a ``BatchNorm2d`` call that normalises with its running statistics (eval mode), else None."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    m = modules.get(str(node.target))
    if type(m) is not nn.BatchNorm2d or m.training or m.running_mean is None or m.running_var is None:
        return None
    return m


def _attr(gm: fx.GraphModule, node: fx.Node, name: str) -> fx.Node | None:
    """A ``get_attr`` node for ``<module>.<name>`` (``None`` when the module has no such tensor)."""
    if getattr(gm.get_submodule(str(node.target)), name) is None:
        return None
    return gm.graph.get_attr(f"{node.target}.{name}")


def _max_pool_stub(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The signature of ``F.max_pool2d``, to read a call's arguments by name."""


def _max_pool_args(node: fx.Node, modules: dict[str, nn.Module]) -> tuple | None:
    """``(input, kernel_size, stride, padding, dilation, ceil_mode)`` of a 2-d max pooling without indices."""
    if node.op == "call_module":
        m = modules.get(str(node.target))
        if type(m) is not nn.MaxPool2d or m.return_indices or len(node.args) != 1 or node.kwargs:
            return None
        return node.args[0], m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    if node.op != "call_function" or node.target not in (F.max_pool2d, torch.max_pool2d):
        return None
    try:
        bound = inspect.signature(_max_pool_stub).bind(*node.args, **node.kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    a = bound.arguments
    if a["return_indices"] is not False or any(isinstance(v, fx.Node) for k, v in a.items() if k != "input"):
        return None
    return a["input"], a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"]


def _replace(gm: fx.GraphModule, node: fx.Node, new: fx.Node, keep: set[fx.Node], shapes: dict[fx.Node, Any]
             ) -> None:
    if node in shapes:
        shapes[new] = shapes[node]
    node.replace_all_uses_with(new)
    if node in keep:
        keep.discard(node)
        keep.add(new)
    gm.graph.erase_node(node)


def _drop_identities(gm: fx.GraphModule, keep: set[fx.Node], modules: dict[str, nn.Module]) -> None:
    """Let readers of an ``nn.Identity`` (what BatchNorm folding leaves between a convolution and its activation)
    read its input directly, so that the activation sees the convolution's fresh map. Identities whose value leaves
    the segment stay."""
    for node in list(gm.graph.nodes):
        if (node.op == "call_module" and type(modules.get(str(node.target))) is nn.Identity and node not in keep
                and len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node)):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)


def optimise(gm: fx.GraphModule, keep: set[fx.Node], shapes: dict[fx.Node, Any]) -> None:
    """Rewrite ``gm`` (a compiled segment) in place and recompile it. ``keep``: nodes whose values enter or leave
    the segment (never overwritten); ``shapes``: full-run shapes of ``gm``'s nodes. Max pooling also becomes
    :func:`tracenet.rft.maxpool.max_pool2d` (the same values, faster)."""
    modules = dict(gm.named_modules())
    _drop_identities(gm, keep, modules)
    for node in list(gm.graph.nodes):
        pool = _max_pool_args(node, modules)
        if pool is not None:
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(maxpool.max_pool2d, pool)
            _replace(gm, node, new, keep, shapes)
            continue
        if not node.args or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if src in keep or len(src.users) != 1 or not _fresh(src, modules):
            continue
        act = _activation(node, modules)
        bn = _eval_batch_norm(node, modules)
        if bn is not None:
            with gm.graph.inserting_before(node):
                attrs = [_attr(gm, node, name) for name in ("weight", "bias", "running_mean", "running_var")]
                new = gm.graph.call_function(batch_norm_, (src, *attrs, float(bn.eps)))
        elif act is not None:
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(_IN_PLACE[act[0]], (src, *act[1]))
        elif (node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2
              and not node.kwargs and isinstance(node.args[1], fx.Node)
              and shapes.get(src) is not None and shapes.get(src) == shapes.get(node)):
            with gm.graph.inserting_before(node):
                new = gm.graph.call_method("add_", (src, node.args[1]))
        else:
            continue
        new.meta[_REWRITTEN] = True
        _replace(gm, node, new, keep, shapes)
    gm.graph.lint()
    gm.recompile()
