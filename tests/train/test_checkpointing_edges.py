"""Edges of training checkpoints and the optimizer / schedule that mutation testing found unguarded
(docs/MUTATION.md): a step re-saved over a stale ``.old`` folder, several ranks writing their RNG, the default and
``keep=1`` pruning, the model file's metadata, GPU-saved checkpoints on a CPU machine, hostile pickles, the CUDA
RNG plumbing, a milestone inside the warmup, and which parameters get weight decay. Expected values by hand."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
import torch.serialization
from torch import nn

from tracenet.model.checkpoint import read_checkpoint
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
from tracenet.train.schedule import WarmupMultiStep, build_optimizer, build_scheduler

# GPU-saved files without a GPU: while ``_AS_CUDA[0]`` is set, torch.save tags every storage "cuda:0" (as a
# checkpoint written on a GPU machine is); otherwise the tagger declines and torch's own taggers run.
_AS_CUDA = [False]
torch.serialization.register_package(0, lambda storage: "cuda:0" if _AS_CUDA[0] else None, lambda obj, loc: None)


class _Tiny(nn.Module):
    """Conv -> BatchNorm -> Linear, 6 parameters: decay on conv / linear, none on the norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.norm = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, 1)


@pytest.fixture(scope="module")
def parts():
    cfg = train_preset("smoke", warmup_iters=4, warmup_factor=0.1, steps=(5,), gamma=0.1)
    model = _Tiny()
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for p in model.parameters():  # one step with gradient 1: momentum buffers to store (1 where no decay)
        p.grad = torch.ones_like(p)
    opt.step()
    sched.step()
    return model, cfg, opt, sched


def _write(run, step, parts, **kwargs):
    model, cfg, opt, sched = parts
    return write_training_checkpoint(checkpoint_dir(run, step), model=model, model_cfg=cfg.model_config(1),
                                     optimizer=opt, scheduler=sched, step=step, data_state={"seed": 1},
                                     train_cfg={"lr": cfg.lr}, **kwargs)


def _steps(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_resaving_a_step_over_a_stale_old_folder(tmp_path, parts):
    """Guards the ``.old`` swap when a step is saved again: a ``.step_0000002.old`` left by a crash mid-swap is
    cleared first, the new folder replaces the old one, and no ``.old`` remains."""
    _write(tmp_path, 2, parts)
    stale = tmp_path / "checkpoints" / ".step_0000002.old"
    stale.mkdir()
    (stale / "junk").write_text("left by a crash")
    (checkpoint_dir(tmp_path, 2) / "first.txt").write_text("first save")
    _write(tmp_path, 2, parts)
    assert _steps(tmp_path) == ["step_0000002"]
    assert sorted(p.name for p in checkpoint_dir(tmp_path, 2).iterdir()) == ["model.safetensors", "state.pt"]


def test_every_rank_writes_its_rng_into_the_same_folder(tmp_path, parts):
    """Guards ``exist_ok`` of the temporary folder: ranks 0 and 1 both write into it, then rank 0 the rest."""
    final = checkpoint_dir(tmp_path, 1)
    write_rank_rng(final, 0)
    write_rank_rng(final, 1)
    _write(tmp_path, 1, parts)
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "rng_rank0.pt", "rng_rank1.pt",
                                                       "state.pt"]
    assert load_training_checkpoint(final, rank=1)[3] is not None


def test_pruning_default_keeps_everything_and_keep_1_only_the_newest(tmp_path, parts):
    """Guards the default ``keep=0`` (no pruning) and ``keep > 0`` (``keep=1`` must prune)."""
    for step in (1, 2, 3):
        _write(tmp_path, step, parts)
    assert _steps(tmp_path) == ["step_0000001", "step_0000002", "step_0000003"]
    _write(tmp_path, 4, parts, keep=1)
    assert _steps(tmp_path) == ["step_0000004"]


def test_model_file_records_the_step_and_its_source(tmp_path, parts):
    """Guards the metadata of the checkpoint's ``model.safetensors`` (``tracenet.load`` reads it directly)."""
    final = _write(tmp_path, 7, parts)
    assert read_checkpoint(final / "model.safetensors")[2] == {"step": 7, "source": "tracenet.train"}


def test_find_checkpoint_refuses_other_files_of_the_folder(tmp_path, parts):
    """Guards ``is_file() and name in (model, state)``: a checkpoint's RNG file is not a way to name it."""
    final = checkpoint_dir(tmp_path, 1)
    write_rank_rng(final, 0)
    _write(tmp_path, 1, parts)
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        find_checkpoint(final / "rng_rank0.pt")


