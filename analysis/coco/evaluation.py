"""COCO per-scale evaluation: AP / AR by object size for box and mask, deltas against a baseline,
PR curves per size range, per-class x per-size breakdown.

Matching runs once per result file through faster-coco-eval's C++ engine (the COCOeval algorithm,
numbers identical to pycocotools: tested); the accumulated precision/recall arrays over every IoU
threshold, class, size range and maxDets are kept, so re-slicing by size range or class costs
nothing. Object size comes from the ground truth's `area` field, as in pycocotools (in COCO that is
the mask area, also for box evaluation). Detections are sized as pycocotools' loadRes sizes them: by
their box whenever the result list carries boxes (bbox results, and segm results that have a `bbox`),
by their mask only for segm results without one.

With `keep_matches`, the per-image matching is kept too (analysis/coco/bootstrap.py), and the deltas
of the table get paired-bootstrap confidence intervals over images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fishspine.analysis.coco.validation import (
    CocoError,
    read_json_file,
    require_segmentation,
    validate_ground_truth,
    validate_results,
)
from fishspine.analysis.jobs import Job, Progress, run_job
from fishspine.analysis.parallel import fork_is_safe, side_by_side

DEFAULT_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e10),
}
DEFAULT_MAX_DETS = (1, 10, 100)
STAT_NAMES = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR10", "AR100", "AR_S", "AR_M", "AR_L")
AREA_SOURCE = "ground-truth `area` field (mask area in COCO), detections by {what}"


def _read_json(source: str | Path | Any, what: str) -> Any:
    if isinstance(source, (str, Path)):
        return read_json_file(source, what)
    return source


def load_ground_truth(source: str | Path | dict) -> dict:
    """A checked, normalised copy of a COCO ground truth (file or dict); the caller's dict is never changed."""
    gt = _read_json(source, "ground truth")
    name = str(source) if isinstance(source, (str, Path)) else "ground truth"
    return validate_ground_truth(gt, name)


def load_results(source: str | Path | list, gt: dict, iou_type: str, name: str = "results") -> list[dict]:
    """Checked copies of the detections for `gt` (as `load_ground_truth` returns it): known image and
    category ids, the fields `iou_type` needs, of the right types; the caller's list is never changed."""
    if iou_type not in ("bbox", "segm"):
        raise CocoError(f"unknown iou type {iou_type!r}; use bbox or segm")
    dets = _read_json(source, f"result file for {name}")
    label = str(source) if isinstance(source, (str, Path)) else name
    return validate_results(dets, gt, iou_type, label)


