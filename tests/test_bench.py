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
    # the ratio table: each TraceNet time over FullNet's first tap, against issue 16's targets
    ratio_line = next(line for line in table.splitlines() if line.startswith("| lite0 | first tap, mask over the box |"))
    cells = [c.strip() for c in ratio_line.strip("|").split("|")]
    boxed = rows["TraceNet-lite0 (mask over box)"]
    assert cells[2] == f"{boxed['first_ms']:.1f}" and cells[3] == f"{full['first_ms']:.1f}"
    assert cells[4] == f"{boxed['first_ms'] / full['first_ms']:.3f}" and cells[5].startswith("<= 0.55")
    assert "TraceNet-lite0" in capsys.readouterr().out
