"""SpineNet: the port's numbers, the scale-permuted graph, and any input size."""

from __future__ import annotations

import math

import pytest
import torch

from fishspine.models import create_model

from .golden import check_golden, deterministic_state_dict, golden_input

VARIANTS = ["spinenet49S", "spinenet49", "spinenet96", "spinenet143", "spinenet190"]


def summarize(outputs: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Compact but position- and channel-sensitive summaries of P3..P7 (kept small in the repo)."""
    out = {}
    for level, t in outputs.items():
        out[f"P{level}_channel_mean"] = t.mean(dim=(0, 2, 3))
        out[f"P{level}_spatial_mean"] = t.mean(dim=(0, 1))
        out[f"P{level}_corner"] = t[0, :8, :4, :4].clone()  # a view would save the whole tensor
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_match_the_pytorch_port(variant):
    """Goldens were produced by yan-roo/SpineNet-Pytorch's spinenet.py (BN eps 1e-3) with the same weights, 128x128."""
    model = create_model(variant).eval()
    model.load_state_dict(deterministic_state_dict(model.state_dict()))
    with torch.no_grad():
        outs = model(golden_input(128, batch=1))
    check_golden(variant, summarize(outs))


@pytest.mark.parametrize("size", [(200, 300), (97, 131), (640, 640)])
def test_any_input_size_gives_p3_to_p7(size):
    model = create_model("spinenet49S", width=0.25).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert sorted(outs) == [3, 4, 5, 6, 7]
    for level, t in outs.items():
        assert t.shape[-2:] == tuple(math.ceil(s / 2**level) for s in size)


def test_graph_is_the_searched_one():
    model = create_model("spinenet49")
    names = [b.name for b in model.blocks]
    assert names[:3] == ["stem", "init1", "init2"] and names[-5:] == ["P3", "P4", "P5", "P6", "P7"]
    assert len(names) == 3 + 15 + 5
    assert model.block("block6").parents == ("block3", "block5") and model.block("block6").level == 6
    assert model.block("block2").parents == ("init1", "init2")
    # The one block nobody consumes (network index 11) feeds the level-5 output block 14.
    assert model.block("block14").parents == ("block7", "block12", "block11")
    assert {model.block(f"P{lvl}").parents[0] for lvl in range(3, 8)} == {f"block{k}" for k in (12, 13, 14, 15, 16)}
    assert model.block("block15").level == 7 and model.block("block15").role == "permuted"


def test_bn_eps_is_recorded_and_configurable():
    assert create_model("spinenet49").bn_eps == 1e-3
    model = create_model("spinenet49", bn_eps=1e-4, width=0.25)
    assert all(m.eps == 1e-4 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