@dataclass
class CocoEvaluation:
    """The accumulated evaluation of one result file: slice it by IoU, size range, class, maxDets."""

    name: str
    iou_type: str
    area_ranges: dict[str, tuple[float, float]]
    max_dets: tuple[int, ...]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: list[int]
    category_names: list[str]
    precision: np.ndarray = field(repr=False)  # (T, R, K, A, M), -1 where undefined
    recall: np.ndarray = field(repr=False)  # (T, K, A, M)
    detections_sized_by: str = "box"  # "box" or "mask": what the evaluator took each detection's area from
    matches: Any = field(default=None, repr=False, compare=False)  # bootstrap.ImageMatches, when kept
    _replicates: dict = field(default_factory=dict, repr=False, compare=False)  # (n, seed) -> (n, 6) array

    def replicates(self, n: int, seed: int, compute: bool = True) -> np.ndarray | None:
        """(n, 6) bootstrap replicates of AP, AP50, AP75, AP_S, AP_M, AP_L (in [0, 1]) over images, drawn
        from `seed`: the same draws for every evaluation of the same ground truth. Cached; None when the
        matching was not kept (or not cached and `compute` is False)."""
        from fishspine.analysis.coco.bootstrap import draw_weights, replicate_stats

        key = (int(n), int(seed))
        if key not in self._replicates:
            if self.matches is None or not compute:
                return None
            weights = draw_weights(len(self.matches.image_ids), key[0], key[1])
            self._replicates[key] = replicate_stats(self.matches, weights)
        return self._replicates[key]

    @property
    def area_source(self) -> str:
        """Where object sizes came from, for table headers and exported data."""
        if self.detections_sized_by == "mask":
            return AREA_SOURCE.format(what="their mask")
        if self.iou_type == "segm":
            return AREA_SOURCE.format(what="their `bbox` (segm results that carry one are sized by it)")
        return AREA_SOURCE.format(what="their box")

    def _a(self, area: str) -> int:
        if area not in self.area_ranges:
            raise KeyError(f"no size range {area!r}; have {', '.join(self.area_ranges)}")
        return list(self.area_ranges).index(area)

    def _t(self, iou: float) -> int:
        hits = np.where(np.isclose(self.iou_thresholds, iou))[0]
        if not len(hits):
            raise KeyError(f"IoU {iou} is not one of the thresholds {self.iou_thresholds.tolist()}")
        return int(hits[0])

    def average_precision(
        self, area: str = "all", iou: float | None = None, max_dets: int | None = None, category: int | None = None
    ) -> float:
        """AP (in [0, 1], nan when undefined) as pycocotools' summarize computes it."""
        m = self.max_dets.index(max_dets or self.max_dets[-1])
        s = self.precision[:, :, :, self._a(area), m]
        if iou is not None:
            s = s[self._t(iou) : self._t(iou) + 1]
        if category is not None:
            s = s[:, :, self.category_ids.index(category) : self.category_ids.index(category) + 1]
        valid = s[s > -1]
        return float(valid.mean()) if valid.size else math.nan

    def average_recall(self, area: str = "all", max_dets: int | None = None, category: int | None = None) -> float:
        """AR over IoU thresholds (nan when undefined)."""
        m = self.max_dets.index(max_dets or self.max_dets[-1])
        s = self.recall[:, :, self._a(area), m]
        if category is not None:
            s = s[:, self.category_ids.index(category)]
        valid = s[s > -1]
        return float(valid.mean()) if valid.size else math.nan

    def summary(self) -> dict[str, float]:
        """The 12 COCO numbers (AP, AP50, AP75, AP_S/M/L, AR1/10/100, AR_S/M/L) in [0, 1]."""
        top = self.max_dets[-1]
        size = {"S": "small", "M": "medium", "L": "large"}
        out = {
            "AP": self.average_precision(),
            "AP50": self.average_precision(iou=0.5),
            "AP75": self.average_precision(iou=0.75),
        }
        out.update(
            {f"AP_{k}": self.average_precision(v) if v in self.area_ranges else math.nan for k, v in size.items()}
        )
        out.update({f"AR{m}": self.average_recall(max_dets=m) for m in self.max_dets})
        out.update(
            {f"AR_{k}": self.average_recall(v, top) if v in self.area_ranges else math.nan for k, v in size.items()}
        )
        return out

    def pr_curve(
        self, area: str = "all", iou: float | None = 0.5, category: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(recall thresholds, precision) at one IoU (or averaged over all when None), classes averaged."""
        p = self.precision[:, :, :, self._a(area), -1].astype(float)
        if iou is not None:
            p = p[self._t(iou) : self._t(iou) + 1]
        if category is not None:
            k = self.category_ids.index(category)
            p = p[:, :, k : k + 1]
        p = np.where(p > -1, p, np.nan)
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            curve = np.nanmean(p, axis=(0, 2))
        return self.recall_thresholds, curve

    def per_class_table(self) -> list[dict[str, Any]]:
        """AP per class and size range."""
        return [
            {
                "category_id": c,
                "category": n,
                **{f"AP_{a}": self.average_precision(a, category=c) for a in self.area_ranges},
            }
            for c, n in zip(self.category_ids, self.category_names)
        ]


class _quiet_nanmean:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


#: Below this many ground truths plus detections a result file is evaluated in this process whatever
#: `processes` says: starting another costs more than it saves.
SPLIT_MIN_OBJECTS = 50_000


@dataclass
class _Part:
    """The evaluation of some of the categories (pycocotools evaluates each category on its own)."""

    category_ids: list[int]
    category_names: list[str]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    precision: np.ndarray  # (T, R, K, A, M)
    recall: np.ndarray  # (T, K, A, M)
    matches: Any


def evaluate_one(
    gt: dict,
    dets: list[dict],
    name: str,
    iou_type: str = "bbox",
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    keep_matches: bool = False,
    fresh: bool = False,
    processes: int = 1,
) -> CocoEvaluation:
    """Evaluate one result list against `gt` (already loaded and checked); `keep_matches` keeps the
    per-image matching the bootstrap intervals need; `fresh`: `dets` are the caller's own new copies
    (load_results's), which the evaluator may change, so they are not copied again.

    `processes` > 1: the categories are split into that many groups of about equal work, evaluated side
    by side in forked processes (COCO evaluates, accumulates and matches each category on its own, so the
    arrays are the same, bit for bit: tested). Only where forking is safe (Linux, no other thread in this
    process) and the file is large enough (SPLIT_MIN_OBJECTS); otherwise here, in one."""
    if iou_type not in ("bbox", "segm"):
        raise CocoError(f"unknown iou type {iou_type!r}; use bbox or segm")
    ranges = dict(area_ranges or DEFAULT_AREA_RANGES)
    if "all" not in ranges:
        raise CocoError("area ranges must include 'all'")
    sized_by = "box" if not dets or "bbox" in dets[0] else "mask"  # loadRes's rule, read before it adds boxes
    groups = _category_groups(gt, dets, processes)
    if len(groups) > 1:
        jobs = [(*part, iou_type, ranges, max_dets, keep_matches, fresh) for part in _split(gt, dets, groups)]
        parts = side_by_side(_evaluate_part, jobs)
    else:
        parts = [_evaluate_part(gt, dets, iou_type, ranges, max_dets, keep_matches, fresh)]
    matches = None
    if keep_matches:
        from fishspine.analysis.coco.bootstrap import ImageMatches

        matches = ImageMatches.concatenate([p.matches for p in parts])
    return CocoEvaluation(
        name,
        iou_type,
        ranges,
        tuple(max_dets),
        parts[0].iou_thresholds,
        parts[0].recall_thresholds,
        [c for p in parts for c in p.category_ids],
        [n for p in parts for n in p.category_names],
        np.concatenate([p.precision for p in parts], axis=2),
        np.concatenate([p.recall for p in parts], axis=1),
        sized_by,
        matches,
    )


def _evaluate_part(
    gt: dict,
    dets: list[dict],
    iou_type: str,
    ranges: dict[str, tuple[float, float]],
    max_dets: Sequence[int],
    keep_matches: bool,
    fresh: bool,
) -> _Part:
    """faster-coco-eval's evaluation of `dets` against `gt` (every category of `gt`)."""
    from faster_coco_eval import COCO, COCOeval_faster

    # COCO() and loadRes add keys ('ignore', 'area', 'id', 'segmentation'...) to the dicts they are given,
    # never inside them: one-level copies keep the caller's (and a reused ground truth's) dicts as they were.
    gt = {k: [dict(x) for x in v] if isinstance(v, list) else v for k, v in gt.items()}
    if not fresh:
        dets = [dict(d) for d in dets]
    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(dets) if dets else COCO()
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=lambda *a, **k: None)
    ev.params.areaRng = [list(r) for r in ranges.values()]
    ev.params.areaRngLbl = list(ranges)
    ev.params.maxDets = list(max_dets)
    ev.evaluate()
    ev.accumulate()
    matches = None
    if keep_matches:
        from fishspine.analysis.coco.bootstrap import image_matches

        matches = image_matches(ev)
    return _Part(
        list(ev.params.catIds),
        [c["name"] for c in coco_gt.loadCats(ev.params.catIds)],
        np.asarray(ev.params.iouThrs),
        np.asarray(ev.params.recThrs),
        np.asarray(ev.eval["precision"]),
        np.asarray(ev.eval["recall"]),
        matches,
    )


def _category_groups(gt: dict, dets: list[dict], processes: int) -> list[list[int]]:
    """The category ids (ascending) in `processes` runs of about equal work (ground truths + detections),
    or one run where splitting would not pay or is not safe."""
    ids = sorted(int(c["id"]) for c in gt["categories"])
    work = len(gt["annotations"]) + len(dets)
    if processes < 2 or len(ids) < 2 or work < SPLIT_MIN_OBJECTS or not fork_is_safe():
        return [ids]
    from collections import Counter

    load = Counter(int(a["category_id"]) for a in gt["annotations"])
    load.update(int(d["category_id"]) for d in dets)
    cumulative = np.cumsum([load[c] for c in ids])
    n = min(processes, len(ids))
    cuts = np.searchsorted(cumulative, [cumulative[-1] * (i + 1) / n for i in range(n - 1)], "left") + 1
    groups = [g.tolist() for g in np.split(np.asarray(ids), np.unique(np.clip(cuts, 1, len(ids) - 1)))]
    return [g for g in groups if g]


def _split(gt: dict, dets: list[dict], groups: list[list[int]]) -> list[tuple[dict, list[dict]]]:
    """`gt` and `dets` cut into the category `groups` (every image kept in each; the same dicts, not
    copies), in one pass over the annotations and one over the detections."""
    group_of = {c: i for i, ids in enumerate(groups) for c in ids}
    cats, anns, found = ([[] for _ in groups] for _ in range(3))
    for out, items, key in (
        (cats, gt["categories"], "id"),
        (anns, gt["annotations"], "category_id"),
        (found, dets, "category_id"),
    ):
        for x in items:
            out[group_of[int(x[key])]].append(x)
    rest = {k: v for k, v in gt.items() if k not in ("categories", "annotations")}
    return [({**rest, "categories": cats[i], "annotations": anns[i]}, found[i]) for i in range(len(groups))]


def iter_evaluate(
    gt: str | Path | dict,
    results: Mapping[str, str | Path | list],
    iou_type: str = "bbox",
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    bootstrap: int = 0,
    seed: int = 0,
    processes: int = 1,
) -> Job[dict[str, CocoEvaluation]]:
    """A job (analysis/jobs.py): progress per result file; returns {name: CocoEvaluation}. With
    `bootstrap` > 0 each evaluation also gets that many bootstrap replicates (drawn from `seed`);
    `processes`: see evaluate_one."""
    gt_dict = load_ground_truth(gt)
    if iou_type == "segm":
        require_segmentation(gt_dict, str(gt) if isinstance(gt, (str, Path)) else "ground truth")
    out = {}
    for i, (name, source) in enumerate(results.items()):
        dets = load_results(source, gt_dict, iou_type, name)
        out[name] = evaluate_one(
            gt_dict, dets, name, iou_type, area_ranges, max_dets, bootstrap > 0, fresh=True, processes=processes
        )
        if bootstrap > 0:
            out[name].replicates(bootstrap, seed)
        yield Progress(i + 1, len(results), name)
    return out


def evaluate(
    gt: str | Path | dict,
    results: Mapping[str, str | Path | list],
    iou_type: str = "bbox",
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    bootstrap: int = 0,
    seed: int = 0,
    processes: int = 1,
) -> dict[str, CocoEvaluation]:
    """Evaluate each named result file against the ground truth (see iter_evaluate for `bootstrap` and
    `processes`)."""
    return run_job(iter_evaluate(gt, results, iou_type, area_ranges, max_dets, bootstrap, seed, processes))


def per_scale_table(
    evals: Mapping[str, CocoEvaluation], baseline: str | None = None, bootstrap: int = 0, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per backbone: the 12 numbers in percent, and their deltas against `baseline`.

    With `bootstrap` > 0 (and a baseline) each AP delta also gets its 95% paired-bootstrap interval over
    images, `ΔAP_lo` and `ΔAP_hi` (percent), from `bootstrap` resamples drawn from `seed`.
    """
    from fishspine.analysis.coco.bootstrap import delta_interval

    if baseline is not None and baseline not in evals:
        raise CocoError(f"baseline {baseline!r} is not among the results ({', '.join(evals)})")
    base = evals[baseline].summary() if baseline else None
    base_reps = evals[baseline].replicates(bootstrap, seed) if baseline and bootstrap > 0 else None
    if baseline and bootstrap > 0 and base_reps is None:
        raise CocoError("bootstrap intervals need evaluations that kept their per-image matching (keep_matches)")
    rows = []
    for name, ev in evals.items():
        s = ev.summary()
        row: dict[str, Any] = {"backbone": name, "iou_type": ev.iou_type}
        row.update({k: 100 * v for k, v in s.items()})
        if base is not None and name != baseline:
            row.update({f"Δ{k}": 100 * (v - base[k]) for k, v in s.items()})
            if base_reps is not None:
                reps = ev.replicates(bootstrap, seed)
                if reps is None or not np.array_equal(evals[baseline].matches.image_ids, ev.matches.image_ids):
                    raise CocoError(f"{name}: no bootstrap replicates on the baseline's images")
                for k, (lo, hi) in delta_interval(reps, base_reps).items():
                    row[f"Δ{k}_lo"], row[f"Δ{k}_hi"] = 100 * lo, 100 * hi
        rows.append(row)
    return rows


def format_table(
    evals: Mapping[str, CocoEvaluation],
    baseline: str | None = None,
    columns: Sequence[str] = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"),
    bootstrap: int = 0,
    seed: int = 0,
) -> str:
    """A text table like the papers': values in %, deltas against the baseline in parentheses, with
    their 95% bootstrap interval in brackets when `bootstrap` > 0."""
    if not evals:
        return "(no results)"
    first = next(iter(evals.values()))
    rows = per_scale_table(evals, baseline, bootstrap, seed)
    ranges = ", ".join(f"{k} [{_fmt_area(lo)}, {_fmt_area(hi)})" for k, (lo, hi) in first.area_ranges.items())
    lines = [
        f"COCO {first.iou_type} evaluation; maxDets {list(first.max_dets)}; size ranges (px²): {ranges}",
        f"object size from the {first.area_source}" + (f"; Δ against {baseline}" if baseline else ""),
    ]
    if baseline and bootstrap > 0:
        lines[-1] += f"; [95% paired bootstrap interval over images, {bootstrap} resamples, seed {seed}]"
    body = [[format_cell(r, c) for c in columns] for r in rows]
    width = max(len(r["backbone"]) for r in rows) + 2
    col_w = max([len(c) for c in columns] + [len(x) for line in body for x in line]) + 2
    lines.append("backbone".ljust(width) + "".join(c.rjust(col_w) for c in columns))
    for r, cells in zip(rows, body):
        lines.append(r["backbone"].ljust(width) + "".join(x.rjust(col_w) for x in cells))
    return "\n".join(lines)


def format_cell(row: Mapping[str, Any], column: str, interval: bool = True) -> str:
    """'38.1', '38.1 (+1.2)' or '38.1 (+1.2 [+0.4, +2.0])' for one column of a per_scale_table row."""
    v = row[column]
    cell = "-" if math.isnan(v) else f"{v:.1f}"
    d = row.get(f"Δ{column}")
    if d is not None and not math.isnan(d):
        lo, hi = row.get(f"Δ{column}_lo"), row.get(f"Δ{column}_hi")
        if interval and lo is not None and not math.isnan(lo):
            cell += f" ({d:+.1f} [{lo:+.1f}, {hi:+.1f}])"
        else:
            cell += f" ({d:+.1f})"
    return cell


def _fmt_area(v: float) -> str:
    if v >= 1e9:
        return "∞"
    root = math.sqrt(v)
    return f"{int(root)}²" if root == int(root) and v > 0 else f"{v:g}"
