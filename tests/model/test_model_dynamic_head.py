"""The 169-parameter layout and the dynamic mask head against hand-written reference code."""

import pytest
import torch

from tracenet.model import (
    DYNAMIC_PARAM_COUNT,
    dynamic_mask_logits,
    relative_coords,
    split_dynamic_params,
    upsample_mask_probs,
)


def test_param_count_is_169():
    assert DYNAMIC_PARAM_COUNT == 80 + 64 + 8 + 8 + 8 + 1 == 169


def test_split_puts_every_slice_where_architecture_md_says():
    n = 2
    params = torch.arange(n * 169, dtype=torch.float32).reshape(n, 169)
    (w1, w2, w3), (b1, b2, b3) = split_dynamic_params(params)
    assert w1.shape == (n * 8, 10, 1, 1) and w2.shape == (n * 8, 8, 1, 1) and w3.shape == (n, 8, 1, 1)
    assert b1.shape == (n * 8,) and b2.shape == (n * 8,) and b3.shape == (n,)
    for i in range(n):
        base = i * 169
        # layer-1 weights 8 x 10, row-major [out, in]
        for o in range(8):
            for c in range(10):
                assert w1[i * 8 + o, c, 0, 0] == base + o * 10 + c
        for o in range(8):
            for c in range(8):
                assert w2[i * 8 + o, c, 0, 0] == base + 80 + o * 8 + c
        for c in range(8):
            assert w3[i, c, 0, 0] == base + 144 + c
        assert b1[i * 8 : i * 8 + 8].tolist() == [base + 152 + k for k in range(8)]
        assert b2[i * 8 : i * 8 + 8].tolist() == [base + 160 + k for k in range(8)]
        assert b3[i] == base + 168


def test_split_rejects_wrong_width():
    with pytest.raises(ValueError, match="169"):
        split_dynamic_params(torch.zeros(3, 168))


def test_relative_coords_hand_computed():
    # Instance at (x, y) = (20, 12) on level index 1 (P4, soi 128); grid 2 x 3 at stride 8.
    rel = relative_coords(torch.tensor([[20.0, 12.0]]), torch.tensor([1]), (2, 3))
    assert rel.shape == (1, 2, 2, 3)
    xs = torch.tensor([4.0, 12.0, 20.0])  # col * 8 + 4
    ys = torch.tensor([4.0, 12.0])
    torch.testing.assert_close(rel[0, 0], ((20.0 - xs) / 128).expand(2, 3))
    torch.testing.assert_close(rel[0, 1], ((12.0 - ys) / 128)[:, None].expand(2, 3))


def _reference_logits(mask_feats, params, image_index, locs, levels):
    """Three 1x1 convs written out with einsum, one instance at a time."""
    soi = [64, 128, 256, 512, 1024]
    _, _, h, w = mask_feats.shape
    ys, xs = torch.meshgrid(torch.arange(h) * 8.0 + 4, torch.arange(w) * 8.0 + 4, indexing="ij")
    outs = []
    for i in range(params.shape[0]):
        p = params[i]
        s = soi[int(levels[i])]
        rel = torch.stack([(locs[i, 0] - xs) / s, (locs[i, 1] - ys) / s])  # [2, h, w]
        x = torch.cat([mask_feats[int(image_index[i])], rel])  # [10, h, w]
        w1, w2, w3 = p[:80].reshape(8, 10), p[80:144].reshape(8, 8), p[144:152].reshape(1, 8)
        b1, b2, b3 = p[152:160], p[160:168], p[168:169]
        x = torch.relu(torch.einsum("oc,chw->ohw", w1, x) + b1[:, None, None])
        x = torch.relu(torch.einsum("oc,chw->ohw", w2, x) + b2[:, None, None])
        x = torch.einsum("oc,chw->ohw", w3, x) + b3[:, None, None]
        outs.append(x[0])
    return torch.stack(outs)


def test_dynamic_mask_logits_matches_hand_written_convs_for_two_images():
    g = torch.Generator().manual_seed(0)
    mask_feats = torch.randn(2, 8, 5, 7, generator=g)
    params = torch.randn(2, 169, generator=g)
    image_index = torch.tensor([1, 0])
    locs = torch.tensor([[30.0, 10.0], [4.0, 36.0]])
    levels = torch.tensor([0, 3])
    got = dynamic_mask_logits(mask_feats, params, image_index, locs, levels)
    want = _reference_logits(mask_feats, params, image_index, locs, levels)
    assert got.shape == (2, 5, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # The image index matters: swapping it changes the result.
    swapped = dynamic_mask_logits(mask_feats, params, image_index.flip(0), locs, levels)
    assert not torch.allclose(swapped, got)


def test_dynamic_mask_logits_no_instances():
    out = dynamic_mask_logits(
        torch.zeros(1, 8, 4, 4),
        torch.zeros(0, 169),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 2),
        torch.zeros(0, dtype=torch.long),
    )
    assert out.shape == (0, 4, 4)


def test_upsample_crops_the_stride8_grid_to_the_image():
    # 13 x 17 image -> 2 x 3 grid covering 16 x 24 pixels; cell (row, col) covers [8row, 8row+8) x [8col, 8col+8).
    logits = torch.full((2, 2, 3), -20.0)
    logits[0, 1, :] = 20.0  # bottom row of cells
    logits[1, :, 2] = 20.0  # right column of cells
    probs = upsample_mask_probs(logits, (13, 17))
    assert probs.shape == (2, 13, 17)
    assert probs.min() >= 0 and probs.max() <= 1
    bottom, right = probs[0] > 0.5, probs[1] > 0.5
    # Cropped, not stretched: the cell boundaries stay at pixel row 8 / column 16.
    assert bool(bottom[8:].all()) and not bool(bottom[:8].any())
    assert bool(right[:, 16:].all()) and not bool(right[:, :16].any())


def test_upsample_rejects_grid_of_another_image():
    with pytest.raises(ValueError, match="ceil"):
        upsample_mask_probs(torch.zeros(1, 2, 3), (40, 17))
