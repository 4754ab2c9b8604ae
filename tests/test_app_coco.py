"""The COCO tab driven offscreen with pytest-qt: the per-scale table and its deltas, bars and PR curves,
hover, exports equal to the command line's figures, and bad files that leave the evaluation shown."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")
pytestmark = pytest.mark.gui

import numpy as np  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import QPointF, Qt  # noqa: E402

from fishspine.analysis.coco.evaluation import evaluate, format_table, per_scale_table  # noqa: E402
from fishspine.app.components.sources import demo_sources  # noqa: E402
from fishspine.app.components.state import AppState  # noqa: E402
from fishspine.app.qt.views.coco import COLUMNS, GAIN, LOSS, CocoView  # noqa: E402
from fishspine.app.qt.workers import GeneratorWorker, start  # noqa: E402

FISHSPINE = str(Path(sys.executable).with_name("fishspine"))
NAMES = ("ResNet-50", "FishNet-150", "SCNet-50", "SpineNet-49")  # the demo lists the baseline first
SUBSET_IMAGES = 60  # of the demo's 500: each test evaluates 4 files with errors and 1,000 resamples


def _demo_subset(images: int) -> dict:
    """demo_sources() with its COCO files cut to the first `images` validation images (written once per
    test process): the views are tested on the demo's real detections, in a few seconds a test."""
    import atexit
    import shutil
    import tempfile

    demo = demo_sources()
    if not demo["coco_gt"] or set(demo["coco_results"]) != set(NAMES):
        return demo
    folder = Path(tempfile.mkdtemp(prefix="fishspine-demo-subset-"))
    atexit.register(shutil.rmtree, folder, True)
    gt = json.loads(Path(demo["coco_gt"]).read_text())
    gt["images"] = gt["images"][:images]
    kept = {im["id"] for im in gt["images"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in kept]
    (folder / "instances_val.json").write_text(json.dumps(gt))
    results = {}
    for name, path in demo["coco_results"].items():
        results[name] = str(folder / Path(path).name)
        dets = [d for d in json.loads(Path(path).read_text()) if d["image_id"] in kept]
        Path(results[name]).write_text(json.dumps(dets))
    return {**demo, "coco_gt": str(folder / "instances_val.json"), "coco_results": results}


DEMO = _demo_subset(SUBSET_IMAGES)
if not DEMO["coco_gt"] or set(DEMO["coco_results"]) != set(NAMES):
    pytest.skip("the shipped demo's COCO files (assets/demo/coco) are missing", allow_module_level=True)


BOOT = 1000  # the view's bootstrap resamples (seed 0)
KEPT: list = []  # every worker started by Jobs, for the life of the process


class Jobs:
    """run_job as the window does it: the generator in a GeneratorWorker, the result on the UI thread."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.running: set[GeneratorWorker] = set()
        self.titles: list[str] = []

    def __call__(self, title, job, on_result):
        worker = GeneratorWorker(job)
        self.running.add(worker)
        KEPT.append(worker)  # never collected under a pool thread still inside its run()
        self.titles.append(title)
        worker.signals.finished.connect(lambda r, w=worker: (self.running.discard(w), on_result(r)))
        worker.signals.failed.connect(
            lambda msg, w=worker: (self.running.discard(w), self.state.notify("error", f"{title}: {msg}"))
        )
        worker.signals.cancelled.connect(lambda w=worker: self.running.discard(w))
        start(worker)
        return worker


@pytest.fixture(scope="module")
def demo_evals():
    return evaluate(DEMO["coco_gt"], DEMO["coco_results"], bootstrap=BOOT)


def coco_view(qtbot, width: int, height: int, engine=None) -> CocoView:
    """A shown CocoView on a fresh state, its jobs run as the window runs them (`view.jobs`)."""
    state = AppState()
    jobs = Jobs(state)
    v = CocoView(state, jobs, engine)
    v.jobs = jobs
    qtbot.addWidget(v)
    v.resize(width, height)
    v.show()
    return v


@pytest.fixture
def view(qtbot):
    return coco_view(qtbot, 1100, 800)


def settle(qtbot, view) -> None:
    qtbot.waitUntil(lambda: not view.jobs.running, timeout=30_000)


def load(qtbot, view, names=NAMES, baseline="ResNet-50") -> None:
    view.state.update_settings(
        coco_gt=DEMO["coco_gt"], coco_baseline=baseline, coco_results={n: DEMO["coco_results"][n] for n in names}
    )
    view.evaluate()
    settle(qtbot, view)
    assert view.has_content and list(view.state.coco) == list(names), view.state.messages


def errors(view) -> list[str]:
    return [t for level, t in view.state.messages if level == "error"]


def table_rows(view) -> dict[str, list[str]]:
    t = view.table
    return {
        t.item(i, 0).data(Qt.UserRole): [t.item(i, j).text() for j in range(1, t.columnCount())]
        for i in range(t.rowCount())
    }


def expected_cell(row: dict, column: str) -> str:
    v, d = row[column], row.get(f"Δ{column}")
    text = "-" if math.isnan(v) else f"{v:.1f}"
    if d is None or math.isnan(d):
        return text
    if f"Δ{column}_lo" in row:
        return f"{text}  ({d:+.1f} ±{(row[f'Δ{column}_hi'] - row[f'Δ{column}_lo']) / 2:.1f})"
    return f"{text}  ({d:+.1f})"


def test_table_one_row_per_model_with_deltas_against_the_baseline(qtbot, view, demo_evals):
    load(qtbot, view)
    assert view.title == "COCO" and view.stack.currentIndex() == 1
    assert [view.table.horizontalHeaderItem(j).text() for j in range(view.table.columnCount())] == [
        "backbone",
        *COLUMNS,
    ]
    for base in ("ResNet-50", "FishNet-150", None):
        view.baseline.setCurrentText(base or "(none)")
        rows = per_scale_table(view.state.coco, base, BOOT)
        assert rows == per_scale_table(demo_evals, base, BOOT)  # the app's evaluation is the command line's
        shown = table_rows(view)
        assert list(shown) == list(NAMES)
        cli = {line.split()[0]: line for line in format_table(demo_evals, base).splitlines()[3:]}
        for r in rows:
            cells = shown[r["backbone"]]
            assert cells == [expected_cell(r, c) for c in COLUMNS]
            for cell, c in zip(cells, COLUMNS):  # the numbers as the CLI prints them
                if c in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"):
                    assert " ".join(cell.split()).split(" ±")[0].rstrip(")") in cli[r["backbone"]]
            has_deltas = base is not None and r["backbone"] != base
            assert all(("(" in cell) == has_deltas for cell in cells)
        for i in range(view.table.rowCount()):
            name_item = view.table.item(i, 0)
            assert name_item.text().endswith("(baseline)") == (name_item.data(Qt.UserRole) == base)
            assert name_item.foreground().color().name() == pg.mkColor(view_color(name_item.data(Qt.UserRole))).name()
        assert (f"Δ vs {base}" in view.info.text()) == (base is not None)
    # Deltas coloured: a gain green, a loss red.
    view.baseline.setCurrentText("ResNet-50")
    rows = {r["backbone"]: r for r in per_scale_table(demo_evals, "ResNet-50")}
    for i in range(view.table.rowCount()):
        name = view.table.item(i, 0).data(Qt.UserRole)
        for j, c in enumerate(COLUMNS, start=1):
            d = rows[name].get(f"Δ{c}")
            if d is not None and abs(d) >= 0.05:
                assert view.table.item(i, j).foreground().color() == (GAIN if d > 0 else LOSS)
    assert view.state.settings.coco_baseline == "ResNet-50"


def view_color(name: str) -> str:
    """A backbone's colour: by its family, whatever the order the files were loaded in."""
    from fishspine.app.qt.views.base import model_qcolors

    return model_qcolors(NAMES)[name]


def test_bars_and_pr_curves_one_item_per_model(qtbot, view, demo_evals):
    load(qtbot, view)
    bars = [it for it in view.bars.getPlotItem().items if isinstance(it, pg.BarGraphItem)]
    assert len(bars) == len(NAMES)
    rows = per_scale_table(demo_evals, "ResNet-50")
    for item, r in zip(bars, rows):
        assert list(item.opts["height"]) == pytest.approx([r["AP_S"], r["AP_M"], r["AP_L"]])
        assert item.opts["brush"] == view_color(r["backbone"])
    legend = [label.text for _, label in view.bars_legend.items]
    assert legend == ["ResNet-50 (baseline)", "FishNet-150", "SCNet-50", "SpineNet-49"]
    labels = {it.textItem.toPlainText() for it in view.bars.getPlotItem().items if isinstance(it, pg.TextItem)}
    fish = rows[1]
    assert f"{fish['ΔAP_S']:+.1f}" in labels and f"{rows[0]['AP_S']:.1f}" in labels  # deltas, the baseline's values

    assert list(view.pr_plots) == ["small", "medium", "large", "all"]
    for area, plot in view.pr_plots.items():
        curves = [it for it in plot.items if isinstance(it, pg.PlotDataItem)]
        assert len(curves) == len(NAMES)
        assert len(plot.legend.items) == len(NAMES)
        for j, (curve, (name, ev)) in enumerate(zip(curves, demo_evals.items())):
            rec, prec = ev.pr_curve(area, 0.5)
            ok = ~(prec != prec)
            x, y = curve.getData()
            assert x == pytest.approx(rec[ok]) and y == pytest.approx(prec[ok])
            assert curve.opts["pen"].color().name() == pg.mkColor(view_color(name)).name()
            assert plot.legend.items[j][1].text.startswith(name)
    assert not any(sum(u.values()) for u in legends_hide_the_least(qtbot, view).values())  # the demo's: off the data

    # No baseline: values above the bars, no baseline in the legend.
    view.baseline.setCurrentText("(none)")
    legend = [label.text for _, label in view.bars_legend.items]
    assert legend == list(NAMES)


CORNERS = ((1, 0), (1, 1), (0, 1), (0, 0))  # (x, y): 0 left/top, 1 right/bottom


def curve_points_under_legend(plot) -> dict[str, int]:
    """Curve name -> how many points along it (every 0.01) lie under the panel's legend on screen."""
    from fishspine.app.qt.views.coco import _densify

    box = plot.getViewBox().mapSceneToView(plot.legend.sceneBoundingRect()).boundingRect()
    out = {}
    for curve in (it for it in plot.items if isinstance(it, pg.PlotDataItem)):
        xy = _densify(np.column_stack(curve.getData()))
        x, y = xy[:, 0], xy[:, 1]
        out[curve.name()] = int(((x >= box.left()) & (x <= box.right()) & (y >= box.top()) & (y <= box.bottom())).sum())
    return out


def legends_hide_the_least(qtbot, view) -> dict[str, dict[str, int]]:
    """Each PR legend sits in the corner where it covers the fewest curve points (tried in all four)."""
    qtbot.waitUntil(lambda: all(p.legend.width() > 0 for p in view.pr_plots.values()), timeout=5_000)
    chosen = {}
    for area, plot in view.pr_plots.items():
        chosen[area] = curve_points_under_legend(plot)
        elsewhere = []
        for corner in CORNERS:
            plot.legend.anchor(itemPos=corner, parentPos=corner, offset=(4 - 8 * corner[0], 4 - 8 * corner[1]))
            elsewhere.append(sum(curve_points_under_legend(plot).values()))
        view.place_pr_legend(area)
        assert curve_points_under_legend(plot) == chosen[area]
        assert sum(chosen[area].values()) == min(elsewhere), (area, chosen[area], elsewhere)
    return chosen


def test_a_pr_legend_moves_off_a_curve_that_reaches_its_corner(qtbot, view, tmp_path):
    """A perfect detector's curve runs along the top (precision 1 up to recall 1), a weak one's down through
    the lower left and along the bottom: the legends go where they hide least, never over the perfect curve."""
    gt = json.loads(Path(DEMO["coco_gt"]).read_text())
    perfect = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in gt["annotations"]
        if not a.get("iscrowd")
    ]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    view.state.update_settings(
        coco_gt=DEMO["coco_gt"],
        coco_results={"perfect": str(tmp_path / "perfect.json"), "ResNet-50": DEMO["coco_results"]["ResNet-50"]},
    )
    view.evaluate()
    settle(qtbot, view)
    for area, under in legends_hide_the_least(qtbot, view).items():
        assert under["perfect (100.0)"] == 0, area  # never over the top row, where the perfect curve runs


