"""COCO per-scale evaluation: the numbers are pycocotools', bad files get clear errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

from fishspine.analysis.coco.evaluation import (
    STAT_NAMES,
    CocoError,
    evaluate,
    format_table,
    load_results,
    per_scale_table,
)
from fishspine.analysis.coco.synthetic import synthetic_coco


def pycocotools_stats(gt, dets, iou_type, area_ranges=None, max_dets=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        d = g.loadRes(copy.deepcopy(dets))
        e = COCOeval(g, d, iou_type)
        if area_ranges:
            e.params.areaRng = [list(v) for v in area_ranges.values()]
            e.params.areaRngLbl = list(area_ranges)
        if max_dets:
            e.params.maxDets = list(max_dets)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


@pytest.mark.parametrize("iou_type,seed,crowd", [("bbox", 0, 0.0), ("bbox", 1, 0.1), ("segm", 2, 0.05)])
def test_summary_equals_pycocotools(iou_type, seed, crowd):
    gt, dets = synthetic_coco(
        40, n_categories=5, dets_per_image=25, crowd_fraction=crowd, seed=seed, with_masks=iou_type == "segm"
    )
    gt["images"].append({"id": 999, "width": 640, "height": 640, "file_name": "empty.jpg"})  # no objects
    dets = [d for d in dets if d["image_id"] != 3]  # an image without detections
    ours = evaluate(gt, {"m": dets}, iou_type)["m"]
    ref = pycocotools_stats(gt, dets, iou_type)
    np.testing.assert_allclose([ours.summary()[k] for k in STAT_NAMES], ref.stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-12)


def test_custom_area_ranges_and_max_dets_equal_pycocotools():
    gt, dets = synthetic_coco(30, n_categories=3, dets_per_image=40, seed=4)
    ranges = {"all": (0.0, 1e10), "small": (0.0, 16.0**2), "medium": (16.0**2, 128.0**2), "large": (128.0**2, 1e10)}
    ours = evaluate(gt, {"m": dets}, "bbox", ranges, (1, 5, 20))["m"]
    ref = pycocotools_stats(gt, dets, "bbox", ranges, (1, 5, 20))
    got = ours.summary()
    # pycocotools' summarize() hard-codes maxDets=100 for its first number (-1 here); compare that
    # one with its own precision array at the largest maxDets instead.
    p = ref.eval["precision"][..., 0, -1]
    assert got["AP"] == pytest.approx(p[p > -1].mean(), abs=1e-12)
    ref.stats[0] = p[p > -1].mean()
    np.testing.assert_allclose(
        [got[k] for k in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L", "AR1", "AR5", "AR20", "AR_S", "AR_M", "AR_L")],
        ref.stats,
        atol=1e-12,
    )
    assert "16²" in format_table({"m": ours}) and "maxDets [1, 5, 20]" in format_table({"m": ours})


def test_slices_by_class_and_size_are_consistent():
    gt, dets = synthetic_coco(40, n_categories=4, dets_per_image=20, seed=5)
    ev = evaluate(gt, {"m": dets}, "bbox")["m"]
    per_class = [ev.average_precision("small", category=c) for c in ev.category_ids]
    assert ev.average_precision("small") == pytest.approx(np.nanmean(per_class))
    rec, prec = ev.pr_curve("large", 0.5)
    assert rec.shape == prec.shape == (101,) and np.all(np.diff(prec[~np.isnan(prec)]) <= 1e-12)
    rows = ev.per_class_table()
    assert len(rows) == 4 and set(rows[0]) >= {"AP_small", "AP_medium", "AP_large"}


def test_table_deltas_against_baseline():
    gt, dets = synthetic_coco(30, n_categories=3, dets_per_image=20, seed=6)
    evals = evaluate(gt, {"R50": dets, "F150": dets[::2]}, "bbox")
    rows = {r["backbone"]: r for r in per_scale_table(evals, "R50")}
    assert "ΔAP" not in rows["R50"]
    assert rows["F150"]["ΔAP_S"] == pytest.approx(rows["F150"]["AP_S"] - rows["R50"]["AP_S"])
    text = format_table(evals, "R50")
    assert "Δ against R50" in text and "area" in text
    with pytest.raises(CocoError, match="baseline"):
        per_scale_table(evals, "nope")


def test_bad_inputs_get_clear_errors(tmp_path):
    gt, dets = synthetic_coco(5, n_categories=2, dets_per_image=5, seed=7)
    with pytest.raises(
        CocoError, match=r"detection\[0\] 'image_id' is 12345, which is not an image id of the ground truth"
    ):
        load_results([dict(dets[0], image_id=12345)], gt, "bbox")
    with pytest.raises(CocoError, match=r"detection\[0\] 'category_id' is 77, which is not a category id"):
        load_results([dict(dets[0], category_id=77)], gt, "bbox")
    with pytest.raises(CocoError, match="lacks 'segmentation'"):
        load_results(dets, gt, "segm")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CocoError, match="not valid JSON"):
        evaluate(bad, {"m": dets})
    (tmp_path / "gt.json").write_text(json.dumps({"images": []}))
    with pytest.raises(CocoError, match="not a COCO ground-truth file: no 'annotations'"):
        evaluate(tmp_path / "gt.json", {"m": dets})
    with pytest.raises(CocoError, match="no such file"):
        evaluate(tmp_path / "missing.json", {"m": dets})


def test_empty_result_file_gives_zero_not_a_crash():
    gt, _ = synthetic_coco(5, n_categories=2, seed=8)
    ev = evaluate(gt, {"m": []}, "bbox")["m"]
    assert ev.summary()["AP"] == 0.0 and ev.summary()["AR100"] == 0.0
