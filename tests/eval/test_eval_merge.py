"""Sharded evaluation: shards merged with ``python -m tracenet.eval.merge`` equal a single run exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.eval.test_eval_end_to_end import same_colour, write_dataset
from tests.eval.test_eval_folder import write_folder
from tracenet.eval.evaluate import EvalConfig, evaluate, load_coco_benchmark
from tracenet.eval.folder import load_folder_benchmark
from tracenet.eval.merge import main as merge_main
from tracenet.tap.zoom import ZoomConfig
from tracenet.eval.merge import merge_runs
from tracenet.eval.methods import from_callable
from tracenet.eval.records import shard_images
from tracenet.eval.report import write_outputs

# what may differ between a merged and a single run: wall times, and which shards it came from
_RUN_ONLY = {"seconds", "seconds_in_method", "seconds_per_image", "merged_from"}


def _method():
    # exact mTA through a group key (the colour under the tap), first-click IoUs that are not round numbers
    def coarse(image, xy):
        m = same_colour(image, xy)
        m[xy[1] // 8 * 8, :] = False  # depends on the tap's 8-px row band: IoUs differ per tap
        return m

    return from_callable(coarse, "coarse", group_key=lambda xy: (xy[0] // 4, xy[1] // 8))


def _run_shards(bench, out: Path, count: int, cfg: dict) -> list[Path]:
    folders = []
    for i in range(count):
        run = evaluate(_method(), bench, EvalConfig(progress=False, shard=(i, count), **cfg))
        assert run.metrics["shard"] == {"index": i, "count": count}
        folders.append(write_outputs(run, out / f"s{i + 1}").parent)
    return folders


def _assert_same_as_single(single_dir: Path, merged_dir: Path) -> None:
    single = json.loads((single_dir / "metrics.json").read_text())
    merged = json.loads((merged_dir / "metrics.json").read_text())
    assert [k for k in merged if k != "merged_from"] == list(single)  # same keys, same order
    for key in single:
        if key not in _RUN_ONLY:
            assert merged[key] == single[key], key
    assert (merged_dir / "instances.jsonl").read_bytes() == (single_dir / "instances.jsonl").read_bytes()


@pytest.mark.parametrize("count", [2, 3])
def test_folder_shards_merge_to_the_single_run(tmp_path, capsys, count):
    images, masks = write_folder(tmp_path / "data")
    bench = load_folder_benchmark(images, masks)
    cfg = {"mta_stride": 1, "n_showcase": 2}
    single = evaluate(_method(), bench, EvalConfig(progress=False, **cfg))
    write_outputs(single, tmp_path / "single")
    folders = _run_shards(bench, tmp_path, count, cfg)
    assert (folders[0] / "showcases.npz").is_file()
    # any order of the shard folders on the command line
    argv = [str(f) for f in reversed(folders)] + ["--out", str(tmp_path / "merged")]
    assert merge_main(argv) == 0
    assert "coarse: mIoU-T" in capsys.readouterr().out
    _assert_same_as_single(tmp_path / "single", tmp_path / "merged")
    merged = merge_runs(folders)
    assert [s.order for s in merged.showcases] == [s.order for s in single.showcases]
    for a, b in zip(merged.showcases, single.showcases, strict=True):
        assert (
            a.title == b.title and np.array_equal(a.image, b.image) and np.array_equal(a.good_map, b.good_map)
        )
        assert [(t[0], t[1], t[3]) for t in a.taps] == [(t[0], t[1], t[3]) for t in b.taps]
    assert "Merged from" in (tmp_path / "merged" / "report.md").read_text()


def test_coco_shards_merge_to_the_single_run(tmp_path):
    ann = write_dataset(tmp_path / "data")
    bench = load_coco_benchmark(ann, tmp_path / "data" / "images")
    cfg = {"mta_stride": 1, "n_showcase": 1, "check_group_key": 2}
    write_outputs(evaluate(_method(), bench, EvalConfig(progress=False, **cfg)), tmp_path / "single")
    folders = _run_shards(bench, tmp_path, 2, cfg)
    assert merge_main([str(f) for f in folders] + ["--out", str(tmp_path / "merged")]) == 0
    _assert_same_as_single(tmp_path / "single", tmp_path / "merged")
    m = json.loads((tmp_path / "merged" / "metrics.json").read_text())
    assert m["skipped"] == {"crowd": 1, "empty_mask": 0} and m["group_key_check"]["checked"] == 4


def test_shards_partition_the_images():
    images = list(range(10))
    parts = [shard_images(images, i, 3) for i in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(parts, [])) == images
    with pytest.raises(ValueError):
        shard_images(images, 3, 3)


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path, capsys):
    images, masks = write_folder(tmp_path / "data")
    bench = load_folder_benchmark(images, masks)
    cfg = {"mta_stride": 0, "n_showcase": 0}
    s1, s2, s3 = _run_shards(bench, tmp_path, 3, cfg)
    other_seed = evaluate(_method(), bench, EvalConfig(progress=False, shard=(2, 3), seed=1, **cfg))
    s3b = write_outputs(other_seed, tmp_path / "s3b", plots=False).parent
    refined_method = _method()
    refined_method.refine = "grabcut"  # a TraceNet run with --refine grabcut records it
    refined = evaluate(refined_method, bench, EvalConfig(progress=False, shard=(2, 3), **cfg))
    assert refined.metrics["refine"] == "grabcut" and "refine" not in other_seed.metrics
    s3r = write_outputs(refined, tmp_path / "s3r", plots=False).parent
    zoomed_method = _method()
    zoomed_method.zoom = True  # a TraceNet run with --zoom records it, with its settings
    zoomed_method.zoom_cfg = ZoomConfig()
    zoomed = evaluate(zoomed_method, bench, EvalConfig(progress=False, shard=(2, 3), **cfg))
    assert zoomed.metrics["zoom"] is True and "zoom" not in other_seed.metrics
    assert zoomed.metrics["zoom_cfg"] == {"expand": 1.25, "min_side": 48, "min_gain": 1.75, "cache": 4,
                                          "min_inside": 0.5}
    s3z = write_outputs(zoomed, tmp_path / "s3z", plots=False).parent
    z1, z2 = (write_outputs(evaluate(zoomed_method, bench, EvalConfig(progress=False, shard=(i, 3), **cfg)),
                            tmp_path / f"z{i}", plots=False).parent for i in (0, 1))
    zoomed_method.zoom_cfg = ZoomConfig(min_gain=1.4)  # shards of one run must share the zoom settings too
    s3zg = write_outputs(evaluate(zoomed_method, bench, EvalConfig(progress=False, shard=(2, 3), **cfg)),
                         tmp_path / "s3zg", plots=False).parent
    single = write_outputs(
        evaluate(_method(), bench, EvalConfig(progress=False, **cfg)), tmp_path / "one"
    ).parent
    out = tmp_path / "merged"
    for folders, message in (
        ([s1, s2], "shard(s) 3 of 3 missing"),
        ([s1, s2, s2], "are both shard 2/3"),
        ([s1, s2, s3b], "seed = 1"),
        ([s1, s2, s3r], "refine = 'grabcut'"),
        ([s1, s2, s3z], "zoom = True"),
        ([z1, z2, s3zg], "zoom_cfg = {"),
        ([s1, single], "is not a shard"),
        ([s1, tmp_path / "nowhere"], "not found"),
    ):
        assert merge_main([str(f) for f in folders] + ["--out", str(out)]) == 2, message
        assert message in capsys.readouterr().err, message
        assert not out.exists()
    assert merge_main([str(z1), str(z2), str(s3z), "--out", str(tmp_path / "zm")]) == 0
    assert json.loads((tmp_path / "zm" / "metrics.json").read_text())["zoom_cfg"] == zoomed.metrics["zoom_cfg"]
    assert "zoom-in pass for small objects: expand 1.25, min_side 48, min_gain 1.75, cache 4, min_inside 0.5" in (
        tmp_path / "zm" / "report.md").read_text()
    assert merge_main([str(s1), str(s2), str(s3), "--out", str(s1)]) == 2
    assert "is one of the shard folders" in capsys.readouterr().err
