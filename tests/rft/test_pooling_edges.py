"""Average pooling at the map's edges: the tracer's divisor must be PyTorch's at every border position.

Guards the bug "``ceil_mode`` + ``count_include_pad`` without clamping the divisor window at ``size + padding``": a
ceil-mode window that runs past the right/bottom padding then divides by the full kernel area instead of the part of
it that lies inside the padded map. The expected values are hand-computed (constant input) or the full run of
``F.avg_pool2d`` itself (PyTorch, not the tracer).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tracenet.rft import ReceptiveFieldTracer, Rect


class AvgPool(nn.Module):
    """One functional average pooling with the given options (the op under test, alone in the graph)."""

    def __init__(self, kernel: int, stride: int, padding: int, ceil_mode: bool, count_include_pad: bool) -> None:
        super().__init__()
        self.opts = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                         count_include_pad=count_include_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, **self.opts)


class AvgPoolModule(nn.Module):
    """The same through ``nn.AvgPool2d`` (the module path of the rule), after a 1x1 conv so the pool's input is
    an intermediate node, not the graph input."""

    def __init__(self, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(2, 3, 1)
        self.pool = nn.AvgPool2d(kernel, stride, padding, ceil_mode=True, count_include_pad=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.mix(x))


def _edge_windows(h: int, w: int) -> list[Rect]:
    """Windows touching each border and each corner, none of them the whole map (so the cropped path runs)."""
    return [Rect(h - 1, h, w - 1, w), Rect(h - 1, h, 0, w), Rect(0, h, w - 1, w), Rect(0, 1, 0, w),
            Rect(0, h, 0, 1), Rect(0, 1, 0, 1), Rect(h - 1, h, 0, 1), Rect(0, 1, w - 1, w)]


def _assert_edges_match(model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        full = model(x)
    h, w = full.shape[-2:]
    tracer = ReceptiveFieldTracer(model.eval())
    for rect in _edge_windows(h, w):
        (values, got_rect), = tracer.run(x, {0: rect}).values()
        assert got_rect == rect
        torch.testing.assert_close(values, full[..., rect.r0:rect.r1, rect.c0:rect.c1], atol=1e-6, rtol=0,
                                   msg=lambda m, rect=rect: f"{model} window {rect}: {m}")


def test_ceil_mode_count_include_pad_divisor_by_hand():
    """k=3, s=3, p=1, ceil_mode, count_include_pad on a 12x12 map of ones: 5x5 outputs. Along one axis the
    windows start at -1, 2, 5, 8, 11; the first covers [-1, 2) = one pad + 2 ones (divisor 3, value 2/3), the
    last covers [11, 13) = one 1 + the one right pad (PyTorch clamps the window end at size + padding = 13, so
    divisor 2, value 1/2; an unclamped divisor of 3 gives 1/3). Output (i, j) = a[i] * a[j]."""
    a = torch.tensor([2 / 3, 1.0, 1.0, 1.0, 1 / 2], dtype=torch.float64)
    expected = torch.outer(a, a)
    x = torch.ones(1, 1, 12, 12, dtype=torch.float64)
    model = AvgPool(3, 3, 1, ceil_mode=True, count_include_pad=True)
    tracer = ReceptiveFieldTracer(model.eval())
    # every output alone (1x1 windows), so each goes through the cropped path
    for r, c in itertools.product(range(5), range(5)):
        (values, _), = tracer.run(x, {0: Rect(r, r + 1, c, c + 1)}).values()
        assert values.item() == pytest.approx(expected[r, c].item(), abs=1e-12), (r, c)
    # the reference (PyTorch's full run) agrees with the hand computation
    torch.testing.assert_close(model(x)[0, 0], expected, atol=1e-12, rtol=0)


# kernel, stride, padding, map size: ceil_mode lets the last window start in the right padding or run past it
CEIL_CONFIGS = [(3, 3, 1, 12), (3, 2, 1, 12), (2, 2, 1, 11), (3, 3, 1, 13), (4, 3, 2, 12), (4, 4, 2, 13),
                (3, 2, 0, 12), (5, 3, 2, 14), (2, 3, 1, 10), (3, 3, 0, 11)]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kernel,stride,padding,size", CEIL_CONFIGS)
def test_avg_pool_edges_equal_full_run(kernel, stride, padding, size, count_include_pad):
    """Every border window of ceil-mode average pooling equals PyTorch's full run, with and without
    ``count_include_pad`` (random input, so a wrong divisor anywhere on an edge shows)."""
    torch.manual_seed(kernel * 100 + stride * 10 + padding + size)
    x = torch.randn(1, 2, size, size + 1)
    _assert_edges_match(AvgPool(kernel, stride, padding, True, count_include_pad), x)


@pytest.mark.parametrize("kernel,stride,padding,size", [(3, 3, 1, 12), (4, 3, 2, 12), (2, 2, 1, 11)])
def test_avg_pool_module_edges_equal_full_run(kernel, stride, padding, size):
    """The ``nn.AvgPool2d`` module path, pooling an intermediate map, keeps the same edge divisors."""
    torch.manual_seed(size)
    model = AvgPoolModule(kernel, stride, padding).eval()
    _assert_edges_match(model, torch.randn(1, 2, size, size))
