"""Crafted checkpoints: a config asking for a huge model, NaN weights or mistyped metadata get a clear
CheckpointError before anything big is built; bad predictor options fail at construction."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

import tracenet
from tracenet.model import PRESETS, CheckpointError, build_model, load_checkpoint, save_checkpoint
from tracenet.predictor import TapSegmenter

SMALL = {"fpn_channels": 16, "mask_branch_channels": 16, "mask_branch_convs": 1, "head_convs": 1}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    torch.manual_seed(0)
    cfg = PRESETS["lite0"].replace(pretrained_backbone=False, **SMALL)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "ok.safetensors", model, cfg)
    return model, cfg, path


def _write(path, tensors, config: dict, meta) -> str:
    meta_json = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(path), metadata={"format": "tracenet/1", "config": json.dumps(config), "meta": meta_json,
                                            "dtype": "float32"})
    return str(path)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("head_convs", 3000, "head_convs must be an int >= 0 (at most 16)"),
        ("fpn_channels", 4000, "fpn_channels must be a positive int (at most 1024)"),
        ("num_classes", 1_000_000, "num_classes must be a positive int (at most 10000)"),
        ("fpn_channels", True, "fpn_channels must be a positive int"),
        ("freeze_backbone_bn", "yes", "freeze_backbone_bn must be true or false"),
    ],
)
def test_config_out_of_bounds_or_mistyped_is_refused_before_building(tmp_path, field, value, words) -> None:
    path = _write(tmp_path / "c.safetensors", {"x": torch.zeros(1)}, PRESETS["lite0"].to_dict() | {field: value}, {})
    with pytest.raises(CheckpointError, match=r"stored config is invalid") as info:
        load_checkpoint(path)
    assert words in str(info.value)


def test_a_config_that_does_not_fit_the_tensors_is_refused_from_shapes_alone(tmp_path, small, monkeypatch) -> None:
    """A 1024-channel config (within bounds) next to a tiny file: the shapes are compared on the meta device,
    so the real model is never built."""
    model, cfg, _ = small
    built = []
    import tracenet.model.checkpoint as ck

    real_build = ck.build_model
    monkeypatch.setattr(ck, "build_model", lambda c: built.append(torch.empty(0).device) or real_build(c))
    path = _write(tmp_path / "big.safetensors", model.state_dict(), cfg.to_dict() | {"fpn_channels": 1024}, {})
    with pytest.raises(CheckpointError, match="do not match the stored config"):
        load_checkpoint(path)
    assert [str(d) for d in built] == ["meta"]  # only the shape-only build ran


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_or_inf_weights_are_refused(tmp_path, small, bad) -> None:
    model, cfg, _ = small
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 3)
    tensors[key].view(-1)[2] = bad
    path = _write(tmp_path / "nan.safetensors", tensors, cfg.to_dict(), {})
    with pytest.raises(CheckpointError, match=f"tensor {key} contains NaN or infinite values"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ([1, 2], "metadata 'meta' must be a JSON object"),
        ({"max_side": None}, "max_side must be an int >= 32"),
        ({"max_side": 0}, "max_side must be an int >= 32"),
        ({"max_side": "384"}, "max_side must be an int >= 32"),
        ({"tap_ranker": [1]}, "tap_ranker must be a JSON object"),
    ],
)
def test_mistyped_metadata_is_a_clear_error(tmp_path, small, meta, words) -> None:
    model, cfg, _ = small
    path = _write(tmp_path / "meta.safetensors", model.state_dict(), cfg.to_dict(), meta)
    with pytest.raises(CheckpointError) as info:
        tracenet.load(path)
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_side": 0}, "max_side must be an int >= 32"),
        ({"max_side": 31}, "max_side must be an int >= 32"),
        ({"min_score": math.nan}, "min_score must be a number in [0, 1]"),
        ({"min_score": 1.5}, "min_score must be a number in [0, 1]"),
    ],
)
def test_bad_predictor_options_fail_at_construction(small, kwargs, words) -> None:
    model, cfg, _ = small
    with pytest.raises(ValueError) as info:
        TapSegmenter(model, cfg, **kwargs)
    assert words in str(info.value)
