"""TIDE's error breakdown: hand-built cases where each error type is known, and COCO's AP50 underneath."""

from __future__ import annotations

import math

import pytest

from fishspine.analysis.coco.errors import ERROR_TYPES, error_breakdown
from fishspine.analysis.coco.evaluation import evaluate_one, load_ground_truth, load_results
from fishspine.analysis.coco.synthetic import synthetic_coco

A = [10, 10, 40, 40]  # the object the cases are about, class 1
B = [60, 60, 30, 30]  # an object of class 2, always found
C = [10, 60, 30, 30]  # another object of class 1, always found, at a low score: a false positive above it costs AP


def case(*dets: tuple[list[float], int, float]) -> tuple[dict, list[dict]]:
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": A, "area": 1600, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": B, "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": C, "area": 900, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
    }
    found = [
        {"image_id": 1, "category_id": 2, "bbox": B, "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": C, "score": 0.6},
    ]
    results = found + [{"image_id": 1, "category_id": c, "bbox": box, "score": s} for box, c, s in dets]
    gt = load_ground_truth(gt)
    return gt, load_results(results, gt, "bbox")


SHIFTED = [30, 10, 40, 40]  # IoU 1/3 with A
CASES = {
    "cls": [(A, 2, 0.9)],  # A's box, the wrong class
    "loc": [(SHIFTED, 1, 0.9)],  # A's class, IoU in [0.1, 0.5)
    "both": [(A, 1, 0.95), (SHIFTED, 2, 0.9)],  # the wrong class and IoU in [0.1, 0.5) (A found, not missed)
    "dupe": [(A, 1, 0.9), (A, 1, 0.7)],  # A found twice
    "bkg": [(A, 1, 0.9), ([0, 80, 10, 10], 1, 0.95)],  # A found, and a box on nothing
    "miss": [],  # A never found
}


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_each_error_type_on_a_case_where_it_is_known(kind):
    gt, dets = case(*CASES[kind])
    b = error_breakdown(gt, dets)["all"]
    assert b.counts == {k: int(k == kind) for k in ERROR_TYPES}
    assert b.delta[kind] > 0
    assert all(b.delta[k] == 0 for k in ERROR_TYPES if k != kind)


def test_the_oracle_gains_what_the_error_cost():
    half = 51 / 101  # COCO's 101-point AP of a class whose only true positive finds half its objects
    gt, dets = case(*CASES["cls"])
    b = error_breakdown(gt, dets)["all"]
    # class 1: C found, A not (AP `half`); class 2: a false positive above its true positive (AP 0.5)
    assert b.ap == pytest.approx((half + 0.5) / 2)
    assert b.ap + b.delta["cls"] == pytest.approx(1.0)  # relabelled, it finds A: both classes perfect
    assert b.ap + b.fp == pytest.approx((half + 1.0) / 2)  # only suppressed: class 1 still misses A
    gt, dets = case(*CASES["miss"])
    b = error_breakdown(gt, dets)["all"]
    assert b.ap == pytest.approx((half + 1.0) / 2)
    assert b.ap + b.delta["miss"] == pytest.approx(1.0) and b.fn == b.delta["miss"]


