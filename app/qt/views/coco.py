"""The COCO view: per-scale AP per backbone against a baseline, AP_S/M/L bars and PR curves per size range.

A table (values in %, deltas against the baseline in green or red, ± half their 95% paired-bootstrap
interval over images, the interval itself in the cell's tooltip), grouped bars and one PR panel per
size range, all visible at once; hovering a bar or a curve names it. Evaluation runs in a worker, one
result file at a time: a ground truth or result file that fails is reported and left out, and what
is shown stays. Export writes the command line's figure chosen in the "export" box.

The table shows either the AP columns or the AR columns ("columns": AR1/AR10/AR100, AR_S/AR_M/AR_L, as
`fishspine coco` writes them), of the box or, when the ground truth and every result file have masks, the
mask evaluation ("iou"); a result file without masks is said to lack them, and the boxes stay shown.

Below the table, three pages: the bars and PR curves; "Errors", TIDE's error breakdown of every result
(computed by the same evaluation job); and "Evidence": clicking a backbone's AP, AP_S, AP_M or AP_L cell
shows the objects behind it against the baseline (app/qt/views/coco_evidence.py); clicking one of those
crops opens its image in the Grad-CAM view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
)

from fishspine.analysis.jobs import Job, Progress
from fishspine.analysis.options import COCO_IOU_TYPES, COCO_METRICS
from fishspine.app.components.state import AppState
from fishspine.app.qt.file_dialogs import open_file, open_files
from fishspine.app.qt.views.base import View, bind_setting, model_qcolors
from fishspine.app.qt.views.coco_evidence import ErrorsPanel, EvidencePanel, EvidenceRequest

COLUMNS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR100")
AR_COLUMNS = ("AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L")
COLUMN_SETS = dict(zip(COCO_METRICS, (COLUMNS, AR_COLUMNS)))  # the "columns" choice (setting coco_metrics)
IOU_TYPES = COCO_IOU_TYPES  # the "iou" choice (setting coco_iou_type)
COLUMN_TIPS = {
    "AP": "AP at IoU 0.50:0.95, every object size",
    "AP50": "AP at IoU 0.50",
    "AP75": "AP at IoU 0.75",
    "AP_S": "AP of small objects (area < 32²)",
    "AP_M": "AP of medium objects (32² ≤ area < 96²)",
    "AP_L": "AP of large objects (area ≥ 96²)",
    "AR100": "recall, 100 detections per image",
    "AR1": "recall, 1 detection per image",
    "AR10": "recall, 10 detections per image",
    "AR_S": "recall of small objects (area < 32²), 100 detections per image",
    "AR_M": "recall of medium objects (32² ≤ area < 96²), 100 detections per image",
    "AR_L": "recall of large objects (area ≥ 96²), 100 detections per image",
}
SIZES = (("small", "AP_S"), ("medium", "AP_M"), ("large", "AP_L"))
EVIDENCE_COLUMNS = {"AP": "all", "AP_S": "small", "AP_M": "medium", "AP_L": "large"}  # a clicked cell's size range
PAGES = ("sizes", "errors", "evidence")  # the pages below the table, by the export choice that shows each
PR_IOU = 0.5
LABEL_CLEARANCE_PX = 3  # between a bar's label and the baseline's dashed line
GAIN, LOSS = QColor("#1a7f37"), QColor("#c62828")
BASELINE_TINT = QColor("#eef3fb")
RESULT_HINT = (
    "A result file is the JSON list of detections {image_id, category_id, bbox, score} "
    "that a detector wrote for this ground truth's images"
)


def file_key(path: str | Path) -> tuple:
    """What identifies a file's contents cheaply: its resolved path, size and modification time."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return (str(p), None, None)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


@dataclass
class CocoOutcome:
    """What one evaluation job produced: the evaluations that worked, and why the others did not."""

    generation: int
    gt: str
    gt_key: tuple = ()
    gt_error: str = ""
    gt_summary: str = ""
    evals: dict[str, Any] = field(default_factory=dict)  # name -> analysis.coco.CocoEvaluation, in order
    keys: dict[str, tuple] = field(default_factory=dict)  # name -> file_key of the evaluated file
    errors: dict[str, Any] = field(default_factory=dict)  # name -> {size range: analysis.coco.errors.ErrorBreakdown}
    dets: dict[str, list] = field(default_factory=dict)  # name -> checked detections (what evidence compares)
    # name -> the mask (segm) evaluation, or why there is none (the ground truth or the file has no masks)
    segm: dict[str, Any] = field(default_factory=dict)
    gt_dict: dict | None = None  # the loaded ground truth
    failed: dict[str, str] = field(default_factory=dict)  # name -> why


