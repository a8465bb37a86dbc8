"""The two networks an export writes, as PyTorch modules: the image encoder and the tap decoder.

``TapEncoder``: normalised image ``[1, 3, H, W]`` -> P3..P7 (what the heads read) and ``mask_feats``.
``TapDecoder``: those maps + the tap's aligned cells -> the tap's ``5 x C`` candidates, their mask logits, the
paper's NMS order and (with a tap ranker) the ranker's scores, and the chosen candidate's mask logits.

The decoder runs the shared cls / box towers on a ``K x K`` window of each level around the tap's cell, cut at
a run-time offset. ``K`` comes from the Receptive Field Tracer's plan for the heads (:func:`head_window`). The
window's cells outside the map, and every intermediate layer's cells outside the map, are zeroed before each
convolution: exactly the zeros the full run's padding supplies, so the centre value equals the full run's.
Convolutions inside the window run without padding, so each layer computes only what the next one needs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tracenet.model.dense import TraceNetDense
from tracenet.model.dynamic_head import dynamic_mask_logits, upsample_mask_probs
from tracenet.model.geometry import LEVELS, STRIDES
from tracenet.model.heads import TraceNetHead
from tracenet.model.postprocess import NMS_IOU
from tracenet.model.tap_ranker import TapRanker, candidate_features, mlp_scores
from tracenet.rft import ReceptiveFieldTracer

HEAD_KINDS = ("cls", "box", "ctr", "ctrl")
PYRAMID = tuple(f"p{level}" for level in LEVELS)


class ExportError(ValueError):
    """The model cannot be exported as asked (names what and why)."""


class TapEncoder(nn.Module):
    """``image [1, 3, H, W]`` (normalised) -> ``(p3, p4, p5, p6, p7, mask_feats)``; ``p_l`` is
    ``[1, ch, ceil(H / 2**l), ceil(W / 2**l)]``, ``mask_feats`` ``[1, 8, ceil(H / 8), ceil(W / 8)]``."""

    def __init__(self, model: TraceNetDense) -> None:
        super().__init__()
        self.backbone, self.fpn, self.mask_branch = model.backbone, model.fpn, model.mask_branch

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        c3, c4, c5 = self.backbone(image)
        levels = list(self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)])).values())
        return (*levels, self.mask_branch(levels[0]))


class _LevelHeads(nn.Module):
    """The heads on one level, with an identity node ``window`` on their input whose planned window is the
    part of the level map they read (what :func:`head_window` asks the tracer for)."""

    def __init__(self, head: TraceNetHead, index: int) -> None:
        super().__init__()
        self.window = nn.Identity()
        self.head = head
        self.index = index

    def forward(self, feat: Tensor) -> dict[str, Tensor]:
        return self.head.level(self.window(feat), self.index)


def head_window(head: TraceNetHead, channels: int, index: int) -> int:
    """Side ``K`` of the square window of level ``3 + index`` that the heads need for one output cell, read
    from the Receptive Field Tracer's plan for a query at the centre of a map large enough not to clip it."""
    tracer = ReceptiveFieldTracer(_LevelHeads(head, index).eval())
    n = 33
    while n <= 4097:
        c = n // 2
        plan = tracer.plan((1, channels, n, n), {kind: [(c, c)] for kind in HEAD_KINDS})
        rect = next(row["rect"] for row in plan.node_table() if row["node"] == "window")
        r0, r1, c0, c1 = rect
        if r0 > 0 and c0 > 0 and r1 < n and c1 < n:
            if (c - r0, r1 - 1 - c, c - c0, c1 - 1 - c) != (c - r0,) * 4:
                raise ExportError(f"the heads' window on level {3 + index} is not centred on the tap: {rect}")
            return r1 - r0
        n = 2 * n + 1
    raise ExportError(f"the heads on level {3 + index} read more than a 4097-cell window; not exportable")


