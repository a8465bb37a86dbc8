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
from torchvision.ops import box_iou

from tracenet.deploy.mask_stats import cell_pixel_weights, mask_area_and_cover
from tracenet.model.dense import TraceNetDense
from tracenet.model.dynamic_head import LAYER_SHAPES, split_dynamic_params
from tracenet.model.geometry import LEVELS, SIZES_OF_INTEREST, STRIDES
from tracenet.model.heads import TraceNetHead
from tracenet.model.postprocess import NMS_IOU
from tracenet.model.tap_ranker import TapRanker, candidate_features, mlp_scores
from tracenet.rft import ReceptiveFieldTracer

HEAD_KINDS = ("cls", "box", "ctr", "ctrl")
PYRAMID = tuple(f"p{level}" for level in LEVELS)


NOT_COMPUTED = -1e4  # mask logits of levels without a candidate at or above min_score (sigmoid 0)


class ExportError(ValueError):
    """The model cannot be exported as asked (names what and why)."""


class TapEncoder(nn.Module):
    """``image [1, 3, H, W]`` (normalised) -> ``(p3, p4, p5, p6, p7, mask_feats)``; ``p_l`` is
    ``[1, ch, ceil(H / 2**l) + 2 * pad, ceil(W / 2**l) + 2 * pad]``: the level map with ``pad`` zero cells on
    every side (``pad`` = half the decoder's window, so the decoder cuts its windows as plain slices, and the
    zeros are the ones the full run pads with); ``mask_feats`` ``[1, 8, ceil(H / 8), ceil(W / 8)]``."""

    def __init__(self, model: TraceNetDense, pad: int) -> None:
        super().__init__()
        self.backbone, self.fpn, self.mask_branch = model.backbone, model.fpn, model.mask_branch
        self.pad = int(pad)

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        c3, c4, c5 = self.backbone(image)
        levels = list(self.fpn(OrderedDict([("p3", c3), ("p4", c4), ("p5", c5)])).values())
        padded = [F.pad(level, (self.pad,) * 4) for level in levels]
        return (*padded, self.mask_branch(levels[0]))


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

    - ``p3 .. p7``: ``float32 [1, ch, H_l + 2 * pad, W_l + 2 * pad]``, ``pad = K // 2`` zero cells on every side;
      ``mask_feats``: ``float32 [1, 8, H_3, W_3]`` (the encoder's outputs);
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
        self.register_buffer("cell_weights", cell_pixel_weights(), persistent=False)
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
    def _windows(self, levels: list[Tensor], cells: Tensor) -> tuple[Tensor, Tensor]:
        """``[5, ch, K, K]`` windows centred on the cells, cut as slices of the levels padded by ``K // 2`` zero
        cells (:class:`TapEncoder`), and ``[5, 1, K, K]``: 1 where the window lies inside the level's map, 0 where
        the full run pads (the padding's zeros serve the first convolution; later ones need the mask)."""
        k, half = self.window, self.window // 2
        offsets = torch.arange(k, dtype=torch.int64) - half
        sizes = torch.stack([torch._shape_as_tensor(feat)[-2:] for feat in levels]) - 2 * half  # [5, 2] unpadded
        index = cells[:, :, None] + offsets  # [5, 2, K]: (rows, cols) of the unpadded map the window covers
        inside = (index >= 0) & (index < sizes[:, :, None])
        crops = [feat.narrow(2, cells[j, 0], k).narrow(3, cells[j, 1], k) for j, feat in enumerate(levels)]
        return torch.cat(crops), (inside[:, 0, :, None] & inside[:, 1, None, :])[:, None].float()

    def _tower(self, layers: nn.Module, x: Tensor, inside: Tensor, inset: int) -> tuple[Tensor, int]:
        """Run ``layers`` on windows ``x`` (inset ``inset`` cells from the full window) without padding, zeroing
        out-of-map cells before each convolution but the first (its input's out-of-map cells are the encoder's
        zero padding). The masks are ``[5, ch, k, k]``, as large as the activations, so that onnxruntime keeps the
        convolutions in its blocked layout across the multiply instead of reordering around each one."""
        for m in layers.modules() if isinstance(layers, nn.Sequential) else [layers]:
            if isinstance(m, nn.Sequential):
                continue
            if isinstance(m, nn.Conv2d):
                if inset:  # (the first convolution reads the encoder's zero padding)
                    x = x * self._channel_mask(inside, inset, m.in_channels)
                x = F.conv2d(x, m.weight, m.bias, 1, 0, m.dilation, m.groups)
                inset += m.padding[0]
            else:
                x = m(x)
        return x, inset

    def _channel_mask(self, inside: Tensor, inset: int, channels: int) -> Tensor:
        """``inside`` cropped by ``inset`` and repeated over ``channels``, made by a 1x1 convolution of ones so
        that onnxruntime keeps it (and the multiply) in its blocked layout."""
        k = self.window
        ones = torch.ones(channels, 1, 1, 1, dtype=inside.dtype)
        return F.conv2d(inside[:, :, inset:k - inset, inset:k - inset], ones)

    def _heads(self, levels: list[Tensor], cells: Tensor) -> dict[str, Tensor]:
        """``{"cls": [C, 5], "box": [4, 5], "ctr": [1, 5], "ctrl": [169, 5]}`` at the tap's cells."""
        x, inside = self._windows(levels, cells)
        head = self.head
        cls_feat, cls_in = self._tower(head.cls_tower, x, inside, 0)
        box_feat, box_in = self._tower(head.box_tower, x, inside, 0)
        outs = {"cls": self._tower(head.cls_logits, cls_feat, inside, cls_in),
                "box": self._tower(head.bbox_pred, box_feat, inside, box_in),
                "ctr": self._tower(head.ctrness, box_feat, inside, box_in),
                "ctrl": self._tower(head.controller, box_feat, inside, box_in)}
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
        # one mask per level (every class of a level shares the location and its controller output), and only for
        # levels with a candidate scoring at least min_score: no other candidate is ever chosen
        wanted = (scores >= min_score).reshape(n_cls, n_lvl).any(dim=0)  # [5]
        picked = torch.nonzero(wanted).reshape(-1)  # [E]
        locations = torch.stack([xs, ys], dim=1)
        computed = level_mask_logits(mask_feats, g["ctrl"].t().index_select(0, picked),
                                     locations.index_select(0, picked), picked)  # [E, H_3, W_3]
        blank = torch.full((n_lvl, mask_feats.shape[2], mask_feats.shape[3]), NOT_COMPUTED)  # [5, H_3, W_3]
        level_masks = blank.index_put((picked,), computed)
        mask_logits = level_masks.repeat(n_cls, 1, 1) if n_cls > 1 else level_masks  # [K, H_3, W_3]
        order, keep = _greedy_nms(scores, boxes)
        outputs = [scores, boxes, class_ids, level_index + LEVELS[0], order, keep]
        chosen = order[0]
        if self.ranker is not None:
            ranks = self._rank(scores, cls_p.reshape(-1), ctr_p.repeat(n_cls), boxes, computed, picked, cells,
                               net_hw, min_score)
            outputs.append(ranks)
            chosen = ranks.argmax()
        return (*outputs, mask_logits, chosen, mask_logits[chosen])

    def _rank(self, scores: Tensor, cls_probs: Tensor, ctr_probs: Tensor, boxes: Tensor, computed: Tensor,
              picked: Tensor, cells: Tensor, net_hw: Tensor, min_score: Tensor) -> Tensor:
        """The tap ranker's score per candidate (``-inf`` below ``min_score``), from the same features as
        :meth:`tracenet.predictor.TapSegmenter.candidate_features`; ``computed [E, H_3, W_3]`` are the mask
        logits of levels ``picked [E]`` (those with a candidate at or above ``min_score``)."""
        eligible = scores >= min_score
        areas_e, covers_e = mask_area_and_cover(computed, net_hw, cells[0], self.cell_weights)
        n_lvl = len(LEVELS)
        areas = torch.zeros(n_lvl, dtype=torch.float32).index_put((picked,), areas_e).repeat(self.num_classes)
        covers = torch.zeros(n_lvl, dtype=torch.bool).index_put((picked,), covers_e).repeat(self.num_classes)
        feats = candidate_features(scores=scores, cls_probs=cls_probs, ctr_probs=ctr_probs, boxes=boxes,
                                   levels=list(LEVELS) * self.num_classes, mask_areas=areas, covers=covers,
                                   eligible=eligible)
        ranker = self.ranker
        ranks = mlp_scores(feats, ranker.mean, ranker.std, ranker.layers)
        return torch.where(eligible, ranks, torch.full_like(ranks, -torch.inf))


def level_mask_logits(mask_feats: Tensor, params: Tensor, locations_xy: Tensor, levels: Tensor) -> Tensor:
    """:func:`tracenet.model.dynamic_mask_logits` for ``E`` candidates (``params [E, 169]``, ``locations_xy [E, 2]``
    in network pixels, ``levels [E]`` level index 0..4 for P3..P7) on ``mask_feats [1, 8, H_3, W_3]``, as matrix
    products for onnxruntime. The relative coordinate ``(x_n - x_px) / soi_n`` is split into a per-candidate
    constant, folded into layer 1's bias, and ``x_px`` times a per-candidate weight, so all candidates share one
    ``[10, H_3 * W_3]`` input (equal up to float32 summation order). Returns ``[E, H_3, W_3]``."""
    n, rows, cols = params.shape[0], mask_feats.shape[-2], mask_feats.shape[-1]
    weights, biases = split_dynamic_params(params)
    w1 = weights[0].reshape(n, LAYER_SHAPES[0][1], LAYER_SHAPES[0][0])  # [E, 8, 10]: 8 features, then x, y
    soi = torch.tensor(SIZES_OF_INTEREST, dtype=torch.float32).index_select(0, levels)[:, None, None]  # [E, 1, 1]
    s = STRIDES[0]
    px = (torch.arange(cols, dtype=torch.float32) * s + s // 2)[None, :].expand(rows, cols).reshape(1, -1)
    py = (torch.arange(rows, dtype=torch.float32) * s + s // 2)[:, None].expand(rows, cols).reshape(1, -1)
    inputs = torch.cat([mask_feats.reshape(mask_feats.shape[1], rows * cols), px, py])  # [10, HW]
    w_xy = w1[:, :, -2:] / soi  # [E, 8, 2]
    w1 = torch.cat([w1[:, :, :-2], -w_xy], dim=2)
    b1 = biases[0].reshape(n, LAYER_SHAPES[0][1]) + (w_xy * locations_xy[:, None, :]).sum(dim=2)  # [E, 8]
    # layer 1 as one 2-D product for all candidates ([E * 8, 10] @ [10, HW]) plus a bias column
    x = torch.relu(w1.reshape(n * LAYER_SHAPES[0][1], LAYER_SHAPES[0][0]) @ inputs + b1.reshape(-1, 1))
    x = x.reshape(n, LAYER_SHAPES[0][1], rows * cols)  # [E, 8, HW]
    x = torch.relu(weights[1].reshape(n, LAYER_SHAPES[1][1], LAYER_SHAPES[1][0]) @ x
                   + biases[1].reshape(n, LAYER_SHAPES[1][1], 1))  # explicit sizes: E may be 0
    x = weights[2].reshape(n, 1, LAYER_SHAPES[2][0]) @ x + biases[2].reshape(n, 1, 1)
    return x.reshape(n, rows, cols)


def _greedy_nms(scores: Tensor, boxes: Tensor, iou_threshold: float = NMS_IOU) -> tuple[Tensor, Tensor]:
    """Greedy NMS as ``torchvision.ops.nms`` computes it, as plain tensor ops that export for any ``K``:
    ``order [K]`` by descending score and ``keep bool [K]`` per position of ``order``."""
    order = torch.topk(scores, scores.shape[0]).indices  # sorted, descending
    b = boxes[order]
    iou = box_iou(b, b)  # [K, K]
    k = scores.shape[0]
    later = torch.arange(k)[None, :] > torch.arange(k)[:, None]
    suppresses = (later & (iou > iou_threshold)).float()  # [K, K]: i (if kept) suppresses j
    keep = torch.ones(k, dtype=torch.bool)
    # greedy NMS as a fixed point: position i depends only on positions before it, so after i passes it is
    # final; K - 1 passes settle all K (one vectorised step each instead of a loop over pairs)
    for _ in range(k - 1):
        keep = (keep.float() @ suppresses) == 0
    return order, keep
