"""FishNet: the authors' numbers, the fish-shaped block graph, and any input size."""

from __future__ import annotations

import math

import pytest
import torch

from fishspine.models import create_model
from fishspine.models.fishnet import _channel_group_sum

from .golden import check_golden, deterministic_state_dict, golden_input


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fishnet99", "fishnet150", "fishnet201"])
def test_logits_match_authors_code(variant):
    """Golden logits were produced by the authors' fishnet.py with the same weights (64x64, batch 2)."""
    model = create_model(variant).eval()
    model.load_state_dict(deterministic_state_dict(model.state_dict()))
    with torch.no_grad():
        logits = model(golden_input(64, batch=2))
    check_golden(variant, {"logits": logits})


def test_channels_and_resolutions_follow_the_paper():
    """224 input: 64@56 -> 128@28 -> 256@14 -> 512@7 | 512@7 -> 768@14 -> 512@28 -> 320@56 |
    832@28 -> 1600@14 -> 2112@7."""
    model = create_model("fishnet150").eval()
    expected = {
        "stem": (64, 56),
        "tail0.1": (128, 56),
        "tail2.3": (512, 14),
        "bridge.se": (512, 7),
        "body0.merge": (768, 14),
        "body1.merge": (512, 28),
        "body2.merge": (320, 56),
        "head0.merge": (832, 28),
        "head1.merge": (1600, 14),
        "head2.merge": (2112, 7),
        "score": (1056, 7),
    }
    with torch.no_grad(), model.capture(list(expected), detach=True) as cap:
        model(torch.randn(1, 3, 224, 224))
    got = {n: (t.shape[1], t.shape[2]) for n, t in cap.outputs.items()}
    assert got == expected


def test_roles_trace_tail_body_head_and_transfers_are_lateral():
    model = create_model("fishnet99")
    roles = [b.role for b in model.blocks]
    # Forward order: stem, tail..., body (bridge, up stages)..., head...
    assert roles[0] == "stem"
    assert roles.index("body") > max(i for i, r in enumerate(roles) if r == "tail")
    assert roles.index("head") > max(i for i, r in enumerate(roles) if r == "body")
    merge = model.block("head0.merge")
    assert set(merge.parents) == {"head0.0", "head0.transfer.0"}  # fishnet99: one unit each
    assert model.block("body0.transfer.0").parents == ("tail1.1",)  # the 28x28 tail output, pooled to 14
    assert model.block("body2.transfer.0").parents == ("stem",)


@pytest.mark.parametrize("size", [(65, 97), (100, 100), (20, 7), (1, 1)])
def test_any_input_size_gives_ceil_sizes_at_every_level(size):
    """Every block output is ceil(input / 2**level) on each side, also for odd and tiny inputs."""
    model = create_model("fishnet99", width=0.25, num_classes=3).eval()
    with torch.no_grad(), model.capture(detach=True) as cap:
        assert model(torch.randn(1, 3, *size)).shape == (1, 3)
    for b in model.blocks:
        expected = tuple(math.ceil(s / 2**b.level) for s in size)
        assert tuple(cap.outputs[b.name].shape[2:]) == expected, b.name


def test_detector_outputs_are_body_and_head_merges():
    model = create_model("fishnet150", num_classes=0)
    assert model.feature_levels == {2: 320, 3: 832, 4: 1600, 5: 2112}
    assert not model.has_classifier
    assert {b.name for b in model.blocks} >= {"body2.merge", "head0.merge", "head1.merge", "head2.merge"}


def test_channel_sum_shortcut_matches_the_papers_definition_and_keeps_channels_last():
    """The first unit of an up stage adds the sum of each pair of adjacent input channels."""
    x = torch.randn(2, 12, 5, 3).to(memory_format=torch.channels_last)
    got = _channel_group_sum(x, 2)
    assert torch.equal(got, x.reshape(2, 6, 2, 5, 3).sum(2))
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(_channel_group_sum(x, 3), x.reshape(2, 4, 3, 5, 3).sum(2), atol=1e-6)
    assert torch.equal(_channel_group_sum(x, 1), x)
    model = create_model("fishnet99", width=0.25)
    assert [u.k for u in (model.fish.fish[i][0][0] for i in (4, 5, 6))] == [1, 2, 2]
    assert [u.conv2.dilation for u in (model.fish.fish[i][0][0] for i in (4, 5, 6))] == [(1, 1), (2, 2), (4, 4)]
