"""Partial annotations (coco-single): unlisted objects give no negative classification loss; listed objects
train exactly as in an exhaustive image; an exhaustive image still gives background loss. Plus the data
sources that mix such a set with coco-mini, and the refusal of evaluation sets."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from tests.data.synth import make_shapes_dataset
from tracenet.data import DataSource, EvalOnlyDataError, InstanceDataset, collate, load_sources
from tracenet.data.sources import preset_sources, source_from_folder
from tracenet.model.geometry import LEVELS, pyramid_hw
from tracenet.train import compute_losses, train_preset
from tracenet.train.command import add_arguments, run
from tracenet.train.targets import IGNORE, assign_targets

HW = (128, 128)
LISTED = (8, 8, 48, 48)  # (x0, y0, x1, y1) of the annotated object
UNLISTED = (72, 72, 120, 120)  # an object in the photo that the annotation does not list


def _box_mask(box) -> torch.Tensor:
    m = torch.zeros(HW, dtype=torch.bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def _target(exhaustive: bool) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([LISTED], dtype=torch.float32),
        "classes": torch.tensor([0]),
        "masks": _box_mask(LISTED)[None],
        "ignore": torch.zeros(HW, dtype=torch.bool),
        "exhaustive": torch.tensor(exhaustive),
    }


def _outputs(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random dense-network outputs for one 128x128 image, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for level, (h, w) in zip(LEVELS, pyramid_hw(HW), strict=True):
        for kind, ch in (("cls", 1), ("box", 4), ("ctr", 1), ("ctrl", 169)):
            t = torch.randn((1, ch, h, w), generator=g) * (0.1 if kind == "ctrl" else 1.0)
            out[f"{kind}_p{level}"] = (t.abs() * 10 if kind == "box" else t).requires_grad_()
    out["mask_feats"] = torch.randn((1, 8, *pyramid_hw(HW)[0]), generator=g).requires_grad_()
    return out


def _losses_and_cls_grad(exhaustive: bool):
    out = _outputs()
    losses = compute_losses(
        out, torch.tensor([HW]), [_target(exhaustive)], generator=torch.Generator().manual_seed(0)
    )
    grad = torch.autograd.grad(losses["loss_cls"], out["cls_p3"], retain_graph=True)[0][0, 0]  # [16, 16]
    return losses, grad


def _p3_cells(box) -> tuple[slice, slice]:
    """P3 grid (row, col) slices whose FCOS locations (col * 8 + 4, row * 8 + 4) lie inside ``box``."""
    x0, y0, x1, y1 = box
    return slice((y0 - 4 + 7) // 8, (y1 - 4 + 7) // 8), slice((x0 - 4 + 7) // 8, (x1 - 4 + 7) // 8)


def test_unlisted_object_gives_no_classification_loss_in_a_partial_image():
    partial, g_partial = _losses_and_cls_grad(exhaustive=False)
    full, g_full = _losses_and_cls_grad(exhaustive=True)
    rows, cols = _p3_cells(UNLISTED)
    # exhaustive image: the unlisted object's locations are background and are pushed down
    assert (g_full[rows, cols] > 0).all()
    # partial image: not a single location outside the listed object's positives gets any gradient
    tg = assign_targets(pyramid_hw(HW), torch.tensor([HW]), [_target(False)])
    p3 = tg.labels[0, : 16 * 16].view(16, 16)
    assert (p3[rows, cols] == IGNORE).all()
    assert torch.equal(g_partial[p3 < 0], torch.zeros_like(g_partial[p3 < 0]))
    assert (g_partial[p3 >= 0] != 0).all() and int((p3 >= 0).sum()) == 9  # the listed object's 3x3 centre
    # the listed object trains identically: same positives, same box / centerness / mask losses
    tg_full = assign_targets(pyramid_hw(HW), torch.tensor([HW]), [_target(True)])
    assert torch.equal(tg.labels >= 0, tg_full.labels >= 0) and torch.equal(tg.reg, tg_full.reg)
    for key in ("loss_box", "loss_ctr", "loss_mask"):
        assert torch.equal(partial[key], full[key]), key
    # and the partial image's classification loss is only that of its positives
    assert 0 < partial["loss_cls"].item() < full["loss_cls"].item()


def test_ignore_unlisted_off_treats_a_partial_image_as_exhaustive():
    cfg = train_preset("smoke").targets
    cfg.ignore_unlisted = False
    a = assign_targets(pyramid_hw(HW), torch.tensor([HW]), [_target(False)], cfg)
    b = assign_targets(pyramid_hw(HW), torch.tensor([HW]), [_target(True)], cfg)
    assert torch.equal(a.labels, b.labels)


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    full = make_shapes_dataset(tmp_path_factory.mktemp("full"), n_images=4, size=64, seed=1)
    part_root = tmp_path_factory.mktemp("part")
    ann, images = make_shapes_dataset(part_root, n_images=3, size=64, seed=2, crowd=False)
    single = ann.rename(ann.with_name("single.json"))  # a folder like coco-single: one JSON, not train.json
    return full, (part_root, single, images)


def test_sources_mix_and_the_flag_reaches_the_batch(two_sources):
    (ann, images), (part_root, single, part_images) = two_sources
    src = source_from_folder(part_root, exhaustive=False)
    assert src == DataSource(single, part_images, exhaustive=False)
    index = load_sources([DataSource(ann, images), src], class_agnostic=True)
    assert len(index) == 7 and [r.exhaustive for r in index.images] == [True] * 4 + [False] * 3
    cfg = train_preset("smoke").augment
    cfg.copy_paste_prob = 1.0  # a pasted partner never changes the destination's flag
    ds = InstanceDataset(index, augment=cfg, seed=0)
    batch = collate([ds[(i, i)] for i in range(7)])
    assert [bool(t["exhaustive"]) for t in batch.targets] == [True] * 4 + [False] * 3


def test_eval_sets_are_refused(tmp_path, two_sources):
    (ann, images), _ = two_sources
    for name in ("val.json", "person.json"):
        (tmp_path / name).write_text(ann.read_text())
        with pytest.raises(EvalOnlyDataError, match="evaluation set"):
            load_sources([DataSource(tmp_path / name, images)])
    person = tmp_path / "coco-person"
    person.mkdir()
    (person / "any.json").write_text(ann.read_text())
    with pytest.raises(EvalOnlyDataError, match="coco-person"):
        load_sources([DataSource(person / "any.json", images)])
    assert [s.ann_file.name for s in preset_sources("coco-mini+single", tmp_path)] == ["train.json", "single.json"]
    assert [s.exhaustive for s in preset_sources("coco-mini+single", tmp_path)] == [True, False]


def test_cli_trains_on_two_sources_and_refuses_val(two_sources, tmp_path, capsys):
    (ann, images), (part_root, _, _) = two_sources
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--preset", "smoke", "--iters", "2", "--no-progress", "--threads", "1"]
    args = parser.parse_args([*base, "--ann", str(ann), "--images", str(images), "--partial", str(part_root),
                              "--out", str(tmp_path / "run")])
    assert run(args) == 0
    cfg = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert cfg["max_iters"] == 2 and (tmp_path / "run" / "model_final.safetensors").is_file()
    val = tmp_path / "val.json"
    val.write_text(ann.read_text())
    args = parser.parse_args([*base, "--ann", str(val), "--images", str(images), "--out", str(tmp_path / "bad")])
    assert run(args) == 2
    assert "evaluation set" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_batch_scaling_keeps_the_schedule_in_images():
    cpu = train_preset("cpu")
    big = cpu.scaled_to_batch(32)
    assert (big.batch_size, big.lr, big.max_iters, big.steps, big.warmup_iters) == (32, 0.02, 750, (550, 675), 50)
    assert big.max_iters * big.batch_size == cpu.max_iters * cpu.batch_size
    assert np.isclose(big.lr / big.batch_size, cpu.lr / cpu.batch_size)
