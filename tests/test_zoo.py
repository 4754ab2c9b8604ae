"""The backbone contract, checked on every model of the zoo (after timm's tests/test_models.py)."""

from __future__ import annotations

import gc
import math

import pytest
import torch

from fishspine.models import Backbone, count_hooks, create_model, list_models
from fishspine.models.backbone import ROLES

from .conftest import tiny_model

# Exact parameter counts of the authors' code (ARCHITECTURES.md) and of torchvision.
EXPECTED_PARAMS = {
    "fishnet99": 16_628_904,
    "fishnet150": 24_959_400,
    "fishnet201": 44_584_552,
    "scnet50": 25_564_584,
    "scnet50_v1d": 25_583_816,
    "scnet101": 44_565_416,
    "scnet101_v1d": 44_689_192,
    "spinenet49S": 9_089_215,
    "spinenet49": 21_831_488,
    "spinenet96": 36_262_976,
    "spinenet143": 60_247_616,
    "spinenet190": 126_587_664,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904,
}
ALL = list_models()
TINY_SIZE = 96


def tiny(name: str) -> Backbone:
    return tiny_model(name)


def test_every_expected_variant_is_registered():
    assert set(EXPECTED_PARAMS) <= set(ALL), f"missing: {sorted(set(EXPECTED_PARAMS) - set(ALL))}"


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_count_matches_authors(name):
    if name not in ALL:
        pytest.fail(f"{name} is not registered")
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]


def test_registry_rejects_duplicates_and_unknown_names():
    from fishspine.models import register_model

    with pytest.raises(ValueError, match="registered twice"):

        @register_model("resnet", output_levels=(2, 3, 4, 5))
        def resnet50():  # noqa: F811
            raise AssertionError

    with pytest.raises(KeyError, match="unknown model 'fishnet1000'"):
        create_model("fishnet1000")
    with pytest.raises(TypeError, match="does not take"):
        create_model("resnet50", depth=3)


@pytest.mark.parametrize("name", ALL)
def test_block_metadata_is_well_formed(name):
    with torch.device("meta"):
        model = create_model(name)
    blocks = model.blocks
    assert blocks, "a backbone lists its blocks"
    seen = set()
    for b in blocks:
        assert b.role in ROLES
        assert all(p in seen for p in b.parents), f"{b.name}: parents must come earlier"
        assert b.channels > 0 and 0 <= b.level <= 8
        seen.add(b.name)
    assert all(b.parents for b in blocks[1:]), "only the first block has no parent"
    # Every non-classifier parameter belongs to exactly one block.
    owned = [id(p) for b in blocks for p in model.block_parameters(b.name)]
    assert len(owned) == len(set(owned)), "a parameter is owned by two blocks"
    total = sum(p.numel() for p in model.parameters())
    in_blocks = sum(p.numel() for b in blocks for p in model.block_parameters(b.name))
    classifier = total - in_blocks
    assert 0 <= classifier < 0.15 * total, f"{total - in_blocks} parameters belong to no block"


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_match_metadata_and_backward_works(name):
    model = tiny(name)
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE, requires_grad=False)
    with torch.no_grad():
        feats = model.forward_features(x)
    with model.capture(grads=True) as cap:
        out = model(x)  # the whole model: classifier-only blocks (e.g. FishNet's score) run too
        loss = out.pow(2).mean() if torch.is_tensor(out) else sum(f.pow(2).mean() for f in out.values())
        loss.backward()
    assert set(feats) == set(model.feature_levels)
    for level, f in feats.items():
        assert f.shape[1] == model.feature_levels[level]
        assert f.shape[2] == math.ceil(TINY_SIZE / 2**level), f"P{level} has size {f.shape[2]}"
        assert torch.isfinite(f).all()
    assert set(cap.outputs) == {b.name for b in model.blocks}, "every block output is captured once"
    for b in model.blocks:
        out = cap.outputs[b.name]
        assert out.shape[1] == b.channels, f"{b.name}: {out.shape[1]} channels, metadata says {b.channels}"
        assert out.shape[2] == math.ceil(TINY_SIZE / 2**b.level), f"{b.name}: level {b.level} vs {out.shape}"
        assert b.name in cap.grads and cap.grads[b.name].shape == out.shape
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", ALL)
def test_classifier_logits(name):
    model = tiny(name)
    out = model(torch.randn(1, 3, TINY_SIZE, TINY_SIZE))
    if model.has_classifier:
        assert out.shape == (1, 10)
    else:
        assert isinstance(out, dict) and set(out) == set(model.feature_levels)


