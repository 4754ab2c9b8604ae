"""SCNet: the authors' numbers and the details that make a checkpoint mean the same thing."""

from __future__ import annotations

import pytest
import torch

from fishspine.models import create_model

from .golden import check_golden, deterministic_state_dict, golden_input


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["scnet50", "scnet50_v1d", "scnet101", "scnet101_v1d"])
def test_logits_match_authors_code(variant):
    """Golden logits were produced by the authors' scnet.py with the same weights (97x97, batch 2)."""
    model = create_model(variant).eval()
    model.load_state_dict(deterministic_state_dict(model.state_dict()))
    with torch.no_grad():
        logits = model(golden_input(97, batch=2))
    check_golden(variant, {"logits": logits})


@pytest.mark.parametrize("size", [(33, 47), (64, 64), (101, 75)])
def test_odd_input_sizes(size):
    """The calibration branch pools by 4 and up-samples back to the exact size of any input."""
    model = create_model("scnet50_v1d", width=0.25, num_classes=4).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, *size))
    for level, f in feats.items():
        assert f.shape[-2:] == tuple(-(-s // 2**level) for s in size)


def test_v1d_has_deep_stem_and_pooled_shortcut():
    model = create_model("scnet50_v1d")
    sd = model.state_dict()
    assert sd["conv1.0.weight"].shape == (32, 3, 3, 3) and sd["conv1.6.weight"].shape == (64, 32, 3, 3)
    assert "layer2.0.downsample.1.weight" in sd and "layer2.0.downsample.0.weight" not in sd
    assert isinstance(model.layer2[0].avd_a, torch.nn.AvgPool2d) and model.layer2[0].k1[0].stride == (1, 1)
    assert not isinstance(model.layer1[0].avd_a, torch.nn.AvgPool2d)  # no avd in layer1