def test_hover_names_the_bar_and_the_curve(qtbot, view, demo_evals):
    load(qtbot, view)
    qtbot.waitUntil(lambda: view.bars.getViewBox().sceneBoundingRect().height() > 100)
    box = view.bars.getViewBox()
    x, width, height, name, size, key = view._bar_spots[3]  # the second backbone's small-object bar
    view._bars_hovered(box.mapViewToScene(QPointF(x, height / 2)))
    r = per_scale_table(demo_evals, "ResNet-50", BOOT)[1]
    ci = f"95% CI [{r['Δ' + key + '_lo']:+.1f}, {r['Δ' + key + '_hi']:+.1f}]"
    assert view.info.text() == f"{name} · {size} objects: {key} {r[key]:.1f} ({r['Δ' + key]:+.1f} vs ResNet-50, {ci})"
    view._bars_hovered(box.mapViewToScene(QPointF(x, height + 0.4 * (box.viewRange()[1][1] - height))))
    assert view.info.text().startswith("bbox · 4 backbones")

    plot = view.pr_plots["medium"]
    curves = np.array([ev.pr_curve("medium", 0.5)[1] for ev in demo_evals.values()])
    rec, prec = demo_evals["SCNet-50"].pr_curve("medium", 0.5)
    others = np.delete(curves, NAMES.index("SCNet-50"), axis=0)
    k = int(np.nanargmax(np.nanmin(np.abs(others - prec), axis=0)))  # where SCNet-50's curve stands apart
    view._pr_hovered(plot.getViewBox().mapViewToScene(QPointF(rec[k], prec[k])))
    assert view.info.text().startswith("SCNet-50 · medium objects, IoU 0.50: precision")


