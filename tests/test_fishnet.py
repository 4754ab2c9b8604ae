"""FishNet: the authors' numbers, the fish-shaped block graph, and any input size."""

from __future__ import annotations

import pytest
import torch

from fishspine.models import create_model

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
    """224 input: 64@56 -> 128@28 -> 256@14 -> 512@7 | 512@7 -> 768@14 -> 512@28 -> 320@56 | 832@28 -> 1600@14 -> 2112@7."""
    model = create_model("fishnet150").eval()
    expected = {"stem": (64, 56), "tail0.1": (128, 56), "tail2.3": (512, 14), "bridge.se": (512, 7),
                "body0.merge": (768, 14), "body1.merge": (512, 28), "body2.merge": (320, 56),
                "head0.merge": (832, 28), "head1.merge": (1600, 14), "head2.merge": (2112, 7), "score": (1056, 7)}
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


@pytest.mark.parametrize("size", [(65, 97), (100, 100)])
def test_any_input_size(size):
    model = create_model("fishnet99", width=0.25, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 3)
