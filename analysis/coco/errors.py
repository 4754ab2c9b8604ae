"""Where a detector's AP goes: the six error types of TIDE (Bolya et al., ECCV 2020), per size range.

Detections are matched to the ground truth exactly as COCOeval matches them at IoU 0.5 (greedy by
score within an image and class, crowd regions absorb detections, objects outside the size range
are ignored, top `max_dets` per image and class), so the AP here is COCO's AP50. Every false
positive then gets one error type, tested in TIDE's order with its thresholds (foreground 0.5,
background 0.1):

- localisation: IoU with an object of its class in [0.1, 0.5);
- classification: IoU >= 0.5 with an object of another class;
- duplicate: IoU >= 0.5 with an object of its class that a higher-scoring detection took;
- background: IoU <= 0.1 with every object;
- both (classification and localisation): anything else;
- missed: an object no detection found and no localisation or classification error points at.

What an error costs is the AP gained by fixing only that type with TIDE's oracle (a localisation or
classification error whose object is still free becomes a true positive of that object, otherwise
it is suppressed; duplicates, background and "both" are suppressed; missed objects leave the count
of objects), re-accumulated like COCO. Fixing all false positives (FP) or all false negatives (FN)
gives TIDE's two summary numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fishspine.analysis.coco.evaluation import DEFAULT_AREA_RANGES
from fishspine.analysis.coco.matching import (
    FOREGROUND_IOU,
    FP,
    IGNORED,
    TP,
    ImageDetections,
    ignored_objects,
    index_images,
    match_image,
)

ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
ERROR_NAMES = {
    "cls": "classification",
    "loc": "localisation",
    "both": "cls + loc",
    "dupe": "duplicate",
    "bkg": "background",
    "miss": "missed",
}
BACKGROUND_IOU = 0.1
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)

SUPPRESSED = -2  # a detection the oracle removed


@dataclass
class ErrorBreakdown:
    """One backbone's AP50 in one size range and the AP each error type costs (all in [0, 1])."""

    name: str
    area: str
    ap: float
    delta: dict[str, float]  # error type -> AP gained by fixing only it
    counts: dict[str, int]  # error type -> how many detections (objects, for "miss") have it
    fp: float  # AP gained by removing every false positive
    fn: float  # AP gained by finding every missed object

    def as_dict(self) -> dict:
        """Plain data for JSON."""
        return {
            "name": self.name,
            "area": self.area,
            "ap50": self.ap,
            "delta_ap": dict(self.delta),
            "counts": dict(self.counts),
            "fp": self.fp,
            "fn": self.fn,
        }


