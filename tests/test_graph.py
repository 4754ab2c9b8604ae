"""Architecture graphs: layouts chosen by roles, positions, edge kinds, MACs and parameters per
block, no hooks left behind, and the diagrams as valid, legible files."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET

import pytest
import torch
from PIL import Image
from torch import nn

from fishspine.analysis.architecture.graph import (
    LAYOUTS,
    ArchitectureGraph,
    GraphEdge,
    architecture_graph,
    block_macs,
    choose_layout,
    edge_route,
    graph_from_blocks,
    register_layout,
)
from fishspine.analysis.figures.architecture import figure_size, graph_figure
from fishspine.analysis.figures.base import PNG_DPI, save_figure, write_json
from fishspine.models import Backbone, BlockInfo, count_hooks, create_model, list_models

from .conftest import tiny_model


def tiny(name: str) -> Backbone:
    return tiny_model(name)


class TinyPermuted(Backbone):
    """A SpineNet-shaped toy: stem, blocks whose levels go down and back up, outputs; known MACs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 4, stride=4)  # level 2
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)  # level 3
        self.deep = nn.Conv2d(8, 8, 3, stride=2, padding=1)  # level 4
        self.fuse = nn.Conv2d(8, 8, 1)  # level 3, from deep (up) and down (lateral)
        self.out3 = nn.Conv2d(8, 6, 1, groups=2)
        self.head = nn.Linear(6, 5)  # owned by no block: a classifier
        self._feature_levels = {3: 6}
        self._init_taps(
            [
                BlockInfo("stem", "stem", 2, 4, (), ("stem",)),
                BlockInfo("b1", "permuted", 3, 8, ("stem",), ("down",)),
                BlockInfo("b2", "permuted", 4, 8, ("b1",), ("deep",)),
                BlockInfo("b3", "permuted", 3, 8, ("b1", "b2"), ("fuse",)),
                BlockInfo("P3", "output", 3, 6, ("b3",), ("out3",)),
            ]
        )

    def forward_features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        s = self._tap("stem", self.stem(x))
        a = self._tap("b1", self.down(s))
        b = self._tap("b2", self.deep(a))
        c = self._tap("b3", self.fuse(a + nn.functional.interpolate(b, size=a.shape[-2:])))
        return {3: self._tap("P3", self.out3(c))}


