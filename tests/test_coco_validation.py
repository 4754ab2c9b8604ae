"""Malformed COCO files and objects are refused with a CocoError that names the file, the entry and
what was expected, before faster-coco-eval or pycocotools see them; the caller's objects are never
changed."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fishspine.analysis.coco.evaluation import CocoError, evaluate, format_table, load_ground_truth, load_results
from fishspine.analysis.coco.validation import read_json_file, rle_string_totals
from tests.bad_inputs import DT_CHANGES, GT_CHANGES, _set, compress_rle, small_coco, write_bad_coco


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_bad_coco(tmp_path_factory.mktemp("coco"))


def _cases() -> list[str]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        return list(write_bad_coco(Path(d))[2])


@pytest.mark.parametrize("case", _cases())
def test_every_bad_file_is_refused_naming_the_file(corpus, case):
    good_gt, good_dt, cases = corpus
    role, path, iou_type = cases[case]
    gt, dt = (path, good_dt) if role == "gt" else (good_gt, path)
    with pytest.raises(CocoError) as info:
        evaluate(gt, {"m": dt}, iou_type)
    message = str(info.value)
    assert path.name in message and "\n" not in message


def test_the_valid_corpus_files_evaluate(corpus):
    good_gt, good_dt, _ = corpus
    for iou_type in ("bbox", "segm"):
        assert 0 < evaluate(good_gt, {"m": good_dt}, iou_type)["m"].summary()["AP"] <= 1


@pytest.mark.parametrize(
    "case,needle",
    [
        ("gt_ann_short_bbox", "annotations[0] (id 1) 'bbox' is [1, 2, 3] (a list of 3); expected a list of 4 numbers"),
        ("gt_ann_area_string", "annotations[0] (id 1) 'area' is '120.5'; expected a number"),
        ("gt_ann_area_negative", "'area' is -5; expected a number (px²) between 0 and"),
        ("gt_image_id_list", "images[0] 'id' is [1] (a list of 1); expected an integer id"),
        ("gt_ann_rle_overrun", "RLE 'counts' cover 409605 pixels but its size [640, 640] has 409600"),
        ("gt_ann_rle_string_overrun", "covers 409610 pixels; expected runs covering its size [640, 640] = 409600"),
        ("dt_score_string", "detection[0] 'score' is '0.9'; expected a finite number"),
        ("dt_score_null", "detection[0] 'score' is None; expected a finite number"),
        ("dt_short_bbox", "detection[0] 'bbox' is [1, 2] (a list of 2); expected a list of 4 numbers"),
        ("dt_unknown_image", "detection[0] 'image_id' is 4242, which is not an image id of the ground truth"),
        ("dt_unknown_category", "detection[0] 'category_id' is 99, which is not a category id of the ground truth"),
        ("dt_image_id_list", "detection[0] 'image_id' is [1] (a list of 1); expected an integer id"),
        ("dt_object_not_list", "a COCO result file is a JSON list of detections"),
        ("dt_segm_mixed_boxes", "detection[1] lacks 'bbox' while the first detection has one"),
        ("gt_nan_literal", "contains NaN, which is not a JSON number"),
        ("dt_infinity_literal", "contains Infinity"),
        ("dt_huge_integer", "an integer of 5000 digits (at most 20"),
        ("gt_deep_nesting", "nested too deeply"),
        ("dt_fifo", "is not a regular file"),
        ("gt_folder", "is a folder"),
        ("gt_dev_zero_link", "is not a regular file"),
        ("dt_empty", "is empty"),
    ],
)
def test_messages_say_which_entry_and_what_was_expected(corpus, case, needle):
    good_gt, good_dt, cases = corpus
    role, path, iou_type = cases[case]
    gt, dt = (path, good_dt) if role == "gt" else (good_gt, path)
    with pytest.raises(CocoError) as info:
        evaluate(gt, {"m": dt}, iou_type)
    assert needle in str(info.value)


def test_python_objects_are_checked_like_files():
    gt, dt = small_coco()
    for change in GT_CHANGES.values():
        with pytest.raises(CocoError, match=r"^ground truth: "):
            load_ground_truth(change(gt))
    for iou_type, change in DT_CHANGES.values():
        with pytest.raises(CocoError, match=r"^m: "):
            load_results(change(dt), load_ground_truth(gt), iou_type, "m")
    with pytest.raises(CocoError, match="'score' is nan; expected a finite number"):
        load_results([dict(dt[0], score=math.nan)], load_ground_truth(gt), "bbox", "m")


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(CocoError, match="2,003 bytes, more than the 1,000 accepted"):
        read_json_file(path, "ground truth", max_bytes=1000)


def test_compressed_rle_totals_match_pycocotools():
    import numpy as np
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    masks = [
        (rng.random((h, w)) < p).astype(np.uint8)
        for h, w, p in [(7, 5, 0.5), (64, 80, 0.1), (3, 3, 1.0), (30, 40, 0.0), (120, 9, 0.9)]
    ]
    strings = [mask_utils.encode(np.asfortranarray(m))["counts"].decode() for m in masks]
    totals, valid = rle_string_totals(strings)
    assert totals.tolist() == [m.size for m in masks] and valid.all()
    assert compress_rle([3, 4, 5, 6]) and rle_string_totals([compress_rle([3, 4, 5, 6])])[0][0] == 18


def test_evaluate_does_not_change_the_callers_objects():
    """faster-coco-eval's loadRes adds segmentation/area/id/iscrowd to the dicts it is given: a bbox-only
    list evaluated once then looked like segm results (box polygons) and was no longer refused."""
    gt, dets = small_coco(with_masks=True)
    boxes = [{k: v for k, v in d.items() if k != "segmentation"} for d in dets]
    gt_before, boxes_before = copy.deepcopy(gt), copy.deepcopy(boxes)
    evaluate(gt, {"m": boxes}, "bbox")
    assert boxes == boxes_before and gt == gt_before
    with pytest.raises(CocoError, match=r"detection\[0\] lacks 'segmentation'"):
        evaluate(gt, {"m": boxes}, "segm")
    assert boxes == boxes_before and gt == gt_before


def test_the_table_says_what_sized_the_detections():
    gt, dets = small_coco(with_masks=True)
    boxed = evaluate(gt, {"m": dets}, "segm")["m"]
    assert "by their `bbox`" in format_table({"m": boxed}) and "by their mask" not in format_table({"m": boxed})
    from pycocotools import mask as mask_utils

    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    rles = []
    for d in dets:
        h, w = sizes[d["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(d["segmentation"], h, w))
        rles.append(
            {
                "image_id": d["image_id"],
                "category_id": d["category_id"],
                "score": d["score"],
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
            }
        )
    masked = evaluate(gt, {"m": rles}, "segm")["m"]
    assert "detections by their mask" in format_table({"m": masked})
    # pycocotools' encode() gives the counts as bytes: the API takes them as they come
    as_bytes = [
        dict(r, segmentation=dict(r["segmentation"], counts=r["segmentation"]["counts"].encode())) for r in rles
    ]
    assert evaluate(gt, {"m": as_bytes}, "segm")["m"].summary() == masked.summary()
    assert "detections by their box" in format_table(evaluate(gt, {"m": dets}, "bbox"))


# ---------------------------------------------------------------------------------------- Hypothesis


def _nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20), _nested, max_leaves=12
)


def _paths(data, prefix=()):
    """Every (keys/indices) path into `data` that a field replacement can target."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data[:2]):
            yield from _paths(v, (*prefix, i))


