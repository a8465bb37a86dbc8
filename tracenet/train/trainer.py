"""The training loop: data, model, SGD schedule, periodic atomic checkpoints, exact resume, NaN guard, DDP.

Reproducibility contract: with the same config, data and thread count, ``N`` iterations in one go and ``k``
iterations + ``--resume`` + ``N - k`` iterations give bit-identical weights (CPU; on GPU up to cuDNN's own
non-determinism). The batch at step ``s`` is a pure function of ``(seed, s)``
(:class:`tracenet.data.ResumableBatchSampler`), the mask-loss sampling generator is seeded from
``(seed, s, rank)``, and model / optimizer / scheduler / RNG states are restored exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tracenet.data import Batch, DataSource, InstanceDataset, ResumableBatchSampler, collate, load_sources
from tracenet.model.config import TraceNetConfig
from tracenet.model.dense import TraceNetDense, build_model
from tracenet.train.checkpointing import (
    checkpoint_dir,
    find_checkpoint,
    load_training_checkpoint,
    restore_rng,
    write_rank_rng,
    write_training_checkpoint,
)
from tracenet.train.config import ARGS_FILE, TrainConfig
from tracenet.train.distributed import DistInfo, all_reduce_mean, barrier, init_distributed
from tracenet.train.export import export_model, inference_max_side
from tracenet.train.freeze import freeze_early_backbone
from tracenet.train.schedule import build_optimizer, build_scheduler
from tracenet.train.train_model import TraceNetTrainModel

__all__ = ["EvalHook", "NonFiniteLossError", "train"]

log = logging.getLogger(__name__)

# Called on rank 0 every ``eval_every`` iterations with the dense model (eval mode), its config and the number
# of completed iterations; returns metrics to log (or None). Training mode is restored afterwards.
EvalHook = Callable[[TraceNetDense, TraceNetConfig, int], "dict[str, float] | None"]


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the step and the loss."""


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``TrainConfig.amp`` on ``device``: bf16 on CUDA for "auto" / "bf16" (no loss
    scaling needed, unlike fp16), None (float32) on CPU for "auto" (bf16 autocast bought nothing there)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def loader_workers(cfg: TrainConfig, info: DistInfo) -> int:
    """Data-loader workers of this rank: ``cfg.num_workers`` on CPU; on CUDA ``cfg.num_workers_cuda`` or, when
    None, the machine's cores less two (main process and slack), shared by the ranks, at most 16 each."""
    if info.device.type != "cuda":
        return cfg.num_workers
    if cfg.num_workers_cuda is not None:
        return cfg.num_workers_cuda
    return max(1, min(16, ((os.cpu_count() or 4) - 2) // info.world_size))


def _one_thread_worker(worker_id: int) -> None:
    """Loader workers decode and augment one sample at a time: one thread each, so N workers use N cores."""
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 1_009 + rank) % (2**63 - 1))


def _config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(
        k
        for k in set(old) | set(new)
        if json.dumps(old.get(k), default=str) != json.dumps(new.get(k), default=str)
    )


class _MetricsLog:
    """Means of the losses over each logging window -> ``metrics.jsonl`` lines and the progress bar."""

    def __init__(self, path: Path, step: int) -> None:
        self.path, self.sums, self.n = path, {}, 0
        self.t, self.step = time.perf_counter(), step

    def add(self, names: list[str], values: torch.Tensor) -> None:
        for name, v in zip(names, values.tolist(), strict=True):
            self.sums[name] = self.sums.get(name, 0.0) + v
        self.n += 1

    def flush(self, step: int, lr: float, bar: tqdm) -> None:
        now = time.perf_counter()
        rec = {"step": step, "lr": lr, **{k: v / max(1, self.n) for k, v in self.sums.items()}}
        rec["s_per_iter"] = (now - self.t) / max(1, step - self.step)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        bar.set_postfix({k.removeprefix("loss_"): f"{v:.3f}" for k, v in rec.items() if k.startswith("loss")})
        self.sums, self.n, self.t, self.step = {}, 0, now, step


