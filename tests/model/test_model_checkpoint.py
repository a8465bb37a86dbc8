"""Checkpoints round-trip exactly and refuse anything that is not a TraceNet safetensors file."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from tracenet.model import (
    PRESETS,
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)

SMALL = {"fpn_channels": 16, "mask_branch_channels": 16, "mask_branch_convs": 1, "head_convs": 1}


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    cfg = PRESETS["lite0"].replace(pretrained_backbone=False, freeze_backbone_bn=False, **SMALL)
    model = build_model(cfg)
    model.train()
    with torch.no_grad():  # move BN running stats away from their init so they must be saved
        model(torch.randn(2, 3, 48, 64))
    return model.eval(), cfg


def test_round_trip_is_exact(tmp_path, trained):
    model, cfg = trained
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", model, cfg, {"step": 7, "note": "hi"})
    loaded, cfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and meta == {"step": 7, "note": "hi"}
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.randn(1, 3, 41, 59)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_storage_is_small_and_loads_as_float32(tmp_path, trained):
    model, cfg = trained
    p32 = save_checkpoint(tmp_path / "a.safetensors", model, cfg)
    p16 = save_checkpoint(tmp_path / "b.safetensors", model, cfg, dtype=torch.float16)
    assert os.path.getsize(p16) < 0.6 * os.path.getsize(p32)
    loaded, _, _ = load_checkpoint(p16)
    w = loaded.head.controller.weight
    assert w.dtype == torch.float32
    assert torch.equal(w, model.head.controller.weight.half().float())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_pickle_pth_is_refused_and_never_unpickled(tmp_path, trained):
    model, _ = trained
    pth = tmp_path / "model.pth"
    torch.save(model.state_dict(), pth)
    with pytest.raises(CheckpointError, match=r"zip-based PyTorch \.pth"):
        load_checkpoint(pth)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(raw)
    assert not marker.exists()


def test_random_bytes_and_empty_file(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a TraceNet checkpoint"):
        load_checkpoint(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a TraceNet checkpoint.*format='pt'"):
        load_checkpoint(path)


def test_config_weights_mismatch(tmp_path, trained):
    model, cfg = trained
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    wrong_cfg = cfg.replace(fpn_channels=24)
    path = tmp_path / "mismatch.safetensors"
    save_file(
        tensors, str(path), metadata={"format": "tracenet/1", "config": json.dumps(wrong_cfg.to_dict())}
    )
    with pytest.raises(CheckpointError, match="do not match the stored config.*wrong shapes"):
        load_checkpoint(path)
    dropped = dict(tensors)
    dropped.pop("head.controller.weight")
    save_file(dropped, str(path), metadata={"format": "tracenet/1", "config": json.dumps(cfg.to_dict())})
    with pytest.raises(CheckpointError, match=r"1 missing \(e.g. \['head.controller.weight'\]\)"):
        load_checkpoint(path)


def test_bad_stored_config(tmp_path):
    path = tmp_path / "badcfg.safetensors"
    save_file(
        {"w": torch.zeros(1)}, str(path), metadata={"format": "tracenet/1", "config": '{"backbone": "vgg"}'}
    )
    with pytest.raises(CheckpointError, match="stored config is invalid.*vgg"):
        load_checkpoint(path)


def test_extra_meta_must_be_json(tmp_path, trained):
    model, cfg = trained
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", model, cfg, {"t": torch.zeros(1)})
