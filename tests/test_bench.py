"""``tracenet bench`` writes the efficiency table (tiny size here; the real table is made at 1024x768)."""

from __future__ import annotations

import json

from tracenet.cli import main


def test_bench_writes_json_and_markdown(tmp_path, capsys) -> None:
    assert main(["bench", "--out", str(tmp_path), "--models", "lite0", "--size", "96x64", "--repeats", "1",
                 "--no-sam"]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"TraceNet-lite0", "FullNet-lite0", "TraceNet-lite0 (mask over box)"}
    assert 0 <= rows["TraceNet-lite0 (mask over box)"]["extra"]["mask_iou_vs_image"] <= 1
    assert (data["width"], data["height"]) == (96, 64)
    traced, full = rows["TraceNet-lite0"], rows["FullNet-lite0"]
    assert traced["params_m"] == full["params_m"] > 4
    assert 0 < traced["macs_first_g"] <= full["macs_first_g"]
    assert traced["first_ms"] > 0 and traced["first_per_s"] == 1e3 / traced["first_ms"]
    table = (tmp_path / "bench.md").read_text()
    assert "| TraceNet-lite0 |" in table and "| FullNet-lite0 |" in table
    assert "TraceNet-lite0" in capsys.readouterr().out