class _Run:
    """State of one training process (built by :func:`train`)."""

    def __init__(
        self, cfg: TrainConfig, dataset: InstanceDataset, out_dir: Path, dist_info: DistInfo
    ) -> None:
        self.cfg, self.dataset, self.out_dir, self.dist = cfg, dataset, out_dir, dist_info
        if cfg.batch_size % dist_info.world_size:
            raise ValueError(
                f"batch size {cfg.batch_size} is the global batch and must be divisible by the number of "
                f"processes ({dist_info.world_size})"
            )
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
        self.model_cfg = cfg.model_config(dataset.num_classes, list(dataset.index.class_names))
        self.dense = build_model(self.model_cfg)
        freeze_early_backbone(self.dense, cfg.freeze_backbone_stride)
        if cfg.channels_last:
            self.dense.to(memory_format=torch.channels_last)
        self.train_model: nn.Module = TraceNetTrainModel(
            self.dense,
            target_cfg=cfg.targets,
            loss_cfg=cfg.losses,
            channels_last=cfg.channels_last,
            autocast=autocast_dtype(cfg.amp, dist_info.device),
        ).to(dist_info.device)
        if dist_info.world_size > 1:
            ids = None
            if dist_info.device.type == "cuda":  # SyncBatchNorm is CUDA-only; CPU (gloo) ranks keep local BN
                self.train_model = nn.SyncBatchNorm.convert_sync_batchnorm(self.train_model)
                self.dense = self.train_model.dense
                ids = [dist_info.local_rank]
            self.train_model = nn.parallel.DistributedDataParallel(self.train_model, device_ids=ids)
        self.optimizer = build_optimizer(self.dense, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        self.step = 0
        self.last_ckpt: Path | None = None

    def resume(self, path: str | os.PathLike) -> None:
        ckpt = find_checkpoint(path)
        tensors, model_cfg, state, rng = load_training_checkpoint(ckpt, self.dist.rank)
        if model_cfg.to_dict() != self.model_cfg.to_dict():
            diff = _config_diff(model_cfg.to_dict(), self.model_cfg.to_dict())
            raise ValueError(f"--resume {ckpt}: its model config differs from this run's in {diff}")
        self.dense.load_state_dict(tensors, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        if rng is not None:
            restore_rng(rng)
        elif self.dist.world_size > 1:
            log.warning("%s has no RNG state for rank %d; resume is not bit-exact", ckpt, self.dist.rank)
        data = state.get("data", {})
        expected = {
            "seed": self.cfg.seed,
            "global_batch": self.cfg.batch_size,
            "num_samples": len(self.dataset),
        }
        changed = {k: (data.get(k), v) for k, v in expected.items() if data.get(k) != v}
        if changed:
            log.warning("resuming with a different data order (%s): not an exact continuation", changed)
        changed_cfg = _config_diff(state.get("train_config", {}), self.cfg.to_dict())
        if changed_cfg:
            log.warning("resuming with a changed training config (%s)", ", ".join(changed_cfg))
        if set(changed_cfg) & {"lr", "steps", "gamma", "warmup_iters", "warmup_factor"}:
            # the schedule was changed on purpose: follow the new one from the current step
            for group in self.optimizer.param_groups:
                group["initial_lr"] = self.cfg.lr
            self.scheduler = build_scheduler(self.optimizer, self.cfg, last_step=self.step)
        self.last_ckpt = ckpt
        if self.dist.is_main:
            log.info("resumed from %s at step %d", ckpt, self.step)

    def loader(self) -> tuple[DataLoader, ResumableBatchSampler]:
        per_rank = self.cfg.batch_size // self.dist.world_size
        workers = loader_workers(self.cfg, self.dist)
        sampler = ResumableBatchSampler(
            len(self.dataset),
            per_rank,
            seed=self.cfg.seed,
            start_step=self.step,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        loader = DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            pin_memory=self.dist.device.type == "cuda",
            generator=torch.Generator(),  # keeps the loader from drawing from the global RNG
            persistent_workers=False,
            worker_init_fn=_one_thread_worker,
            prefetch_factor=4 if workers > 0 else None,
        )
        return loader, sampler

    def save(self, sampler: ResumableBatchSampler) -> Path:
        final = checkpoint_dir(self.out_dir, self.step)
        write_rank_rng(final, self.dist.rank)
        barrier(self.dist)
        if self.dist.is_main:
            write_training_checkpoint(
                final,
                model=self.dense,
                model_cfg=self.model_cfg,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                step=self.step,
                data_state=sampler.state_dict(self.step),
                train_cfg=self.cfg.to_dict(),
                keep=self.cfg.keep_checkpoints,
            )
        barrier(self.dist)
        self.last_ckpt = final
        return final

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        gen = _step_generator(self.cfg.seed, self.step, self.dist.rank)
        try:
            return self.train_model(batch.images, batch.image_sizes, batch.targets, gen)
        except ValueError as err:
            if "more than 1 value per channel" not in str(err):
                raise
            raise ValueError(
                f"BatchNorm in the heads got a single value per channel: {len(batch)} image(s) per process of "
                f"{tuple(batch.images.shape[-2:])} px make P7 1x1. Use a larger per-process batch or larger images"
            ) from err

    def evaluate(self, hook: EvalHook, metrics_path: Path) -> None:
        self.dense.eval()
        try:
            with torch.no_grad():
                metrics = hook(self.dense, self.model_cfg, self.step)
        finally:
            self.train_model.train()
        if metrics:
            with open(metrics_path, "a") as f:
                f.write(json.dumps({"step": self.step, "eval": metrics}) + "\n")

    def check_finite(self, values: torch.Tensor, names: list[str]) -> None:
        if bool(torch.isfinite(values).all()):
            return
        pairs = list(zip(names, values.tolist(), strict=True))
        bad = [f"{n}={v:.4g}" for n, v in pairs if not math.isfinite(v)]
        good = [f"{n}={v:.4g}" for n, v in pairs if math.isfinite(v)]
        where = f"last checkpoint: {self.last_ckpt}" if self.last_ckpt else "no checkpoint written yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step} (iteration {self.step + 1} of {self.cfg.max_iters}): "
            f"{', '.join(bad)} (others: {', '.join(good) or 'none'}); lr={self.scheduler.get_last_lr()[0]:.3g}. "
            f"Training stopped before the update; {where}. Try a lower --lr, clip_grad_norm, or a longer warmup."
        )


def train(
    cfg: TrainConfig,
    *,
    ann_file: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
    sources: list[DataSource] | None = None,
    out_dir: str | os.PathLike,
    data_format: str = "auto",
    resume: str | os.PathLike | None = None,
    stop_at: int | None = None,
    eval_hook: EvalHook | None = None,
    eval_every: int = 0,
    device: str | None = None,
    progress: bool = True,
    run_args: dict[str, Any] | None = None,
) -> Path:
    """Train (or continue) a TraceNet model.

    Args:
        cfg: the run's :class:`TrainConfig`.
        ann_file / images_dir / data_format: COCO or LVIS training data (see :func:`tracenet.data.load_instances`),
            one exhaustively annotated source.
        sources: instead, several sources mixed (:func:`tracenet.data.load_sources`), e.g. coco-mini train +
            coco-single with partial annotations. Evaluation sets (val.json, coco-person) are refused.
        out_dir: run folder: ``checkpoints/``, ``last_checkpoint``, ``metrics.jsonl``, ``train_config.json``,
            and at the end ``model_final.safetensors`` (a plain tracenet checkpoint).
        resume: checkpoint folder or run folder to continue from (exact continuation).
        stop_at: stop (with a checkpoint) after this many completed iterations, as if interrupted.
        eval_hook / eval_every: optional evaluation callback (see :data:`EvalHook`).
        device: "cpu", "cuda" or None (auto).
        run_args: the command-line recipe of the run, written to ``train_args.json`` beside ``train_config.json``
            once the data is accepted (``python -m tracenet.train --resume RUN`` reads it back).

    Returns:
        The exported final model path, or the last checkpoint folder when stopped early by ``stop_at``.
    """
    info = init_distributed(device)
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # LSJ batches all have one size: autotuned kernels pay off
    out = Path(out_dir)
    if sources is None:
        if ann_file is None or images_dir is None:
            raise ValueError("train() needs ann_file and images_dir, or sources")
        sources = [DataSource(Path(ann_file), Path(images_dir))]
    index = load_sources(sources, format=data_format, class_agnostic=cfg.class_agnostic)
    dataset = InstanceDataset(index, augment=cfg.augment, seed=cfg.seed)
    run = _Run(cfg, dataset, out, info)
    if resume is not None:
        run.resume(resume)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str) + "\n")
        if run_args is not None:
            (out / ARGS_FILE).write_text(json.dumps(run_args, indent=2) + "\n")
    metrics_path = out / "metrics.jsonl"
    if info.is_main and metrics_path.exists():  # drop lines an interrupted run wrote after its checkpoint
        lines = [ln for ln in metrics_path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if json.loads(ln).get("step", 0) <= run.step]
        metrics_path.write_text("".join(ln + "\n" for ln in keep))

    end = cfg.max_iters if stop_at is None else min(cfg.max_iters, stop_at)
    loader, sampler = run.loader()
    batches = iter(loader)
    run.train_model.train()
    bar = tqdm(
        total=cfg.max_iters, initial=run.step, disable=not (progress and info.is_main), dynamic_ncols=True
    )
    metrics = _MetricsLog(metrics_path, run.step)
    while run.step < end:
        batch = next(batches).to(info.device)
        losses = run.forward(batch)
        total = sum(losses.values())
        values = all_reduce_mean(torch.stack([v.detach() for v in losses.values()] + [total.detach()]), info)
        run.check_finite(values, [*losses, "loss"])
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.clip_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(run.dense.parameters(), cfg.clip_grad_norm)
            run.check_finite(norm.detach().reshape(1), ["gradient_norm"])
        lr = run.scheduler.get_last_lr()[0]
        run.optimizer.step()
        run.scheduler.step()
        run.step += 1
        bar.update(1)
        if info.is_main:
            metrics.add([*losses, "loss"], values)
            if run.step % cfg.log_every == 0 or run.step == end:
                metrics.flush(run.step, lr, bar)
        if run.step % cfg.checkpoint_every == 0 or run.step == end:
            run.save(sampler)
        if eval_hook is not None and eval_every > 0 and run.step % eval_every == 0:
            if info.is_main:
                run.evaluate(eval_hook, metrics_path)
            barrier(info)
    bar.close()
    del batches  # stops loader workers
    if run.step < cfg.max_iters:
        return run.last_ckpt  # stopped early
    final = out / "model_final.safetensors"
    if info.is_main:
        meta: dict[str, Any] = {"step": run.step}
        side = inference_max_side(cfg.augment)
        if side is not None:
            meta["max_side"] = side
        export_model(run.dense, final, cfg=run.model_cfg, fp16=cfg.export_fp16, meta=meta)
    barrier(info)
    return final