def _same_padding_conv(conv: nn.Conv2d, where: str) -> int:
    """Radius of a stride-1 conv padded to keep its grid (what the towers use); anything else is refused."""
    k, d, p = conv.kernel_size[0], conv.dilation[0], conv.padding
    if (conv.stride != (1, 1) or conv.kernel_size[0] != conv.kernel_size[1] or conv.dilation[0] != conv.dilation[1]
            or p != (d * (k - 1) // 2,) * 2 or conv.padding_mode != "zeros"):
        raise ExportError(f"{where}: only stride-1 convolutions padded to keep the grid can be windowed, got {conv}")
    return p[0]


class TapDecoder(nn.Module):
    """Tap decoder; see the module docstring. Inputs (all for one image):

    - ``p3 .. p7``: ``float32 [1, ch, H_l, W_l]``; ``mask_feats``: ``float32 [1, 8, H_3, W_3]`` (the encoder's);
    - ``cells``: ``int64 [5, 2]``, the tap's aligned ``(row, col)`` on P3..P7;
    - ``net_hw``: ``int64 [2]``, the network input's ``(H, W)``; ``min_score``: ``float32 []``.

    Outputs (``K = 5 * C`` candidates, candidate ``k`` is class ``k // 5`` on level ``3 + k % 5``): ``scores [K]``,
    ``boxes [K, 4]`` (x0, y0, x1, y1 in network pixels), ``class_ids [K]``, ``levels [K]``, ``nms_order [K]``
    (candidates by descending score), ``nms_keep bool [K]`` (per position of ``nms_order``: survives NMS at 0.6),
    ``ranker_scores [K]`` (only with a ranker; ``-inf`` for candidates below ``min_score``), ``mask_logits
    [K, H_3, W_3]``, ``chosen`` (index of the selection's first choice) and ``chosen_mask_logits [H_3, W_3]``.
    """

    def __init__(self, head: TraceNetHead, *, channels: int, num_classes: int, ranker: TapRanker | None) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.windows = [head_window(head, channels, i) for i in range(len(LEVELS))]
        self.window = max(self.windows)
        self.ranker = ranker
        reach = self._reach()
        if 2 * reach + 1 > self.window:
            raise ExportError(f"the tracer's window {self.window} is smaller than the heads' reach {2 * reach + 1}")

    def _reach(self) -> int:
        reach = {}
        for name in ("cls_tower", "box_tower"):
            reach[name] = sum(_same_padding_conv(m, f"head.{name}") for m in getattr(self.head, name).modules()
                              if isinstance(m, nn.Conv2d))
        tail = max(_same_padding_conv(getattr(self.head, n), f"head.{n}")
                   for n in ("cls_logits", "bbox_pred", "ctrness", "controller"))
        return max(reach.values()) + tail

    # -------------------------------------------------------------------------------------------------- heads
    def _windows(self, levels: list[Tensor], cells: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[5, ch, K, K]`` windows centred on the cells (clamped reads), and ``[5, K]`` row / column masks
        (1 inside the level's map, 0 where the full run would pad)."""
        k, half = self.window, self.window // 2
        offsets = torch.arange(k, dtype=torch.int64) - half
        crops, row_ok, col_ok = [], [], []
        for j, feat in enumerate(levels):
            h, w = feat.shape[-2], feat.shape[-1]
            rows, cols = cells[j, 0] + offsets, cells[j, 1] + offsets
            row_ok.append(((rows >= 0) & (rows < h)).float())
            col_ok.append(((cols >= 0) & (cols < w)).float())
            rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
            crops.append(feat[0].index_select(1, rows).index_select(2, cols))
        return torch.stack(crops), torch.stack(row_ok), torch.stack(col_ok)

    def _tower(self, layers: nn.Module, x: Tensor, row_ok: Tensor, col_ok: Tensor, inset: int) -> tuple[Tensor, int]:
        """Run ``layers`` on windows ``x`` (inset ``inset`` cells from the full window) without padding, zeroing
        out-of-map cells before each convolution."""
        k = self.window
        for m in layers.modules() if isinstance(layers, nn.Sequential) else [layers]:
            if isinstance(m, nn.Sequential):
                continue
            if isinstance(m, nn.Conv2d):
                r = row_ok[:, inset:k - inset]
                c = col_ok[:, inset:k - inset]
                x = x * r[:, None, :, None] * c[:, None, None, :]
                x = F.conv2d(x, m.weight, m.bias, 1, 0, m.dilation, m.groups)
                inset += m.padding[0]
            else:
                x = m(x)
        return x, inset

    def _heads(self, levels: list[Tensor], cells: Tensor) -> dict[str, Tensor]:
        """``{"cls": [C, 5], "box": [4, 5], "ctr": [1, 5], "ctrl": [169, 5]}`` at the tap's cells."""
        x, row_ok, col_ok = self._windows(levels, cells)
        head = self.head
        cls_feat, cls_in = self._tower(head.cls_tower, x, row_ok, col_ok, 0)
        box_feat, box_in = self._tower(head.box_tower, x, row_ok, col_ok, 0)
        outs = {"cls": self._tower(head.cls_logits, cls_feat, row_ok, col_ok, cls_in),
                "box": self._tower(head.bbox_pred, box_feat, row_ok, col_ok, box_in),
                "ctr": self._tower(head.ctrness, box_feat, row_ok, col_ok, box_in),
                "ctrl": self._tower(head.controller, box_feat, row_ok, col_ok, box_in)}
        centre = {}
        for kind, (t, inset) in outs.items():
            mid = (self.window - 2 * inset - 1) // 2
            centre[kind] = t[:, :, mid, mid]  # [5, channels]
        scales = torch.stack([s.scale for s in head.scales]).reshape(-1, 1)
        strides = torch.tensor(head.strides, dtype=torch.float32).reshape(-1, 1)
        centre["box"] = F.relu(centre["box"] * scales) * strides
        return {kind: t.t() for kind, t in centre.items()}

    # ---------------------------------------------------------------------------------------------- selection
    def forward(self, p3: Tensor, p4: Tensor, p5: Tensor, p6: Tensor, p7: Tensor, mask_feats: Tensor,
                cells: Tensor, net_hw: Tensor, min_score: Tensor) -> tuple[Tensor, ...]:
        g = self._heads([p3, p4, p5, p6, p7], cells)
        n_cls, n_lvl = self.num_classes, len(LEVELS)
        cls_p, ctr_p = g["cls"].sigmoid(), g["ctr"].sigmoid()[0]  # [C, 5], [5]
        scores = (cls_p * ctr_p[None]).reshape(-1)  # [K], k = class * 5 + j
        strides = torch.tensor(STRIDES, dtype=torch.int64)
        xs = (cells[:, 1] * strides + strides // 2).float()
        ys = (cells[:, 0] * strides + strides // 2).float()
        left, top, right, bottom = g["box"][0], g["box"][1], g["box"][2], g["box"][3]
        boxes = torch.stack([xs - left, ys - top, xs + right, ys + bottom], dim=1).repeat(n_cls, 1)  # [K, 4]
        level_index = torch.arange(n_lvl, dtype=torch.int64).repeat(n_cls)
        class_ids = torch.arange(n_cls, dtype=torch.int64).repeat_interleave(n_lvl)
        locs = torch.stack([xs, ys], dim=1).repeat(n_cls, 1)
        params = g["ctrl"].t().repeat(n_cls, 1)  # [K, 169]
        mask_logits = dynamic_mask_logits(mask_feats, params, torch.zeros_like(level_index), locs, level_index)
        order, keep = _greedy_nms(scores, boxes)
        outputs = [scores, boxes, class_ids, level_index + LEVELS[0], order, keep]
        chosen = order[0]
        if self.ranker is not None:
            ranks = self._rank(scores, cls_p.reshape(-1), ctr_p.repeat(n_cls), boxes, mask_logits, cells, net_hw,
                               min_score)
            outputs.append(ranks)
            chosen = ranks.argmax()
        return (*outputs, mask_logits, chosen, mask_logits[chosen])

    def _rank(self, scores: Tensor, cls_probs: Tensor, ctr_probs: Tensor, boxes: Tensor, mask_logits: Tensor,
              cells: Tensor, net_hw: Tensor, min_score: Tensor) -> Tensor:
        """The tap ranker's score per candidate (``-inf`` below ``min_score``), from the same features as
        :meth:`tracenet.predictor.TapSegmenter.candidate_features`."""
        # masks at network size only for the candidates the ranker chooses among (the full-resolution
        # upsampling is most of the decoder's work); the others keep area 0 / covers 0 and rank -inf
        eligible = scores >= min_score
        picked = torch.nonzero(eligible).reshape(-1)  # [E]
        grid_h, grid_w = mask_logits.shape[-2], mask_logits.shape[-1]
        probs = upsample_mask_probs_dynamic(mask_logits.index_select(0, picked), grid_h, grid_w)  # [E, 8H_3, 8W_3]
        inside = ((torch.arange(grid_h * 8) < net_hw[0])[:, None] & (torch.arange(grid_w * 8) < net_hw[1])[None, :])
        masks = (probs > 0.5) & inside[None]  # the top-left H x W of the grid's pixels
        s = STRIDES[0]
        cell = torch.arange(s, dtype=torch.int64)
        cell_rows = (cells[0, 0] * s + cell).clamp(max=net_hw[0] - 1)
        cell_cols = (cells[0, 1] * s + cell).clamp(max=net_hw[1] - 1)
        covers_e = masks.index_select(1, cell_rows).index_select(2, cell_cols).flatten(1).any(dim=1)
        areas = torch.zeros_like(scores).scatter(0, picked, masks.flatten(1).sum(1).float())
        covers = torch.zeros_like(eligible).scatter(0, picked, covers_e)
        feats = candidate_features(scores=scores, cls_probs=cls_probs, ctr_probs=ctr_probs, boxes=boxes,
                                   levels=list(LEVELS) * self.num_classes, mask_areas=areas, covers=covers,
                                   eligible=eligible)
        ranker = self.ranker
        ranks = mlp_scores(feats, ranker.mean, ranker.std, ranker.layers)
        return torch.where(eligible, ranks, torch.full_like(ranks, -torch.inf))


def upsample_mask_probs_dynamic(logits: Tensor, grid_h: int, grid_w: int) -> Tensor:
    """:func:`tracenet.model.upsample_mask_probs` without the final crop (the grid's ``8 * H_3 x 8 * W_3``)."""
    return upsample_mask_probs(logits, (grid_h * 8, grid_w * 8))


def _greedy_nms(scores: Tensor, boxes: Tensor, iou_threshold: float = NMS_IOU) -> tuple[Tensor, Tensor]:
    """Greedy NMS as ``torchvision.ops.nms`` computes it, unrolled over the fixed ``K`` candidates so it exports
    as plain tensor ops: ``order [K]`` by descending score and ``keep bool [K]`` per position of ``order``."""
    order = torch.topk(scores, scores.shape[0]).indices  # sorted, descending
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    x0 = torch.maximum(b[:, None, 0], b[None, :, 0])
    y0 = torch.maximum(b[:, None, 1], b[None, :, 1])
    x1 = torch.minimum(b[:, None, 2], b[None, :, 2])
    y1 = torch.minimum(b[:, None, 3], b[None, :, 3])
    inter = (x1 - x0).clamp(min=0) * (y1 - y0).clamp(min=0)
    iou = inter / (area[:, None] + area[None, :] - inter)
    k = scores.shape[0]
    later = torch.arange(k)[None, :] > torch.arange(k)[:, None]
    keep = torch.ones(k, dtype=torch.bool)
    for i in range(k):
        keep = keep & ~(keep[i] & later[i] & (iou[i] > iou_threshold))
    return order, keep
