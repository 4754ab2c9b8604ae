"""The objects behind a difference: found by one detector and missed by the other, lone false positives."""

from __future__ import annotations

import pytest

from fishspine.analysis.coco.evaluation import load_ground_truth, load_results
from fishspine.analysis.coco.evidence import evidence, f1_threshold
from fishspine.analysis.coco.matching import index_images

SMALL = [10, 10, 20, 20]  # area 400: small
BIG = [40, 40, 60, 60]  # area 3600: medium
NOTHING = [0, 150, 30, 30]


def scene() -> dict:
    return load_ground_truth(
        {
            "images": [{"id": 1, "width": 200, "height": 200}, {"id": 2, "width": 200, "height": 200}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": SMALL, "area": 400, "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": BIG, "area": 3600, "iscrowd": 0},
                {"id": 3, "image_id": 2, "category_id": 2, "bbox": BIG, "area": 3600, "iscrowd": 0},
            ],
            "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}],
        }
    )


def dets(gt, *items):
    return load_results([{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in items], gt, "bbox")


def test_what_one_finds_and_the_other_misses():
    gt = scene()
    a = dets(gt, (1, 1, SMALL, 0.9), (1, 1, BIG, 0.8), (1, 1, NOTHING, 0.7))
    b = dets(gt, (1, 1, BIG, 0.9), (2, 2, BIG, 0.8), (1, 1, [18, 18, 20, 20], 0.3), (2, 1, NOTHING, 0.6))
    ev = evidence(gt, ("A", a), ("B", b), thresholds={"A": 0.0, "B": 0.0})
    assert ev.counts() == {
        "found_only": 1,  # A finds the small object; B's loose box (IoU < 0.5) does not
        "missed_only": 1,  # B finds image 2's object, A has no detection there
        "false_positive_only": 1,  # A's box on nothing in image 1
        "baseline_false_positive_only": 2,  # B's loose box, and its box on nothing in image 2
    }
    found = ev.of_kind("found_only")[0]
    assert (found.image_id, found.box) == (1, SMALL)
    assert found.backbone.score == 0.9 and found.backbone.iou == pytest.approx(1.0)
    assert found.baseline.score == 0.3 and found.baseline.iou < 0.5  # what B put there instead
    assert ev.of_kind("missed_only")[0].backbone is None
    # in the small range only the small object counts
    small = evidence(gt, ("A", a), ("B", b), "small", thresholds={"A": 0.0, "B": 0.0})
    assert [i.box for i in small.of_kind("found_only")] == [SMALL] and not small.of_kind("missed_only")


def test_the_score_threshold_decides_what_is_found():
    gt = scene()
    a = dets(gt, (1, 1, SMALL, 0.2), (1, 1, BIG, 0.9))
    b = dets(gt, (1, 1, SMALL, 0.9), (1, 1, BIG, 0.9), (2, 2, BIG, 0.9))
    low = evidence(gt, ("A", a), ("B", b), thresholds={"A": 0.1, "B": 0.1})
    high = evidence(gt, ("A", a), ("B", b), thresholds={"A": 0.5, "B": 0.5})
    assert low.counts()["missed_only"] == 1  # image 2's object, which A never finds
    assert high.counts()["missed_only"] == 2  # and the small one, below A's threshold


def test_the_default_threshold_maximises_f1():
    gt = scene()
    # ranked: TP 0.9, FP 0.8, TP 0.7, FP 0.6, FP 0.5 with 3 objects: F1 = 2tp / (3 + kept)
    a = dets(gt, (1, 1, BIG, 0.9), (1, 1, NOTHING, 0.8), (1, 1, SMALL, 0.7), (2, 1, NOTHING, 0.6), (2, 2, NOTHING, 0.5))
    f1 = {0.9: 2 / 4, 0.8: 2 / 5, 0.7: 4 / 6, 0.6: 4 / 7, 0.5: 4 / 8}
    assert f1_threshold(index_images(gt, a), 0, 1e10) == max(f1, key=f1.get) == 0.7
    ev = evidence(gt, ("A", a), ("B", a))
    assert ev.thresholds == {"A": 0.7, "B": 0.7} and ev.items == []  # a detector against itself: no difference


def test_a_crop_keeps_context_and_stays_inside_the_image():
    from fishspine.analysis.figures.coco_evidence import crop_window

    assert crop_window([40, 40, 20, 20], (100, 100)) == (24, 76, 24, 76)  # 16 px of context at least
    assert crop_window([0, 90, 100, 10], (100, 100)) == (74, 100, 0, 100)  # clipped at the borders


def test_the_command_writes_galleries_and_every_item(tmp_path, capsys):
    import csv
    import json

    import numpy as np
    from PIL import Image

    from fishspine.analysis.coco.synthetic import synthetic_coco
    from fishspine.cli.main import main

    gt, a = synthetic_coco(n_images=6, n_categories=3, seed=5)
    _, b = synthetic_coco(n_images=6, n_categories=3, seed=6)
    (tmp_path / "images").mkdir()
    for e in gt["images"]:
        Image.fromarray(np.full((640, 640, 3), 128, np.uint8)).save(tmp_path / "images" / e["file_name"])
    for name, data in (("gt", gt), ("a", a), ("b", b)):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    argv = [
        "coco",
        "--gt",
        str(tmp_path / "gt.json"),
        "--dt",
        f"A={tmp_path / 'a.json'}",
        "--dt",
        f"B={tmp_path / 'b.json'}",
    ]
    out = tmp_path / "evidence"
    argv += ["--baseline", "B", "--bootstrap", "0", "-o", str(tmp_path / "out"), "--formats", "png"]
    assert main([*argv, "--evidence", str(out)]) == 2  # crops need the images
    assert "--images" in capsys.readouterr().err
    assert main([*argv, "--evidence", str(out), "--images", str(tmp_path / "images")]) == 0
    printed = capsys.readouterr().out
    for area in ("all", "small", "medium", "large"):
        data = json.loads((out / f"A_{area}.json").read_text())
        rows = list(csv.DictReader(open(out / f"A_{area}.csv")))
        assert len(rows) == sum(data["counts"].values()) == len(data["items"])
        assert (out / f"A_{area}.png").exists() and f"A vs B, {area}:" in printed
    assert not list(out.glob("B_*"))  # the baseline is not compared with itself
