"""One small exported model for the deploy tests: lite0 with 2-conv towers and 32-channel FPN (so the heads'
window is 7, not the default's 11), random calibrated weights, a random tap ranker, exported once through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.test_predictor import _calibrate
from tracenet.model import build_model, preset, save_checkpoint
from tracenet.model.tap_ranker import FEATURE_NAMES, TapRanker

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'tracenet[onnx]')")
pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'tracenet[onnx]')")

TINY = dict(head_convs=2, fpn_channels=32, mask_branch_channels=16, pretrained_backbone=False)


def random_ranker(seed: int = 0, hidden: int = 4) -> TapRanker:
    g = torch.Generator().manual_seed(seed)
    n = len(FEATURE_NAMES)
    layers = [(torch.randn(hidden, n, generator=g), torch.randn(hidden, generator=g)),
              (torch.randn(1, hidden, generator=g), torch.randn(1, generator=g))]
    return TapRanker(torch.randn(n, generator=g), torch.rand(n, generator=g) + 0.5, layers, {"fitted": "random"})


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    cfg = preset("lite0", **TINY)
    torch.manual_seed(5)  # build_model's random layers too: the same model whatever ran before
    model = _calibrate(build_model(cfg), seed=5, controller_bias=0.0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_checkpoint(path, model, cfg, extra_meta={"tap_ranker": random_ranker().to_dict(), "max_side": 160})
    return path


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, tmp_path_factory) -> Path:
    from tracenet.cli import main

    out = tmp_path_factory.mktemp("export") / "tiny-onnx"
    assert main(["export", "--format", "onnx", "--out", str(out), "--checkpoint", str(tiny_checkpoint)]) == 0
    return out
