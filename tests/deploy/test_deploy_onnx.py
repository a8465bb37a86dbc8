"""ONNX export + onnxruntime engine: the same answers as the PyTorch model (odd sizes, corner taps, both
selection rules), head windows from the tracer's plan, the shipped export matches the bundled checkpoint, and
the engine runs where torch cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import tracenet
from tests.test_predictor import _calibrate, _photo
from tracenet.deploy.engine import DEFAULT_EXPORT, OnnxTapSegmenter
from tracenet.deploy.graphs import TapDecoder
from tracenet.model import build_model, load_checkpoint, preset
from tracenet.model.heads import TraceNetHead
from tracenet.predictor import DEFAULT_CHECKPOINT, TapSegmenter
from tracenet.tap import align_tap

REPO = Path(__file__).resolve().parents[2]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def _taps(h: int, w: int) -> list[tuple[float, float]]:
    return [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w / 2, h / 2), (w * 0.3, h * 0.7), (w * 0.8, h * 0.2)]


@pytest.mark.parametrize("selection", ["ranker", "paper"])
@pytest.mark.parametrize("hw", [(161, 227), (97, 130), (203, 301)])  # the last is resized (max_side 160)
def test_onnx_answers_like_pytorch(tiny_checkpoint, tiny_export, selection, hw) -> None:
    torch_seg = TapSegmenter.from_checkpoint(tiny_checkpoint, min_score=0.0, selection=selection)
    onnx_seg = tracenet.load(str(tiny_export), engine="onnx", min_score=0.0, selection=selection, threads=1,
                             refine="none", zoom=False)  # the network's answers, as torch_seg's
    assert onnx_seg.selection == torch_seg.selection == selection
    photo = _photo(*hw, seed=hw[0])
    torch_seg.set_image(photo)
    onnx_seg.set_image(photo)
    assert onnx_seg.net_hw == torch_seg.net_hw
    found = 0
    for xy in _taps(*hw):
        a, b = torch_seg.predict(xy, use_rft=False), onnx_seg.predict(xy)
        found += a.found
        if a.found and b.found and (a.level, a.class_id) != (b.level, b.class_id):
            # only on an exact score tie (this random model has them at corners), broken either way
            assert b.extras["candidate"].score == pytest.approx(a.extras["candidate"].score, abs=1e-6), xy
            continue
        assert (a.found, a.level, a.class_id) == (b.found, b.level, b.class_id), xy
        assert b.score == pytest.approx(a.score, abs=1e-5)
        if a.found:  # a "nothing here" answer's box is the top candidate's, and this random model has exact
            np.testing.assert_allclose(b.box, a.box, atol=1e-3)  # score ties there (broken either way)
        assert b.mask.shape == hw and _iou(a.mask, b.mask) >= 0.995, xy
        assert onnx_seg.tap_key(xy) == torch_seg.tap_key(xy)
        if selection == "ranker" and a.found:
            assert b.extras["ranker_score"] == pytest.approx(a.extras["ranker_score"], abs=1e-3)
    assert found >= 2  # the comparison covered real masks, not only "nothing here"


def test_decoder_outputs_equal_the_full_heads(tiny_checkpoint, tiny_export) -> None:
    """Head values at corner cells of an odd-sized image, where the window hangs over the map's edge."""
    model, _, _ = load_checkpoint(tiny_checkpoint)
    seg = OnnxTapSegmenter(tiny_export, min_score=0.0, threads=1)
    photo = _photo(77, 139)
    seg.set_image(photo)
    with torch.no_grad():
        full = model(_normalised(photo))
    for xy in [(0, 0), (138, 76), (138, 0), (70, 40)]:
        cells = align_tap(xy, (77, 139))
        out = seg.decode(cells)
        cls = torch.stack([full[f"cls_p{lvl}"][0, 0, r, c] for lvl, (r, c) in zip(range(3, 8), cells)])
        ctr = torch.stack([full[f"ctr_p{lvl}"][0, 0, r, c] for lvl, (r, c) in zip(range(3, 8), cells)])
        np.testing.assert_allclose(out["scores"], (cls.sigmoid() * ctr.sigmoid()).numpy(), atol=1e-5)
        assert list(out["levels"]) == [3, 4, 5, 6, 7] and list(out["class_ids"]) == [0] * 5


def _normalised(photo: np.ndarray) -> torch.Tensor:
    from tracenet.model import normalize

    return normalize(torch.from_numpy(photo).permute(2, 0, 1)[None])