def test_export_writes_the_command_lines_figures_and_data(qtbot, view, tmp_path):
    """Each kind of figure and the table the COCO tab exports are the bytes `fishspine coco` writes."""
    load(qtbot, view)
    dts = [f"{name}={DEMO['coco_results'][name]}" for name in NAMES]
    cmd = [
        FISHSPINE,
        "coco",
        "--gt",
        DEMO["coco_gt"],
        *(a for dt in dts for a in ("--dt", dt)),
        "--baseline",
        "ResNet-50",
        "-o",
        str(tmp_path / "cli"),
        "--formats",
        "svg",
        "png",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    for kind in ("sizes", "table", "pr"):
        view.kind.setCurrentText(kind)
        for suffix in ("svg", "png"):
            app = view.export(tmp_path / f"{kind}.{suffix}")[0].read_bytes()
            assert app == (tmp_path / "cli" / f"coco_bbox_{kind}.{suffix}").read_bytes(), (kind, suffix)
    assert view.export(tmp_path / "coco.csv")[0].read_bytes() == (tmp_path / "cli" / "coco_bbox.csv").read_bytes()

    payload = json.loads(view.export(tmp_path / "coco.json")[0].read_text())
    cli_payload = json.loads((tmp_path / "cli" / "coco_bbox.json").read_text())
    assert payload["baseline"] == "ResNet-50" and [r["backbone"] for r in payload["table"]] == list(NAMES)
    assert payload["table"] == cli_payload["table"]
    with pytest.raises(ValueError, match="export as"):
        view.export(tmp_path / "coco.txt")


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


BAD_GT = {
    "not JSON": ("{ not json", "not valid JSON"),
    "no images or annotations": ({"info": {}, "categories": []}, "not a COCO ground-truth file"),
    "a result list": (
        [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}],
        "looks like a result file (a list of detections): add it with Add results…",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_GT))
