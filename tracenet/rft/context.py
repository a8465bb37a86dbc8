"""What a rule sees of one node: its full-run shapes, its module, and (while running) the values of its inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.node import map_aggregate

from tracenet.rft.capture import Captured, ShapeInfo
from tracenet.rft.regions import Rect


@dataclass
class OpContext:
    """One node of the captured graph for one input shape."""

    node: fx.Node
    cap: Captured
    info: ShapeInfo
    memo: dict = field(default_factory=dict)  # per-node, per-shape facts a rule derives once (e.g. conv backend)

    @property
    def module(self) -> nn.Module:
        return self.cap.modules[str(self.node.target)]

    def is_dynamic(self, arg: Any) -> bool:
        return isinstance(arg, fx.Node) and arg in self.cap.dynamic

    def is_tensor_node(self, arg: Any) -> bool:
        return self.is_dynamic(arg) and arg in self.info.shapes

    def shape(self, arg: fx.Node | None = None) -> tuple[int, ...]:
        """Full-run shape of ``arg`` (default: of this node). For tuple results, the shape of the first element."""
        node = arg if arg is not None else self.node
        key = ("shape", node)
        shp = self.memo.get(key)
        if shp is None:
            shp = self.info.shapes[node]
            shp = self.memo[key] = tuple(shp[0]) if isinstance(shp, list) else tuple(shp)
        return shp

    def hw(self, arg: fx.Node | None = None) -> tuple[int, int]:
        shp = self.shape(arg)
        return (shp[-2], shp[-1]) if len(shp) >= 2 else (1, 1)

    def resolve(self, value: Any) -> Any:
        """Replace static nodes (values computed from shapes) by their full-run values; leave others as nodes."""

        def one(v: Any) -> Any:
            if isinstance(v, fx.Node) and v in self.info.static:
                return self.info.static[v]
            return v

        return map_aggregate(value, one)

    def tensor_args(self) -> list[fx.Node]:
        """Input-dependent tensor-valued inputs of this node, in order of first appearance (computed once; do not
        modify the list)."""
        args = self.memo.get("tensor_args")
        if args is None:
            args = self.memo["tensor_args"] = [a for a in self.node.all_input_nodes if self.is_tensor_node(a)]
        return args


@dataclass
class Computed:
    """A node's value in a run: ``value`` holds rows ``rect.r0:rect.r1`` and cols ``rect.c0:rect.c1`` of the full map.

    For tensors with fewer than two dims (and non-spatial results) ``rect`` is ``None`` and ``value`` is whole.
    """

    value: Any
    rect: Rect | None


def slice_hw(value: Any, rows: tuple[int, int] | None, cols: tuple[int, int] | None) -> Any:
    """Slice the last two dims of a tensor (or each tensor of a tuple/list)."""
    if isinstance(value, (tuple, list)):
        parts = [slice_hw(v, rows, cols) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else type(value)(parts)  # namedtuple or not
    if rows is not None:
        value = value[..., rows[0]:rows[1], :]
    if cols is not None:
        value = value[..., cols[0]:cols[1]]
    return value


def crop(comp: Computed, want: Rect, make_dense: bool = True) -> Any:
    """The ``want`` window (inside the map) of a computed value (``make_dense=False``: a view, not a copy)."""
    have = comp.rect
    if have is None or have == want:
        return comp.value
    if not have.contains(want):
        raise AssertionError(f"internal error: need {want} but only {have} was computed")
    part = slice_hw(comp.value, (want.r0 - have.r0, want.r1 - have.r0), (want.c0 - have.c0, want.c1 - have.c0))
    # The full run hands dense tensors to each op; some kernels (e.g. BatchNorm) round differently on strided
    # views, so a sub-window is made dense, in the memory format its map has.
    return _contiguous(part) if make_dense else part


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` made contiguous in the memory format it already has: a window of a channels-last map stays
    channels-last (the format the full run's op sees), anything else becomes plain contiguous."""
    if t.dim() == 4 and t.shape[1] > 1 and t.stride(1) == 1:
        return t.contiguous(memory_format=torch.channels_last)
    return t.contiguous()


def _contiguous(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return dense(value)
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        return type(value)(_contiguous(v) for v in value)
    return value


def window(comp: Computed, want: Rect, full_hw: tuple[int, int], pad_value: float = 0.0) -> torch.Tensor:
    """The ``want`` window of a map, overhang included: the part outside the map is filled with ``pad_value``,
    exactly as the op's own padding fills it in the full run."""
    height, width = full_hw
    inside = want.clip(height, width)
    if inside.is_empty():  # the whole window is padding
        ref = comp.value
        shape = (*ref.shape[:-2], want.height, want.width)
        return ref.new_full(shape, pad_value)
    overhang = want.overhang(height, width)
    if any(overhang):  # F.pad copies the view once, into a dense tensor of the view's memory format
        return F.pad(crop(comp, inside, make_dense=False), overhang, mode="constant", value=pad_value)
    return crop(comp, inside)
