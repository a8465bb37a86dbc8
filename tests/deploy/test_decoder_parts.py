"""The ONNX decoder's fast parts against the reference code they replace: mask area / tap cover without full-size
upsampling (exact), the matrix-product dynamic mask head, and greedy NMS as a fixed point (torchvision's)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from tracenet.deploy.graphs import _greedy_nms, level_mask_logits
from tracenet.deploy.mask_stats import cell_pixel_weights, mask_area_and_cover
from tracenet.model.dynamic_head import dynamic_mask_logits, upsample_mask_probs


def _smooth_logits(gen: torch.Generator, n: int, rows: int, cols: int) -> torch.Tensor:
    """Blob-like masks (a few large regions, ragged boundaries), as the dynamic head gives."""
    coarse = torch.randn(n, 1, 3, 3, generator=gen) * 4
    smooth = torch.nn.functional.interpolate(coarse, size=(rows, cols), mode="bilinear", align_corners=False)[:, 0]
    return smooth + torch.randn(n, rows, cols, generator=gen) * 0.7


def _reference(logits: torch.Tensor, hw: tuple[int, int], cell: tuple[int, int]):
    masks = upsample_mask_probs(logits, hw) > 0.5
    r, c = cell
    return masks.flatten(1).sum(1).float(), masks[:, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8].flatten(1).any(1)


def test_cell_weights_are_the_upsampling_itself() -> None:
    """Each pixel is a convex combination of its cell's 3 x 3 neighbourhood (what makes the shortcut exact)."""
    w = cell_pixel_weights()
    assert w.shape == (9, 64) and float(w.min()) >= 0
    torch.testing.assert_close(w.sum(0), torch.ones(64))
    # the centre cell dominates every one of its own pixels
    assert bool((w[4] >= w.max(0).values).all())


@pytest.mark.parametrize("seed", range(6))
def test_mask_area_and_cover_equal_full_size_upsampling(seed: int) -> None:
    """Odd image sizes (the bottom / right cells stick out), taps anywhere including the last cell."""
    gen = torch.Generator().manual_seed(seed)
    weights = cell_pixel_weights()
    for _ in range(25):
        h, w = (int(v) for v in torch.randint(9, 120, (2,), generator=gen))
        rows, cols = -(-h // 8), -(-w // 8)
        logits = _smooth_logits(gen, 5, rows, cols)
        logits[0] = logits[0].abs() + 1  # one mask covering everything, one covering nothing
        logits[1] = -logits[1].abs() - 1
        cell = (int(torch.randint(0, rows, (1,), generator=gen)), int(torch.randint(0, cols, (1,), generator=gen)))
        cell = (rows - 1, cols - 1) if seed == 0 else cell
        areas, covers = mask_area_and_cover(logits, torch.tensor([h, w]), torch.tensor(cell), weights)
        want_areas, want_covers = _reference(logits, (h, w), cell)
        assert torch.equal(areas, want_areas), (h, w)
        assert torch.equal(covers, want_covers), (h, w, cell)
        assert areas[0] == h * w and areas[1] == 0


def test_level_mask_logits_equal_the_dynamic_mask_head() -> None:
    gen = torch.Generator().manual_seed(3)
    for rows, cols in [(7, 9), (37, 51), (96, 128)]:
        feats = torch.randn(1, 8, rows, cols, generator=gen)
        params = torch.randn(5, 169, generator=gen) * 0.5
        locs = torch.rand(5, 2, generator=gen) * torch.tensor([cols * 8.0, rows * 8.0])
        want = dynamic_mask_logits(feats, params, torch.zeros(5, dtype=torch.long), locs, torch.arange(5))
        torch.testing.assert_close(level_mask_logits(feats, params, locs, torch.arange(5)), want, atol=2e-5, rtol=1e-5)


def test_greedy_nms_fixed_point_equals_torchvision() -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(500):
        k = int(torch.randint(1, 12, (1,), generator=gen))
        xy = torch.rand(k, 2, generator=gen) * 50
        boxes = torch.cat([xy, xy + torch.rand(k, 2, generator=gen) * 60 + 1], dim=1)
        scores = torch.rand(k, generator=gen)
        order, keep = _greedy_nms(scores, boxes)
        assert torch.equal(order[keep], torchvision.ops.nms(boxes, scores, 0.6))
