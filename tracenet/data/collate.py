"""Batch collation: pad images (and masks) to a common size that is a multiple of 32."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tracenet.data.transforms import PAD_VALUE

__all__ = ["Batch", "collate"]


@dataclass
class Batch:
    """A padded batch.

    images: ``[B, 3, H, W]`` uint8 RGB, H and W multiples of ``size_divisibility``, padded bottom/right with
    the mean colour. image_sizes: ``[B, 2]`` int64 ``(h, w)`` of the real content of each image (top-left).
    targets: per image, ``boxes [N, 4]`` float32 (x0, y0, x1, y1) px, ``classes [N]`` int64,
    ``masks [N, H, W]`` bool and ``ignore [H, W]`` bool (both padded to the batch size), ``image_id``.
    """

    images: torch.Tensor
    image_sizes: torch.Tensor
    targets: list[dict[str, torch.Tensor]]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            images=self.images.to(device, non_blocking=True),
            image_sizes=self.image_sizes.to(device),
            targets=[{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in self.targets],
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)``."""
        return Batch(
            images=self.images.pin_memory(),
            image_sizes=self.image_sizes,
            targets=[{k: v.pin_memory() for k, v in t.items()} for t in self.targets],
        )

    def __len__(self) -> int:
        return self.images.shape[0]


def _pad_to(t: torch.Tensor, h: int, w: int, value) -> torch.Tensor:
    out = t.new_full((*t.shape[:-2], h, w), value)
    out[..., : t.shape[-2], : t.shape[-1]] = t
    return out


def collate(items: list[tuple[torch.Tensor, dict[str, torch.Tensor]]], size_divisibility: int = 32) -> Batch:
    """Collate ``(image [H, W, 3] uint8, target)`` items (as :class:`tracenet.data.InstanceDataset` yields)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    d = max(1, int(size_divisibility))
    hmax = max(img.shape[0] for img, _ in items)
    wmax = max(img.shape[1] for img, _ in items)
    hp, wp = math.ceil(hmax / d) * d, math.ceil(wmax / d) * d
    images = torch.empty((len(items), 3, hp, wp), dtype=torch.uint8)
    images[:] = torch.tensor(PAD_VALUE, dtype=torch.uint8).view(1, 3, 1, 1)
    sizes, targets = [], []
    for b, (img, tgt) in enumerate(items):
        h, w = img.shape[:2]
        images[b, :, :h, :w] = img.permute(2, 0, 1)
        valid = tgt.get("valid_size", torch.tensor([h, w]))
        sizes.append([min(int(valid[0]), h), min(int(valid[1]), w)])
        t = dict(tgt)
        t["masks"] = _pad_to(tgt["masks"], hp, wp, False)
        t["ignore"] = _pad_to(tgt["ignore"], hp, wp, False)
        t.pop("valid_size", None)
        targets.append(t)
    return Batch(images=images, image_sizes=torch.tensor(sizes, dtype=torch.int64), targets=targets)
