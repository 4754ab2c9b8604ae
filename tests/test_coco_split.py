"""`fishspine coco` evaluates a large file's categories in processes side by side (evaluate_one's
`processes`): the arrays, names and bootstrap matching are the one-process evaluation's, bit for bit."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = r"""
import os, sys
import numpy as np
from fishspine.analysis.coco import evaluation as E
from fishspine.analysis.coco.synthetic import synthetic_coco

iou_type = sys.argv[1]
E.SPLIT_MIN_OBJECTS = 0  # split even this small set
raw_gt, raw_dets = synthetic_coco(120, n_categories=7, dets_per_image=40, seed=3, with_masks=iou_type == "segm")
gt = E.load_ground_truth(raw_gt)
dets = E.load_results(raw_dets, gt, iou_type)
one = E.evaluate_one(gt, dets, "x", iou_type, keep_matches=True)

real, pids = E._evaluate_part, []
def recorded(*args):
    part = real(*args)
    part.pid = os.getpid()
    return part
E._evaluate_part = recorded
real_side_by_side = E.side_by_side
E.side_by_side = lambda fn, jobs: [pids.append(p.pid) or p for p in real_side_by_side(fn, jobs)]
three = E.evaluate_one(gt, dets, "x", iou_type, keep_matches=True, processes=3)
assert len(pids) == 3 and len(set(pids)) == 3 and os.getpid() in pids, pids

assert one.category_ids == three.category_ids and one.category_names == three.category_names
assert np.array_equal(one.precision, three.precision) and np.array_equal(one.recall, three.recall)
for field in ("image_ids", "det_image", "det_category", "tp", "ignored", "npig"):
    assert np.array_equal(getattr(one.matches, field), getattr(three.matches, field)), field
assert np.array_equal(one.replicates(200, 1), three.replicates(200, 1))
assert one.summary() == three.summary()
print("same")
"""


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_categories_evaluated_in_three_processes_equal_one(iou_type):
    # In a fresh interpreter: the suite's process has had threads (Qt's, torch's), and evaluate_one does not
    # fork beside threads.
    done = subprocess.run([sys.executable, "-c", SCRIPT, iou_type], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "same"


def test_small_files_and_threaded_processes_are_evaluated_here():
    import threading

    from fishspine.analysis.coco import evaluation as E
    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(20, n_categories=4, seed=0)
    assert len(E._category_groups(gt, dets, 4)) == 1  # far below SPLIT_MIN_OBJECTS
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        big = E.SPLIT_MIN_OBJECTS
        E.SPLIT_MIN_OBJECTS = 0
        assert len(E._category_groups(gt, dets, 4)) == 1  # another thread: no fork
    finally:
        E.SPLIT_MIN_OBJECTS = big
        stop.set()
        other.join()


def test_the_command_writes_the_same_files_in_one_process_or_several(tmp_path):
    import json
    from pathlib import Path

    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(30, n_categories=5, dets_per_image=20, seed=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "a.json").write_text(json.dumps(dets))
    (tmp_path / "b.json").write_text(json.dumps(dets[::2]))
    fishspine = str(Path(sys.executable).with_name("fishspine"))
    outputs = {}
    for processes in (1, 3):
        out = tmp_path / f"out{processes}"
        command = [fishspine, "coco", "--gt", str(tmp_path / "gt.json"), "--dt", f"a={tmp_path / 'a.json'}"]
        command += ["--dt", f"b={tmp_path / 'b.json'}", "--baseline", "a", "--bootstrap", "50", "-o", str(out)]
        done = subprocess.run([*command, "--processes", str(processes)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[processes] = (done.stdout, {p.name: p.read_bytes() for p in sorted(out.iterdir())})
    (text_1, files_1), (text_3, files_3) = outputs[1], outputs[3]
    assert text_1 == text_3
    assert len(files_1) == 4 + 5 * 3  # csv, json, .tex, .md; table, sizes, PR and two per-class figures x 3
    assert files_1 == files_3
