"""Which rule handles which op. Plain dicts and sets, no registry magic; unknown ops raise UnsupportedOpError."""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from tracenet.rft.context import OpContext
from tracenet.rft.errors import TracerError, UnsupportedOpError
from tracenet.rft.resample import InterpolateRule, is_local_interpolation
from tracenet.rft.rules import IdentityRule, PadRule, PassThroughRule, PointwiseRule, Rule, WholeRule
from tracenet.rft.sliding import ConvRule, PoolRule

POINTWISE, WHOLE, CONV, PAD, INTERP = PointwiseRule(), WholeRule(), ConvRule(), PadRule(), InterpolateRule()
MAXPOOL, AVGPOOL, PASS, IDENTITY = PoolRule("max"), PoolRule("avg"), PassThroughRule(), IdentityRule()

POINTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Threshold, nn.LogSigmoid, nn.Softshrink, nn.Hardshrink, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d, nn.LocalResponseNorm,
)
WHOLE_MODULES: tuple[type[nn.Module], ...] = (
    nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear,
    nn.Flatten, nn.Unflatten, nn.MultiheadAttention, nn.PixelShuffle, nn.PixelUnshuffle, nn.ReflectionPad2d,
    nn.ReplicationPad2d, nn.CircularPad2d, nn.Bilinear, nn.Embedding, nn.TransformerEncoderLayer,
)

_F_POINTWISE = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.elu,
    F.selu, F.celu, F.softplus, F.softsign, F.sigmoid, F.tanh, F.logsigmoid, F.threshold, F.prelu, F.dropout,
    F.dropout2d, F.alpha_dropout, F.feature_alpha_dropout,
}
_TORCH_POINTWISE = {
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.log1p, torch.expm1, torch.abs,
    torch.neg, torch.sqrt, torch.rsqrt, torch.square, torch.pow, torch.clamp, torch.clip, torch.clamp_min,
    torch.clamp_max, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.maximum, torch.minimum,
    torch.where, torch.sign, torch.floor, torch.ceil, torch.round, torch.erf, torch.sin, torch.cos,
    torch.reciprocal, torch.nan_to_num, torch.sigmoid_, torch.addcmul, torch.lerp,
}
_OPERATOR_POINTWISE = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.neg, operator.pos,
    operator.abs, operator.pow, operator.mod, operator.iadd, operator.isub, operator.imul, operator.itruediv,
}
FUNCTION_POINTWISE: set[Callable] = _F_POINTWISE | _TORCH_POINTWISE | _OPERATOR_POINTWISE
FUNCTION_WHOLE: set[Callable] = {
    F.group_norm, F.layer_norm, F.instance_norm, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear,
    torch.flatten, torch.matmul, torch.bmm, torch.einsum, F.scaled_dot_product_attention, torch.reshape,
    torch.permute, torch.transpose, F.pixel_shuffle, F.grid_sample, torch.nonzero, torch.topk, torch.sort,
}
METHOD_POINTWISE = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log", "abs", "neg", "sqrt", "rsqrt", "pow",
    "clamp", "clamp_", "clip", "clamp_min", "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "float",
    "double", "half", "to", "type", "type_as", "contiguous", "clone", "detach", "sign", "floor", "ceil", "round",
    "masked_fill", "exp_", "reciprocal", "square", "addcmul", "lerp",
}
METHOD_WHOLE = {"view", "reshape", "flatten", "permute", "transpose", "expand", "expand_as", "repeat", "matmul",
                "unfold", "topk", "sort", "nonzero", "view_as", "reshape_as", "t", "mT"}
REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "prod", "std", "var", "norm", "any", "all", "logsumexp",
              "argmax", "argmin"}
SOFTMAXES = {"softmax", "log_softmax"}

# Extension points: callers may add rules for their own modules / functions.
MODULE_RULES: dict[type[nn.Module], Rule] = {}
FUNCTION_RULES: dict[Callable, Rule] = {}