def evaluation_job(
    gt: str, results: Mapping[str, str], reuse: Mapping[str, tuple], generation: int = 0
) -> Job[CocoOutcome]:
    """Evaluate each result file against `gt` on its own, so one bad file costs only itself. The TIDE
    error breakdowns (`fishspine coco --errors`, the slow part) are left None for `errors_job`, which
    runs after the table is shown.

    Where the ground truth and a file have masks, the file's mask (segm) evaluation too; where they do not,
    why not (the box evaluation is kept either way).

    A job (analysis/jobs.py): progress per file; returns a CocoOutcome. `reuse` maps a name to (file_key,
    evaluation, breakdowns, detections, segm evaluation or why none) from an earlier run against the same
    ground truth: an unchanged file is not re-run.
    """
    from fishspine.analysis.coco.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
    from fishspine.analysis.coco.evaluation import CocoError, evaluate_one, load_ground_truth, load_results
    from fishspine.analysis.coco.validation import require_segmentation

    out = CocoOutcome(generation, gt, file_key(gt))
    try:
        gt_dict = load_ground_truth(gt)
    except CocoError as exc:
        out.gt_error = str(exc)
        if looks_like_results(gt):
            out.gt_error += "; it looks like a result file (a list of detections): add it with Add results…"
        return out
    out.gt_dict = gt_dict
    out.gt_summary = (
        f"{len(gt_dict['images'])} images, {len(gt_dict['annotations'])} objects, "
        f"{len(gt_dict['categories'])} categories"
    )
    try:
        require_segmentation(gt_dict, Path(gt).name)
        gt_masks = ""
    except CocoError as exc:
        gt_masks = f"the ground truth has no masks ({exc})"
    for i, (name, path) in enumerate(results.items()):
        key = file_key(path)
        earlier = reuse.get(name)
        if earlier is not None and earlier[0] == key:
            out.evals[name], out.errors[name], out.dets[name], out.segm[name] = earlier[1:]
        else:
            try:
                dets = load_results(path, gt_dict, "bbox", name)
                ev = evaluate_one(gt_dict, dets, name, "bbox", keep_matches=True)
                ev.replicates(DEFAULT_RESAMPLES, DEFAULT_SEED)  # here, in the worker: the table only reads them
                out.errors[name] = None  # errors_job's, once the table is out
                out.evals[name], out.dets[name] = ev, dets
                out.segm[name] = gt_masks or mask_evaluation(gt_dict, path, name)
            except CocoError as exc:
                out.failed[name] = str(exc)
            except Exception as exc:  # noqa: BLE001 - a malformed detection must not stop the others
                out.failed[name] = f"{path}: could not be evaluated ({type(exc).__name__}: {exc})"
        out.keys[name] = key
        yield Progress(i + 1, len(results), name)
    return out


def errors_job(gt: dict, todo: Mapping[str, tuple[Any, list]], generation: int):
    """A job: the TIDE error breakdown per size range of each {name: (evaluation, detections)}, with the
    command's defaults (its size ranges, the evaluation's maxDets): Export equals `coco --errors`'s files.
    Returns (generation, {name: breakdowns})."""
    from fishspine.analysis.coco.errors import error_breakdown

    out = {}
    for i, (name, (ev, dets)) in enumerate(todo.items()):
        yield Progress(i, len(todo), f"errors of {name}")
        out[name] = error_breakdown(gt, dets, name, None, ev.max_dets[-1])
    return generation, out


def mask_evaluation(gt: dict, path: str, name: str) -> Any:
    """The mask (segm) evaluation of result file `path` with its bootstrap replicates, or why there is none
    (a string: the file's detections carry no masks, or a mask is malformed)."""
    from fishspine.analysis.coco.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
    from fishspine.analysis.coco.evaluation import CocoError, evaluate_one, load_results

    try:
        dets = load_results(path, gt, "segm", name)
    except CocoError as exc:
        return f"{name} has no usable masks ({exc})"
    ev = evaluate_one(gt, dets, name, "segm", keep_matches=True)
    ev.replicates(DEFAULT_RESAMPLES, DEFAULT_SEED)
    return ev


LEGEND_MARGIN_PX = 4  # between a PR legend and its panel's edges


def legend_corner(
    curves: list[tuple[np.ndarray, np.ndarray]], boxes: Mapping[tuple[int, int], tuple[float, float, float, float]]
) -> tuple[int, int]:
    """Of the legend's places `boxes` (corner (x, y: 0 left/top, 1 right/bottom) -> x0, x1, y0, y1 in data
    units), the first one that the fewest curve points fall in: the legend sits off the data."""
    points = [_densify(np.column_stack(c)) for c in curves if len(c[0])]
    xy = np.concatenate(points) if points else np.zeros((0, 2))

    def inside(corner: tuple[int, int]) -> int:
        x0, x1, y0, y1 = boxes[corner]
        return int(np.count_nonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)))

    return min(boxes, key=inside)  # min keeps the first of equal counts


def _densify(xy: np.ndarray, step: float = 0.01) -> np.ndarray:
    """Points every `step` along a polyline (a curve crossing a box between two far points still counts)."""
    if len(xy) < 2:
        return xy
    seg = np.diff(xy, axis=0)
    counts = np.maximum(np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / step).astype(int), 1)
    t = np.concatenate([np.arange(n) / n for n in counts])
    start = np.repeat(xy[:-1], counts, axis=0)
    return np.vstack([start + np.repeat(seg, counts, axis=0) * t[:, None], xy[-1:]])


def looks_like_results(path: str | Path) -> bool:
    """Whether `path` holds a JSON list of detections (a result file picked as the ground truth)."""
    from fishspine.analysis.coco.validation import CocoError, read_json_file

    try:  # the guarded reader: a FIFO or device named as the ground truth must not block this worker
        data = read_json_file(path, "ground truth")
    except CocoError:
        return False
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "score" in data[0]


