"""A TapSegmenter shared by threads never answers with another thread's photo: it refuses, clearly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from tracenet.model import build_model, preset
from tracenet.predictor import ConcurrentUseError, TapSegmenter


@pytest.fixture(scope="module")
def seg() -> TapSegmenter:
    torch.manual_seed(0)
    cfg = preset("lite0", pretrained_backbone=False)
    return TapSegmenter(build_model(cfg), cfg, min_score=0.0, require_tap_inside=False)


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_predict_from_a_thread_that_did_not_set_the_image_is_refused(seg: TapSegmenter) -> None:
    seg.set_image(_photo(64, 80, 1))
    errors: list[BaseException] = []

    def other() -> None:
        try:
            seg.predict((5, 5))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], ConcurrentUseError)
    assert "another thread" in str(errors[0])
    assert seg.predict((5, 5)).mask.shape == (64, 80)  # the owner still works
    t = threading.Thread(target=seg.claim)  # a caller that serialises threads hands the image over explicitly
    t.start()
    t.join()
    with pytest.raises(ConcurrentUseError):
        seg.predict((5, 5))
    seg.claim()


def test_two_threads_each_with_their_own_photo_never_get_a_wrong_mask(seg: TapSegmenter) -> None:
    """The issue's scenario: each thread set_image(own photo) then predict; every answer is either the right
    photo's (its shape and the single-threaded mask) or a ConcurrentUseError, never another photo's mask."""
    photos = {0: _photo(64, 80, 2), 1: _photo(96, 48, 3)}
    expected = {}
    for k, photo in photos.items():
        seg.set_image(photo)
        expected[k] = seg.predict((10, 20)).mask
    wrong: list[str] = []
    outcomes = {"ok": 0, "refused": 0}
    lock = threading.Lock()

    def worker(k: int) -> None:
        for _ in range(10):
            try:
                seg.set_image(photos[k])
                mask = seg.predict((10, 20)).mask
            except ConcurrentUseError:
                with lock:
                    outcomes["refused"] += 1
                continue
            with lock:
                outcomes["ok"] += 1
                if mask.shape != expected[k].shape or not np.array_equal(mask, expected[k]):
                    wrong.append(f"thread {k} got a mask of shape {mask.shape}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in photos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong
    assert outcomes["ok"] + outcomes["refused"] == 20
