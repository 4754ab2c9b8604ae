"""Paired bootstrap over images for the AP deltas of the per-scale table.

The evaluation's per-image matching (which detection matched which ground truth, at each IoU threshold,
in each size range) is computed once per result file; a resample only changes how many times each
image counts. Re-accumulating COCO's precision for a resample is then a matter of weighted cumulative
sums over the detections sorted once by score: an image drawn k times counts k times, exactly as if
its copies had been appended to the dataset. With every weight 1 the numbers are the evaluation's own
(tested to 1e-12).

The draws depend only on the seed, the number of resamples and the ground truth's image list, so the
resamples of every result file against the same ground truth are the same draws: the replicates of
two backbones subtract into a paired bootstrap of their difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fishspine.analysis.coco.matching import greedy_match

BOOT_STATS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
_SIZES = {"AP_S": "small", "AP_M": "medium", "AP_L": "large"}
_EPS = np.spacing(1)  # pycocotools' guard in precision = tp / (tp + fp + eps)


@dataclass
class ImageMatches:
    """Per-image matching of one result file at the largest maxDets, every IoU threshold and size range.

    Detections are in accumulation order: by category, then by descending score, ties in image order
    (the order pycocotools' accumulate sorts them in).
    """

    image_ids: np.ndarray  # (I,) the ground truth's image ids, ascending
    category_ids: list[int]
    area_labels: list[str]
    iou_thresholds: np.ndarray  # (T,)
    recall_thresholds: np.ndarray  # (R,)
    det_image: np.ndarray  # (N,) index into image_ids
    det_category: np.ndarray  # (N,) index into category_ids
    tp: np.ndarray  # (A, T, N) bool: matched to a ground truth that counts
    ignored: np.ndarray  # (A, T, N) bool: matched to an ignored ground truth, or unmatched and out of range
    npig: np.ndarray  # (A, K, I) ground truths that count, per size range, category and image
    _plans: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def concatenate(cls, parts: list[ImageMatches]) -> ImageMatches:
        """The matching of the parts' categories together, from parts over the same images, each of later
        categories than the one before (evaluate_one's category groups): as if matched at once, since
        detections are in category order and each category is matched on its own."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        offsets = np.cumsum([0] + [len(p.category_ids) for p in parts[:-1]])
        return cls(
            first.image_ids,
            [c for p in parts for c in p.category_ids],
            first.area_labels,
            first.iou_thresholds,
            first.recall_thresholds,
            np.concatenate([p.det_image for p in parts]),
            np.concatenate([p.det_category + offset for p, offset in zip(parts, offsets)]),
            np.concatenate([p.tp for p in parts], axis=2),
            np.concatenate([p.ignored for p in parts], axis=2),
            np.concatenate([p.npig for p in parts], axis=1),
        )

    def weighted_precision(self, weights: np.ndarray) -> np.ndarray:
        """COCO's precision array (B, T, R, K, A) for each row of image weights (B, I); -1 where undefined."""
        weights = np.atleast_2d(np.asarray(weights))
        out = np.empty(
            (
                len(weights),
                len(self.iou_thresholds),
                len(self.recall_thresholds),
                len(self.category_ids),
                len(self.area_labels),
            )
        )
        for a in range(len(self.area_labels)):
            q, valid = self._area_precision(a, weights)
            out[..., a] = np.where(valid[:, None, None, :], q.transpose(0, 1, 3, 2), -1.0)
        return out

    def _plan(self, a: int) -> dict[str, np.ndarray]:
        """Index arrays for size range `a` that do not depend on the weights (built once)."""
        if a in self._plans:
            return self._plans[a]
        tp, ign = self.tp[a], self.ignored[a]
        n_k = len(self.category_ids)
        n = len(self.det_image)
        pos = np.arange(n)
        # A detection ignored at every threshold never counts, and one after the category's last true
        # positive cannot raise an interpolated precision: neither needs summing.
        if not np.allclose(self.recall_thresholds, np.linspace(0, 1, len(self.recall_thresholds))):
            raise ValueError("the bootstrap re-accumulation assumes evenly spaced recall thresholds from 0 to 1")
        last_tp = np.full(n_k, -1)
        any_tp = tp.any(axis=0)
        np.maximum.at(last_tp, self.det_category[any_tp], pos[any_tp])
        kept = ~ign.all(axis=0) & (pos <= last_tp[self.det_category])
        kidx = np.flatnonzero(kept)
        nk = len(kidx)
        kcat = self.det_category[kidx]
        cat_start = np.searchsorted(kcat, np.arange(n_k), "left")  # first kept detection of each category
        tp_k, ign_k = tp[:, kidx], ign[:, kidx]
        t_of_tp, kpos_tp = np.nonzero(tp_k)  # t-major, then position: segments (t, k) are contiguous
        t_of_ig, kpos_ig = np.nonzero(ign_k)
        seg = t_of_tp * n_k + kcat[kpos_tp]
        seg_start = np.searchsorted(seg, seg, "left")
        ig_key = t_of_ig * nk + kpos_ig
        plan = {
            "kept_img": self.det_image[kidx],
            "w_hi": kpos_tp + 1,
            "w_lo": cat_start[kcat[kpos_tp]],
            "tp_img": self.det_image[kidx[kpos_tp]],
            "tp_lo": seg_start,
            "ig_img": self.det_image[kidx[kpos_ig]],
            "ig_hi": np.searchsorted(ig_key, t_of_tp * nk + kpos_tp, "left"),
            "ig_lo": np.searchsorted(ig_key, t_of_tp * nk + cat_start[kcat[kpos_tp]], "left"),
            "seg": seg,
            "seg_k": kcat[kpos_tp],
            "npig": self.npig[a].T.astype(np.float64),  # (I, K)
        }
        self._plans[a] = plan
        return plan

    def _area_precision(self, a: int, weights: np.ndarray, summed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(interpolated precision (B, T, K, R), or its sum over R when `summed`; valid categories (B, K))
        of size range `a`."""
        p = self._plan(a)
        # Running sums are exact integers; int32 halves the memory traffic when they cannot overflow.
        small = int(weights.max(initial=0)) * max(len(self.det_image), 1) < 2**31
        w = weights.astype(np.int32 if small else np.int64, copy=False)
        n_b = len(w)
        n_t, n_k, n_r = len(self.iou_thresholds), len(self.category_ids), len(self.recall_thresholds)
        n_pos = len(p["seg"])

        def zcumsum(cols: np.ndarray) -> np.ndarray:  # (B, n+1) running sums with a leading 0
            z = np.zeros((n_b, len(cols) + 1), w.dtype)
            np.cumsum(np.take(w, cols, axis=1), axis=1, out=z[:, 1:])  # take: faster than w[:, cols]
            return z

        wz, tz, iz = zcumsum(p["kept_img"]), zcumsum(p["tp_img"]), zcumsum(p["ig_img"])
        # counted detections (tp + fp) up to each true positive = all kept ones - ignored ones
        tp = (tz[:, 1:] - np.take(tz, p["tp_lo"], axis=1)).astype(np.float64)
        counted = np.take(wz, p["w_hi"], axis=1) - np.take(wz, p["w_lo"], axis=1)
        counted -= np.take(iz, p["ig_hi"], axis=1) - np.take(iz, p["ig_lo"], axis=1)
        counted = counted.astype(np.float64)
        npig = w.astype(np.float64) @ p["npig"]  # (B, K), exact: integer-valued
        valid = npig > 0
        pr = tp / (counted + _EPS)  # pycocotools: tp / (fp + tp + eps), fp + tp exact here as there
        rc = tp / np.take(np.maximum(npig, 1.0), p["seg_k"], axis=1)  # no counted ground truth: no true positive either
        # number of recall thresholds each point reaches (searchsorted(recThrs, rc, "right") without a search;
        # the thresholds are COCO's 0:0.01:1, so the estimate is off by at most one either way)
        r_ext = np.append(self.recall_thresholds, np.inf)
        g = np.floor(rc * (n_r - 1)).astype(np.int64)
        g += 1
        np.clip(g, 1, n_r, out=g)
        g -= np.take(r_ext, g - 1) > rc
        g += np.take(r_ext, g) <= rc
        # The best precision among the points reaching exactly g thresholds, per (resample, segment, g), in
        # slot n_r - g: a running maximum along the slots (contiguous, in place) is then the interpolated
        # precision, slot s holding threshold n_r - 1 - s (the best precision of every point beyond it).
        np.subtract(n_r, g, out=g)
        g += p["seg"] * n_r
        g += (np.arange(n_b) * (n_t * n_k * n_r))[:, None]
        key = g.ravel()
        dense = np.zeros(n_b * n_t * n_k * n_r)
        if n_pos:
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            dense[key[starts]] = np.maximum.reduceat(pr.ravel(), starts)
        dense = dense.reshape(n_b, n_t, n_k, n_r)
        np.maximum.accumulate(dense, axis=-1, out=dense)
        return (dense.sum(axis=-1) if summed else dense[..., ::-1]), valid


def image_matches(coco_eval: Any) -> ImageMatches:
    """The per-image matching of a faster-coco-eval COCOeval after its evaluate(), as pycocotools'
    evaluateImg computes it (at the largest maxDets), from the IoUs the evaluation computed."""
    p = coco_eval.params
    img_ids = np.asarray(p.imgIds, dtype=np.int64)
    cat_ids = [int(c) for c in p.catIds]
    max_det = int(p.maxDets[-1])
    ranges = np.asarray(p.areaRng, dtype=float)
    thr = np.minimum(np.asarray(p.iouThrs, dtype=float), 1 - 1e-10)
    n_i, n_k, n_a, n_t = len(img_ids), len(cat_ids), len(ranges), len(thr)
    img_index = {int(i): n for n, i in enumerate(img_ids)}
    cat_index = {c: n for n, c in enumerate(cat_ids)}

    # Ground truth, in the evaluation's order within each (image, category): the dataset's.
    gts = [g for g in coco_eval.cocoGt.dataset["annotations"] if int(g["category_id"]) in cat_index]
    g_img = np.array([img_index[int(g["image_id"])] for g in gts], dtype=np.int64)
    g_cat = np.array([cat_index[int(g["category_id"])] for g in gts], dtype=np.int64)
    g_area = np.array([float(g["area"]) for g in gts])
    g_crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts])
    g_ig = g_crowd[None, :] | (g_area[None, :] < ranges[:, :1]) | (g_area[None, :] > ranges[:, 1:])  # (A, G)
    npig = np.zeros((n_a, n_k, n_i), np.int64)
    for a in range(n_a):
        np.add.at(npig[a], (g_cat[~g_ig[a]], g_img[~g_ig[a]]), 1)
    g_pair = g_img * n_k + g_cat
    g_order = np.argsort(g_pair, kind="stable")
    g_bounds = np.searchsorted(g_pair[g_order], np.arange(n_i * n_k + 1), "left")

    # Detections: within a pair by descending score (stable), the first max_det kept; then accumulation order.
    dts = coco_eval.cocoDt.dataset.get("annotations", []) if coco_eval.cocoDt.dataset else []
    d_img = np.array([img_index[int(d["image_id"])] for d in dts], dtype=np.int64)
    d_cat = np.array([cat_index.get(int(d["category_id"]), -1) for d in dts], dtype=np.int64)
    d_score = np.array([float(d["score"]) for d in dts])
    d_area = np.array([float(d["area"]) for d in dts])
    known = np.flatnonzero(d_cat >= 0)
    d_img, d_cat, d_score, d_area = d_img[known], d_cat[known], d_score[known], d_area[known]
    d_pair = d_img * n_k + d_cat
    by_pair = np.lexsort((np.arange(len(d_pair)), -d_score, d_pair))
    first = np.searchsorted(d_pair[by_pair], d_pair[by_pair], "left")
    rank = np.empty(len(d_pair), np.int64)
    rank[by_pair] = np.arange(len(d_pair)) - first
    kept = np.flatnonzero(rank < max_det)
    d_img, d_cat, d_score, d_area, d_pair, rank = (x[kept] for x in (d_img, d_cat, d_score, d_area, d_pair, rank))
    order = np.lexsort((rank, d_img, -d_score, d_cat))
    d_img, d_cat, d_score, d_area, d_pair, rank = (x[order] for x in (d_img, d_cat, d_score, d_area, d_pair, rank))
    n = len(d_img)
    d_out = (d_area[None, :] < ranges[:, :1]) | (d_area[None, :] > ranges[:, 1:])  # (A, N)
    tp = np.zeros((n_a, n_t, n), bool)
    ignored = np.repeat(d_out[:, None, :], n_t, axis=1)

    # Only detections overlapping a ground truth by the lowest threshold can match: visit those pairs.
    pair_sorted = np.lexsort((rank, d_pair))
    pair_start = np.searchsorted(d_pair[pair_sorted], np.arange(n_i * n_k + 1), "left")
    for (img, cat), ious in coco_eval.ious.items():
        ious = np.asarray(ious)
        if ious.size == 0 or ious.max() < thr[0]:
            continue
        i, k = img_index[int(img)], cat_index[int(cat)]
        pair = i * n_k + k
        rows = pair_sorted[
            pair_start[pair] : pair_start[pair] + ious.shape[0]
        ]  # this pair's detections by rank = ious' rows
        gsel = g_order[g_bounds[pair] : g_bounds[pair + 1]]
        crowd = g_crowd[gsel]
        cand = np.flatnonzero(ious.max(axis=1) >= thr[0])
        seen: dict[bytes, np.ndarray] = {}
        for a in range(n_a):
            gig = g_ig[a, gsel]
            sig = gig.tobytes()
            if sig not in seen:
                seen[sig] = greedy_match(ious[cand], gig, crowd, thr)
            m = seen[sig]  # (T, n_cand) index of the matched ground truth, -1 if none
            hit = m >= 0
            to_ig = np.zeros_like(hit)
            to_ig[hit] = gig[m[hit]]
            cols = rows[cand]
            tp[a][:, cols] = hit & ~to_ig
            ignored[a][:, cols] = to_ig | (~hit & d_out[a, cols][None, :])
    return ImageMatches(
        img_ids,
        cat_ids,
        list(p.areaRngLbl),
        np.asarray(p.iouThrs, dtype=float),
        np.asarray(p.recThrs, dtype=float),
        d_img,
        d_cat,
        tp,
        ignored,
        npig,
    )


def draw_weights(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """(B, I) multiplicities: each row draws I images with replacement (the same rows for every result
    file of a ground truth with I images, so backbones are compared on the same resamples)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    flat = draws + np.arange(n_resamples)[:, None] * n_images
    return np.bincount(flat.ravel(), minlength=n_resamples * n_images).reshape(n_resamples, n_images).astype(np.int32)


def replicate_stats(matches: ImageMatches, weights: np.ndarray, chunk_elements: int = 1_000_000) -> np.ndarray:
    """(B, len(BOOT_STATS)) AP, AP50, AP75, AP_S, AP_M, AP_L in [0, 1] for each row of image weights."""
    n_b = len(weights)
    out = np.full((n_b, len(BOOT_STATS)), np.nan)
    t50 = _t(matches.iou_thresholds, 0.5)
    t75 = _t(matches.iou_thresholds, 0.75)
    areas = {"AP": "all", **_SIZES}
    for a, label in enumerate(matches.area_labels):
        cols = [j for j, s in enumerate(BOOT_STATS) if areas.get(s) == label]
        if label == "all":
            cols = list(range(3))
        if not cols:
            continue
        plan = matches._plan(a)
        cells = len(matches.iou_thresholds) * len(matches.category_ids) * len(matches.recall_thresholds)
        step = max(1, chunk_elements // max(1, len(plan["seg"]) + len(plan["kept_img"]) + cells))
        n_r = len(matches.recall_thresholds)
        for b0 in range(0, n_b, step):
            qsum, valid = matches._area_precision(a, weights[b0 : b0 + step], summed=True)  # (B, T, K)
            for j in cols:
                s = BOOT_STATS[j]
                sub = qsum if s in ("AP",) or s in _SIZES else qsum[:, [t50 if s == "AP50" else t75]]
                total = (sub * valid[:, None, :]).sum(axis=(1, 2))
                count = valid.sum(axis=1) * sub.shape[1] * n_r
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[b0 : b0 + step, j] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return out


def _t(thresholds: np.ndarray, iou: float) -> int:
    hits = np.flatnonzero(np.isclose(thresholds, iou))
    return int(hits[0]) if len(hits) else -1


def delta_interval(
    replicates: np.ndarray, base_replicates: np.ndarray, confidence: float = CONFIDENCE
) -> dict[str, tuple[float, float]]:
    """{stat: (lo, hi)} percentile interval of the paired differences, in [0, 1] units (nan when undefined)."""
    diff = replicates - base_replicates
    lo_q, hi_q = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    out = {}
    for j, s in enumerate(BOOT_STATS):
        d = diff[:, j]
        d = d[np.isfinite(d)]
        out[s] = (float(np.percentile(d, lo_q)), float(np.percentile(d, hi_q))) if d.size else (math.nan, math.nan)
    return out