def register_module_rule(module_type: type[nn.Module], rule: Rule) -> None:
    """Handle every ``module_type`` leaf module with ``rule`` (e.g. ``WholeRule()`` for a custom global op)."""
    MODULE_RULES[module_type] = rule


def register_function_rule(fn: Callable, rule: Rule) -> None:
    FUNCTION_RULES[fn] = rule


def choose_rule(op: OpContext) -> Rule:
    """The rule for a node whose output depends on the input and is a tensor (or tuple of tensors)."""
    node = op.node
    if node.op == "call_module":
        rule = _module_rule(op)
    elif node.op == "call_function":
        rule = _function_rule(op)
    elif node.op == "call_method":
        rule = _method_rule(op)
    else:
        raise UnsupportedOpError(node, f"unexpected graph op kind {node.op!r}")
    if rule is POINTWISE and not _broadcast_ok(op):
        return WHOLE
    return rule


def _module_rule(op: OpContext) -> Rule:
    m = op.module
    if (type(m) is nn.Identity and len(op.node.args) == 1 and not op.node.kwargs and op.tensor_args()
            and not isinstance(op.info.shapes.get(op.node), list) and len(op.shape()) >= 2):
        return IDENTITY
    for kind, rule in MODULE_RULES.items():
        if isinstance(m, kind):
            return rule
    if isinstance(m, (nn.BatchNorm2d, nn.Dropout, nn.Dropout2d)) and m.training:
        raise TracerError(f"module {op.node.target} ({type(m).__name__}) is in training mode; call model.eval()")
    if type(m) is nn.Conv2d:
        return CONV if m.padding_mode == "zeros" else WHOLE
    if isinstance(m, nn.MaxPool2d):
        return WHOLE if m.return_indices else MAXPOOL
    if isinstance(m, nn.AvgPool2d):
        return AVGPOOL
    if isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
        return PAD
    if isinstance(m, nn.Upsample):
        return INTERP if is_local_interpolation(op) else WHOLE
    if isinstance(m, nn.Softmax) or isinstance(m, nn.LogSoftmax):
        return _by_dims(op, [m.dim])
    if isinstance(m, POINTWISE_MODULES):
        return POINTWISE
    if isinstance(m, WHOLE_MODULES):
        return WHOLE
    raise UnsupportedOpError(op.node, f"module type {type(m).__name__} is not known to be local or global")