def test_a_localisation_fix_never_takes_an_object_twice():
    # two loose boxes around A: the oracle makes the first a true positive and suppresses the second
    gt, dets = case((SHIFTED, 1, 0.9), ([12, 30, 40, 40], 1, 0.85))
    b = error_breakdown(gt, dets)["all"]
    assert b.counts["loc"] == 2
    assert b.ap + b.delta["loc"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_ap_underneath_is_cocos_ap50_in_every_size_range(seed):
    gt, dets = synthetic_coco(n_images=30, n_categories=4, crowd_fraction=0.1, seed=seed)
    gt = load_ground_truth(gt)
    dets = load_results(dets, gt, "bbox")
    ev = evaluate_one(gt, dets, "x")
    breakdown = error_breakdown(gt, dets, max_dets=100)
    for area in ev.area_ranges:
        expected = ev.average_precision(area=area, iou=0.5)
        assert math.isclose(breakdown[area].ap, expected, rel_tol=1e-12, abs_tol=1e-12), area
        # fixing every false positive and every false negative can only raise AP
        assert breakdown[area].fp >= 0 and breakdown[area].fn >= 0


def test_the_command_writes_the_breakdown_with_deltas_against_the_baseline(tmp_path, capsys):
    import csv
    import json

    from fishspine.cli.main import main

    gt, dets = synthetic_coco(n_images=12, n_categories=3, seed=3)
    _, other = synthetic_coco(n_images=12, n_categories=3, seed=4)
    for name, data in (("gt", gt), ("a", dets), ("b", other)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    argv = ["coco", "--gt", str(tmp_path / "gt.json"), "--dt", f"A={tmp_path / 'a.json'}"]
    argv += ["--dt", f"B={tmp_path / 'b.json'}", "--baseline", "A", "--errors", "-o", str(tmp_path / "out")]
    assert main([*argv, "--formats", "png"]) == 0
    assert "TIDE error breakdown" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "coco_bbox_errors.csv")))
    assert {(r["backbone"], r["area"]) for r in rows} == {
        (n, a) for n in "AB" for a in ("all", "small", "medium", "large")
    }
    data = json.loads((tmp_path / "out" / "coco_bbox_errors.json").read_text())
    for r in rows:
        b = data["breakdowns"][r["backbone"]][r["area"]]
        assert float(r["dAP_loc"]) == pytest.approx(100 * b["delta_ap"]["loc"])
        if r["backbone"] == "B":
            base = data["breakdowns"]["A"][r["area"]]["delta_ap"]["cls"]
            assert float(r["vs_baseline_cls"]) == pytest.approx(100 * (b["delta_ap"]["cls"] - base))
    assert (tmp_path / "out" / "coco_bbox_errors.png").stat().st_size > 10_000


def _error_of_one(img, d: int) -> tuple[str, int]:
    """TIDE's tests in order for one false positive, written out one detection at a time."""
    from fishspine.analysis.coco.errors import BACKGROUND_IOU
    from fishspine.analysis.coco.matching import FOREGROUND_IOU

    best = {"same": (-1.0, -1), "other": (-1.0, -1)}
    any_iou = 0.0
    for g in range(len(img.gt_cats)):
        if img.gt_crowd[g]:
            continue
        iou = float(img.iou[d, g])
        any_iou = max(any_iou, iou)
        key = "same" if img.gt_cats[g] == img.det_cats[d] else "other"
        if iou > best[key][0]:
            best[key] = (iou, g)
    (same, g_same), (other, g_other) = best["same"], best["other"]
    if BACKGROUND_IOU <= same < FOREGROUND_IOU:
        return "loc", g_same
    if other >= FOREGROUND_IOU:
        return "cls", g_other
    if same >= FOREGROUND_IOU:
        return "dupe", g_same
    if any_iou <= BACKGROUND_IOU:
        return "bkg", -1
    return "both", -1


@pytest.mark.parametrize("seed", [0, 1])
def test_every_false_positive_gets_the_type_tides_rules_give_it(seed):
    """The error typing works on all of an image's false positives at once: each gets what TIDE's
    tests, applied to it alone, give (on a generated set with crowds, several classes and near misses)."""
    import numpy as np

    from fishspine.analysis.coco.errors import _errors_of
    from fishspine.analysis.coco.matching import FP, ignored_objects, index_images, match_image

    raw_gt, raw_dets = synthetic_coco(40, n_categories=4, dets_per_image=30, crowd_fraction=0.1, seed=seed)
    gt = load_ground_truth(raw_gt)
    images = index_images(gt, load_results(raw_dets, gt, "bbox"), 100)
    kinds_seen = set()
    for img in images.values():
        ignored = ignored_objects(img, 0.0, 1e10)
        state, _ = match_image(img, ignored, 0.0, 1e10)
        fps = np.flatnonzero(state == FP)
        kinds, targets = _errors_of(img, fps)
        for d, kind, g in zip(fps, kinds, targets):
            assert (kind, int(g)) == _error_of_one(img, int(d))
            kinds_seen.add(kind)
    assert kinds_seen >= {"loc", "cls", "bkg", "both"}, kinds_seen  # duplicates: the hand-built case
