"""``TapSegmenter.tap_groups``: the vectorised ``tap_key`` the clickable-region view groups pixels with."""

from __future__ import annotations

import numpy as np
import pytest

from tracenet.edit.clickable import _group_ids
from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter


class _KeysOnly:
    """The same segmenter seen without ``tap_groups`` (the per-pixel ``tap_key`` path)."""

    def __init__(self, seg: TapSegmenter) -> None:
        self.tap_key = seg.tap_key


@pytest.mark.skipif(not DEFAULT_CHECKPOINT.exists(), reason="the bundled checkpoint is not in this checkout")
@pytest.mark.parametrize("hw", [(301, 257), (768, 1024)])  # 768x1024 is resized to 384 px, 301x257 is not
def test_tap_groups_equal_exactly_where_tap_keys_are_equal(hw) -> None:
    seg = TapSegmenter.from_checkpoint()
    seg.set_image(np.zeros((*hw, 3), dtype=np.uint8))
    ys, xs = np.nonzero(np.ones(hw, dtype=bool)[::3, ::2])
    ys, xs = ys * 3, xs * 2
    groups = seg.tap_groups(xs, ys)
    keys = [seg.tap_key((int(x), int(y))) for x, y in zip(xs, ys)]
    by_group: dict[int, object] = {}
    by_key: dict[object, int] = {}
    for g, k in zip(groups.tolist(), keys):
        assert by_group.setdefault(g, k) == k  # one key per group
        assert by_key.setdefault(k, g) == g  # one group per key
    assert len(by_group) > 1
    # the clickable view numbers groups the same way with either
    np.testing.assert_array_equal(_group_ids(seg, xs, ys), _group_ids(_KeysOnly(seg), xs, ys))