def test_a_bad_ground_truth_is_reported_and_the_evaluation_stays(qtbot, view, tmp_path, kind):
    load(qtbot, view, NAMES[:2])
    shown = view.state.coco
    content, reason = BAD_GT[kind]
    bad = write(tmp_path / "bad_gt.json", content)
    view.state.update_settings(coco_gt=bad)  # what Ground truth… does with the chosen file
    view.evaluate()
    settle(qtbot, view)
    [message] = errors(view)
    assert "bad_gt.json" in message and reason in message and "Ground truth…" in message
    assert "evaluation shown is kept" in message
    assert view.state.coco is shown and view.table.rowCount() == 2 and view.has_content
    assert view.state.settings.coco_gt == DEMO["coco_gt"]  # the working ground truth is back
    view.add_result_files([DEMO["coco_results"]["SCNet-50"]])  # and the next file evaluates against it
    settle(qtbot, view)
    assert list(view.state.coco) == [*NAMES[:2], "SCNet-50"] and len(errors(view)) == 1


BAD_RESULTS = {
    "not JSON": ("[{", "not valid JSON (Expecting"),
    "not a list": ({"images": []}, "JSON list of detections"),
    "unknown image ids": (
        [{"image_id": 99999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}],
        "which is not an image id of the ground truth",
    ),
    "no score": ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}], "lacks 'score'"),
}


@pytest.mark.parametrize("kind", list(BAD_RESULTS))
def test_a_bad_result_file_is_reported_and_left_out(qtbot, view, tmp_path, kind):
    load(qtbot, view, NAMES[:2])
    shown = view.state.coco
    content, reason = BAD_RESULTS[kind]
    view.add_result_files([write(tmp_path / "dets.json", content)])
    settle(qtbot, view)
    [message] = errors(view)
    assert "dets.json" in message and reason in message and "'dets' was not added" in message
    assert view.state.coco is shown and view.table.rowCount() == 2
    assert "dets" not in view.state.settings.coco_results