def chain(n: int, levels: int = 1, name: str = "block") -> list[BlockInfo]:
    """A staircase of `n` blocks over `levels` levels."""
    per = math.ceil(n / levels)
    blocks = [BlockInfo("stem", "stem", 2, 8)]
    for i in range(n):
        blocks.append(BlockInfo(f"{name}{i // per}.{i}", "stage", 2 + i // per, 16, (blocks[-1].name,)))
    return blocks


FISH = [  # tail down 2 levels, body up with a lateral transfer, head down with one
    BlockInfo("stem", "stem", 2, 8),
    BlockInfo("tail0.0", "tail", 2, 8, ("stem",)),
    BlockInfo("tail1.0", "tail", 3, 16, ("tail0.0",)),
    BlockInfo("body0.0", "body", 4, 16, ("tail1.0",)),
    BlockInfo("body0.1", "body", 4, 16, ("body0.0",)),
    BlockInfo("body0.transfer.0", "body", 3, 8, ("tail1.0",)),
    BlockInfo("body0.merge", "body", 3, 24, ("body0.1", "body0.transfer.0")),
    BlockInfo("head0.0", "head", 3, 24, ("body0.merge",)),
    BlockInfo("head0.transfer.0", "head", 4, 16, ("body0.1",)),
    BlockInfo("head0.merge", "head", 4, 40, ("head0.0", "head0.transfer.0")),
]


# ------------------------------------------------------------------------------------------ layouts


def test_layout_is_chosen_from_roles_not_names():
    assert choose_layout({"stem", "permuted", "output"}) == "scale-permuted"
    assert choose_layout({"stem", "tail", "body", "head"}) == "fish"
    assert choose_layout({"stem", "stage"}) == "staircase"
    assert choose_layout({"stem"}) == "staircase"  # anything else: the fallback
    assert graph_from_blocks(FISH, model="resnet50").layout == "fish"
    assert graph_from_blocks(chain(4), model="spinenet49").layout == "staircase"
    expected = {"spinenet": "scale-permuted", "fishnet": "fish", "scnet": "staircase", "resnet": "staircase"}
    for name in ("spinenet49S", "fishnet99", "scnet50", "resnet50"):
        model = tiny(name)
        assert architecture_graph(model, with_macs=False).layout == expected[model.family], name
    assert architecture_graph(TinyPermuted(), 32).layout == "scale-permuted"
    with pytest.raises(ValueError, match="unknown layout"):
        graph_from_blocks(FISH, layout="circular")
    with pytest.raises(ValueError, match="registered twice"):
        register_layout("fish", {"tail"}, band_of=lambda n: n.role)(lambda nodes, edges: {})
    assert list(LAYOUTS) == ["scale-permuted", "fish", "staircase"]


def test_scale_permuted_positions_keep_block_order_and_levels():
    g = architecture_graph(tiny("spinenet49"), with_macs=False)
    inner = [n for n in g.nodes if n.role != "output"]
    xs = [g.positions[n.name][0] for n in inner]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # x is the block order
    outputs = [n for n in g.nodes if n.role == "output"]
    assert {g.positions[n.name][0] for n in outputs} == {max(xs) + 1}  # one last column
    assert all(g.positions[n.name][1] == n.level for n in g.nodes)
    assert [b.label for b in g.bands] == ["stem", "permuted", "output"]


@pytest.mark.parametrize("blocks", [FISH, "fishnet99", "fishnet201"], ids=["handmade", "fishnet99", "fishnet201"])
def test_fish_runs_tail_body_head_along_x(blocks):
    g = architecture_graph(tiny(blocks), with_macs=False) if isinstance(blocks, str) else graph_from_blocks(blocks)
    assert g.layout == "fish"
    span = {role: [g.positions[n.name][0] for n in g.nodes if n.role == role] for role in ("tail", "body", "head")}
    assert max(span["tail"]) < min(span["body"]) and max(span["body"]) < min(span["head"])
    assert all(g.positions[n.name][1] == n.level for n in g.nodes)
    for e in g.edges:
        assert g.positions[e.source][0] < g.positions[e.target][0], e
    cells = [(round(x, 6), y) for x, y in g.positions.values()]
    assert len(set(cells)) == len(cells)
    # The tail descends, the body climbs back, the head descends: the fish.
    tail_levels = [n.level for n in g.nodes if n.role == "tail"]
    assert tail_levels == sorted(tail_levels) and tail_levels[-1] > tail_levels[0]
    assert [b.label for b in g.bands] == ["stem", "tail", "body", "head"]


def test_side_branches_run_beside_the_trunk_they_join():
    g = graph_from_blocks(FISH)
    x = {name: p[0] for name, p in g.positions.items()}
    # The transfer block sits right before its merge, in the trunk's columns, not next to its tail input.
    assert x["body0.transfer.0"] == x["body0.merge"] - 1 == x["body0.1"]
    assert x["head0.transfer.0"] == x["head0.0"] == x["head0.merge"] - 1


def test_staircase_steps_down_in_block_order():
    g = architecture_graph(tiny("resnet50"), with_macs=False)
    assert [g.positions[n.name][0] for n in g.nodes] == list(range(len(g.nodes)))
    levels = [g.positions[n.name][1] for n in g.nodes]
    assert levels == sorted(levels) and levels[0] == 2 and levels[-1] == 5
    assert [b.label for b in g.bands] == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_two_branches_on_one_level_never_share_a_cell():
    blocks = [
        BlockInfo("stem", "stem", 2, 8),
        BlockInfo("a", "stage", 3, 8, ("stem",)),
        BlockInfo("b1", "stage", 3, 8, ("a",)),
        BlockInfo("b2", "stage", 3, 8, ("a",)),
        BlockInfo("c", "stage", 3, 8, ("b1", "b2")),
    ]
    g = graph_from_blocks(blocks)
    assert len(set(g.positions.values())) == len(blocks)
    for e in g.edges:
        assert g.positions[e.source][0] < g.positions[e.target][0]


# -------------------------------------------------------------------------------------------- edges


def test_edge_kinds_on_a_small_graph():
    blocks = [
        BlockInfo("stem", "stem", 2, 8),
        BlockInfo("s1", "stage", 2, 8, ("stem",)),  # next block, same level
        BlockInfo("d", "stage", 3, 8, ("s1",)),  # to a coarser level
        BlockInfo("u", "stage", 2, 8, ("d", "stem")),
    ]  # back to a finer level; and a skip
    kinds = {(e.source, e.target): e.kind for e in graph_from_blocks(blocks).edges}
    assert kinds == {("stem", "s1"): "sequential", ("s1", "d"): "down", ("d", "u"): "up", ("stem", "u"): "lateral"}


def test_spinenet_edges_follow_the_block_table():
    kinds = {(e.source, e.target): e.kind for e in architecture_graph(tiny("spinenet49"), with_macs=False).edges}
    assert kinds[("block3", "block6")] == "down"  # level 4 -> 6
    assert kinds[("block10", "block13")] == "up"  # level 5 -> 3
    assert kinds[("block5", "block7")] == "lateral"  # level 4 -> 4, block 6 between
    assert kinds[("block10", "block11")] == "sequential"


@pytest.mark.parametrize("name", list_models())
def test_every_parent_is_an_edge(name):
    model = tiny(name)
    g = architecture_graph(model, with_macs=False)
    assert sorted((e.source, e.target) for e in g.edges) == sorted((p, b.name) for b in model.blocks for p in b.parents)
    assert [n.name for n in g.nodes] == [b.name for b in model.blocks]
    assert set(g.positions) == {b.name for b in model.blocks}


def test_routes_join_their_ends_and_bridge_over_blocked_rows():
    g = graph_from_blocks(chain(6, levels=2))  # stem, block0.0 .. block0.2 on level 2, block1.* on 3
    pos = g.positions
    skip = GraphEdge("stem", "block0.2", "lateral")
    route = edge_route(pos, skip)
    assert route[0] == pos["stem"] and route[-1] == pos["block0.2"]
    assert route[1][1] < pos["stem"][1] and route[2][1] < pos["stem"][1]  # over the blocks between
    deep = g.route(GraphEdge("block1.3", "block1.5", "lateral"))
    assert deep[1][1] > pos["block1.3"][1]  # the coarsest row bridges under: free space there
    straight = g.route(g.edges[0])
    assert all(y == pos["stem"][1] for _, y in straight)
    down = next(e for e in graph_from_blocks(FISH).edges if e.kind == "down")
    r = graph_from_blocks(FISH).route(down)
    assert r[1][1] == r[0][1] and r[2][1] == r[3][1]  # leaves and enters horizontally


# ---------------------------------------------------------------------------- parameters and MACs


@pytest.mark.parametrize("name", ["resnet50", "scnet50_v1d", "fishnet150", "spinenet49S", "spinenet190"])
def test_block_params_sum_to_the_non_classifier_params(name):
    model = tiny(name)
    g = architecture_graph(model, with_macs=False)
    assert all(n.params == sum(p.numel() for p in model.block_parameters(n.name)) for n in g.nodes)
    # The classifier is what changes with the number of classes.
    classifier = 0
    if model.spec.has_classifier:
        shapes = dict(tiny_model(name, num_classes=20).named_parameters())
        classifier = sum(p.numel() for k, p in model.named_parameters() if shapes[k].shape != p.shape)
        assert classifier > 0
    assert sum(n.params for n in g.nodes) == sum(p.numel() for p in model.parameters()) - classifier


def test_macs_are_exact_per_block_on_a_toy():
    model = TinyPermuted()
    macs = block_macs(model, 32)
    assert macs == {
        "stem": 8 * 8 * 4 * 3 * 16,
        "b1": 4 * 4 * 8 * 4 * 9,
        "b2": 2 * 2 * 8 * 8 * 9,
        "b3": 4 * 4 * 8 * 8,
        "P3": 4 * 4 * 6 * 4,
    }
    g = architecture_graph(model, 32)
    assert {n.name: n.macs for n in g.nodes} == macs
    assert g.nodes[0].params == 3 * 4 * 16 + 4


def test_macs_grow_with_the_input_like_the_feature_maps():
    model = tiny("resnet50")
    small, large = block_macs(model, 64), block_macs(model, 128)
    assert all(large[k] == 4 * small[k] for k in small)  # every map has 4x the positions


def test_mac_counting_leaves_the_model_untouched_and_no_hooks():
    model = tiny("spinenet49S").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_hooks(model) == 0
    with model.capture() as cap:  # a user's open capture must neither fire nor be lost
        hooks = count_hooks(model)
        block_macs(model, 64)
        assert count_hooks(model) == hooks and cap.outputs == {}
    assert count_hooks(model) == 0
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_macs_of_a_full_size_model_cost_no_memory():
    # SpineNet-190 at 1280² would need gigabytes for its activations; the meta twin needs none.
    model = create_model("spinenet190", width=0.25)
    macs = block_macs(model, 1280)
    assert sum(macs.values()) > 0 and all(v > 0 for k, v in macs.items())


# ------------------------------------------------------------------------------------- plain data


def test_json_round_trip_and_routes_for_other_views(tmp_path):
    g = architecture_graph(TinyPermuted(), 32)
    path = write_json(tmp_path / "g.json", g.to_json())
    data = json.loads(path.read_text())
    assert [lv["stride"] for lv in data["levels"]] == [4, 8, 16]
    assert data["levels"][0]["feature_size"] == 8
    for e in data["edges"]:
        assert len(e["route"]) == 4 and e["route"][0] == list(g.positions[e["source"]])
        assert e["route"][-1] == list(g.positions[e["target"]])
    back = ArchitectureGraph.from_json(data)
    assert back == g
    rows = g.rows()
    assert rows[3]["parents"] == "b1 b2" and rows[3]["y"] == 3


def test_stage_groups_name_runs_of_one_row():
    g = graph_from_blocks(FISH)
    labels = {(s.label, s.level) for s in g.stages}
    assert ("body0 ×2", 4) in labels and ("body0 ×2", 3) in labels  # trunk; transfer + merge
    assert all(len(s.members) >= 1 for s in g.stages)
    assert sorted(m for s in g.stages for m in s.members) == sorted(b.name for b in FISH)


# ------------------------------------------------------------------------------------------ figures


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_figures_are_valid_png_svg_pdf(tmp_path):
    g = architecture_graph(tiny("fishnet99"), 96)
    fig = graph_figure(g)
    written = save_figure(fig, tmp_path / "arch", ["png", "svg", "pdf"])
    png, svg, pdf = (p.read_bytes() for p in written)
    image = Image.open(io.BytesIO(png))
    image.verify()
    w, h = fig.get_size_inches()
    assert image.size[0] == pytest.approx(w * PNG_DPI, abs=1) and image.size[1] == pytest.approx(h * PNG_DPI, abs=1)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b">tail0 \xc3\x972<" in svg  # names stay text, editable
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_figure_size_grows_with_the_graph():
    small, wide, tall = (graph_from_blocks(chain(n, levels)) for n, levels in ((8, 1), (60, 1), (8, 4)))
    assert figure_size(wide)[0] > figure_size(small)[0] + 5
    assert figure_size(tall)[1] > figure_size(small)[1] + 1.5
    fig = graph_figure(wide)
    assert tuple(fig.get_size_inches()) == pytest.approx(figure_size(wide))
    big = architecture_graph(tiny("fishnet201"), with_macs=False)
    assert figure_size(big)[0] > figure_size(architecture_graph(tiny("fishnet99"), with_macs=False))[0]


def test_every_node_is_named_when_names_fit_and_groups_otherwise():
    roomy = graph_from_blocks(chain(6))
    assert set(_texts(graph_figure(roomy))) >= {b.name for b in chain(6)}
    crowded = graph_from_blocks(chain(40, name="a_rather_long_stage_name"))
    texts = _texts(graph_figure(crowded))
    assert not any(t.startswith("a_rather_long_stage_name0.") for t in texts)
    assert "a_rather_long_stage_name0" in texts  # its band names the stage, once
    fish = _texts(graph_figure(architecture_graph(tiny("fishnet201"), with_macs=False)))
    assert "tail2 ×12" in fish and "head2 ×10" in fish and "tail2.5" not in fish
    assert not set(_texts(graph_figure(roomy, labels="none"))) & {b.name for b in chain(6)[1:]}
    with pytest.raises(ValueError, match="labels"):
        graph_figure(roomy, labels="some")


@pytest.mark.parametrize("name", ["spinenet49", "fishnet201", "resnet101"])
def test_names_never_overlap(name):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = graph_figure(architecture_graph(tiny(name), with_macs=False))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    names = [t for t in ax.texts if not t.get_in_layout()]  # node and group names; band names are in layout
    assert len(names) > 10
    boxes = [t.get_window_extent(canvas.get_renderer()) for t in names]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (names[i].get_text(), [t.get_text() for t in names if t.get_window_extent() == b])


def test_nodes_coloured_by_any_number_get_a_colour_bar():
    g = architecture_graph(TinyPermuted(), 32)
    fig = graph_figure(g, {"b1": 1.0, "b2": 10.0, "b3": 0.0}, "gradient norm", log_values=True)
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel() == "gradient norm"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "no value or ≤ 0" in legend  # stem, P3 (missing) and b3 (zero on a log scale)
    assert "stem" not in legend  # role colours give way to the values
    plain = graph_figure(g)
    assert len(plain.axes) == 1 and "permuted" in [t.get_text() for t in plain.axes[0].get_legend().get_texts()]


def test_small_numbers_read_with_their_prefix_never_as_zero():
    from fishspine.analysis.architecture.macs import format_count

    assert format_count(1.8e7, "MACs") == "18 MMACs"  # not "0.02 GMACs", never "0.00 GMACs"
    assert format_count(4.1123e9, "MACs") == "4.11 GMACs"
    assert format_count(532, "MACs") == "532 MACs"
    assert format_count(25.557e6, " params") == "25.6 M params"
