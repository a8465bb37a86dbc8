"""Deferred mask probabilities (TensorMaskProbs for PyTorch, ArrayMaskProbs for numpy / onnxruntime): the mask computed
around the cells that pass 0.5 equals the whole map's ``> 0.5`` bit for bit, and the whole map equals the
engine's own upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tracenet.model.dynamic_head import upsample_mask_probs
from tracenet.model.mask_probs import TensorMaskProbs
from tracenet.tap.masks import ArrayMaskProbs, dense_probs
from tracenet.tap.masks import upsample_mask_probs as upsample_mask_probs_np


def _torch(logits, hw, keep=None):
    return TensorMaskProbs(logits, hw, keep)


def _numpy(logits, hw, keep=None):
    return ArrayMaskProbs(logits.numpy(), hw, keep)


def _as_array(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _blob_logits(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Stride-8 logits with a few objects (positive blobs with soft edges) on a negative background, some touching
    the map's borders, plus noise near 0 so that many pixels interpolate close to 0.5."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.full((rows, cols), -4.0) + 0.5 * torch.randn(rows, cols, generator=gen)
    rr, cc = torch.meshgrid(torch.arange(rows, dtype=torch.float32), torch.arange(cols, dtype=torch.float32),
                            indexing="ij")
    for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
        r, c = float(torch.rand(1, generator=gen)) * rows, float(torch.rand(1, generator=gen)) * cols
        radius = 1.0 + float(torch.rand(1, generator=gen)) * max(rows, cols) / 3
        logits = torch.maximum(logits, 3.0 - 6.0 * ((rr - r) ** 2 + (cc - c) ** 2).sqrt() / radius)
    return logits


@pytest.mark.parametrize("make", [_torch, _numpy])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hw", [(768, 1024), (381, 509), (8, 8), (17, 33), (512, 384)])
def test_mask_equals_thresholded_whole_map(hw: tuple[int, int], threads: int, make) -> None:
    h, w = hw
    rows, cols = -(-h // 8), -(-w // 8)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for seed in range(12):
            logits = _blob_logits(rows, cols, seed)
            keeps = [None, (rows // 4, rows // 4 + max(1, rows // 2), 0, max(1, cols // 3))]
            for keep in keeps:
                lazy = make(logits, hw, keep)
                mask = lazy.above_half()
                whole = _as_array(make(logits, hw, keep).dense())
                assert mask.shape == (h, w) and mask.dtype == bool
                np.testing.assert_array_equal(mask, whole > 0.5, err_msg=f"{hw} seed {seed} keep {keep}")
                np.testing.assert_array_equal(_as_array(lazy.dense()), whole)
                np.testing.assert_array_equal(lazy.above_half(), mask)  # from the map once it exists
                if keep is None:  # the engine's own upsampling, bit for bit
                    own = upsample_mask_probs(logits[None], hw)[0] if make is _torch else upsample_mask_probs_np(
                        logits.numpy(), hw)
                    np.testing.assert_array_equal(whole, _as_array(own))
                else:  # zero outside the window's whole cells
                    r0, r1, c0, c1 = keep
                    outside = np.ones((h, w), dtype=bool)
                    outside[r0 * 8:r1 * 8, c0 * 8:c1 * 8] = False
                    assert not whole[outside].any()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("make", [_torch, _numpy])
def test_nothing_above_half_gives_an_empty_mask_without_upsampling(make) -> None:
    lazy = make(torch.full((96, 128), -3.0), (768, 1024))
    mask = lazy.above_half()
    assert mask.shape == (768, 1024) and not mask.any()
    assert lazy._dense is None  # noqa: SLF001  (the point: no whole-size map was made)


@pytest.mark.parametrize("make", [_torch, _numpy])
def test_everything_above_half_and_the_box_window(make) -> None:
    logits = torch.full((10, 12), 2.0)
    assert make(logits, (80, 96)).above_half().all()
    mask = make(logits, (80, 96), (2, 5, 3, 7)).above_half()
    assert mask[16:40, 24:56].all() and mask.sum() == 24 * 32


def test_dense_probs_passes_arrays_through() -> None:
    arr = np.zeros((4, 4), dtype=np.float32)
    assert dense_probs(arr) is arr
    lazy = TensorMaskProbs(torch.zeros(1, 1), (8, 8))
    assert torch.equal(dense_probs(lazy), torch.full((8, 8), 0.5))
