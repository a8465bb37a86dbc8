"""Random convolutional graphs for property tests of the tracer.

A network is a list of steps; each step applies one op to earlier values (by index). Steps are drawn one at a time
while running real tensors alongside, so every drawn op is valid for the shapes it meets. All values carry ``C``
channels, so any two values of the same spatial size can be combined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

C = 4

ACTIVATION_MODULES = [nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.LeakyReLU, nn.ELU]
ACTIVATION_FUNCTIONS = ["relu", "sigmoid", "tanh", "silu", "gelu", "hardswish", "leaky_relu", "method_relu",
                        "method_sigmoid", "clamp"]


@dataclass
class Step:
    kind: str
    inputs: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)


class RandomNet(nn.Module):
    """Interprets a list of steps; torch.fx traces straight through the (static) loop."""

    def __init__(self, steps: list[Step], modules: dict[str, nn.Module], params: dict[str, torch.Tensor],
                 outputs: list[int], output_style: str) -> None:
        super().__init__()
        self.steps = steps
        self.mods = nn.ModuleDict(modules)
        self.params = nn.ParameterDict({k: nn.Parameter(v, requires_grad=False) for k, v in params.items()})
        self.outputs = outputs
        self.output_style = output_style

    def forward(self, x: torch.Tensor):
        vals = [x]
        for i, step in enumerate(self.steps):
            vals.append(apply_step(self, i, step, vals))
        outs = [vals[j] for j in self.outputs]
        if self.output_style == "tensor":
            return outs[0]
        if self.output_style == "tuple":
            return tuple(outs)
        return {f"out{j}": v for j, v in zip(self.outputs, outs)}


def apply_step(net: RandomNet, i: int, step: Step, vals: list) -> torch.Tensor:
    k, p = step.kind, step.params
    a = vals[step.inputs[0]]
    name = f"m{i}"
    if k in ("conv", "bn", "frozen_bn", "act_module", "maxpool", "avgpool", "upsample", "zeropad", "dropout",
             "identity"):
        return net.mods[name](a)
    if k == "fconv":
        return F.conv2d(a, net.params[f"{name}_w"], net.params[f"{name}_b"], p["stride"], p["padding"], p["dilation"])
    if k == "fmaxpool":
        return F.max_pool2d(a, p["kernel"], p["stride"], p["padding"], p["dilation"], ceil_mode=p["ceil"])
    if k == "favgpool":
        return F.avg_pool2d(a, p["kernel"], p["stride"], p["padding"], ceil_mode=p["ceil"],
                            count_include_pad=p["include_pad"], divisor_override=p["divisor"])
    if k == "act_function":
        fn = p["fn"]
        if fn == "method_relu":
            return a.relu()
        if fn == "method_sigmoid":
            return a.sigmoid()
        if fn == "clamp":
            return torch.clamp(a, -0.5, 0.7)
        if fn == "leaky_relu":
            return F.leaky_relu(a, 0.1)
        return getattr(F, fn)(a)
    if k == "binary":
        b = vals[step.inputs[1]]
        op = p["op"]
        if op == "add":
            return a + b
        if op == "mul":
            return a * b
        if op == "sub":
            return torch.sub(a, b)
        return a / (1.5 + b.abs())
    if k == "const":
        op = p["op"]
        if op == "scale":
            return a * 0.5
        if op == "shift":
            return 1.0 - a
        if op == "div":
            return a / 3.0
        return a * net.params[f"{name}_c"] + net.params[f"{name}_d"]  # per-channel affine, broadcast [C,1,1]
    if k == "cat":
        return net.mods[name](torch.cat([a, vals[step.inputs[1]]], dim=1))
    if k == "interp":
        kwargs = {"mode": p["mode"]}
        if p["mode"] == "bilinear":
            kwargs["align_corners"] = p["align"]
        if p["size_from"] is not None:
            target = vals[p["size_from"]]
            return F.interpolate(a, size=target.shape[-2:], **kwargs)
        return F.interpolate(a, scale_factor=p["scale"], **kwargs)
    if k == "topdown":  # FPN: upsample the coarse map to the fine map's size (read from its shape) and add
        fine = vals[step.inputs[1]]
        return fine + F.interpolate(a, size=fine.shape[-2:], mode="nearest")
    if k == "shape_resize":
        h, w = a.shape[-2:]
        return F.interpolate(a, size=(h * 2, w + 1), mode="nearest")
    if k == "fpad":
        return F.pad(a, p["pad"], value=p["value"])
    if k == "gate":  # squeeze-excitation style global gate: exercises whole-map ops
        return a * torch.sigmoid(F.adaptive_avg_pool2d(a, 1))
    if k == "groupnorm":
        return net.mods[name](a)
    raise ValueError(k)


LOCAL_KINDS = ["conv", "fconv", "bn", "frozen_bn", "act_module", "act_function", "maxpool", "fmaxpool", "avgpool",
               "favgpool", "binary", "const", "cat", "interp", "topdown", "upsample", "shape_resize", "zeropad",
               "fpad", "dropout", "identity"]


def _draw_step(draw, i: int, vals: list[torch.Tensor], modules: dict, params: dict,
               allow_global: bool) -> Step | None:
    kinds = LOCAL_KINDS + (["gate", "groupnorm"] if allow_global else [])
    kind = draw(st.sampled_from(kinds))
    idx = draw(st.integers(0, len(vals) - 1)) if i > 0 else 0
    if i > 0 and draw(st.booleans()):
        idx = len(vals) - 1  # favour chains
    if idx == 0 and kind not in ("conv", "fconv"):
        return None  # the raw 3-channel input only feeds convolutions
    a = vals[idx]
    h, w = a.shape[-2:]
    name = f"m{i}"
    cin = a.shape[1]
    same_size = [j for j in range(1, len(vals)) if vals[j].shape[-2:] == a.shape[-2:] and j != idx]
    if kind == "conv":
        k = draw(st.integers(1, 5))
        stride = draw(st.integers(1, 3))
        dil = draw(st.integers(1, 2))
        pad_kind = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
        if pad_kind == "same" and stride != 1:
            pad_kind = "int"
        padding = {"int": draw(st.integers(0, k // 2 * dil + 1)), "tuple": (draw(st.integers(0, 2)),
                   draw(st.integers(0, 2))), "same": "same", "valid": "valid"}[pad_kind]
        groups = C if (cin == C and draw(st.booleans())) else 1
        modules[name] = nn.Conv2d(cin, C, k, stride, padding, dil, groups=groups, bias=draw(st.booleans()))
        return Step(kind, (idx,))
    if kind == "fconv":
        k = draw(st.integers(1, 4))
        params[f"{name}_w"] = torch.randn(C, cin, k, k) / (cin * k * k) ** 0.5
        params[f"{name}_b"] = torch.randn(C) * 0.1
        return Step(kind, (idx,), {"stride": draw(st.integers(1, 2)), "padding": draw(st.integers(0, k // 2)),
                                   "dilation": draw(st.integers(1, 2))})
    if kind in ("bn", "frozen_bn"):
        m = nn.BatchNorm2d(C) if kind == "bn" else FrozenBatchNorm2d(C)
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.normal_(0, 0.2)
        m.running_mean.normal_(0, 0.2)
        m.running_var.uniform_(0.5, 2.0)
        modules[name] = m
        return Step(kind, (idx,))
    if kind == "act_module":
        modules[name] = draw(st.sampled_from(ACTIVATION_MODULES))()
        return Step(kind, (idx,))
    if kind == "act_function":
        return Step(kind, (idx,), {"fn": draw(st.sampled_from(ACTIVATION_FUNCTIONS))})
    if kind in ("maxpool", "fmaxpool", "avgpool", "favgpool"):
        k = draw(st.integers(1, 4))
        stride = draw(st.integers(1, 3))
        pad = draw(st.integers(0, k // 2))
        ceil = draw(st.booleans())
        if kind == "maxpool":
            modules[name] = nn.MaxPool2d(k, stride, pad, dilation=draw(st.integers(1, 2)), ceil_mode=ceil)
        elif kind == "avgpool":
            modules[name] = nn.AvgPool2d(k, stride, pad, ceil_mode=ceil, count_include_pad=draw(st.booleans()))
        elif kind == "fmaxpool":
            return Step(kind, (idx,), {"kernel": k, "stride": stride, "padding": pad, "dilation": 1, "ceil": ceil})
        else:
            return Step(kind, (idx,), {"kernel": k, "stride": stride, "padding": pad, "ceil": ceil,
                                       "include_pad": draw(st.booleans()),
                                       "divisor": draw(st.sampled_from([None, None, 2]))})
        return Step(kind, (idx,))
    if kind == "binary":
        if not same_size:
            return None
        return Step(kind, (idx, draw(st.sampled_from(same_size))), {"op": draw(st.sampled_from(
            ["add", "mul", "sub", "div"]))})
    if kind == "const":
        op = draw(st.sampled_from(["scale", "shift", "div", "affine"]))
        if op == "affine":
            params[f"{name}_c"] = torch.rand(C, 1, 1) + 0.5
            params[f"{name}_d"] = torch.randn(C, 1, 1) * 0.1
        return Step(kind, (idx,), {"op": op})
    if kind == "cat":
        if not same_size:
            return None
        modules[name] = nn.Conv2d(2 * C, C, 1)
        return Step(kind, (idx, draw(st.sampled_from(same_size))))
    if kind == "interp":
        mode = draw(st.sampled_from(["nearest", "bilinear"]))
        size_from = draw(st.sampled_from([None] + list(range(1, len(vals)))))
        return Step(kind, (idx,), {"mode": mode, "align": draw(st.booleans()), "size_from": size_from,
                                   "scale": draw(st.sampled_from([2.0, 0.5, 1.5, 3.0, (2.0, 0.75)]))})
    if kind == "topdown":
        finer = [j for j in range(1, len(vals)) if vals[j].shape[-2] >= h and vals[j].shape[-1] >= w and j != idx]
        if not finer:
            return None
        return Step(kind, (idx, draw(st.sampled_from(finer))))
    if kind == "upsample":
        mode = draw(st.sampled_from(["nearest", "bilinear"]))
        modules[name] = nn.Upsample(scale_factor=2, mode=mode, align_corners=(draw(st.booleans()) if mode ==
                                                                              "bilinear" else None))
        return Step(kind, (idx,))
    if kind == "shape_resize":
        return Step(kind, (idx,))
    if kind == "zeropad":
        modules[name] = nn.ZeroPad2d(tuple(draw(st.integers(0, 3)) for _ in range(4)))
        return Step(kind, (idx,))
    if kind == "fpad":
        pad = tuple(draw(st.integers(-1, 3)) for _ in range(4))
        return Step(kind, (idx,), {"pad": pad, "value": draw(st.sampled_from([0.0, 0.5]))})
    if kind == "dropout":
        modules[name] = nn.Dropout(0.5)
        return Step(kind, (idx,))
    if kind == "identity":
        modules[name] = nn.Identity()
        return Step(kind, (idx,))
    if kind == "gate":
        return Step(kind, (idx,))
    if kind == "groupnorm":
        modules[name] = nn.GroupNorm(2, C)
        return Step(kind, (idx,))
    raise ValueError(kind)


@st.composite
def random_nets(draw, max_steps: int = 10, allow_global: bool = False):
    """Draw ``(net, x)``: an eval-mode RandomNet and an input of odd-ish size."""
    h = draw(st.integers(6, 36))
    w = draw(st.integers(6, 36))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    x = torch.randn(draw(st.integers(1, 2)), 3, h, w)
    steps: list[Step] = []
    modules: dict[str, nn.Module] = {}
    params: dict[str, torch.Tensor] = {}
    vals = [x]
    n_steps = draw(st.integers(1, max_steps))
    attempts = 0
    while len(steps) < n_steps and attempts < 4 * max_steps:
        attempts += 1
        i = len(steps)
        new_modules: dict[str, nn.Module] = {}
        new_params: dict[str, torch.Tensor] = {}
        step = _draw_step(draw, i, vals, new_modules, new_params, allow_global)
        if step is None:
            continue
        probe = RandomNet(steps + [step], {**modules, **new_modules}, {**params, **new_params}, [0], "tensor").eval()
        try:
            with torch.no_grad():
                out = apply_step(probe, i, step, vals)
        except RuntimeError:
            continue  # op invalid for this size (e.g. kernel larger than the padded input)
        if out.shape[-2] < 1 or out.shape[-1] < 1 or out.shape[-2] * out.shape[-1] > 80 * 80:
            continue
        steps.append(step)
        modules.update(new_modules)
        params.update(new_params)
        vals.append(out)
    if not steps:
        modules["m0"] = nn.Conv2d(3, C, 3, padding=1)
        steps = [Step("conv", (0,))]
    n = len(steps)
    extra = draw(st.lists(st.integers(1, n), max_size=2, unique=True))
    outputs = [n] + [j for j in extra if j != n]
    style = draw(st.sampled_from(["dict", "tuple", "tensor"])) if len(outputs) == 1 else draw(
        st.sampled_from(["dict", "tuple"]))
    net = RandomNet(steps, modules, params, outputs, style).eval()
    return net, x


def draw_queries(draw, net: RandomNet, full_out: Any) -> dict[Any, list[tuple[int, int]]]:
    """Up to four locations per output, corners and borders favoured."""
    if isinstance(full_out, torch.Tensor):
        items = {0: full_out}
    elif isinstance(full_out, tuple):
        items = dict(enumerate(full_out))
    else:
        items = dict(full_out)
    queries = {}
    for key, value in items.items():
        h, w = value.shape[-2:]
        rows = st.one_of(st.sampled_from([0, h - 1]), st.integers(0, h - 1))
        cols = st.one_of(st.sampled_from([0, w - 1]), st.integers(0, w - 1))
        queries[key] = draw(st.lists(st.tuples(rows, cols), min_size=1, max_size=4))
    return queries
