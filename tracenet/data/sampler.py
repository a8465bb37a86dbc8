"""A data order that is a pure function of (seed, step): exact resume without saving iterator state."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["ResumableBatchSampler"]


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite stream of batches for an (optionally distributed) training run.

    The data stream is the concatenation of per-epoch permutations of ``range(num_samples)``, epoch ``e``
    shuffled by ``numpy.random.default_rng((seed, e))``. Step ``s`` consumes stream positions
    ``[s * B, (s + 1) * B)`` with ``B = batch_size * world_size``; rank ``r`` takes the ``r``-th slice of
    ``batch_size``. Each item is ``(dataset_index, stream_position)``: the position seeds that sample's
    augmentation, so the batch at any step is reproducible from ``(seed, step)`` alone and resuming only
    needs ``start_step``.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        seed: int = 0,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("ResumableBatchSampler needs at least one sample")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world_size {world_size}")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self._perm_cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """Order of the dataset in ``epoch`` (``[num_samples]`` int64)."""
        perm = self._perm_cache.get(epoch)
        if perm is None:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
            self._perm_cache = {epoch: perm}  # epochs are consumed in order: keep one
        return perm

    def batch(self, step: int) -> list[tuple[int, int]]:
        """This rank's ``(index, stream_position)`` pairs for ``step``."""
        start = step * self.batch_size * self.world_size + self.rank * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.num_samples)
            out.append((int(self.permutation(epoch)[offset]), pos))
        return out

    def state_dict(self, step: int) -> dict[str, int]:
        """What a checkpoint needs to continue this order at ``step``."""
        global_batch = self.batch_size * self.world_size
        return {
            "seed": self.seed,
            "step": int(step),
            "global_batch": global_batch,
            "samples_seen": int(step) * global_batch,
            "num_samples": self.num_samples,
        }

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1