GT, DT = small_coco(with_masks=True)
GT_PATHS = [p for p in _paths(GT) if p]
DT_PATHS = [p for p in _paths(DT) if p]


def _replaced(data, path, value):
    return _set(path, value)(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=st.sampled_from(["gt", "dt"]),
    which=st.integers(0, 10**6),
    value=JSONISH,
    iou_type=st.sampled_from(["bbox", "segm"]),
)
def test_any_value_in_any_field_is_refused_or_evaluates(role, which, value, iou_type):
    paths = GT_PATHS if role == "gt" else DT_PATHS
    path = paths[which % len(paths)]
    gt, dt = (_replaced(GT, path, value), DT) if role == "gt" else (GT, _replaced(DT, path, value))
    try:
        out = evaluate(gt, {"m": dt}, iou_type)["m"]
    except CocoError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    summary = out.summary()
    assert all(math.isnan(v) or -1 <= v <= 1 for v in summary.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200) | JSONISH.map(lambda v: json.dumps(v, allow_nan=True)))
def test_any_file_content_is_refused_or_evaluates(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("h") / "results.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        evaluate(GT, {"m": path}, "bbox")
    except CocoError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_images=st.integers(1, 6), n_categories=st.integers(1, 4), seed=st.integers(0, 10**6), masks=st.booleans())
def test_valid_generated_files_pass_and_evaluate(tmp_path_factory, n_images, n_categories, seed, masks):
    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dt = synthetic_coco(n_images, n_categories=n_categories, dets_per_image=5, seed=seed, with_masks=masks)
    folder = tmp_path_factory.mktemp("valid")
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "dt.json").write_text(json.dumps(dt))
    for iou_type in ("bbox", "segm") if masks else ("bbox",):
        summary = evaluate(folder / "gt.json", {"m": folder / "dt.json"}, iou_type)["m"].summary()
        assert all(math.isnan(v) or 0 <= v <= 1 for v in summary.values())


def test_box_results_checked_in_bulk_equal_the_per_detection_checks(monkeypatch):
    """The bulk path for plain JSON box results gives exactly what the per-detection checks give, and
    anything it does not take plainly (a bool id, a NaN, an unknown image) falls to those checks."""
    from fishspine.analysis.coco import validation
    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(n_images=20, n_categories=4, seed=2)
    dets[0]["bbox"] = [1, 2, 3, 4]  # ints become floats, as per detection
    dets[1]["score"] = 1
    gt = validation.validate_ground_truth(gt, "gt")
    bulk = validation.validate_results(dets, gt, "bbox", "r")
    monkeypatch.setattr(validation, "_plain_box_results", lambda *a: None)
    assert bulk == validation.validate_results(dets, gt, "bbox", "r")
    assert [type(v) for v in bulk[0]["bbox"]] == [float] * 4 and type(bulk[1]["score"]) is float
    monkeypatch.undo()
    sizes = {im["id"]: None for im in gt["images"]}
    cats = {c["id"] for c in gt["categories"]}
    for bad in ({"image_id": True}, {"score": float("nan")}, {"image_id": 10**6}, {"bbox": [0, 0, -1, 2]}):
        assert validation._plain_box_results([{**dets[0], **bad}, *dets[1:]], sizes, cats) is None