def sentence(text: str) -> str:
    """`text` ending with a full stop (or its own question mark)."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."


def size_range_title(area: str, bounds: tuple[float, float]) -> str:
    """'small (&lt; 32²)', 'medium (32²–96²)', 'large (≥ 96²)', 'all' (rich text, as pyqtgraph titles are)."""

    def side(v: float) -> str:
        root = math.sqrt(v)
        return f"{root:g}²" if root == int(root) else f"{v:g}"

    lo, hi = bounds
    if lo <= 0 and hi >= 1e9:
        return area
    if lo <= 0:
        return f"{area} (&lt; {side(hi)})"  # pyqtgraph titles are rich text
    if hi >= 1e9:
        return f"{area} (≥ {side(lo)})"
    return f"{area} ({side(lo)}–{side(hi)})"


class CocoView(View):
    """Per-scale AP of every loaded result file, against the chosen baseline."""

    title = "COCO"
    view_requested = Signal(str)  # the window shows this view (a crop's image goes to "cam")

    def __init__(self, state: AppState, run_job: Callable, engine: Any = None) -> None:
        super().__init__(state)
        self.run_job = run_job
        self._generation = 0  # only the newest evaluation job's outcome is applied
        self._good_gt = ""  # the ground truth of the evaluation shown
        self._good_gt_key: tuple = ()
        # name -> (file_key, evaluation, error breakdowns, detections, segm evaluation or why none) against _good_gt
        self._cache: dict[str, tuple[tuple, Any, Any, list, Any]] = {}
        self._gt_dict: dict | None = None
        self._summary = ""
        for text, slot, tip in (
            ("Ground truth…", self.open_gt, "the COCO annotation json (instances_*.json)"),
            ("Add results…", self.add_results, "one detection json per backbone (named after the file)"),
            ("Remove", self.remove_result, "remove the results of the backbone chosen in the table"),
        ):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            self.controls.addWidget(b)
        self.baseline = QComboBox()
        self.baseline.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.baseline.setToolTip("deltas in the table and above the bars are against this backbone")
        self.baseline.currentTextChanged.connect(self._baseline_chosen)
        state.settings_changed.connect(self._settings_changed)
        self.kind = QComboBox()
        self.kind.addItems(["table", "sizes", "pr", "errors", "evidence"])
        self.kind.setToolTip(
            "the figure Export and Copy write: the table, AP by object size, PR curves, the error breakdown "
            "or the evidence panel's gallery"
        )
        self.kind.currentTextChanged.connect(self._kind_chosen)
        self.iou_type = QComboBox()
        self.iou_type.addItems(IOU_TYPES)
        self.iou_type.setToolTip("box (bbox) or mask (segm) evaluation; segm needs masks in ground truth and results")
        bind_setting(state, self.iou_type, "coco_iou_type", self._iou_type_chosen)
        self.metrics = QComboBox()
        self.metrics.addItems(list(COLUMN_SETS))
        self.metrics.setToolTip(
            "the table's columns: average precision (AP, AP50, AP75, AP_S/M/L) or recall (AR1/10/100, AR_S/M/L)"
        )
        bind_setting(state, self.metrics, "coco_metrics", self.refresh)
        for text, w in (
            ("baseline", self.baseline),
            ("iou", self.iou_type),
            ("columns", self.metrics),
            ("export", self.kind),
        ):
            self.controls.addWidget(QLabel(text))
            self.controls.addWidget(w)
        self.placeholder.setText(
            "Open a COCO ground-truth json (Ground truth…) and one result json per backbone "
            "(Add results…), or load the demo"
        )

        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.itemSelectionChanged.connect(self._row_chosen)
        self.table.cellClicked.connect(self.open_evidence)

        label_font = QFont()
        label_font.setPointSizeF(8.5)
        self._label_font = label_font
        self.bars = pg.PlotWidget()
        self.bars.setLabel("left", "AP (%)")
        self.bars.getPlotItem().setMenuEnabled(False)
        self.bars.setMouseEnabled(x=False, y=False)
        self.bars.hideButtons()
        self.bars_legend = self.bars.addLegend(offset=(8, 4), labelTextSize="8.5pt", colCount=2)
        self.bars.scene().sigMouseMoved.connect(self._bars_hovered)
        self._bar_spots: list[tuple[float, float, float, str, str, str]] = []  # x, width, height, name, size, key
        self._bar_labels: list[tuple[pg.TextItem, float, float, int]] = []  # label, x, bar top, size group
        self._base_levels: dict[int, float] = {}  # size group -> the baseline's AP (its dashed line)
        self.bars.getViewBox().sigResized.connect(lambda *_: self.place_bar_labels())

        self.pr = pg.GraphicsLayoutWidget()
        self.pr.scene().sigMouseMoved.connect(self._pr_hovered)
        self.pr_plots: dict[str, pg.PlotItem] = {}
        self._pr_curves: dict[str, list[tuple[str, pg.PlotDataItem, np.ndarray, np.ndarray, float]]] = {}

        plots = QSplitter(Qt.Horizontal)
        plots.addWidget(self.bars)
        plots.addWidget(self.pr)
        plots.setSizes([450, 650])
        self.errors_panel = ErrorsPanel()
        self.evidence_panel = EvidencePanel(state, run_job, engine)  # engine: the detection CAMs' passes
        self.evidence_panel.view_requested.connect(self.view_requested)  # a crop's image, in Grad-CAM
        self.pages = QTabWidget()
        self.pages.addTab(plots, "AP by size")
        self.pages.addTab(self.errors_panel, "Errors")
        self.pages.addTab(self.evidence_panel, "Evidence")
        self.pages.currentChanged.connect(self._page_chosen)
        self.body = QSplitter(Qt.Vertical)
        self.body.addWidget(self.table)
        self.body.addWidget(self.pages)
        self.body.setSizes([170, 560])
        self._table_rows_fitted = -1
        self.set_display(self.body)
        state.coco_changed.connect(self._coco_changed)
        # A hover readout describes what was drawn: it goes when that changes, before the redraw.
        state.coco_changed.connect(self.clear_readout)
        state.settings_changed.connect(self._coco_setting_changed)

    # -- files
    def open_gt(self) -> None:
        """Ask for the ground-truth json and evaluate every loaded result file against it."""
        path = open_file(self, "COCO ground truth", "JSON (*.json)")
        if path:
            self.state.update_settings(coco_gt=path)
            self.evaluate()

    def add_results(self) -> None:
        """Ask for result jsons (one per backbone) and evaluate them."""
        paths = open_files(self, "COCO result files (one per backbone)", "JSON (*.json)")
        self.add_result_files(paths)

    def add_result_files(self, paths) -> None:
        """Add result files, each named after its file (its folder too when two files share a name)."""
        results = self.state.settings.coco_results
        for p in map(str, paths):
            if p in results.values():
                continue
            stem = Path(p).stem
            name = stem if stem not in results else f"{Path(p).parent.name}/{stem}"
            base, n = name, 2
            while name in results:
                name, n = f"{base} ({n})", n + 1
            results[name] = p
        if paths:
            self.evaluate()

    def remove_result(self) -> None:
        """Remove the backbone chosen in the table."""
        name = self.chosen_backbone()
        if name is None:
            self.state.notify("warning", "COCO: choose a backbone's row in the table to remove its results")
            return
        self.state.settings.coco_results.pop(name, None)
        self._cache.pop(name, None)
        self.state.set_coco({k: v for k, v in self.state.coco.items() if k != name})

    def chosen_backbone(self) -> str | None:
        """The backbone of the table's current row, if any."""
        row = self.table.currentRow()
        item = self.table.item(row, 0) if row >= 0 else None
        return item.data(Qt.UserRole) if item is not None else None

    def evaluate(self) -> None:
        """Evaluate the result files of the settings against their ground truth, in a worker."""
        s = self.state.settings
        if not s.coco_gt:
            if s.coco_results:
                self.state.notify(
                    "warning",
                    f"COCO: {len(s.coco_results)} result file(s) wait for the ground "
                    "truth: open its json with Ground truth…",
                )
            return
        self._generation += 1
        reuse = self._cache if s.coco_gt == self._good_gt and file_key(s.coco_gt) == self._good_gt_key else {}
        self.run_job(
            "COCO evaluation",
            partial(evaluation_job, s.coco_gt, dict(s.coco_results), dict(reuse), self._generation),
            self._evaluated,
        )

    def _evaluated(self, out: CocoOutcome) -> None:
        if not isinstance(out, CocoOutcome) or out.generation != self._generation:
            return  # superseded by a newer evaluation
        s, shown = self.state.settings, self.state.coco
        kept = "the evaluation shown is kept" if shown else "nothing was evaluated"
        if out.gt_error:
            self.state.update_settings(coco_gt=self._good_gt)
            self.state.notify(
                "error",
                f"COCO: {sentence(out.gt_error)} Open the dataset's annotation file "
                f"(instances_*.json) with Ground truth…; {kept}.",
            )
            return
        changed_gt = bool(self._good_gt) and out.gt != self._good_gt
        broken = [n for n in out.failed if n in shown]
        if changed_gt and broken:  # a new ground truth that the loaded results do not fit: keep everything
            self.state.update_settings(coco_gt=self._good_gt)
            self.state.notify(
                "error",
                f"COCO: ground truth {out.gt} does not fit the loaded results "
                f"({out.failed[broken[0]]}); kept {self._good_gt}. Remove those results "
                "before switching to another dataset's ground truth.",
            )
            return
        for name, why in out.failed.items():
            s.coco_results.pop(name, None)
            hint = f" {RESULT_HINT}." if "not valid JSON" in why or "could not be evaluated" in why else ""
            self.state.notify("error", f"COCO: {sentence(why)} {name!r} was not added; {kept}.{hint}")
        self._good_gt, self._good_gt_key = out.gt, out.gt_key
        self._cache = {n: (out.keys[n], ev, out.errors[n], out.dets[n], out.segm[n]) for n, ev in out.evals.items()}
        self._gt_dict = out.gt_dict
        if not out.evals and not out.failed:
            self.state.notify(
                "info",
                f"COCO: ground truth {Path(out.gt).name} ({out.gt_summary}); "
                "now add one result json per backbone (Add results…)",
            )
        if list(out.evals) != list(shown) or any(out.evals[n] is not shown[n] for n in out.evals):
            self.state.set_coco(out.evals)
        self._iou_type_chosen()
        todo = {n: (c[1], c[3]) for n, c in self._cache.items() if c[2] is None}
        if todo:  # the error breakdowns, after the table: the slow part of an evaluation
            generation = self._generation
            self.run_job("COCO errors", partial(errors_job, self._gt_dict, todo, generation), self._errors_computed)

    def _errors_computed(self, result) -> None:
        generation, breakdowns = result
        if generation != self._generation:
            return  # a newer evaluation replaced what these describe
        for name, errors in breakdowns.items():
            if name in self._cache:
                key, ev, _none, dets, segm = self._cache[name]
                self._cache[name] = (key, ev, errors, dets, segm)
        self._show_errors()

    def _show_errors(self) -> None:
        """The Errors page, once every result's breakdown is in (empty while errors_job runs)."""
        done = self.breakdowns()
        self.errors_panel.show_breakdowns(done if len(done) == len(self.state.coco) else {}, self.base())

    # -- state -> widgets
    def _coco_changed(self) -> None:
        self.baseline.blockSignals(True)
        self.baseline.clear()
        self.baseline.addItems(["(none)"] + list(self.state.coco))
        chosen = self.state.settings.coco_baseline
        self.baseline.setCurrentText(chosen if chosen in self.state.coco else "(none)")
        self.baseline.blockSignals(False)
        if self.isVisible():  # a hidden tab is drawn when it is shown (the window refreshes on switching)
            self.refresh()

    def _baseline_chosen(self, text: str) -> None:
        self.state.update_settings(coco_baseline=text if text in self.state.coco else "")

    def _settings_changed(self, changed: set[str]) -> None:
        if "coco_baseline" in changed:  # chosen here, or restored from a session
            chosen = self.state.settings.coco_baseline
            self.baseline.blockSignals(True)
            self.baseline.setCurrentText(chosen if chosen in self.state.coco else "(none)")
            self.baseline.blockSignals(False)
            self.refresh()

    def _coco_setting_changed(self, changed: set[str]) -> None:
        if any(c.startswith("coco") for c in changed):
            self.clear_readout()

    def clear_readout(self) -> None:
        """Forget the hover readout (and the emphasised curve): what it described is about to change."""
        self.info.setText(self._summary if self.has_content else "")
        self._emphasise(None)

    def _iou_type_chosen(self) -> None:
        """segm chosen where the results allow it is shown; otherwise say why not and show the boxes."""
        if self.state.settings.coco_iou_type == "segm" and self.state.coco:
            why = self.segm_missing()
            if why:
                self.state.notify("warning", f"COCO: no mask (segm) evaluation: {sentence(why)} Showing bbox.")
                self.state.update_settings(coco_iou_type="bbox")  # the control says what is shown
                return
        self.refresh()

    def segm_missing(self) -> str:
        """Why the loaded results have no mask evaluation ("" when every one has it)."""
        for name in self.state.coco:
            segm = self._cache.get(name, (None,) * 5)[4]
            if segm is None:
                return f"{name} was not evaluated with masks"
            if isinstance(segm, str):
                return segm
        return ""

    def iou(self) -> str:
        """The evaluation shown: "segm" when chosen and every result has it, else "bbox"."""
        return "segm" if self.state.settings.coco_iou_type == "segm" and not self.segm_missing() else "bbox"

    def evals(self) -> dict[str, Any]:
        """The evaluations shown (name -> CocoEvaluation): the boxes', or the masks' when chosen."""
        if self.iou() == "segm":
            return {n: self._cache[n][4] for n in self.state.coco}
        return self.state.coco

    def columns(self) -> tuple[str, ...]:
        """The table's columns: the AP ones or the AR ones."""
        return COLUMN_SETS.get(self.state.settings.coco_metrics, COLUMNS)

    def colors(self) -> dict[str, str]:
        """Each backbone's colour (by its family, then a shade): the same whatever order the files came in."""
        return model_qcolors(self.state.coco)

    def base(self) -> str | None:
        """The baseline, when it is among the evaluations."""
        b = self.state.settings.coco_baseline
        return b if b in self.state.coco else None

    def bootstrap(self) -> int:
        """The resamples of the deltas' intervals: the default when every evaluation has its replicates
        (computed by the evaluation job), else 0 (no intervals; never computed on the UI thread)."""
        from fishspine.analysis.coco.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED

        evals = self.evals().values()
        ready = evals and all(ev.replicates(DEFAULT_RESAMPLES, DEFAULT_SEED, compute=False) is not None for ev in evals)
        return DEFAULT_RESAMPLES if ready else 0

    def rows(self) -> list[dict]:
        """per_scale_table's rows against the baseline, with the intervals when they are computed."""
        from fishspine.analysis.coco.bootstrap import DEFAULT_SEED
        from fishspine.analysis.coco.evaluation import per_scale_table

        return per_scale_table(self.evals(), self.base(), self.bootstrap(), DEFAULT_SEED)

    def show_state(self) -> bool:
        self._summary = ""
        self.info.setText("")
        evals = self.evals()
        if not evals:
            return False
        base = self.base()
        rows = self.rows()
        self._fill_table(rows, base)
        self._draw_bars(rows, base)
        self._draw_pr(evals)
        self._show_errors()
        req = self.evidence_panel.request
        if req and (req.baseline != base or self._cache.get(req.backbone, [None] * 4)[3] is not req.dets[req.backbone]):
            self.evidence_panel.clear()  # what it compared changed: a click on the table shows the new evidence
        why = self.segm_missing()
        self.iou_type.setToolTip(
            "box (bbox) or mask (segm) evaluation" + (f"; segm is not available: {why}" if why else "")
        )
        first = next(iter(evals.values()))
        self._summary = f"{first.iou_type} · {len(evals)} backbone{'s' * (len(evals) != 1)}" + (
            f" · Δ vs {base}" if base else " · choose a baseline for deltas"
        )
        self.info.setText(self._summary)
        self.info.setToolTip(
            f"ground truth: {self._good_gt or self.state.settings.coco_gt}\nobject size from the {first.area_source}"
        )
        return True

    def _fill_table(self, rows: list[dict], base: str | None) -> None:
        columns, colors, evidence = self.columns(), self.colors(), self.iou() == "bbox"  # evidence compares boxes
        self.table.clearContents()
        self.table.setColumnCount(1 + len(columns))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(["backbone"] + list(columns))
        for j, c in enumerate(columns, start=1):
            self.table.horizontalHeaderItem(j).setToolTip(COLUMN_TIPS[c] + " (%); Δ against the baseline")
        bold = QFont()
        bold.setBold(True)
        files = self.state.settings.coco_results
        for i, r in enumerate(rows):
            name = r["backbone"]
            is_base = name == base
            item = QTableWidgetItem(f"{name}  (baseline)" if is_base else name)
            item.setData(Qt.UserRole, name)
            item.setForeground(QBrush(QColor(colors[name])))
            item.setFont(bold)
            item.setToolTip(files.get(name, name))
            self.table.setItem(i, 0, item)
            for j, c in enumerate(columns, start=1):
                v, d = r.get(c, math.nan), r.get(f"Δ{c}")
                text = "-" if math.isnan(v) else f"{v:.1f}"
                cell = QTableWidgetItem(text)
                if d is not None and not math.isnan(d):
                    lo, hi = r.get(f"Δ{c}_lo"), r.get(f"Δ{c}_hi")
                    if lo is not None and not math.isnan(lo):
                        cell.setText(f"{text}  ({d:+.1f} ±{(hi - lo) / 2:.1f})")
                        cell.setToolTip(
                            f"Δ{c} {d:+.2f}, 95% paired bootstrap interval over images [{lo:+.2f}, {hi:+.2f}]"
                        )
                    else:
                        cell.setText(f"{text}  ({d:+.1f})")
                    if abs(d) >= 0.05:
                        cell.setForeground(QBrush(GAIN if d > 0 else LOSS))
                if is_base:
                    cell.setBackground(QBrush(BASELINE_TINT))
                    cell.setToolTip("the baseline")
                elif base and c in EVIDENCE_COLUMNS and evidence:
                    tip = cell.toolTip()
                    cell.setToolTip((tip + "\n" if tip else "") + "click: the objects behind this number")
                cell.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(i, j, cell)
            if is_base:
                item.setBackground(QBrush(BASELINE_TINT))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        if self._table_rows_fitted != len(rows):  # as tall as its rows (up to 12), the plots get the rest
            self._table_rows_fitted = len(rows)
            height = (
                header.sizeHint().height()
                + self.table.verticalHeader().defaultSectionSize() * min(len(rows), 12)
                + 2 * self.table.frameWidth()
                + 2
            )
            self.table.setMaximumHeight(height)
            self.body.setSizes([height, max(sum(self.body.sizes()) - height, 400)])

    def _draw_bars(self, rows: list[dict], base: str | None) -> None:
        self.bars.clear()
        self.bars_legend.clear()
        self._bar_spots = []
        n = len(rows)
        width = 0.8 / max(n, 1)
        top = 0.0
        colors = self.colors()
        self._bar_labels = []
        self._base_levels = {}
        for j, r in enumerate(rows):
            xs = np.arange(len(SIZES)) + (j - (n - 1) / 2) * width
            vals = [0.0 if math.isnan(r[k]) else r[k] for _, k in SIZES]
            top = max(top, *vals)
            color = colors[r["backbone"]]
            is_base = r["backbone"] == base
            bars = pg.BarGraphItem(
                x=xs,
                height=vals,
                width=width * 0.9,
                brush=color,
                pen=pg.mkPen("#222", width=1.5) if is_base else None,
                name=f"{r['backbone']} (baseline)" if is_base else r["backbone"],
            )
            self.bars.addItem(bars)  # named: the legend lists it
            for x, v, (size, k) in zip(xs, vals, SIZES):
                d = r.get(f"Δ{k}")
                label = f"{v:.1f}" if d is None or math.isnan(d) else f"{d:+.1f}"
                color_text = (
                    "#333" if d is None or math.isnan(d) or abs(d) < 0.05 else (GAIN.name() if d > 0 else LOSS.name())
                )
                text = pg.TextItem(label, color=color_text, anchor=(0.5, 1.0))
                text.setFont(self._label_font)
                text.setPos(x, v)
                self.bars.addItem(text)
                self._bar_labels.append((text, x, v, SIZES.index((size, k))))
                self._bar_spots.append((x, width, v, r["backbone"], size, k))
            if is_base:  # the baseline's level across each group, what the deltas are measured from
                self._base_levels = dict(enumerate(vals))
                for i, v in enumerate(vals):
                    line = pg.PlotCurveItem(
                        [i - 0.42, i + 0.42], [v, v], pen=pg.mkPen(color, width=1.5, style=Qt.DashLine)
                    )
                    self.bars.addItem(line)
        axis = self.bars.getAxis("bottom")
        axis.setTicks([[(i, f"{s} ({k})") for i, (s, k) in enumerate(SIZES)]])
        self.bars.setXRange(-0.5, len(SIZES) - 0.5, padding=0)
        self.bars.setYRange(0, max(top * 1.35, 1.0), padding=0)
        self.place_bar_labels()
        # Two short lines: a long one would widen the plot past its splitter pane and clip the bars.
        self.bars.setTitle(
            "AP by object size (%)"
            + (f"<br><span style='font-size:8.5pt; color:#555'>labels: Δ against {base}</span>" if base else ""),
            size="10pt",
        )

    def place_bar_labels(self) -> None:
        """Each bar's label above its bar, moved above the baseline's dashed line where the line would strike
        it through (in pixels: redone when the plot's size changes)."""
        box = self.bars.getViewBox()
        _, py = box.viewPixelSize()
        if not py or not math.isfinite(py):
            return
        for text, x, v, group in self._bar_labels:
            height = text.boundingRect().height() * py  # the label's height in data units at this size
            bottom, line = v, self._base_levels.get(group)
            clearance = LABEL_CLEARANCE_PX * py
            if line is not None and bottom - clearance < line < bottom + height + clearance:
                bottom = line + clearance  # the line would cross the label (or touch it): lift it above
            text.setPos(x, bottom)

    def _draw_pr(self, evals: Mapping[str, Any]) -> None:
        ranges = next(iter(evals.values())).area_ranges
        sizes = [s for s, _ in SIZES]
        areas = [a for a in sizes if a in ranges] + [a for a in ranges if a not in sizes]  # "all" last
        if list(self.pr_plots) != areas:
            self.pr.clear()
            self.pr_plots = {}
            cols = 2 if len(areas) > 2 else len(areas)
            self.pr.addLabel(
                f"Precision–recall per object size, IoU {PR_IOU:.2f} (AP{int(100 * PR_IOU)} in the legends)",
                row=0,
                col=0,
                colspan=cols,
                size="10pt",
            )
            for i, area in enumerate(areas):
                row, col = divmod(i, cols)
                row += 1
                p = self.pr.addPlot(row=row, col=col, title=size_range_title(area, ranges[area]))
                p.setXRange(-0.02, 1.04, padding=0)  # room for the 1.0 tick labels
                p.setYRange(0, 1.06, padding=0)
                p.setLabel("bottom", "recall")
                p.setLabel("left", "precision" if col == 0 else "")
                p.showGrid(x=True, y=True, alpha=0.15)
                p.addLegend(
                    offset=(-LEGEND_MARGIN_PX, LEGEND_MARGIN_PX),
                    labelTextSize="8pt",
                    verSpacing=-6,
                    brush=(255, 255, 255, 210),
                )
                p.setMenuEnabled(False)
                p.hideButtons()
                p.getViewBox().sigResized.connect(lambda *_, a=area: self.place_pr_legend(a))
                if i:
                    p.setXLink(self.pr_plots[areas[0]])
                    p.setYLink(self.pr_plots[areas[0]])
                self.pr_plots[area] = p
        self._pr_curves = {}
        colors = self.colors()
        for area, p in self.pr_plots.items():
            p.clear()
            if p.legend is not None:
                p.legend.clear()
            self._pr_curves[area] = []
            for name, ev in evals.items():
                rec, prec = ev.pr_curve(area, PR_IOU)
                ap = 100 * ev.average_precision(area, iou=PR_IOU)
                ok = np.isfinite(prec)
                curve = p.plot(
                    rec[ok],
                    prec[ok],
                    pen=pg.mkPen(colors[name], width=2),
                    name=f"{name} ({'-' if math.isnan(ap) else f'{ap:.1f}'})",
                )
                self._pr_curves[area].append((name, curve, rec[ok], prec[ok], ap))
            self.place_pr_legend(area)

    def place_pr_legend(self, area: str) -> None:
        """Put the legend of `area`'s PR panel in the corner (top right, bottom right, bottom left, top left)
        where it covers the fewest curve points, by its size on screen now."""
        p, curves = self.pr_plots.get(area), self._pr_curves.get(area)
        if p is None or p.legend is None or not curves:
            return
        vb, margin = p.getViewBox(), LEGEND_MARGIN_PX
        (x0, x1), (y0, y1) = vb.viewRange()
        if vb.width() <= 0 or vb.height() <= 0:
            return  # not laid out yet: placed when it is (sigResized)
        dx, dy = (x1 - x0) / vb.width(), (y1 - y0) / vb.height()
        w, h = (p.legend.width() + margin) * dx, (p.legend.height() + margin) * dy
        xs = {0: (x0 + margin * dx, x0 + w), 1: (x1 - w, x1 - margin * dx)}
        ys = {0: (y1 - h, y1 - margin * dy), 1: (y0 + margin * dy, y0 + h)}  # 0: top (high precision)
        boxes = {(cx, cy): (*xs[cx], *ys[cy]) for cx, cy in ((1, 0), (1, 1), (0, 1), (0, 0))}
        corner = legend_corner([(c[2], c[3]) for c in curves], boxes)
        offset = (margin - 2 * margin * corner[0], margin - 2 * margin * corner[1])
        p.legend.anchor(itemPos=corner, parentPos=corner, offset=offset)

    # -- errors and evidence
    def breakdowns(self) -> dict[str, Any]:
        """The error breakdowns (name -> size range -> ErrorBreakdown) of the evaluations shown, those
        computed so far (errors_job runs after the table is shown)."""
        return {n: self._cache[n][2] for n in self.state.coco if n in self._cache and self._cache[n][2] is not None}

    def _kind_chosen(self, kind: str) -> None:
        self.pages.setCurrentIndex(PAGES.index(kind) if kind in PAGES[1:] else 0)

    def _page_chosen(self, page: int) -> None:
        if page and self.kind.currentText() != PAGES[page]:
            self.kind.setCurrentText(PAGES[page])
        elif not page and self.kind.currentText() in PAGES[1:]:
            self.kind.setCurrentText("table")

    def open_evidence(self, row: int, column: int) -> None:
        """A click on the table: a backbone's AP/AP_S/AP_M/AP_L cell opens the objects behind it, in a worker."""
        key = self.table.horizontalHeaderItem(column).text() if column > 0 else ""
        item = self.table.item(row, 0)
        if key not in EVIDENCE_COLUMNS or item is None:
            return
        if self.iou() != "bbox":
            self.state.notify(
                "info",
                "COCO: the objects behind a number are matched by their boxes; switch the table to bbox to open them",
            )
            return
        name, base = item.data(Qt.UserRole), self.base()
        if base is None:
            self.state.notify("warning", "COCO: choose a baseline to see the objects behind a difference")
            return
        if name == base or name not in self._cache or base not in self._cache or self._gt_dict is None:
            return
        colors = self.colors()
        area = EVIDENCE_COLUMNS[key]
        self.evidence_panel.open(
            EvidenceRequest(
                gt=self._gt_dict,
                backbone=name,
                baseline=base,
                dets={name: self._cache[name][3], base: self._cache[base][3]},
                area=area,
                area_ranges=dict(self.state.coco[name].area_ranges),
                colors=(colors[name], colors[base]),
            )
        )
        self.pages.setCurrentWidget(self.evidence_panel)

    # -- hover
    def _bars_hovered(self, pos) -> None:
        box = self.bars.getViewBox()
        if not box.sceneBoundingRect().contains(pos) or not self._bar_spots:
            return
        p = box.mapSceneToView(pos)
        hit = next((s for s in self._bar_spots if abs(p.x() - s[0]) <= s[1] / 2 and 0 <= p.y() <= max(s[2], 0.5)), None)
        if hit is None:
            self.info.setText(self._summary)
            return
        _, _, _, name, size, key = hit
        self.info.setText(self.describe(name, key, f"{size} objects"))

    def describe(self, name: str, key: str, what: str) -> str:
        """'<name> · <what>: <key> 9.7 (+1.4 vs <baseline>)', from the per-scale table."""
        base = self.base()
        row = next(r for r in self.rows() if r["backbone"] == name)
        v, d = row[key], row.get(f"Δ{key}")
        text = f"{name} · {what}: {key} {'-' if math.isnan(v) else f'{v:.1f}'}"
        if d is not None and not math.isnan(d):
            lo, hi = row.get(f"Δ{key}_lo"), row.get(f"Δ{key}_hi")
            ci = f", 95% CI [{lo:+.1f}, {hi:+.1f}]" if lo is not None and not math.isnan(lo) else ""
            text += f" ({d:+.1f} vs {base}{ci})"
        elif name == base:
            text += " (the baseline)"
        return text

    def _pr_hovered(self, pos) -> None:
        for area, p in self.pr_plots.items():
            box = p.getViewBox()
            if not box.sceneBoundingRect().contains(pos):
                continue
            v = box.mapSceneToView(pos)
            px, py = box.viewPixelSize()
            best, best_d = None, 10.0  # pixels
            for entry in self._pr_curves.get(area, []):
                _, _, rec, prec, _ = entry
                if not len(rec):
                    continue
                d = np.hypot((rec - v.x()) / px, (prec - v.y()) / py)
                k = int(np.argmin(d))
                if d[k] < best_d:
                    best, best_d = (entry, k), float(d[k])
            self._emphasise(best[0][0] if best else None)
            if best is None:
                self.info.setText(self._summary)
                return
            (name, _, rec, prec, ap), k = best
            self.info.setText(
                f"{name} · {area} objects, IoU {PR_IOU:.2f}: precision {prec[k]:.2f} at recall "
                f"{rec[k]:.2f} · AP{int(PR_IOU * 100)} {'-' if math.isnan(ap) else f'{ap:.1f}'}"
            )
            return

    def _emphasise(self, model: str | None) -> None:
        colors = self.colors()
        for curves in self._pr_curves.values():
            for name, curve, *_ in curves:
                curve.setPen(pg.mkPen(colors.get(name, "#777777"), width=3.5 if name == model else 2))
                curve.setZValue(1 if name == model else 0)

    def _row_chosen(self) -> None:
        name = self.chosen_backbone()
        ev = self.evals().get(name) if name else None
        if ev is not None:
            path = self.state.settings.coco_results.get(name, "")
            self.info.setText(f"{name}: {Path(path).name or name} · AP {100 * ev.average_precision():.1f}")

    # -- export
    def export_result(self):
        """The errors and evidence pages export as their commands write them; the rest as the view's figure."""
        from fishspine.analysis.figures.coco_errors import errors_export

        kind = self.kind.currentText()
        if kind == "errors":
            if len(self.breakdowns()) < len(self.state.coco):
                raise ValueError("the error breakdown is still being computed: export it in a moment")
            return errors_export(self.breakdowns(), self.base())
        if kind == "evidence":
            return self.evidence_panel.export_result()
        return super().export_result()

    def export_figure(self):
        from fishspine.analysis.coco.bootstrap import DEFAULT_SEED
        from fishspine.analysis.figures.coco import pr_curves_figure, size_bars_figure, table_figure

        evals, base, boot = self.evals(), self.base(), self.bootstrap()
        columns = AR_COLUMNS if self.columns() == AR_COLUMNS else None  # AP: the table `fishspine coco` draws
        return {
            "table": lambda: table_figure(evals, base, boot, DEFAULT_SEED, columns),
            "sizes": lambda: size_bars_figure(evals, base, boot, DEFAULT_SEED),
            "pr": lambda: pr_curves_figure(evals, PR_IOU),
        }[self.kind.currentText()]()

    def export_data(self):
        from fishspine.analysis.coco.bootstrap import DEFAULT_SEED

        base, boot = self.base(), self.bootstrap()
        rows = self.rows()
        payload = {"baseline": base, "table": rows}
        if boot and base:
            payload["bootstrap"] = {"resamples": boot, "seed": DEFAULT_SEED, "confidence": 0.95, "over": "images"}
        return rows, payload
