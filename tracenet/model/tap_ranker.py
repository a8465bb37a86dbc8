"""Tap ranker: choose which of a tap's ``5 x C`` candidates is the tapped object.

The paper keeps the top-1 candidate of NMS over ``sigmoid(cls) * sigmoid(ctr)``. Those scores come from FCOS
training, which asks "is there an object centred near here?", not "which object did the user tap?": a tap on a
cup on a table is answered by the table's confident P5 candidate. The ranker re-scores every candidate from
what the traced forward pass already gives (scores, box, level, and its own mask) and is fitted on training
images to pick the candidate with the best IoU (``tracenet.train.tap_ranker``).

It is a tiny MLP (or linear model) on :data:`FEATURE_NAMES`; its weights live as plain numbers in the checkpoint's
JSON metadata (key ``"tap_ranker"``), so loading it never unpickles anything. A checkpoint without one keeps the
paper's rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tracenet.model.geometry import LEVELS

__all__ = ["FEATURE_NAMES", "TapRanker", "candidate_features", "logit", "mlp_scores"]

FEATURE_NAMES = (
    "logit_score",        # logit of sigmoid(cls) * sigmoid(ctr)
    "logit_cls",          # logit of sigmoid(cls) for the candidate's class
    "logit_ctr",          # logit of sigmoid(ctr)
    "log_box_w",          # log box width, network-input pixels (>= 1)
    "log_box_h",          # log box height
    "log1p_mask_area",    # log(1 + mask pixels at network-input size)
    "covers_tap",         # 1 if the mask reaches the tap's 8x8 P3 cell, else 0
    "logit_score_gap",    # logit_score minus the best logit_score among this tap's candidates (<= 0)
) + tuple(f"level_{lvl}" for lvl in LEVELS)  # one-hot pyramid level

_EPS = 1e-6


def logit(p: Tensor) -> Tensor:
    """``log(p / (1 - p))`` with ``p`` clamped to ``[1e-6, 1 - 1e-6]``."""
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


def candidate_features(
    scores: Tensor,
    cls_probs: Tensor,
    ctr_probs: Tensor,
    boxes: Tensor,
    levels: Sequence[int],
    mask_areas: Tensor,
    covers: Tensor,
    eligible: Tensor | None = None,
) -> Tensor:
    """Features of one tap's ``K`` candidates.

    Args:
        scores, cls_probs, ctr_probs: ``float [K]`` in [0, 1].
        boxes: ``float [K, 4]`` ``(x0, y0, x1, y1)`` in network-input pixels.
        levels: ``K`` pyramid levels (3..7).
        mask_areas: ``[K]`` mask pixel counts at network-input size.
        covers: ``bool [K]``, the mask reaches the tap's P3 cell.
        eligible: ``bool [K]``, the candidates the ranker chooses among (the score gap is taken to the best of
            them); ``None``: all ``K`` (the predictor passes only eligible ones; the ONNX decoder passes all).

    Returns:
        ``float32 [K, len(FEATURE_NAMES)]``.
    """
    ls = logit(scores.float())
    w = (boxes[:, 2] - boxes[:, 0]).float().clamp(min=1.0)
    h = (boxes[:, 3] - boxes[:, 1]).float().clamp(min=1.0)
    onehot = torch.zeros(len(levels), len(LEVELS))
    for k, lvl in enumerate(levels):
        onehot[k, LEVELS.index(int(lvl))] = 1.0
    cols = [
        ls,
        logit(cls_probs.float()),
        logit(ctr_probs.float()),
        torch.log(w),
        torch.log(h),
        torch.log1p(mask_areas.float()),
        covers.float(),
        ls - (ls.max() if eligible is None else torch.where(eligible, ls, torch.full_like(ls, -torch.inf)).max())
        if len(ls) else ls,
    ]
    return torch.cat([torch.stack(cols, dim=1), onehot], dim=1)


def mlp_scores(features: Tensor, mean: Tensor, std: Tensor, layers: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """``features [..., F]`` -> ``[...]``: normalise, then linear layers with ReLU between them."""
    x = (features.float() - mean) / std
    for i, (w, b) in enumerate(layers):
        x = x @ w.t() + b
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x[..., 0]


@dataclass
class TapRanker:
    """Scores candidates: ``MLP((features - mean) / std)``; higher is more likely the tapped object.

    Attributes:
        mean, std: ``float32 [F]`` feature normalisation.
        layers: ``[(W [out, in], b [out]), ...]``, ReLU between layers, last ``out`` = 1.
        info: how it was fitted (data, objective, metrics), kept with the checkpoint.
    """

    mean: Tensor
    std: Tensor
    layers: list[tuple[Tensor, Tensor]]
    info: dict[str, Any]

    def __post_init__(self) -> None:
        n = len(FEATURE_NAMES)
        if self.mean.shape != (n,) or self.std.shape != (n,):
            raise ValueError(f"tap ranker: mean/std must have {n} entries ({FEATURE_NAMES})")
        if not self.layers or self.layers[0][0].shape[1] != n or self.layers[-1][0].shape[0] != 1:
            raise ValueError(f"tap ranker: layers must map {n} features to 1 score")
        for (w1, _), (w2, _) in zip(self.layers, self.layers[1:]):
            if w1.shape[0] != w2.shape[1]:
                raise ValueError("tap ranker: consecutive layer shapes do not fit")
        for w, b in self.layers:
            if b.shape != (w.shape[0],):
                raise ValueError("tap ranker: a bias does not fit its weight")
        if not all(torch.isfinite(t).all() for t in [self.mean, self.std, *(x for wb in self.layers for x in wb)]):
            raise ValueError("tap ranker: weights contain NaN or inf")

    def __call__(self, features: Tensor) -> Tensor:
        """``features [..., F]`` -> scores ``[...]`` (unnormalised logits)."""
        return mlp_scores(features, self.mean, self.std, self.layers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (stored in checkpoint metadata)."""
        return {
            "features": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "layers": [{"weight": w.tolist(), "bias": b.tolist()} for w, b in self.layers],
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TapRanker:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming what is wrong for a malformed entry."""
        try:
            if list(d["features"]) != list(FEATURE_NAMES):
                raise ValueError(f"features {d['features']} differ from this version's {list(FEATURE_NAMES)}")
            layers = [
                (torch.tensor(layer["weight"], dtype=torch.float32), torch.tensor(layer["bias"], dtype=torch.float32))
                for layer in d["layers"]
            ]
            return cls(
                mean=torch.tensor(d["mean"], dtype=torch.float32),
                std=torch.tensor(d["std"], dtype=torch.float32).clamp(min=_EPS),
                layers=layers,
                info=dict(d.get("info", {})),
            )
        except (KeyError, TypeError, IndexError) as err:
            raise ValueError(f"malformed tap ranker entry in checkpoint metadata: {err!r}") from err

    @property
    def hidden(self) -> int:
        """Width of the hidden layer (0 for a linear ranker)."""
        return 0 if len(self.layers) == 1 else int(self.layers[0][0].shape[0])