def test_checkpoint_written_on_a_gpu_loads_on_a_cpu_machine(tmp_path, parts):
    """Guards ``map_location="cpu"``: ``state.pt`` and ``rng_rank0.pt`` whose tensors are tagged ``cuda:0`` (as
    saved on a GPU machine) load here, on the CPU, with their values."""
    final = checkpoint_dir(tmp_path, 1)
    _AS_CUDA[0] = True
    try:
        write_rank_rng(final, 0)
        _write(tmp_path, 1, parts)
    finally:
        _AS_CUDA[0] = False
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does with these files here
        torch.load(final / "state.pt", weights_only=True)
    _, _, state, rng = load_training_checkpoint(final)
    assert state["step"] == 1 and rng["torch"].device.type == "cpu"
    norm_weight = state["optimizer"]["state"][4]["momentum_buffer"]  # params 0-3 decay, 4-5 the norm's
    assert norm_weight.device.type == "cpu" and torch.equal(norm_weight, torch.ones(2))


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


@pytest.mark.parametrize("name", ["state.pt", "rng_rank0.pt"])
def test_hostile_pickles_in_a_checkpoint_are_not_unpickled(tmp_path, parts, name):
    """Guards ``weights_only=True``: a ``state.pt`` / ``rng_rank0.pt`` holding an arbitrary object is refused."""
    final = checkpoint_dir(tmp_path, 1)
    write_rank_rng(final, 0)
    _write(tmp_path, 1, parts)
    torch.save({"step": 1, "x": _Payload()}, final / name)
    with pytest.raises(pickle.UnpicklingError):
        load_training_checkpoint(final)


def test_cuda_rng_states_are_captured_and_restored_when_cuda_is_there(monkeypatch):
    """Guards the CUDA branch of capture / restore (this machine has no GPU: ``torch.cuda`` is replaced by a
    recorder): the CUDA states go into ``state["cuda"]`` and back to ``set_rng_state_all``; a state captured
    without CUDA restores without touching it."""
    cpu_only = capture_rng()
    set_calls = []
    gpu_states = [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: gpu_states)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_calls.append)
    state = capture_rng()
    assert state["cuda"] is gpu_states
    restore_rng(state)
    assert set_calls == [gpu_states]
    restore_rng(cpu_only)
    assert set_calls == [gpu_states]


def test_numpy_gauss_cache_survives_the_round_trip():
    """Guards ``has_gauss`` / ``cached`` of numpy's state: after one ``randn`` numpy holds the second normal of
    the pair; the draw after a restore equals the draw after the capture."""
    np.random.seed(5)
    np.random.randn()
    state = capture_rng()
    assert state["numpy"][3] == 1
    expected = np.random.randn()
    np.random.randn(), random.random()
    restore_rng(state)
    assert np.random.randn() == expected


def test_a_milestone_inside_the_warmup_multiplies_the_warmup_factor():
    """Guards ``factor *= warmup`` (``=`` would drop gamma): warmup 4 from 0.1, step at 2, gamma 0.5:
    it 1: 0.1 * 0.75 + 0.25 = 0.325; it 3: 0.5 * (0.1 * 0.25 + 0.75) = 0.3875; it 4: 0.5."""
    fn = WarmupMultiStep(warmup_iters=4, warmup_factor=0.1, steps=(2,), gamma=0.5)
    assert [fn(i) for i in (0, 1, 3, 4)] == pytest.approx([0.1, 0.325, 0.3875, 0.5])


def test_weight_decay_groups_hold_exactly_the_right_parameters():
    """Guards the optimizer groups: conv and linear weights and biases decay, the norm's do not, a frozen weight
    is left out without dropping its module's trainable bias, and a parameter shared by two modules is listed
    once."""
    cfg = train_preset("smoke")
    model = _Tiny()
    model.fc.weight.requires_grad_(False)
    model.head = nn.Linear(2, 2)
    model.tied = nn.Linear(2, 2)
    model.tied.weight = model.head.weight  # one Parameter in two modules
    decay, no_decay = build_optimizer(model, cfg).param_groups
    assert {id(p) for p in decay["params"]} == {id(p) for p in (model.conv.weight, model.conv.bias, model.fc.bias,
                                                                   model.head.weight, model.head.bias,
                                                                   model.tied.bias)}
    assert len(decay["params"]) == 6
    assert [id(p) for p in no_decay["params"]] == [id(model.norm.weight), id(model.norm.bias)]
    assert decay["weight_decay"] == cfg.weight_decay > 0 and no_decay["weight_decay"] == 0.0
