"""The work the tracer saves with the bundled model, as concrete numbers rather than ``macs <= full_macs``.

``full_macs`` is checked against an independent count (forward hooks on every convolution of one full run);
the savings are bounds the README states for the bundled model on the cat photo (run at 384 x 255): the first
tap does at most half of FullNet's work, a repeat tap at most a tenth, and ``mask_region="box"`` saves at least
half of the mask branch's work outside the box's window.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import tracenet
from tests.models import PREVIOUS_DEFAULT

CAT = Path(tracenet.__file__).parent / "examples" / "cat.png"
SCALE = 384 / 451
NET_HW = (255, 384)


def _conv_macs(module: torch.nn.Module, x: torch.Tensor, within: torch.nn.Module | None = None) -> int:
    """Multiply-accumulates of the convolutions (of ``within``, default all) in one full forward of ``module``:
    output elements x input channels per group x kernel area, counted by forward hooks."""
    total = 0

    def hook(m: torch.nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in (within or module).modules()
               if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            module(x)
    finally:
        for h in handles:
            h.remove()
    return total


@pytest.fixture(scope="module")
def image_wide():
    seg = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", zoom=False)
    seg.set_image(CAT)
    return seg


def test_full_macs_is_the_networks_conv_count_and_taps_save_concrete_work(image_wide):
    """Guards MAC accounting that is merely ``<=`` the full count: ``full_macs`` equals a hook count of every
    convolution, the first tap costs at most 50% of it, a repeat tap on the same photo at most 10%, and FullNet
    costs all of it once, then nothing."""
    seg = image_wide
    assert seg.net_hw == NET_HW
    x = tracenet.model.normalize(torch.from_numpy(tracenet.io.fit_long_side(seg.image, 384)[0].copy())
                                 .permute(2, 0, 1)[None])
    full = _conv_macs(seg.model, x)
    first = seg.predict((220, 150))
    assert first.full_macs == full
    assert first.macs <= 0.5 * full
    repeat = seg.predict((100, 100))
    assert 0 < repeat.macs <= 0.1 * full
    fullnet = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", zoom=False)
    fullnet.set_image(CAT)
    assert fullnet.predict((220, 150), use_rft=False).macs == full
    assert fullnet.predict((100, 100), use_rft=False).macs == 0


def test_box_mode_saves_the_mask_branch_outside_the_box(image_wide):
    """Guards "box mode <= image mode" as a near tautology: at a tap whose box covers the photo's top-left, box
    mode saves at least half of the mask branch's MACs outside the box's window (the box's P3 cells plus the
    2-cell margin, computed here from the reply's box)."""
    image_wide.set_image(CAT)  # fresh caches: both first taps
    boxed = tracenet.load(str(PREVIOUS_DEFAULT), selection="paper", mask_region="box", zoom=False)
    boxed.set_image(CAT)
    tap = (80, 20)
    a, b = image_wide.predict(tap), boxed.predict(tap)
    assert a.box == b.box
    rows, cols = math.ceil(NET_HW[0] / 8), math.ceil(NET_HW[1] / 8)
    x0, y0, x1, y1 = (v * SCALE for v in b.box)
    r0, c0 = max(0, math.floor(y0 / 8) - 2), max(0, math.floor(x0 / 8) - 2)
    r1, c1 = min(rows, math.ceil(y1 / 8) + 2), min(cols, math.ceil(x1 / 8) + 2)
    outside = 1 - (r1 - r0) * (c1 - c0) / (rows * cols)
    assert outside > 0.4  # a small enough box for the bound to mean something
    x = tracenet.model.normalize(torch.from_numpy(tracenet.io.fit_long_side(image_wide.image, 384)[0].copy())
                                 .permute(2, 0, 1)[None])
    mask_branch = _conv_macs(image_wide.model, x, within=image_wide.model.mask_branch)
    assert a.macs - b.macs >= 0.5 * mask_branch * outside
