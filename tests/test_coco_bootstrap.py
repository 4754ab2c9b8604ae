"""Paired bootstrap intervals of the COCO AP deltas, and the paper exports (LaTeX, Markdown, figures)."""

from __future__ import annotations

import copy
import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from fishspine.analysis.coco.bootstrap import BOOT_STATS, delta_interval, draw_weights
from fishspine.analysis.coco.evaluation import evaluate, evaluate_one, load_ground_truth, load_results, per_scale_table
from fishspine.analysis.coco.synthetic import synthetic_coco
from fishspine.analysis.coco.tables import latex_escape, latex_table, markdown_table


def _set(n=60, seed=1, crowd=0.1, masks=False):
    gt, dets = synthetic_coco(n, n_categories=4, dets_per_image=20, crowd_fraction=crowd, seed=seed, with_masks=masks)
    gt = load_ground_truth(gt)
    return gt, load_results(dets, gt, "segm" if masks else "bbox")


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_weights_all_one_reproduce_the_evaluation(iou_type):
    gt, dets = _set(masks=iou_type == "segm")
    gt["images"].append({"id": 999, "width": 640, "height": 640, "file_name": "empty.jpg"})
    ev = evaluate_one(gt, dets, "m", iou_type, keep_matches=True)
    p = ev.matches.weighted_precision(np.ones((1, len(gt["images"])), int))[0]
    np.testing.assert_allclose(p, ev.precision[..., -1], rtol=0, atol=1e-12)
    reps = ev.replicates(1, 0)  # one draw; compare with the same weights through replicate_stats
    from fishspine.analysis.coco.bootstrap import replicate_stats

    ones = replicate_stats(ev.matches, np.ones((1, len(gt["images"])), np.int32))[0]
    summary = ev.summary()
    np.testing.assert_allclose(ones, [summary[k] for k in BOOT_STATS], rtol=0, atol=1e-12)
    assert reps.shape == (1, len(BOOT_STATS))


def test_an_image_drawn_k_times_counts_as_k_copies():
    """The weighted accumulation equals evaluating a dataset in which each image is copied k times."""
    gt, dets = _set(n=25, seed=3)
    ev = evaluate_one(gt, dets, "m", "bbox", keep_matches=True)
    w = np.random.default_rng(0).integers(0, 4, len(gt["images"]))
    images, anns, copies = [], [], []
    for i, im in enumerate(sorted(gt["images"], key=lambda x: x["id"])):
        for _ in range(w[i]):
            new = len(images) + 1
            images.append(dict(im, id=new))
            anns += [
                dict(a, image_id=new, id=len(anns) + 1 + j)
                for j, a in enumerate(a for a in gt["annotations"] if a["image_id"] == im["id"])
            ]
            copies += [dict(d, image_id=new) for d in dets if d["image_id"] == im["id"]]
    expanded = evaluate_one(dict(copy.deepcopy(gt), images=images, annotations=anns), copies, "x", "bbox")
    p = ev.matches.weighted_precision(w[None])[0]
    np.testing.assert_allclose(p, expanded.precision[..., -1], rtol=0, atol=1e-12)


def test_same_file_under_two_names_gives_zero_with_a_zero_interval():
    gt, dets = _set()
    evals = evaluate(gt, {"a": dets, "b": copy.deepcopy(dets)}, bootstrap=200, seed=0)
    row = per_scale_table(evals, "a", 200, 0)[1]
    for k in BOOT_STATS:
        assert row[f"Δ{k}"] == 0.0 and row[f"Δ{k}_lo"] == 0.0 and row[f"Δ{k}_hi"] == 0.0


def test_interval_contains_the_estimate_and_follows_the_seed():
    gt, dets = _set(n=80)
    worse = [d for i, d in enumerate(dets) if i % 4]  # a quarter of the detections dropped
    evals = evaluate(gt, {"base": dets, "worse": worse}, bootstrap=300, seed=0)
    row = per_scale_table(evals, "base", 300, 0)[1]
    for k in BOOT_STATS:
        assert row[f"Δ{k}_lo"] <= row[f"Δ{k}"] <= row[f"Δ{k}_hi"], k
        assert row[f"Δ{k}_lo"] < row[f"Δ{k}_hi"], k
    assert row["ΔAP_hi"] < 0  # dropping true positives is a loss the interval resolves
    again = per_scale_table(evals, "base", 300, 0)[1]
    other = per_scale_table(evals, "base", 300, 1)[1]
    assert all(again[f"Δ{k}_lo"] == row[f"Δ{k}_lo"] and again[f"Δ{k}_hi"] == row[f"Δ{k}_hi"] for k in BOOT_STATS)
    assert any(other[f"Δ{k}_lo"] != row[f"Δ{k}_lo"] for k in BOOT_STATS)
    # the draws are paired: one weight matrix per (images, resamples, seed)
    np.testing.assert_array_equal(draw_weights(80, 5, 3), draw_weights(80, 5, 3))
    assert draw_weights(80, 5, 3).sum(axis=1).tolist() == [80] * 5