@pytest.mark.parametrize("name", ALL)
def test_captured_outputs_are_not_overwritten_in_place(name):
    """A block output seen by a hook keeps its value through the rest of forward and backward."""
    model = tiny(name)
    snapshots = {}
    handles = [
        model.taps[model._tap_key(b.name)].register_forward_hook(
            lambda _m, _i, out, n=b.name: snapshots.__setitem__(n, out.detach().clone())
        )
        for b in model.blocks
    ]
    try:
        with model.capture(grads=True) as cap:
            out = model(torch.randn(1, 3, TINY_SIZE, TINY_SIZE))
            (out.sum() if torch.is_tensor(out) else sum(v.sum() for v in out.values())).backward()
    finally:
        for h in handles:
            h.remove()
    for n, snap in snapshots.items():
        torch.testing.assert_close(cap.outputs[n].detach(), snap, msg=f"{n} was modified in place")


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, torch.nn.Parameter))


@pytest.mark.slow
def test_thousand_captures_leave_no_hooks_and_no_memory_growth():
    model = tiny("resnet50")
    x = torch.randn(1, 3, 32, 32)

    def once():
        with model.capture(grads=True) as cap:
            model(x).sum().backward()
        return len(cap.outputs)

    for _ in range(5):
        once()
    before = _live_tensors()
    for _ in range(1000):
        assert once() == len(model.blocks)
    assert count_hooks(model) == 0
    assert _live_tensors() <= before + 2


def test_capture_removes_hooks_on_error():
    model = tiny("resnet50")
    with pytest.raises(RuntimeError):
        with model.capture(grads=True):
            model(torch.randn(1, 2, 32, 32))  # wrong channel count
    assert count_hooks(model) == 0
    with pytest.raises(KeyError, match="no block"):
        with model.capture(["nope"]):
            pass
    assert count_hooks(model) == 0


@pytest.mark.parametrize("name", ["resnet50"] + [n for n in ("fishnet99", "scnet50", "spinenet49S") if n in ALL])
def test_channels_last_bf16_autocast_matches_fp32(name):
    from .golden import deterministic_state_dict

    model = tiny(name)
    # Variance-preserving weights: a freshly initialised deep net's activations explode, and with
    # them any low-precision error.
    model.load_state_dict(deterministic_state_dict(model.state_dict()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.forward_features(x)
        model_cl = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model_cl.forward_features(x.contiguous(memory_format=torch.channels_last))
    for level in ref:
        err = (got[level].float() - ref[level]).abs().mean() / ref[level].abs().mean()
        assert err < 0.05, f"P{level}: bf16 channels-last mean relative error {err:.3f}"


@pytest.mark.parametrize("name", ["resnet50"] + [n for n in ("fishnet99", "scnet50_v1d", "spinenet49S") if n in ALL])
def test_traces_as_one_graph_under_torch_compile(name):
    """No graph breaks: dynamo captures forward_features whole (backend 'eager' keeps CI fast)."""
    torch._dynamo.reset()
    model = tiny(name)
    x = torch.randn(1, 3, 64, 64)
    compiled = torch.compile(model.forward_features, backend="eager", fullgraph=True)
    with torch.no_grad():
        got = compiled(x)
        ref = model.forward_features(x)
    for level in ref:
        torch.testing.assert_close(got[level], ref[level])
