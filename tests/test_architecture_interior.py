"""What is inside a block, traced from the model: SCNet's pooled calibration branch shows, a ResNet
bottleneck has none, FishNet's channel-sum shortcut and SpineNet's resampling show; `graph --expand`
exports it like every figure."""

from __future__ import annotations

import json

from fishspine.analysis.architecture.interior import block_interior

from .conftest import tiny_model


def pooled_by_four(interior) -> list:
    return [o for o in interior.resamplings if "pool" in o.op.lower() and abs(o.resample - 0.25) < 1e-9]


def test_an_scnet_bottleneck_shows_its_4x_pooled_calibration_branch_and_a_resnet_one_does_not():
    sc = block_interior(tiny_model("scnet50"), "layer1.1")
    pools = pooled_by_four(sc)
    assert len(pools) == 1 and pools[0].module == "layer1.1.scconv"
    assert pools[0].level == sc.operation(pools[0].id).level == 4.0  # 56² pooled to 14² at 224² input
    ups = [o for o in sc.resamplings if o.resample == 4.0]
    assert len(ups) == 1 and ups[0].module == "layer1.1.scconv"  # and brought back up
    assert any(o.op == "sigmoid" for o in sc.operations)  # the gate
    # The branch sits between the pool and the upsample in the data flow.
    flows = {(f.source, f.target) for f in sc.flows}
    conv = next(o for o in sc.operations if o.module == "layer1.1.scconv.k2.1")
    assert (pools[0].id, conv.id) in flows

    res = block_interior(tiny_model("resnet50"), "layer1.1")
    assert not res.resamplings and not pooled_by_four(res)
    assert not any(o.op == "sigmoid" for o in res.operations)
    # Both start from the previous block's output and end at their own.
    for interior in (sc, res):
        kinds = [o.kind for o in interior.operations]
        assert kinds.count("output") == 1 and [o.label for o in interior.operations if o.kind == "input"] == [
            "layer1.0"
        ]


def test_fishnet_channel_sum_shortcut_and_spinenet_resampling_are_traced():
    fish = block_interior(tiny_model("fishnet99"), "body1.0")
    slices = [o for o in fish.operations if o.label.startswith("channels ")]
    assert len(slices) == 2  # channel groups of k = 2 summed
    fish_merge = block_interior(tiny_model("fishnet99"), "body1.merge")
    assert any(o.resample == 2.0 for o in fish_merge.resamplings)  # upsampled before the concat
    assert sorted(o.label for o in fish_merge.operations if o.kind == "input") == ["body1.0", "body1.transfer.0"]

    spine = block_interior(tiny_model("spinenet49"), "block4")
    assert {o.label for o in spine.operations if o.kind == "input"} == {"block2", "block3"}
    assert sorted(o.resample for o in spine.resamplings) == [0.5, 2.0]


def test_rows_are_scale_levels_and_parents_come_first():
    interior = block_interior(tiny_model("scnet50"), "layer2.1")
    for o in interior.operations:
        x, y = interior.positions[o.id]
        assert abs(y - round(o.level)) < 0.5
    for f in interior.flows:
        assert interior.positions[f.source][0] < interior.positions[f.target][0]


def test_graph_expand_writes_figures_and_data(tmp_path, capsys):
    from fishspine.cli.main import main

    assert main(["graph", "scnet50", "--expand", "layer1.1", "-o", str(tmp_path / "inside")]) == 0
    for ext in ("png", "svg", "pdf", "csv", "json"):
        assert (tmp_path / f"inside.{ext}").stat().st_size > 0, ext
    data = json.loads((tmp_path / "inside.json").read_text())
    assert data["block"] == "layer1.1" and any("avg_pool2d" in o["label"] for o in data["operations"])
    assert main(["graph", "scnet50", "--expand", "layer9.9", "-o", str(tmp_path / "bad")]) != 0
    assert "no block 'layer9.9'" in capsys.readouterr().err and not list(tmp_path.glob("bad.*"))
