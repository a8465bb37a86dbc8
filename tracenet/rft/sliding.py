"""Sliding-window rules: convolution and pooling (paper eq. 2-3).

The window a strided, padded, dilated kernel needs is computed once per node; the crop is zero- (or -inf-) filled
where the full run pads, and run through the same kernel (oneDNN or native) the full-size op uses, so values equal
the full run's up to float32 summation order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from tracenet.rft.context import OpContext, dense, window
from tracenet.rft.regions import Rect
from tracenet.rft.rules import Env, Needs, Rule, _full_value, _materialise, _pair, call_original


def input_window(out: Rect, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
                 dilation: tuple[int, int]) -> Rect:
    """Eq. 2-3 of the paper in 2-D: the (unclipped) input window a strided, padded, dilated sliding window needs
    for the output window ``out``. ``pad`` is the top/left padding."""
    r0 = out.r0 * stride[0] - pad[0]
    r1 = (out.r1 - 1) * stride[0] - pad[0] + dilation[0] * (kernel[0] - 1) + 1
    c0 = out.c0 * stride[1] - pad[1]
    c1 = (out.c1 - 1) * stride[1] - pad[1] + dilation[1] * (kernel[1] - 1) + 1
    return Rect(r0, r1, c0, c1)


class SlidingWindowRule(Rule):
    """Shared geometry of convolution and pooling: subclasses provide ``geometry(op) -> (input_node, kernel,
    stride, top/left padding, dilation)``."""

    def geometry(self, op: OpContext) -> tuple[fx.Node, tuple[int, int], tuple[int, int], tuple[int, int],
                                               tuple[int, int]]:
        raise NotImplementedError

    def needs(self, op: OpContext, out: Rect) -> Needs:
        src, kernel, stride, pad, dilation = self.geometry(op)
        result: Needs = [(src, input_window(out, kernel, stride, pad, dilation))]
        result += [(a, None) for a in op.tensor_args() if a is not src]  # dynamic weights / bias: whole
        return result


class ConvRule(SlidingWindowRule):
    """``nn.Conv2d`` (zero padding) and ``F.conv2d``: crop the input window, zero-fill its overhang, convolve
    without padding."""

    name = "conv"

    _NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    _DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}

    def params(self, op: OpContext) -> dict[str, Any]:
        p = op.memo.get("conv_params")
        if p is None:
            p = op.memo["conv_params"] = self._params(op)
        return p

    def _params(self, op: OpContext) -> dict[str, Any]:
        if op.node.op == "call_module":
            m: nn.Conv2d = op.module
            p = {"input": op.node.args[0], "weight": m.weight, "bias": m.bias, "stride": m.stride,
                 "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
        else:
            p = dict(self._DEFAULTS)
            p.update(zip(self._NAMES, op.node.args))
            p.update(op.node.kwargs)
            p = {k: (v if k in ("input", "weight", "bias") else op.resolve(v)) for k, v in p.items()}
        return p

    def _kernel(self, op: OpContext, p: dict[str, Any]) -> tuple[int, int]:
        w = p["weight"]
        shp = op.info.shapes[w] if isinstance(w, fx.Node) else tuple(w.shape)
        return (shp[-2], shp[-1])

    def geometry(self, op: OpContext):
        g = op.memo.get("geometry")
        if g is None:
            g = op.memo["geometry"] = self._geometry(op)
        return g

    def _geometry(self, op: OpContext):
        p = self.params(op)
        kernel = self._kernel(op, p)
        stride, dilation = _pair(p["stride"]), _pair(p["dilation"])
        padding = p["padding"]
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            pad = tuple((d * (k - 1)) // 2 for d, k in zip(dilation, kernel))
        else:
            pad = _pair(padding)
        return p["input"], kernel, stride, pad, dilation

    def run(self, op: OpContext, env: Env, out: Rect, epilogue: Callable[[torch.Tensor], Any] | None = None
            ) -> torch.Tensor:
        """The convolution on window ``out``; ``epilogue`` (e.g. ``torch.relu_``) is applied in place to the fresh
        result."""
        prepared = self._prepare(op, env, out)
        y = prepared if isinstance(prepared, torch.Tensor) else self._convolve(op, prepared)
        if epilogue is not None:
            epilogue(y)
        return y

    def run_batch(self, ops: list[OpContext], env: Env, outs: list[Rect],
                  epilogue: Callable[[torch.Tensor], Any] | None = None) -> list[torch.Tensor]:
        """:meth:`run` for several nodes calling one convolution module (a head shared by pyramid levels): crops
        that go through the same kernel (backend, weight, stride, ...) run as one batch ``[k, C, h, w]``, smaller
        crops zero-filled at the bottom and right to the largest (an output position reads only inputs below and
        right of its window's corner, so the filled rows and columns change no value that is kept), and each node
        gets its sample's top-left window (a view). Values equal the one-by-one run's up to float32 summation
        order (oneDNN may block a batch differently). ``epilogue`` is applied in place once per kernel call."""
        results: list[torch.Tensor | None] = [None] * len(ops)
        batches: dict[tuple, list[int]] = {}
        prepared = []
        for i, (op, out) in enumerate(zip(ops, outs)):
            prep = self._prepare(op, env, out)
            prepared.append(prep)
            if isinstance(prep, torch.Tensor):
                results[i] = prep
            else:
                x, given = prep[0], prep[2]
                size = x.shape[:2] if PAD_BATCH else (tuple(x.shape), x.stride())
                key = (size, _channels_last(x), x.dtype, id(prep[1]), id(given), *prep[3:])
                batches.setdefault(key, []).append(i)
        if epilogue is not None:
            for y in results:
                if y is not None:  # whole-map results (fresh outputs of F.conv2d)
                    epilogue(y)
        for members in batches.values():
            first = prepared[members[0]]
            if len(members) == 1:
                results[members[0]] = y = self._convolve(ops[members[0]], first)
                if epilogue is not None:
                    epilogue(y)
                continue
            xs = [prepared[i][0] for i in members]
            height, width = max(x.shape[-2] for x in xs), max(x.shape[-1] for x in xs)
            x = torch.cat([x if x.shape[-2:] == (height, width)
                           else F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2])) for x in xs])
            if _channels_last(first[0]):
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._convolve(ops[members[0]], (x, *first[1:]))
            if epilogue is not None:
                epilogue(y)
            weight, stride, dilation = first[1], first[4], first[5]
            for i, xi, yi in zip(members, xs, y.split(1)):
                if xi.shape[-2] == height and xi.shape[-1] == width:
                    results[i] = yi  # the largest crop: its whole sample
                    continue
                rows, cols = (_out_size(xi.shape[d], weight.shape[d], stride[d - 2], dilation[d - 2])
                              for d in (2, 3))
                results[i] = yi[..., :rows, :cols]
        return results

    def _prepare(self, op: OpContext, env: Env, out: Rect):
        """The whole-map result (a tensor) or what :meth:`_convolve` takes: ``(input window, weight, the model's
        weight tensor, bias, stride, dilation, groups, backend)``."""
        p, src, kernel, stride, pad, dilation, groups, full_out, full_in, in_hw, backend, dynamic_weight, rtus = \
            self._static(op)
        weight, bias = p["weight"], p["bias"]
        if isinstance(weight, fx.Node):
            weight = _value(op, env, weight)
        if isinstance(bias, fx.Node):
            bias = _value(op, env, bias)
        comp = env.get(src)
        if out == full_out and comp.rect == full_in:
            # the whole map: the original call, no copies (same shapes, so the same kernel as the full run)
            padding = p["padding"] if isinstance(p["padding"], str) else _pair(p["padding"])
            return F.conv2d(comp.value, weight, bias, stride, padding, dilation, groups)
        # Compute as the full-size convolution does: PyTorch picks oneDNN or its native kernel by input size, and
        # each sums in its own order; the crop goes through the kernel the full-size map goes through.
        x = dense(window(comp, input_window(out, kernel, stride, pad, dilation), in_hw, 0.0))
        given = None if dynamic_weight else weight  # the model's own tensor (keys the prepacked copy)
        if backend == "mkldnn":
            as_channels_last = isinstance(weight, torch.Tensor) and (_channels_last(x) or _channels_last(weight))
            if as_channels_last:  # as F.conv2d does: input and weight in one memory format, channels-last if either is
                x = x.contiguous(memory_format=torch.channels_last)
            if rtus:
                # oneDNN runs such a strided 1x1 convolution as subsample-then-1x1 ("rtus"); do the same
                x, stride = dense(x[..., :: stride[0], :: stride[1]]), (1, 1)
            if as_channels_last and not _prepacked(x, given):
                # (the prepacked path reads the model's own weight: no copy of a contiguous one on every call)
                weight = weight.contiguous(memory_format=torch.channels_last)
        return x, weight, given, bias, stride, dilation, groups, backend

    def _static(self, op: OpContext) -> tuple:
        """What :meth:`_prepare` derives from the node and the input shape alone, once per node, input shape,
        oneDNN switch and thread count: ``(params, input node, kernel, stride, top/left padding, dilation, groups,
        whole output window, whole input window, input (h, w), backend, weight is dynamic, runs as
        subsample-then-1x1)``."""
        key = ("static", _HAS_MKLDNN and torch._C._get_mkldnn_enabled(), torch.get_num_threads())
        found = op.memo.get(key)
        if found is None:
            p = self.params(op)
            src, kernel, stride, pad, dilation = self.geometry(op)
            backend = self.full_run_backend(op)
            rtus = backend == "mkldnn" and self._full_run_reduces_stride(op, p, kernel, stride)
            found = op.memo[key] = (p, src, kernel, stride, pad, dilation, int(p["groups"]), Rect.full(*op.hw()),
                                    Rect.full(*op.hw(src)), op.hw(src), backend, op.is_dynamic(p["weight"]), rtus)
        return found

    def _convolve(self, op: OpContext, prepared: tuple) -> torch.Tensor:
        x, weight, given, bias, stride, dilation, groups, backend = prepared
        if backend == "mkldnn":
            if _prepacked(x, given):
                packed = packed_weight(given, tuple(x.shape), stride, dilation, groups)
                return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, [0, 0], list(stride), list(dilation),
                                                               groups, "none", [], "")
            return torch.mkldnn_convolution(x, weight, bias, (0, 0), stride, dilation, groups)
        enabled = torch._C._get_mkldnn_enabled()  # (torch.backends.mkldnn.flags(enabled=False), cheaper)
        torch._C._set_mkldnn_enabled(False)
        try:
            return F.conv2d(x, weight, bias, stride, 0, dilation, groups)
        finally:
            torch._C._set_mkldnn_enabled(enabled)

    def full_run_backend(self, op: OpContext) -> str:
        """How the full-size convolution runs: ``"mkldnn"`` or ``"native"``. Decided from shapes with PyTorch's
        own backend selection, once per node and input shape."""
        key = ("backend", _HAS_MKLDNN and torch._C._get_mkldnn_enabled(), torch.get_num_threads())
        if key not in op.memo:
            p = self.params(op)
            _src, kernel, stride, pad, dilation = self.geometry(op)
            in_shape = op.shape(p["input"])
            w = p["weight"]
            w_shape = op.info.shapes[w] if isinstance(w, fx.Node) else tuple(w.shape)
            dtype = torch.float32
            full_in = torch.zeros((), dtype=dtype).expand(in_shape)
            weight = torch.zeros((), dtype=dtype).expand(w_shape)
            try:
                backend = torch._C._select_conv_backend(full_in, weight, None, list(stride), list(pad),
                                                        list(dilation), False, [0, 0], int(p["groups"]), None)
            except RuntimeError:  # PyTorch refused the shapes: not its oneDNN path
                backend = None
            op.memo[key] = "mkldnn" if backend == torch._C._ConvBackend.Mkldnn else "native"
        return op.memo[key]

    def _full_run_reduces_stride(self, op: OpContext, p: dict[str, Any], kernel, stride) -> bool:
        if kernel != (1, 1) or stride == (1, 1) or _pair(p["padding"] if not isinstance(p["padding"], str)
                                                         else 0) != (0, 0):
            return False
        in_h, in_w = op.hw(p["input"])
        out_h, out_w = op.hw()
        return out_h * stride[0] == in_h and out_w * stride[1] == in_w

    def macs(self, op: OpContext, out: Rect | None) -> int:
        p = self.params(op)
        kh, kw = self._kernel(op, p)
        shp = op.shape()
        in_ch = op.shape(p["input"])[1]
        area = out.area if out is not None else shp[-2] * shp[-1]
        return shp[0] * shp[1] * area * (in_ch // int(p["groups"])) * kh * kw


_HAS_MKLDNN = torch.backends.mkldnn.is_available()


def _prepacked(x: torch.Tensor, given: torch.Tensor | None) -> bool:
    """Does a oneDNN crop ``x`` run with the prepacked copy of the model's weight ``given``?"""
    return PREPACK and given is not None and x.dtype == torch.float32 and _channels_last(x)

PAD_BATCH = True
"""Whether crops of different sizes join one batch, zero-filled to the largest (benchmarks switch it off to
compare with batches of equal crops only)."""

PREPACK = True
"""Whether cropped oneDNN convolutions of channels-last crops use prepacked weights (benchmarks switch it off to
compare)."""

MAX_PACKED_BYTES = 256 * 2**20
"""Memory the prepacked weights may take, all nodes and models together (least recently used go first). A tap's
windows take one crop shape per layer away from the borders; taps near the borders add a few more (lite0's heads:
~60 shapes, 17 MB; with the mask over the box each box window adds the mask branch's shapes). Too small a bound
makes two predictors evict each other's weights on every tap."""


class PackedWeights:
    """Prepacked oneDNN weights, least recently used first, at most :data:`MAX_PACKED_BYTES`. Keyed by the weight's
    storage, version and shape and the crop's shape: an entry holds its weight tensor, so that storage cannot be
    freed and handed to another tensor while the entry exists, and a weight changed in place is packed again."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor, int]] = OrderedDict()
        self._lock = threading.Lock()  # predictors in different threads share it
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, weight: torch.Tensor, in_shape: tuple[int, ...], stride: tuple[int, int],
            dilation: tuple[int, int], groups: int) -> torch.Tensor:
        key = (weight.data_ptr(), weight._version, tuple(weight.shape), weight.dtype, in_shape, stride, dilation,
               groups)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[1]
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
            weight.contiguous().to_mkldnn(), [0, 0], list(stride), list(dilation), groups, list(in_shape))
        size = weight.numel() * weight.element_size()  # the packed copy (the weight it holds is the model's own)
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (weight, packed, size)
                self.nbytes += size
            while self.nbytes > MAX_PACKED_BYTES and len(self._entries) > 1:
                _, (_, _, freed) = self._entries.popitem(last=False)
                self.nbytes -= freed
        return packed

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


PACKED = PackedWeights()


def packed_weight(weight: torch.Tensor, in_shape: tuple[int, ...], stride: tuple[int, int],
                  dilation: tuple[int, int], groups: int) -> torch.Tensor:
    """``weight`` reordered once into oneDNN's blocked layout for an unpadded convolution of inputs shaped
    ``in_shape`` (kept in :data:`PACKED`). ``mkldnn._convolution_pointwise`` with it returns what
    ``torch.mkldnn_convolution`` returns for a channels-last input (bit for bit; tested), without reordering the
    weight on every call: a repeat tap's cropped head convolutions are small, and the reorder was a large part of
    each call."""
    return PACKED.get(weight, in_shape, stride, dilation, groups)


def _channels_last(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.shape[1] > 1 and t.stride(1) == 1 and not t.is_contiguous()


def _out_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Output length of an unpadded convolution along one dimension."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _value(op: OpContext, env: Env, v: Any) -> Any:
    if isinstance(v, fx.Node):
        if v in op.cap.dynamic:
            comp = env.get(v)
            return _full_value(v, comp)
        return env.eval_const(v)
    return v


class PoolRule(SlidingWindowRule):
    """``MaxPool2d`` / ``AvgPool2d`` (any kernel, stride, padding, dilation, ``ceil_mode``, ``count_include_pad``,
    ``divisor_override``). Max pooling fills the overhang with -inf (PyTorch ignores padded positions); average
    pooling sums the zero-filled window and divides by the divisor the full run uses at each output position."""

    name = "pool"

    _MAX_NAMES = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    _AVG_NAMES = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "max" or "avg"

    def params(self, op: OpContext) -> dict[str, Any]:
        if op.node.op == "call_module":
            m = op.module
            p = {"input": op.node.args[0], "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                 "ceil_mode": m.ceil_mode}
            if self.kind == "max":
                p.update(dilation=m.dilation, return_indices=m.return_indices)
            else:
                p.update(count_include_pad=m.count_include_pad, divisor_override=m.divisor_override)
        else:
            names = self._MAX_NAMES if self.kind == "max" else self._AVG_NAMES
            p = dict(zip(names, op.node.args))
            p.update(op.node.kwargs)
            p = {k: (v if k == "input" else op.resolve(v)) for k, v in p.items()}
        p.setdefault("dilation", 1)
        p.setdefault("padding", 0)
        p.setdefault("count_include_pad", True)
        p.setdefault("divisor_override", None)
        if p.get("stride") in (None, (), []):
            p["stride"] = p["kernel_size"]
        return p

    def geometry(self, op: OpContext):
        p = self.params(op)
        return p["input"], _pair(p["kernel_size"]), _pair(p["stride"]), _pair(p["padding"]), _pair(p["dilation"])

    def run(self, op: OpContext, env: Env, out: Rect) -> torch.Tensor:
        p = self.params(op)
        src, kernel, stride, pad, dilation = self.geometry(op)
        comp = env.get(src)
        if out == Rect.full(*op.hw()) and comp.rect == Rect.full(*op.hw(src)):
            args = _materialise(op, env, op.node.args, _full_value)
            return call_original(op, args, _materialise(op, env, op.node.kwargs, _full_value))
        win = input_window(out, kernel, stride, pad, dilation)
        if self.kind == "max":
            x = window(env.get(src), win, op.hw(src), float("-inf"))
            return F.max_pool2d(x, kernel, stride, 0, dilation, ceil_mode=False)
        x = window(env.get(src), win, op.hw(src), 0.0)
        sums = F.avg_pool2d(x, kernel, stride, 0, ceil_mode=False, count_include_pad=True, divisor_override=1)
        if p["divisor_override"]:
            return sums / p["divisor_override"]
        height, width = op.hw(src)
        div_r = _avg_divisors(out.r0, out.r1, kernel[0], stride[0], pad[0], height, p["count_include_pad"])
        div_c = _avg_divisors(out.c0, out.c1, kernel[1], stride[1], pad[1], width, p["count_include_pad"])
        divisor = torch.outer(div_r, div_c).to(sums.dtype)
        return torch.where(divisor > 0, sums / divisor.clamp_min(1), torch.zeros((), dtype=sums.dtype))

    def macs(self, op: OpContext, out: Rect | None) -> int:
        kh, kw = _pair(self.params(op)["kernel_size"])
        shp = op.shape()
        area = out.area if out is not None else shp[-2] * shp[-1]
        return shp[0] * shp[1] * area * kh * kw


def _avg_divisors(o0: int, o1: int, k: int, s: int, p: int, size: int, include_pad: bool) -> torch.Tensor:
    """Per-output-index divisor along one axis, as PyTorch's avg_pool2d computes it."""
    o = torch.arange(o0, o1)
    start = o * s - p
    end = torch.clamp(start + k, max=size + p)
    if include_pad:
        return (end - start).to(torch.float64)
    return (torch.clamp(end, max=size) - torch.clamp(start, min=0)).clamp_min(0).to(torch.float64)