def _errors_of(img: ImageDetections, fps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TIDE's error type of each false positive `fps` (detection indices) and the object it points at
    (-1: none), as arrays: its tests in order, on the rows of the image's IoU matrix at once."""
    kinds = np.full(len(fps), "bkg", dtype=object)
    targets = np.full(len(fps), -1)
    if not len(fps) or not len(img.gt_cats):
        return kinds, targets
    iou = img.iou[fps]  # (F, G)
    usable = ~img.gt_crowd[None, :]
    same = img.det_cats[fps][:, None] == img.gt_cats[None, :]
    same_iou = np.where(same & usable, iou, -1.0)
    other_iou = np.where(~same & usable, iou, -1.0)
    same_max, other_max = same_iou.max(axis=1), other_iou.max(axis=1)
    loc = (BACKGROUND_IOU <= same_max) & (same_max < FOREGROUND_IOU)
    cls = ~loc & (other_max >= FOREGROUND_IOU)
    dupe = ~loc & ~cls & (same_max >= FOREGROUND_IOU)
    bkg = ~loc & ~cls & ~dupe & (np.where(usable, iou, 0.0).max(axis=1) <= BACKGROUND_IOU)
    kinds[:] = "both"
    for kind, where in (("loc", loc), ("cls", cls), ("dupe", dupe), ("bkg", bkg)):
        kinds[where] = kind
    targets[loc | dupe] = same_iou.argmax(axis=1)[loc | dupe]
    targets[cls] = other_iou.argmax(axis=1)[cls]
    return kinds, targets


def average_precision(scores: np.ndarray, states: np.ndarray, cats: np.ndarray, npos: Mapping[int, int]) -> float:
    """COCO's 101-point interpolated AP, averaged over the classes that have objects (nan if none)."""
    per_class = []
    for cat, n in npos.items():
        if n <= 0:
            continue
        mine = (cats == cat) & ((states == TP) | (states == FP))
        order = np.argsort(-scores[mine], kind="mergesort")
        tp = (states[mine] == TP)[order]
        tpc, fpc = np.cumsum(tp), np.cumsum(~tp)
        q = np.zeros(len(RECALL_THRESHOLDS))
        if len(tp):
            recall = tpc / n
            precision = tpc / (tpc + fpc + np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]
            idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
            ok = idx < len(precision)
            q[ok] = precision[idx[ok]]
        per_class.append(q.mean())
    return float(np.mean(per_class)) if per_class else math.nan


def error_breakdown(
    gt: dict,
    dets: list[dict],
    name: str = "",
    area_ranges: Mapping[str, tuple[float, float]] | None = None,
    max_dets: int = 100,
) -> dict[str, ErrorBreakdown]:
    """The TIDE breakdown of `dets` (bbox results, checked) against `gt` (checked), per size range."""
    images = index_images(gt, dets, max_dets)
    out = {}
    for area, (lo, hi) in (area_ranges or DEFAULT_AREA_RANGES).items():
        out[area] = _breakdown(images, name, area, lo, hi, [c["id"] for c in gt["categories"]])
    return out


def _breakdown(
    images: dict[int, ImageDetections], name: str, area: str, lo: float, hi: float, cat_ids: list[int]
) -> ErrorBreakdown:
    scores, states, cats = [], [], []  # per detection, over all images in id order
    errors: list[tuple[str | None, tuple | None]] = []  # per detection: (error type, the oracle's fix)
    npos = dict.fromkeys(cat_ids, 0)
    missed: list[int] = []  # the class of each missed object
    unmatched: list[int] = []  # the class of each object no detection found (missed or claimed)
    for image_id, img in images.items():
        ignored_gt = ignored_objects(img, lo, hi)
        state, matched = match_image(img, ignored_gt, lo, hi)
        found = np.zeros(len(img.gt_cats), bool)
        found[matched[state == TP]] = True
        claimed = np.zeros(len(img.gt_cats), bool)
        here: list[tuple[str | None, tuple | None]] = [(None, None)] * len(state)
        fps = np.flatnonzero(state == FP)
        for d, kind, g in zip(fps.tolist(), *(a.tolist() for a in _errors_of(img, fps))):
            fix = None
            if kind in ("loc", "cls"):
                claimed[g] = True
                # (object outside the count, its class, the object, already found by a true positive)
                fix = (bool(ignored_gt[g]), int(img.gt_cats[g]), (image_id, g), bool(found[g]))
            here[d] = (kind, fix)
        errors += here
        for g in np.where(~ignored_gt)[0]:
            npos[int(img.gt_cats[g])] += 1
            if not found[g]:
                unmatched.append(int(img.gt_cats[g]))
                if not claimed[g]:
                    missed.append(int(img.gt_cats[g]))
        scores.append(img.det_scores)
        states.append(state)
        cats.append(img.det_cats)
    scores_a = np.concatenate(scores) if scores else np.zeros(0)
    states_a = np.concatenate(states).astype(int) if states else np.zeros(0, int)
    cats_a = np.concatenate(cats).astype(int) if cats else np.zeros(0, int)
    base = average_precision(scores_a, states_a, cats_a, npos)
    delta, counts = {}, {}
    for kind in ERROR_TYPES:
        if kind == "miss":
            counts[kind] = len(missed)
            delta[kind] = average_precision(scores_a, states_a, cats_a, _fewer(npos, missed)) - base
        else:
            counts[kind] = sum(1 for e, _ in errors if e == kind)
            fixed_states, fixed_cats = _fixed(scores_a, states_a, cats_a, errors, kind)
            delta[kind] = average_precision(scores_a, fixed_states, fixed_cats, npos) - base
    no_fp = np.where(states_a == FP, SUPPRESSED, states_a)
    fp = average_precision(scores_a, no_fp, cats_a, npos) - base
    fn = average_precision(scores_a, states_a, cats_a, _fewer(npos, unmatched)) - base
    return ErrorBreakdown(name, area, base, delta, counts, fp, fn)


def _fewer(npos: Mapping[int, int], gone: list[int]) -> dict[int, int]:
    out = dict(npos)
    for c in gone:
        out[c] -= 1
    return out


def _fixed(scores: np.ndarray, states: np.ndarray, cats: np.ndarray, errors: list, kind: str):
    """(states, classes) after TIDE's oracle fixed every error of `kind`, highest score first."""
    states, cats = states.copy(), cats.copy()
    taken: set = set()
    for d in np.argsort(-scores, kind="mergesort"):
        e, fix = errors[d]
        if e != kind:
            continue
        if fix is None:
            states[d] = SUPPRESSED
            continue
        outside, cat, key, used = fix
        if used or key in taken:
            states[d] = SUPPRESSED
        elif outside:
            states[d] = IGNORED
        else:
            states[d], cats[d] = TP, cat
            taken.add(key)
    return states, cats
