"""Training checkpoints without training: RNG round trip, the folder layout, the ``last_checkpoint`` pointer,
pruning, re-saving a step, and how ``--resume PATH`` is resolved."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tracenet.model import build_model
from tracenet.train import train_preset
from tracenet.train.checkpointing import (
    capture_rng,
    checkpoint_dir,
    find_checkpoint,
    load_training_checkpoint,
    restore_rng,
    write_rank_rng,
    write_training_checkpoint,
)
from tracenet.train.schedule import build_optimizer, build_scheduler


def _draws() -> tuple:
    return (random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.randn()),
            torch.rand(3).tolist())


def test_rng_round_trip_through_a_weights_only_file(tmp_path):
    """Python (incl. the cached gauss value), numpy and torch draws after a restore repeat those after the
    capture, also after ``torch.save`` / ``torch.load(weights_only=True)``."""
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached second gauss value in Python's state
    np.random.randn()  # and numpy's
    torch.save(capture_rng(), tmp_path / "rng.pt")
    first = _draws()
    _draws()
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == first


@pytest.fixture(scope="module")
def parts():
    cfg = train_preset("smoke", warmup_iters=4, warmup_factor=0.1, steps=(5,), gamma=0.1)
    torch.manual_seed(0)
    model = build_model(cfg.model_config(1))
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for p in model.parameters():  # a momentum buffer to store
        p.grad = torch.ones_like(p)
    for _ in range(3):
        opt.step()
        sched.step()
    return model, cfg, opt, sched


def _write(run, step, parts, keep=0):
    model, cfg, opt, sched = parts
    return write_training_checkpoint(checkpoint_dir(run, step), model=model, model_cfg=cfg.model_config(1),
                                     optimizer=opt, scheduler=sched, step=step,
                                     data_state={"seed": 1, "global_batch": 2, "num_samples": 6},
                                     train_cfg={"lr": cfg.lr}, keep=keep)


def test_checkpoint_folder_holds_everything_for_an_exact_resume(tmp_path, parts):
    model, cfg, opt, sched = parts
    final = checkpoint_dir(tmp_path, 3)
    write_rank_rng(final, 0)
    assert _write(tmp_path, 3, parts) == final == tmp_path / "checkpoints" / "step_0000003"
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "rng_rank0.pt", "state.pt"]
    assert (tmp_path / "last_checkpoint").read_text() == "checkpoints/step_0000003\n"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_0000003"]  # no temporary folder left
    assert not list(tmp_path.glob(".*"))
    tensors, model_cfg, state, rng = load_training_checkpoint(final)
    assert model_cfg.to_dict() == cfg.model_config(1).to_dict()
    weights = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    assert weights.keys() <= tensors.keys() and all(torch.equal(tensors[k], v) for k, v in weights.items())
    assert state["step"] == 3 and state["data"] == {"seed": 1, "global_batch": 2, "num_samples": 6}
    assert state["train_config"] == {"lr": cfg.lr}
    assert state["scheduler"]["last_epoch"] == 3 == sched.state_dict()["last_epoch"]
    saved_momentum = state["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(saved_momentum, opt.state_dict()["state"][0]["momentum_buffer"])
    assert rng is not None and torch.equal(rng["torch"], torch.load(final / "rng_rank0.pt")["torch"])
    assert load_training_checkpoint(final, rank=1)[3] is None


def test_keep_prunes_older_checkpoints_and_resaving_a_step_replaces_it(tmp_path, parts):
    for step in (1, 2, 3):
        _write(tmp_path, step, parts, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    (checkpoint_dir(tmp_path, 3) / "stale.txt").write_text("from the first save")
    _write(tmp_path, 3, parts, keep=2)
    assert not (checkpoint_dir(tmp_path, 3) / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000002", "step_0000003"]
    assert (tmp_path / "last_checkpoint").read_text() == "checkpoints/step_0000003\n"
    _write(tmp_path, 4, parts, keep=0)  # keep 0: nothing pruned
    assert len(list((tmp_path / "checkpoints").iterdir())) == 3


def test_find_checkpoint_accepts_the_folder_its_files_or_the_run(tmp_path, parts):
    _write(tmp_path, 1, parts)
    final = _write(tmp_path, 2, parts)
    for given in (final, final / "model.safetensors", final / "state.pt", tmp_path):
        assert find_checkpoint(given) == final
    (tmp_path / "last_checkpoint").write_text("checkpoints/step_0000009\n")
    with pytest.raises(FileNotFoundError, match="step_0000009, which is not a complete checkpoint"):
        find_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        find_checkpoint(tmp_path / "checkpoints")
    (final / "state.pt").unlink()  # a folder without its state is not a checkpoint
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        find_checkpoint(final)