@pytest.mark.parametrize("name, overrides, window", [
    ("lite0", {}, 11),                                   # 4 tower convs + predictor: radius 5
    ("lite0", {"head_convs": 2}, 7),
    ("r50", {"fpn_channels": 32, "pretrained_backbone": False}, 11),
    ("r50", {"fpn_channels": 32, "head_convs": 1, "pretrained_backbone": False}, 5),
])
def test_windows_come_from_the_tracer_plan(name, overrides, window) -> None:
    cfg = preset(name, **overrides)
    head = TraceNetHead(in_channels=cfg.fpn_channels, num_classes=cfg.num_classes, num_convs=cfg.head_convs).eval()
    decoder = TapDecoder(head, channels=cfg.fpn_channels, num_classes=cfg.num_classes, ranker=None)
    assert decoder.windows == [window] * 5


def test_r50_heads_windowed_equal_full_heads_at_corners() -> None:
    """The decoder's windowed heads (run in PyTorch here) equal the full run's head maps for an r50-config head,
    at corner and interior cells of odd-sized maps."""
    cfg = preset("r50", fpn_channels=32, pretrained_backbone=False)
    model = _calibrate(build_model(cfg), seed=7)
    decoder = TapDecoder(model.head, channels=32, num_classes=cfg.num_classes, ranker=None).eval()
    torch.manual_seed(0)
    hw = (69, 101)
    levels = [torch.randn(1, 32, -(-hw[0] // s), -(-hw[1] // s)) for s in (8, 16, 32, 64, 128)]
    with torch.no_grad():
        full = model.head(levels)
        for xy in [(0, 0), (100, 68), (100, 0), (0, 68), (50, 30)]:
            cells = align_tap(xy, hw)
            padded = [torch.nn.functional.pad(lvl, (decoder.window // 2,) * 4) for lvl in levels]  # as the encoder
            got = decoder._heads(padded, torch.tensor(cells))
            for kind in ("cls", "box", "ctr", "ctrl"):
                want = torch.stack([full[kind][j][0, :, r, c] for j, (r, c) in enumerate(cells)], dim=1)
                torch.testing.assert_close(got[kind], want, atol=1e-5, rtol=1e-5)


def test_shipped_export_matches_the_bundled_checkpoint() -> None:
    """The bundled export was made from the bundled checkpoint (hash) and its weights are the checkpoint's
    tensors exactly (stored as float16 + Cast; nothing folded)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from tracenet.deploy.contract import file_sha256, read_contract
    from tracenet.model.checkpoint import read_checkpoint

    contract = read_contract(DEFAULT_EXPORT)
    assert contract["checkpoint"]["sha256"] == file_sha256(DEFAULT_CHECKPOINT)
    tensors, cfg, meta = read_checkpoint(DEFAULT_CHECKPOINT)
    assert contract["preprocess"]["max_side"] == meta["max_side"] and contract["selection"]["has_ranker"]
    matched = 0
    for name in ("encoder.onnx", "decoder.onnx"):
        for init in onnx.load(DEFAULT_EXPORT / name).graph.initializer:
            key = init.name.removesuffix("__f16")
            if key in tensors:
                got = numpy_helper.to_array(init).astype(np.float32)
                assert np.array_equal(got, tensors[key].float().numpy()), key
                matched += 1
    used = [k for k in tensors if not k.endswith("num_batches_tracked")]
    assert matched == len(used)


def test_shipped_export_is_what_the_current_code_exports(tmp_path) -> None:
    """Re-exporting the bundled checkpoint gives the shipped graphs node for node and weight for weight, so a change
    to the export code cannot leave a stale export in the package (the version check would not notice)."""
    onnx = pytest.importorskip("onnx")
    from tracenet.deploy.export import export_onnx

    export_onnx(DEFAULT_CHECKPOINT, tmp_path / "again")
    for name in ("encoder.onnx", "decoder.onnx"):
        shipped, again = (onnx.load(folder / name).graph for folder in (DEFAULT_EXPORT, tmp_path / "again"))
        assert [n.SerializeToString() for n in shipped.node] == [n.SerializeToString() for n in again.node], name
        assert ([i.SerializeToString() for i in shipped.initializer]
                == [i.SerializeToString() for i in again.initializer]), name
        assert ([v.SerializeToString() for v in (*shipped.input, *shipped.output)]
                == [v.SerializeToString() for v in (*again.input, *again.output)]), name


def test_onnx_engine_runs_without_torch() -> None:
    """In a subprocess where importing torch fails, `import tracenet` and the bundled ONNX model work and give
    the torch engine's answer."""
    code = textwrap.dedent("""
        import json, sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision"):
                    raise ImportError("torch is not installed here")
        sys.meta_path.insert(0, NoTorch())
        import tracenet
        seg = tracenet.load(engine="onnx")
        seg.set_image("tracenet/examples/cat.png")
        out = []
        for xy in [(274, 219), (135, 127), (5, 5)]:
            r = seg.predict(xy)
            out.append([r.found, r.level, round(r.score, 5), int(r.mask.sum())])
        assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    seg = tracenet.load()
    seg.set_image(REPO / "tracenet/examples/cat.png")
    for (found, level, score, pixels), xy in zip(got, [(274, 219), (135, 127), (5, 5)]):
        ref = seg.predict(xy, use_rft=False)
        assert (found, level) == (ref.found, ref.level)
        assert score == pytest.approx(ref.score, abs=1e-4)
        assert abs(pixels - int(ref.mask.sum())) <= 0.005 * max(1, int(ref.mask.sum()))


def test_r50_config_exports_and_answers_like_pytorch(tmp_path) -> None:
    """An r50-config model (ResNet-50 backbone, 4-conv towers, narrow 32-channel FPN) exported end to end: its
    head windows come from the tracer's plan for that config, and onnxruntime gives PyTorch's answers on an
    odd-sized photo at the corners and inside."""
    from tracenet.deploy.export import export_onnx
    from tracenet.model import save_checkpoint

    cfg = preset("r50", fpn_channels=32, mask_branch_channels=16, pretrained_backbone=False)
    torch.manual_seed(6)
    model = _calibrate(build_model(cfg), seed=6)  # partial masks at these taps (seed 7 covers the whole photo)
    ckpt = tmp_path / "r50.safetensors"
    save_checkpoint(ckpt, model, cfg, extra_meta={"max_side": 200})
    contract = export_onnx(ckpt, tmp_path / "r50-onnx")
    assert contract["geometry"]["head_windows"] == [11] * 5 and contract["config"]["backbone"] == "resnet50"
    torch_seg = TapSegmenter.from_checkpoint(ckpt, min_score=0.0)
    onnx_seg = OnnxTapSegmenter(tmp_path / "r50-onnx", min_score=0.0, threads=2)
    hw = (133, 189)
    photo = _photo(*hw, seed=11)
    torch_seg.set_image(photo)
    onnx_seg.set_image(photo)
    partial = 0
    for xy in _taps(*hw):
        a, b = torch_seg.predict(xy), onnx_seg.predict(xy)
        assert (a.found, a.level, a.class_id) == (b.found, b.level, b.class_id), xy
        assert b.score == pytest.approx(a.score, abs=1e-4)
        assert _iou(a.mask, b.mask) >= 0.995, xy
        partial += bool(0 < a.mask.mean() < 0.95)
    assert partial >= 2  # the comparison covered masks that are neither empty nor the whole photo


def test_decoder_computes_masks_only_for_levels_that_can_be_chosen(tiny_export) -> None:
    """Masks of levels with no candidate at or above min_score are not computed (a constant -1e4), the others are
    the same as when every level is computed; with nothing eligible (E = 0) the decoder still runs."""
    photo = _photo(97, 130, seed=3)
    every = OnnxTapSegmenter(tiny_export, min_score=0.0, threads=1)
    every.set_image(photo)
    cells = align_tap((60, 40), every.net_hw)
    full = every.decode(cells)
    threshold = float(np.sort(full["scores"])[2])  # between the candidates: some levels in, some out
    some = OnnxTapSegmenter(tiny_export, min_score=threshold, threads=1)
    some.set_image(photo)
    part = some.decode(cells)
    eligible = full["scores"] >= threshold
    assert 0 < eligible.sum() < len(eligible)
    np.testing.assert_array_equal(part["mask_logits"][eligible], full["mask_logits"][eligible])
    assert (part["mask_logits"][~eligible] == -1e4).all()
    np.testing.assert_array_equal(part["ranker_scores"][eligible], full["ranker_scores"][eligible])
    none = OnnxTapSegmenter(tiny_export, min_score=1.0, threads=1)
    none.set_image(photo)
    out = none.decode(cells)
    assert (out["mask_logits"] == -1e4).all() and np.isneginf(out["ranker_scores"]).all()
    assert not none.predict((60, 40)).found
