"""The DistributedDataParallel path on CPU (gloo, 2 processes): runs, and resumes bit-exactly."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.data.synth import make_shapes_dataset
from tracenet.model import read_checkpoint
from tracenet.train import train, train_preset

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, ann, images, out, resume, stop_at) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    cfg = train_preset("smoke", max_iters=4, batch_size=4, checkpoint_every=2)
    try:
        train(
            cfg,
            ann_file=ann,
            images_dir=images,
            out_dir=out,
            resume=resume,
            stop_at=stop_at,
            device="cpu",
            progress=False,
        )
    finally:
        dist.destroy_process_group()


def _launch(*args) -> None:
    mp.start_processes(_worker, args=(2, _free_port(), *args), nprocs=2, join=True, start_method="fork")


def test_two_process_training_resumes_exactly(tmp_path):
    ann, images = make_shapes_dataset(tmp_path / "data", n_images=8, size=64)
    _launch(ann, images, tmp_path / "full", None, None)
    _launch(ann, images, tmp_path / "half", None, 2)
    assert sorted(p.name for p in (tmp_path / "half" / "checkpoints" / "step_0000002").iterdir()) == [
        "model.safetensors",
        "rng_rank0.pt",
        "rng_rank1.pt",
        "state.pt",
    ]
    _launch(ann, images, tmp_path / "half", tmp_path / "half", None)
    a, _, _ = read_checkpoint(tmp_path / "full" / "model_final.safetensors")
    b, _, _ = read_checkpoint(tmp_path / "half" / "model_final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
