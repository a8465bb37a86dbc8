"""Config presets, validation and the JSON round trip."""

import json

import pytest

from tracenet.model import PRESETS, TraceNetConfig, preset


def test_presets_exist_with_paper_settings():
    assert {"lite0", "lite1", "lite2", "r50", "r101"} <= set(PRESETS)
    assert TraceNetConfig() == PRESETS["lite0"]
    for name, backbone in (("r50", "resnet50"), ("r101", "resnet101")):
        cfg = PRESETS[name]
        assert cfg.backbone == backbone
        assert (cfg.fpn_channels, cfg.head_convs, cfg.mask_branch_channels, cfg.mask_branch_convs) == (
            256,
            4,
            128,
            4,
        )
    assert PRESETS["lite0"].fpn_channels <= 128
    assert all(cfg.mask_channels == 8 and cfg.num_classes == 1 for cfg in PRESETS.values())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_json_round_trip(name):
    cfg = PRESETS[name].replace(num_classes=2, class_names=["cat", "dog"])
    again = TraceNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.names == ["cat", "dog"]


def test_preset_overrides_do_not_touch_the_preset():
    cfg = preset("r50", num_classes=80)
    assert cfg.num_classes == 80 and PRESETS["r50"].num_classes == 1
    with pytest.raises(ValueError, match="unknown preset 'r18'"):
        preset("r18")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backbone": "vgg16"}, "backbone='vgg16' is unknown"),
        ({"mask_channels": 16}, "mask_channels must be 8"),
        ({"num_classes": 0}, "num_classes must be a positive int"),
        ({"class_names": ["a", "b"]}, "2 names but num_classes=1"),
        ({"prior_prob": 1.5}, "prior_prob"),
    ],
)
def test_validation_names_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        TraceNetConfig(**changes)


def test_unknown_keys_are_refused():
    data = TraceNetConfig().to_dict() | {"use_dcn": True}
    with pytest.raises(ValueError, match=r"unknown TraceNetConfig keys \['use_dcn'\]"):
        TraceNetConfig.from_dict(data)
