"""benchmarks/zoom_rules.py: its setting syntax (the run itself needs coco-mini and minutes; see the README)."""

from __future__ import annotations

import pytest

from tests.scripts import load_script


def test_settings_parse_into_zoom_config_fields() -> None:
    parse = load_script("benchmarks/zoom_rules.py").parse_setting
    assert parse("off") is None
    assert parse("min_gain=1.4,min_inside=0.5") == {"min_gain": 1.4, "min_inside": 0.5}
    side = parse("min_side=64")
    assert side == {"min_side": 64} and isinstance(side["min_side"], int)
    for bad in ("bogus", "min_gain", "min_gain=1.4,"):
        with pytest.raises(SystemExit, match="key=value"):
            parse(bad)


def test_unknown_or_bad_settings_stop_before_any_work(capsys) -> None:
    main = load_script("benchmarks/zoom_rules.py").main
    with pytest.raises(TypeError, match="wobble"):
        main(["--images", "1", "wobble=2"])
    with pytest.raises(ValueError, match="min_inside"):
        main(["--images", "1", "min_inside=2"])
