"""Capture a model as a torch.fx graph and propagate shapes for a given input size.

The capture happens once per model. Shape propagation runs once per input shape, on fake tensors (no real compute),
and records for every node either its tensor shape or, for values computed from shapes (``x.shape[-2:]``,
``x.size(2)``, arithmetic on them), the value itself. Those values are what the full-size run sees, so the cropped
run substitutes them instead of re-reading the shape of a crop.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torchvision.ops.misc import FrozenBatchNorm2d

from tracenet.rft.errors import CaptureError, TracerError, describe

# Modules kept whole in the graph (not traced through). FrozenBatchNorm2d in particular: traced through, torch.fx
# would bake its buffers into snapshot constants and ignore weights loaded later.
EXTRA_LEAF_MODULES: tuple[type[nn.Module], ...] = (FrozenBatchNorm2d,)

# Non-tensor results computed from a tensor that only depend on its shape/dtype/device.
SHAPE_METHODS = {"size", "dim", "numel", "ndimension", "nelement"}
SHAPE_ATTRS = {"shape", "dtype", "device", "ndim", "is_cuda"}


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, EXTRA_LEAF_MODULES) or super().is_leaf_module(m, module_qualified_name)


def is_inplace(node: fx.Node, modules: dict[str, nn.Module] | None = None) -> bool:
    """Does this node overwrite its first argument (``relu_``, ``x += y`` on a tensor, ``ReLU(inplace=True)``)?"""
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).startswith("_")
    if node.op == "call_function":
        if node.kwargs.get("inplace") is True:
            return True
        name = getattr(node.target, "__name__", "")
        return name.endswith("_") and not name.startswith("_") or node.target in (
            operator.iadd, operator.isub, operator.imul, operator.itruediv)
    if node.op == "call_module" and modules is not None:
        return bool(getattr(modules.get(str(node.target)), "inplace", False))
    return False


def _rewire_inplace(gm: fx.GraphModule) -> None:
    """Make in-place ops visible as data flow: every later reader of an overwritten value reads the in-place op's
    result instead. After this, running in-place ops out of place gives the same values."""
    modules = dict(gm.named_modules())
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if not is_inplace(node, modules) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        target = node.args[0]
        for user in list(target.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(target, node)
    gm.recompile()


@dataclass
class Captured:
    """A model captured as a graph.

    ``dynamic`` holds the nodes whose value depends on the input tensor; everything else is a constant of the model
    (parameters and arithmetic on them) and is evaluated as is.
    """

    gm: fx.GraphModule
    placeholder: fx.Node
    output: fx.Node
    dynamic: set[fx.Node]
    modules: dict[str, nn.Module]
    users: dict[fx.Node, list[fx.Node]] = field(default_factory=dict)
    meta_gm: fx.GraphModule | None = None  # shapes-only copy on the meta device, made on first use
    segments: dict = field(default_factory=dict)  # compiled whole-map segments (tracenet.rft.segment), by nodes


def capture(model: nn.Module) -> Captured:
    """Symbolically trace ``model`` (one tensor input) into a :class:`Captured` graph."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception as exc:  # torch.fx raises many types; give the user one actionable message
        raise CaptureError(
            f"torch.fx could not capture {type(model).__name__}: {exc}. The tracer needs a forward() without "
            "data-dependent Python control flow (shapes may be read through tensor.shape)."
        ) from exc
    gm = fx.GraphModule(model, graph)
    _rewire_inplace(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise CaptureError(
            f"the tracer supports models with exactly one tensor input; {type(model).__name__}.forward takes "
            f"{len(placeholders)} ({', '.join(p.name for p in placeholders)})"
        )
    dynamic: set[fx.Node] = set()
    users: dict[fx.Node, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        users[node] = list(node.users)
        if node.op == "placeholder" or any(a in dynamic for a in node.all_input_nodes):
            dynamic.add(node)
    output = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    return Captured(
        gm=gm,
        placeholder=placeholders[0],
        output=output,
        dynamic=dynamic,
        modules=dict(gm.named_modules()),
        users=users,
    )


@dataclass
class ShapeInfo:
    """What the full-size run looks like for one input shape.

    ``shapes[node]`` is the output shape of every tensor-valued node (a list of shapes for tuple/list results);
    ``static[node]`` is the value of every non-tensor node derived from shapes.
    """

    input_shape: tuple[int, ...]
    shapes: dict[fx.Node, Any]
    static: dict[fx.Node, Any]


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return [tuple(v.shape) for v in value]
    return None


def _is_shape_read(node: fx.Node) -> bool:
    if node.op == "call_method" and node.target in SHAPE_METHODS:
        return True
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) >= 2 and node.args[1] in SHAPE_ATTRS
    return False


def propagate_shapes(cap: Captured, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> ShapeInfo:
    """Run the graph on a fake tensor of ``input_shape`` and record shapes and static values."""
    shapes: dict[fx.Node, Any] = {}
    static: dict[fx.Node, Any] = {}
    dynamic_names = {n.name for n in cap.dynamic}

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            if _keeps_shape(n, cap.modules) and isinstance(self.env.get(n.args[0]), torch.Tensor):
                result = self.env[n.args[0]]  # an activation: its input's shape (PyTorch's meta path is slow)
            else:
                result = _conv_result(n, cap.modules, self.env)
                if result is None:
                    result = _elementwise_result(n, self.env)
                if result is None:
                    result = super().run_node(n)
            shape = _shape_of(result)
            if shape is not None:
                shapes[n] = shape
            elif n.name in dynamic_names and n.op != "output":
                _check_static(n)
                static[n] = result
            return result

    def _check_static(n: fx.Node) -> None:
        # A non-tensor value computed from the input: allowed only if it comes from shapes, never from data.
        if _is_shape_read(n):
            return
        tensor_args = [a for a in n.all_input_nodes if a.name in dynamic_names and a in shapes]
        if tensor_args and not (n.op == "call_function" and n.target is operator.getitem):
            raise TracerError(
                f"{describe(n)} turns tensor data into a Python value; the tracer only allows values derived from "
                "shapes (tensor.shape, .size(), .dim())"
            )

    try:
        # Fast path: a meta-device copy of the graph (shapes only, no data, no fake-tensor bookkeeping).
        meta_gm = _meta_copy(cap)
        recorder = _Recorder(meta_gm)
        recorder.run(torch.empty(input_shape, dtype=dtype, device="meta"))
        # the meta copy has its own nodes: map results back onto the captured graph's nodes by name
        by_name = {n.name: n for n in cap.gm.graph.nodes}
        if any(isinstance(v, torch.device) for v in static.values()):
            raise ValueError("the graph reads tensor.device; the meta copy would report 'meta'")
        shapes = {by_name[n.name]: v for n, v in shapes.items()}
        static = {by_name[n.name]: v for n, v in static.items()}
    except TracerError:
        raise
    except Exception:
        shapes.clear()
        static.clear()
        mode = FakeTensorMode(allow_non_fake_inputs=True)
        try:
            with mode:
                _Recorder(cap.gm).run(torch.empty(input_shape, dtype=dtype))
        except TracerError:
            raise
        except Exception as exc:
            raise TracerError(f"shape propagation failed for input shape {tuple(input_shape)}: {exc}") from exc
    return ShapeInfo(input_shape=tuple(input_shape), shapes=shapes, static=static)


# elementwise activations whose output has their (only) tensor input's shape, dtype and memory format
_SHAPE_KEEPING_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
                          nn.LeakyReLU, nn.GELU, nn.Identity, nn.Dropout, nn.Dropout2d)
_SHAPE_KEEPING_FUNCTIONS = {torch.relu, torch.relu_, torch.sigmoid, torch.tanh, F.relu, F.relu6, F.silu, F.gelu,
                            F.hardswish, F.hardsigmoid, F.sigmoid}


def _keeps_shape(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Is ``node`` an activation called on one tensor and nothing else (its result has that tensor's shape)?
    (``inplace=`` may be given: it changes no shape.)"""
    if len(node.args) != 1 or set(node.kwargs) - {"inplace"} or not isinstance(node.args[0], fx.Node):
        return False
    if node.op == "call_module":
        return type(modules.get(str(node.target))) in _SHAPE_KEEPING_MODULES
    return node.op == "call_function" and node.target in _SHAPE_KEEPING_FUNCTIONS


_ELEMENTWISE_FUNCTIONS = {operator.add, operator.mul, operator.sub, operator.truediv, torch.add, torch.mul,
                          torch.sub}


def _elementwise_result(node: fx.Node, env: dict) -> torch.Tensor | None:
    """An empty tensor of a binary arithmetic call's result (broadcast shape, promoted dtype) when both operands
    are tensors or plain numbers and at least one is a tensor (PyTorch's meta path takes ~0.2 ms a call: half of a
    lite0 model's shape pass). ``None`` for anything else, or where broadcasting fails (PyTorch's own call then
    raises its own error)."""
    if node.op != "call_function" or node.target not in _ELEMENTWISE_FUNCTIONS or len(node.args) != 2 or node.kwargs:
        return None
    a, b = (env.get(x) if isinstance(x, fx.Node) else x for x in node.args)
    tensors = [v for v in (a, b) if isinstance(v, torch.Tensor)]
    if not tensors or not all(isinstance(v, (torch.Tensor, bool, int, float)) for v in (a, b)):
        return None
    if len({t.device for t in tensors}) != 1:
        return None
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in tensors))
        dtype = torch.result_type(a, b)
    except RuntimeError:
        return None
    if node.target is operator.truediv and not dtype.is_floating_point and not dtype.is_complex:
        dtype = torch.get_default_dtype()
    return torch.empty(shape, dtype=dtype, device=tensors[0].device)


def _conv_result(node: fx.Node, modules: dict[str, nn.Module], env: dict) -> torch.Tensor | None:
    """An empty tensor of an ``nn.Conv2d`` call's output shape, computed by the convolution arithmetic (the meta
    kernel's checks cost ~0.1 ms a layer: two thirds of a 329-node model's shape pass). ``None`` where the call is
    anything else or would be refused (PyTorch's own call then raises its own error)."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    m = modules.get(str(node.target))
    x = env.get(node.args[0])
    if type(m) is not nn.Conv2d or not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != m.in_channels:
        return None
    if x.dtype != m.weight.dtype:
        return None
    size = []
    for i, n_in in enumerate(x.shape[2:]):
        k, s, d = m.kernel_size[i], m.stride[i], m.dilation[i]
        if m.padding == "same":
            n_out = n_in
        else:
            p = 0 if m.padding == "valid" else m.padding[i]
            n_out = (n_in + 2 * p - d * (k - 1) - 1) // s + 1
        if n_out < 1:
            return None
        size.append(n_out)
    return torch.empty((x.shape[0], m.out_channels, *size), dtype=x.dtype, device=x.device)


def _meta_copy(cap: Captured) -> fx.GraphModule:
    if cap.meta_gm is None:
        cap.meta_gm = copy.deepcopy(cap.gm).to("meta")
    return cap.meta_gm