def test_a_bad_file_among_good_ones_costs_only_itself(qtbot, view, tmp_path):
    view.state.update_settings(coco_gt=DEMO["coco_gt"])
    view.add_result_files(
        [DEMO["coco_results"]["ResNet-50"], write(tmp_path / "broken.json", "nope"), DEMO["coco_results"]["SCNet-50"]]
    )
    settle(qtbot, view)
    assert list(view.state.coco) == ["ResNet-50", "SCNet-50"] and view.table.rowCount() == 2
    assert len(errors(view)) == 1 and "broken.json" in errors(view)[0]


def test_a_ground_truth_the_loaded_results_do_not_fit_is_refused(qtbot, view, tmp_path):
    from fishspine.analysis.coco.synthetic import synthetic_coco

    load(qtbot, view, NAMES[:2])
    shown = view.state.coco
    gt, _ = synthetic_coco(n_images=5, n_categories=3, seed=1)
    view.state.update_settings(coco_gt=write(tmp_path / "other_split.json", gt))
    view.evaluate()
    settle(qtbot, view)
    [message] = errors(view)
    assert "other_split.json does not fit the loaded results" in message and "id of the ground truth" in message
    assert "Remove those results" in message
    assert view.state.coco is shown and view.state.settings.coco_gt == DEMO["coco_gt"]
    assert list(view.state.settings.coco_results) == list(NAMES[:2])


def test_add_reuses_earlier_evaluations_and_remove_drops_a_backbone(qtbot, view, tmp_path):
    load(qtbot, view, NAMES[:2])
    first = dict(view.state.coco)
    view.add_result_files([DEMO["coco_results"]["SpineNet-49"]])
    settle(qtbot, view)
    assert list(view.state.coco) == [*NAMES[:2], "SpineNet-49"]
    assert all(view.state.coco[n] is first[n] for n in first)  # unchanged files are not evaluated again
    # Two files with the same name in different folders stay apart.
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / "ResNet-50.json"
    copy.write_bytes(open(DEMO["coco_results"]["ResNet-50"], "rb").read())
    view.add_result_files([str(copy)])
    settle(qtbot, view)
    assert list(view.state.coco) == [*NAMES[:2], "SpineNet-49", "a/ResNet-50"]

    view.table.selectRow(0)
    assert view.chosen_backbone() == "ResNet-50" and "ResNet-50.json" in view.info.text()
    view.remove_result()
    assert list(view.state.coco) == ["FishNet-150", "SpineNet-49", "a/ResNet-50"]
    assert "ResNet-50" not in view.state.settings.coco_results and view.table.rowCount() == 3
    assert view.baseline.currentText() == "(none)"  # the baseline went with it
    view.table.clearSelection()
    view.table.setCurrentCell(-1, -1)
    view.remove_result()
    assert view.state.messages[-1][0] == "warning" and "choose a backbone" in view.state.messages[-1][1]


def test_ground_truth_alone_and_results_without_ground_truth_say_what_to_do(qtbot, view):
    view.add_result_files([DEMO["coco_results"]["ResNet-50"]])
    assert view.state.messages[-1][0] == "warning" and "Ground truth…" in view.state.messages[-1][1]
    assert not view.has_content and view.stack.currentIndex() == 0
    view.state.update_settings(coco_results={})
    view.state.update_settings(coco_gt=DEMO["coco_gt"])
    view.evaluate()
    settle(qtbot, view)
    level, text = view.state.messages[-1]
    assert level == "info" and f"{SUBSET_IMAGES} images" in text and "Add results…" in text and not errors(view)


def test_a_fifo_picked_as_ground_truth_is_refused_without_blocking_the_worker(tmp_path):
    """Reading a FIFO waits for a writer forever: the evaluation worker (and the check for a result file
    picked by mistake) must refuse it from its type alone."""
    import os
    import threading

    from fishspine.analysis.jobs import run_job
    from fishspine.app.qt.views.coco import evaluation_job

    fifo = tmp_path / "instances_val.json"
    os.mkfifo(fifo)
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(run_job(evaluation_job(str(fifo), {}, {}))), daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w"):
            pass
    assert not worker.is_alive() and "is not a regular file" in outcomes[-1].gt_error