def _function_rule(op: OpContext) -> Rule:
    node, fn = op.node, op.node.target
    if fn in FUNCTION_RULES:
        return FUNCTION_RULES[fn]
    if fn is operator.getitem:
        return _getitem_rule(op)
    if fn is torch.conv2d or fn is F.conv2d:
        return CONV
    if fn is F.max_pool2d or getattr(fn, "__name__", "") in ("max_pool2d", "_max_pool2d"):
        return WHOLE if op.resolve(node.kwargs.get("return_indices", False)) else MAXPOOL
    if fn is F.avg_pool2d:
        return AVGPOOL
    if fn is F.pad:
        pad = op.resolve(node.args[1] if len(node.args) > 1 else node.kwargs["pad"])
        mode = op.resolve(node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant"))
        return PAD if mode == "constant" and len(pad) in (2, 4) else WHOLE
    if fn is F.interpolate or fn is F.upsample:
        return INTERP if is_local_interpolation(op) else WHOLE
    if fn is F.batch_norm:
        training = op.resolve(node.kwargs.get("training", node.args[5] if len(node.args) > 5 else False))
        if training:
            raise TracerError(f"{node.name} calls F.batch_norm with training=True; call model.eval()")
        return POINTWISE
    if fn in (torch.cat, torch.concat):
        return _by_dims(op, [_arg(op, 1, "dim", 0)], ndim=len(op.shape()))
    if fn is torch.stack:
        return _by_dims(op, [_arg(op, 1, "dim", 0)], ndim=len(op.shape()))
    if fn in (torch.chunk, torch.split, torch.unbind):
        return _by_dims(op, [_arg(op, 2 if fn is not torch.unbind else 1, "dim", 0)])
    if fn in (F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize):
        return _by_dims(op, [_arg(op, 1 if fn is not F.normalize else 2, "dim", 1)])
    if fn in (torch.sum, torch.mean, torch.amax, torch.amin, torch.max, torch.min, torch.argmax):
        return _reduction_rule(op)
    if fn in (torch.squeeze, torch.unsqueeze):
        return _squeeze_rule(op, fn.__name__)
    if fn in FUNCTION_POINTWISE:
        return POINTWISE
    if fn in FUNCTION_WHOLE:
        return WHOLE
    raise UnsupportedOpError(node, "function not known to be local or global")


def _method_rule(op: OpContext) -> Rule:
    name = op.node.target
    if name in METHOD_POINTWISE:
        if name == "to" and any(isinstance(op.resolve(a), int) for a in op.node.args[1:]):
            return WHOLE
        return POINTWISE
    if name in REDUCTIONS:
        return _reduction_rule(op)
    if name in SOFTMAXES:
        return _by_dims(op, [_arg(op, 1, "dim", None)])
    if name in ("chunk", "split"):
        return _by_dims(op, [_arg(op, 2, "dim", 0)])
    if name == "unbind":
        return _by_dims(op, [_arg(op, 1, "dim", 0)])
    if name in ("squeeze", "unsqueeze"):
        return _squeeze_rule(op, name)
    if name in METHOD_WHOLE:
        return WHOLE
    raise UnsupportedOpError(op.node, f"tensor method .{name}() is not known to be local or global")


def _arg(op: OpContext, index: int, name: str, default):
    node = op.node
    value = node.args[index] if len(node.args) > index else node.kwargs.get(name, default)
    return op.resolve(value)


def _by_dims(op: OpContext, dims: list, ndim: int | None = None) -> Rule:
    """Pointwise if every dim acted on is a leading (batch/channel) dim of the input, else whole."""
    src = op.tensor_args()[0]
    ndim = ndim if ndim is not None else len(op.shape(src))
    flat: list = []
    for d in dims:
        flat.extend(d if isinstance(d, (tuple, list)) else [d])
    if ndim < 3 or any(d is None for d in flat):
        return WHOLE
    return POINTWISE if all((d % ndim) < ndim - 2 for d in flat) else WHOLE


def _reduction_rule(op: OpContext) -> Rule:
    dim = _arg(op, 1, "dim", None)
    if isinstance(dim, fx.Node):  # torch.max(a, b) / a.max(b): the elementwise form
        return POINTWISE
    return WHOLE if dim is None else _by_dims(op, [dim])


def _squeeze_rule(op: OpContext, name: str) -> Rule:
    dim = _arg(op, 1, "dim", None)
    if dim is None:
        return WHOLE
    ndim = len(op.shape(op.tensor_args()[0])) + (1 if name == "unsqueeze" else 0)
    return _by_dims(op, [dim], ndim=ndim)


def _getitem_rule(op: OpContext) -> Rule:
    src, index = op.node.args[0], op.resolve(op.node.args[1])
    if isinstance(op.info.shapes.get(src), list):
        return PASS
    ndim = len(op.shape(src))
    idx = list(index) if isinstance(index, tuple) else [index]
    while idx and idx[-1] == slice(None) and len(idx) > ndim - 2:
        idx.pop()  # trailing full slices over the spatial dims touch nothing
    simple = all(isinstance(i, (int, slice)) for i in idx)
    return POINTWISE if simple and len(idx) <= ndim - 2 else WHOLE


def _broadcast_ok(op: OpContext) -> bool:
    """A pointwise op can run on crops if every input-dependent operand either spans the output's map or is
    broadcast (size 1) along each spatial dim."""
    out_shape = op.shape()
    if len(out_shape) < 2:
        return False
    out_h, out_w = out_shape[-2], out_shape[-1]
    for arg in op.tensor_args():
        shp = op.shape(arg)
        if len(shp) >= 2:
            if shp[-2] not in (out_h, 1) or shp[-1] not in (out_w, 1):
                return False
        elif len(shp) == 1 and shp[0] not in (out_w, 1):
            return False
    return True