def test_delta_interval_is_a_percentile_interval_of_the_paired_differences():
    rng = np.random.default_rng(0)
    base = rng.random((1000, len(BOOT_STATS)))
    other = base + rng.normal(0.01, 0.001, base.shape)
    lo, hi = delta_interval(other, base)["AP"]
    d = other[:, 0] - base[:, 0]
    assert (lo, hi) == pytest.approx((np.percentile(d, 2.5), np.percentile(d, 97.5)), abs=1e-15)


def test_intervals_need_the_matching():
    gt, dets = _set(n=10)
    evals = evaluate(gt, {"a": dets, "b": dets[::2]})
    assert "ΔAP_lo" not in per_scale_table(evals, "a")[1]
    from fishspine.analysis.coco.evaluation import CocoError

    with pytest.raises(CocoError, match="keep_matches"):
        per_scale_table(evals, "a", 10)


def test_latex_and_markdown_tables():
    gt, dets = _set(n=40)
    evals = evaluate(gt, {"R_50 & 100%": dets, "half{x}": dets[::2]}, bootstrap=50)
    rows = per_scale_table(evals, "R_50 & 100%", 50)
    tex = latex_table(rows, "R_50 & 100%")
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    assert body.count("{") - body.count("\\{") == body.count("}") - body.count("\\}")
    assert body.count("\\begin{tabular}") == 1 and body.count("\\end{tabular}") == 1
    assert all(rule in body for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert "R\\_50 \\& 100\\%$^\\dagger$" in body and "half\\{x\\}" in body
    assert latex_escape("a\\b~c^d#e$") == "a\\textbackslash{}b\\textasciitilde{}c\\textasciicircum{}d\\#e\\$"
    md = markdown_table(rows, "R_50 & 100%")
    lines = md.splitlines()
    assert lines[0] == "| backbone | AP | AP50 | AP75 | AP_S | AP_M | AP_L |"
    assert len([line for line in lines[2:] if line.startswith("| ")]) == len(rows)
    assert "(baseline)" in lines[2] and "[" in lines[3]


def test_coco_command_writes_intervals_tex_and_md(tmp_path):
    gt, dets = synthetic_coco(30, n_categories=3, dets_per_image=15, seed=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "a.json").write_text(json.dumps(dets))
    (tmp_path / "b.json").write_text(json.dumps(dets[::2]))
    out = tmp_path / "out"
    args = ["coco", "--gt", str(tmp_path / "gt.json"), "--dt", f"R_50={tmp_path / 'a.json'}"]
    args += ["--dt", f"F&150={tmp_path / 'b.json'}", "--baseline", "R_50", "--bootstrap", "100", "--seed", "3"]
    res = subprocess.run(
        [sys.executable, "-m", "fishspine.cli.main", *args, "-o", str(out), "--formats", "png"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "100 resamples, seed 3" in res.stdout
    rows = list(csv.DictReader((out / "coco_bbox.csv").open()))
    assert rows[0]["ΔAP_lo"] == "" and float(rows[1]["ΔAP_lo"]) <= float(rows[1]["ΔAP"]) <= float(rows[1]["ΔAP_hi"])
    data = json.loads((out / "coco_bbox.json").read_text())
    assert data["bootstrap"]["resamples"] == 100 and data["bootstrap"]["seed"] == 3
    tex = (out / "coco_bbox_table.tex").read_text()
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    row = next(line for line in body if line.startswith("F\\&150"))
    numbers = [float(x) for x in re.findall(r"[-+]?\d+\.\d", row)]
    expected = []
    for k in ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L"):
        expected += [float(rows[1][c]) for c in (k, f"Δ{k}", f"Δ{k}_lo", f"Δ{k}_hi")]
    assert numbers == [round(v, 1) for v in expected]
    md = (out / "coco_bbox_table.md").read_text()
    assert md.startswith("| backbone | AP |") and "| R_50 (baseline) |" in md and "| F&150 |" in md
    res = subprocess.run(
        [sys.executable, "-m", "fishspine.cli.main", *args[:-4], "--bootstrap", "0", "-o", str(out / "no")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "ΔAP_lo" not in (out / "no" / "coco_bbox.csv").read_text() and "bootstrap" not in res.stdout


def test_figures_show_the_intervals():
    from fishspine.analysis.figures.coco import GAIN, LOSS, size_bars_figure, table_figure

    gt, dets = _set(n=40)
    evals = evaluate(gt, {"base": dets, "worse": dets[::2]}, bootstrap=50)
    row = per_scale_table(evals, "base", 50)[1]
    fig = table_figure(evals, "base", 50)
    texts = {t.get_text(): t for t in fig.axes[0].texts}
    cell = f"{row['ΔAP']:+.1f} [{row['ΔAP_lo']:+.1f}, {row['ΔAP_hi']:+.1f}]".replace("-", "\u2212")
    assert cell in texts and texts[cell].get_color() == LOSS and GAIN != LOSS
    assert any("\\dagger" in t for t in texts)
    bars = size_bars_figure(evals, "base", 50)
    assert len(bars.axes[0].containers) == 3  # two bar groups and one error-bar set (the baseline has none)
