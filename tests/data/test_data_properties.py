"""Property tests: box extraction agrees with torchvision, rank slices tile the global batch."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import masks_to_boxes as tv_masks_to_boxes

from tracenet.data import ResumableBatchSampler, masks_to_boxes


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_masks_to_boxes_matches_torchvision_plus_one(n, h, w, seed):
    masks = np.random.default_rng(seed).random((n, h, w)) < 0.3
    masks[:, 0, 0] |= ~masks.reshape(n, -1).any(axis=1)  # no empty masks (torchvision is undefined there)
    ours = masks_to_boxes(masks)
    theirs = tv_masks_to_boxes(torch.from_numpy(masks)).numpy() + np.array([0, 0, 1, 1])
    assert np.array_equal(ours, theirs)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.integers(1, 5), st.integers(1, 4), st.integers(0, 50), st.integers(0, 9))
def test_rank_slices_tile_the_global_batch(num_samples, per_rank, world, step, seed):
    single = ResumableBatchSampler(num_samples, per_rank * world, seed=seed)
    ranks = [
        ResumableBatchSampler(num_samples, per_rank, seed=seed, rank=r, world_size=world)
        for r in range(world)
    ]
    assert sum((s.batch(step) for s in ranks), []) == single.batch(step)
    assert next(iter(ResumableBatchSampler(num_samples, per_rank, seed=seed, start_step=step))) == (
        ResumableBatchSampler(num_samples, per_rank, seed=seed).batch(step)
    )
