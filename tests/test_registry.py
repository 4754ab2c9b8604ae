"""The registry's metadata (after timm's pretrained_cfg): every spec agrees with the model it builds,
and no code outside models/ branches on a family name."""

from __future__ import annotations

import ast
import copy
import pickle

import pytest
import torch
from torch import nn

from fishspine.models import create_model, list_families, list_models, list_specs, model_spec, register_model

from .conftest import REPO

SPECS = list_specs()


def _meta_model(name: str, **kwargs):
    with torch.device("meta"):
        return create_model(name, **kwargs).eval()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_spec_matches_the_model_it_builds(spec):
    model = _meta_model(spec.name)
    assert model.spec is spec and model.family == spec.family and model.variant == spec.name
    assert model.has_classifier == spec.has_classifier
    assert tuple(model.feature_levels) == spec.output_levels
    assert model.config == spec.defaults
    assert copy.deepcopy(model).spec == spec and pickle.loads(pickle.dumps(spec)) == spec  # graphs copy models
    with torch.no_grad():
        out = model(torch.empty(1, 3, spec.input_size, spec.input_size, device="meta"))
    if spec.has_classifier:
        assert tuple(out.shape) == (1, spec.num_classes)
    else:
        assert spec.num_classes is None and sorted(out) == list(spec.output_levels)


def test_specs_cover_every_registered_variant_and_family():
    assert [s.name for s in SPECS] == list_models()
    assert list_families() == sorted({s.family for s in SPECS})
    for family in list_families():
        assert [s.name for s in list_specs(family)] == list_models(family)


def test_spec_lists_the_builder_arguments_create_model_accepts():
    spec = model_spec("spinenet49")
    assert spec.arguments == ("width", "bn_eps") and spec.input_size == 640
    with pytest.raises(TypeError, match=r"does not take \['num_classes'\]; it takes \['width', 'bn_eps'\]"):
        create_model("spinenet49", num_classes=10)
    with pytest.raises(KeyError, match="unknown model 'spinenet1000'"):
        model_spec("spinenet1000")


def test_builder_facts_are_read_from_its_registration(monkeypatch):
    from fishspine.models import registry

    # Registered into copies, so the rest of the session never sees the test builders.
    monkeypatch.setattr(registry, "_specs", dict(registry._specs))
    monkeypatch.setattr(registry, "_builders", dict(registry._builders))

    @register_model("test-family", output_levels=[4, 5], input_size=320)
    def _test_only_builder(num_classes: int = 7, width: float = 1.0):
        raise AssertionError("never built here")

    spec = model_spec("_test_only_builder")
    assert (spec.family, spec.input_size, spec.output_levels) == ("test-family", 320, (4, 5))
    assert spec.num_classes == 7 and spec.has_classifier and spec.defaults == {"num_classes": 7, "width": 1.0}
    with pytest.raises(TypeError, match=r"arguments \['depth'\] have no default"):

        @register_model("test-family", output_levels=(5,))
        def _test_only_positional(depth: int, width: float = 1.0):
            raise AssertionError


def test_tap_is_the_module_a_block_output_passes_through():
    model = create_model("resnet50", width=0.25, num_classes=3).eval()
    seen = []
    handle = model.tap("layer2.0").register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad(), model.capture(["layer2.0"]) as cap:
        model(torch.zeros(1, 3, 64, 64))
    handle.remove()
    assert isinstance(model.tap("layer2.0"), nn.Module) and seen == [cap.outputs["layer2.0"].shape]
    with pytest.raises(KeyError, match="resnet50 has no block 'layer9.0'"):
        model.tap("layer9.0")


def test_bench_plan_measures_every_model_at_the_baseline_size_and_its_own():
    from fishspine.bench.models import BASELINE, bench_plan

    plan = bench_plan(["resnet50", "spinenet49S"])
    assert plan == [(BASELINE, 224), ("resnet50", 224), ("spinenet49S", 224), ("spinenet49S", 640)]


# Folders that must ask the registry or the model, never test a family name (STYLE.md).
NO_FAMILY_BRANCHES = ("analysis", "app", "cli", "training", "bench")


def _family_comparisons(tree: ast.AST, families: set[str]) -> list[int]:
    """Lines comparing (==, !=, in, match) with a family name, or a family value with a literal."""

    def literal(node: ast.AST, allowed) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and allowed(node.value)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return any(literal(e, allowed) for e in node.elts)
        return False

    def family_value(node: ast.AST) -> bool:
        if isinstance(node, ast.Call):
            node = node.func
            return getattr(node, "id", getattr(node, "attr", "")) == "model_family"
        return getattr(node, "id", getattr(node, "attr", "")) == "family"

    def compared(operands: list[ast.AST]) -> bool:
        if any(literal(o, families.__contains__) for o in operands):
            return True
        return any(family_value(o) for o in operands) and any(literal(o, lambda _s: True) for o in operands)

    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and compared([node.left, *node.comparators]):
            lines.add(node.lineno)
        elif isinstance(node, ast.Match):
            for case in node.cases:
                values = [p.value for p in ast.walk(case.pattern) if isinstance(p, ast.MatchValue)]
                if values and compared([node.subject, *values]):
                    lines.add(case.pattern.lineno)
    return sorted(lines)


def test_the_family_scan_catches_each_kind_of_comparison():
    families = set(list_families())
    src = (
        'a = m.family == "x"\nb = "spinenet" != name\nc = model_family(n) != "y"\nd = fam in ("resnet", "y")\n'
        'match v:\n    case "scnet":\n        pass\n'
        # not comparisons with a family name: other strings, validation against the registry, help texts
        'e = entry.label == "fishnet99"\nf = args.family in list_families()\ng = "spinenet"\n'
        "h = args.family is None\n"
    )
    assert _family_comparisons(ast.parse(src), families) == [1, 2, 3, 4, 6]


def test_no_code_outside_models_branches_on_a_family_name():
    families = set(list_families())
    found = []
    for folder in NO_FAMILY_BRANCHES:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            found += [f"{path.relative_to(REPO)}:{line}" for line in _family_comparisons(tree, families)]
    assert not found, (
        f"ask the model or the registry (model.spec, model_spec(name)) instead of comparing family names: {found}"
    )
