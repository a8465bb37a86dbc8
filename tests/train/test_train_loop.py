"""End-to-end training on generated shapes: the loss falls, resume is bit-exact, the NaN guard fires,
the exported model loads, the command line works."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from tests.data.synth import make_shapes_dataset
from tracenet.model import load_checkpoint, read_checkpoint
from tracenet.train import NonFiniteLossError, TraceNetTrainModel, train, train_preset
from tracenet.train.command import add_arguments, run


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(root, n_images=12, size=64, seed=1)


def _train(shapes, out, **kw):
    ann, images = shapes
    cfg_over = {k: kw.pop(k) for k in list(kw) if k in ("max_iters", "checkpoint_every", "batch_size", "lr")}
    cfg = train_preset("smoke", **cfg_over)
    return train(cfg, ann_file=ann, images_dir=images, out_dir=out, progress=False, **kw)


def _losses(run_dir):
    return [
        json.loads(ln)["loss"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if "loss" in ln
    ]


def test_loss_decreases(shapes, tmp_path):
    final = _train(shapes, tmp_path, max_iters=30, batch_size=4, checkpoint_every=100)
    losses = _losses(tmp_path)
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.85 * first, f"loss did not fall: first {first:.3f}, last {last:.3f}"
    model, cfg, meta = load_checkpoint(final)
    assert meta["step"] == 30 and cfg.num_classes == 1 and not model.training


def test_resume_is_bit_exact(shapes, tmp_path):
    full = _train(shapes, tmp_path / "full", max_iters=6, checkpoint_every=3)
    half = _train(shapes, tmp_path / "half", max_iters=6, checkpoint_every=3, stop_at=3)
    assert half.name == "step_0000003" and not (tmp_path / "half" / "model_final.safetensors").exists()
    resumed = _train(shapes, tmp_path / "half", max_iters=6, checkpoint_every=3, resume=tmp_path / "half")
    a, _, _ = read_checkpoint(full)
    b, _, _ = read_checkpoint(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # and training really changed the weights (the comparison is not vacuous)
    start, _, _ = read_checkpoint(tmp_path / "half" / "checkpoints" / "step_0000003" / "model.safetensors")
    assert any(not torch.equal(start[k], a[k]) for k in a if k.endswith("weight"))
    # metrics.jsonl holds each step once
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "half" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def test_nan_guard_names_step_and_loss(shapes, tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = TraceNetTrainModel.forward

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the third iteration, i.e. step 2
            out["loss_mask"] = out["loss_mask"] * float("nan")
        return out

    monkeypatch.setattr(TraceNetTrainModel, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 2 .*loss_mask=nan"):
        _train(shapes, tmp_path, max_iters=5)


def test_command_line_and_fp16_export(shapes, tmp_path, capsys):
    ann, images = shapes
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--preset",
            "smoke",
            "--data",
            str(ann.parent),
            "--out",
            str(tmp_path / "r"),
            "--iters",
            "2",
            "--fp16",
            "--no-progress",
            "--seed",
            "3",
        ]
    )
    assert run(args) == 0
    final = tmp_path / "r" / "model_final.safetensors"
    tensors, cfg, meta = read_checkpoint(final)
    assert meta["step"] == 2 and any(t.dtype == torch.float16 for t in tensors.values())
    model, _, _ = load_checkpoint(final)
    assert next(model.parameters()).dtype == torch.float32
    assert json.loads((tmp_path / "r" / "train_config.json").read_text())["seed"] == 3
    assert (
        run(
            parser.parse_args(["--out", str(tmp_path / "r"), "--export", str(tmp_path / "again.safetensors")])
        )
        == 0
    )
    again, _, meta = read_checkpoint(tmp_path / "again.safetensors")
    assert meta["step"] == 2 and all(v.dtype != torch.float16 for v in again.values())
    bad = parser.parse_args(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    with pytest.raises(FileNotFoundError, match="not found"):
        run(bad)


def test_export_records_the_lsj_canvas_as_inference_size(shapes, tmp_path):
    from tracenet import load
    from tracenet.data import AugmentConfig
    from tracenet.train.export import export_model, inference_max_side

    assert inference_max_side(AugmentConfig(resize="lsj", lsj_size=384)) == 384
    assert inference_max_side({"resize": "lsj", "lsj_size": 512}) == 512
    assert inference_max_side(AugmentConfig()) is None  # shortest-edge: the predictor's default applies
    _train(shapes, tmp_path / "r", max_iters=2)
    cfg_file = tmp_path / "r" / "train_config.json"
    assert inference_max_side(json.loads(cfg_file.read_text())["augment"]) is None  # smoke trains unresized
    _, _, meta = read_checkpoint(export_model(tmp_path / "r", tmp_path / "plain.safetensors"))
    assert "max_side" not in meta
    run_cfg = json.loads(cfg_file.read_text())
    run_cfg["augment"].update(resize="lsj", lsj_size=320)
    cfg_file.write_text(json.dumps(run_cfg))
    out = export_model(tmp_path / "r", tmp_path / "lsj.safetensors")
    assert read_checkpoint(out)[2]["max_side"] == 320
    assert load(out).max_side == 320 and load(out, max_side=200).max_side == 200


def test_resume_with_a_changed_lr_follows_the_new_schedule(shapes, tmp_path):
    _train(shapes, tmp_path, max_iters=4, checkpoint_every=2, stop_at=2)
    _train(shapes, tmp_path, max_iters=4, checkpoint_every=2, lr=0.002, resume=tmp_path)
    lrs = [json.loads(ln)["lr"] for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([0.01, 0.01, 0.002, 0.002])


def test_eval_hook_is_called_in_eval_mode(shapes, tmp_path):
    seen = []

    def hook(model, cfg, step):
        seen.append((step, model.training, cfg.num_classes))
        return {"miou": 0.5}

    _train(shapes, tmp_path, max_iters=2, eval_hook=hook, eval_every=1)
    assert seen == [(1, False, 1), (2, False, 1)]
    evals = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines() if "eval" in ln]
    assert evals == [{"step": 1, "eval": {"miou": 0.5}}, {"step": 2, "eval": {"miou": 0.5}}]
