"""Figures of a `fishspine study` folder: gradient traces with bands, ERF maps, CKA heat maps,
deletion/insertion curves and activation statistics, each as a `ViewExport`.

The folder is summary.json (the schema of STUDY_SPEC.md) plus erf.npz and cka.npz. `load_study`
checks every field the figures use, so a malformed folder is refused with a `StudyError` naming the
file instead of failing half-way through a figure.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from fishspine.analysis.figures.base import ViewExport, family_of, model_colors, new_figure, style_context

FORMAT = "fishspine-study"
MAP_CMAP = "magma"
_MAX_TICKS = 14  # block labels per heat-map axis before they are thinned (5.5 pt text stays apart)


class StudyError(ValueError):
    """A study folder or one of its files is missing or malformed (the message names the file)."""


@dataclass
class Study:
    """A loaded study: the summary dict, the mean ERF maps by npz key, and the CKA matrix (or None)."""

    summary: dict
    erf: dict[str, np.ndarray]
    cka: np.ndarray | None
    folder: Path | None = None

    @property
    def models(self) -> dict[str, dict]:
        """Model label -> its summary entry, in the study's order."""
        return self.summary["models"]

    @property
    def colors(self) -> dict[str, str]:
        """Each model's colour, by its variant's family (the same as in every other view and figure)."""
        return model_colors(self.models, {m: family_of(str(e.get("variant", ""))) for m, e in self.models.items()})


# ---------------------------------------------------------------------- loading and validation


class _Invalid(Exception):
    pass


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise _Invalid(f"{where} {what}")


def _is_num(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _num(v: Any, where: str, nonneg: bool = False) -> None:
    _need(_is_num(v) and not (nonneg and v is not None and v < 0), where, "must be a number or null")


def _interval(d: Any, where: str) -> None:
    _need(isinstance(d, dict), where, "must be an interval object {mean, lo, hi, n}")
    for k in ("mean", "lo", "hi"):
        _need(k in d, where, f"has no {k!r}")
        _num(d[k], f"{where}.{k}")


def _pair(v: Any, where: str, nullable: bool = False) -> None:
    ok = isinstance(v, list) and len(v) == 2 and all(_is_num(x) for x in v)
    _need(ok or (nullable and v is None), where, "must be a pair of numbers [y, x]")


def _check_model(e: Any, at: str) -> None:
    _need(isinstance(e, dict), at, "must be an object")
    blocks = e.get("blocks", [])
    ok = isinstance(blocks, list) and all(isinstance(b, dict) and isinstance(b.get("name"), str) for b in blocks)
    _need(ok, f"{at}.blocks", "must be a list of block objects with a 'name'")
    if "traces" in e:
        t, w = e["traces"], f"{at}.traces"
        _need(isinstance(t, dict) and isinstance(t.get("blocks"), dict), w, "must be an object with 'blocks'")
        order = t.get("order")
        ok = isinstance(order, list) and all(isinstance(b, str) and b in t["blocks"] for b in order)
        _need(ok, f"{w}.order", "must list keys of blocks")
        for b in order:
            _need(isinstance(t["blocks"][b], dict), f"{w}.blocks[{b!r}]", "must be an object")
            for k in ("output", "weight"):
                _interval(t["blocks"][b].get(k), f"{w}.blocks[{b!r}].{k}")
        _need(isinstance(t.get("ratio"), dict), f"{w}.ratio", "must be an object {output, weight}")
        for k in ("output", "weight"):
            _interval(t["ratio"].get(k), f"{w}.ratio.{k}")
    if "erf" in e:
        _need(isinstance(e["erf"], dict), f"{at}.erf", "must be an object level -> entry")
        for lv, r in e["erf"].items():
            w = f"{at}.erf[{lv!r}]"
            _need(lv.isdigit() and isinstance(r, dict), w, "must be an integer level with an object")
            _need(isinstance(r.get("npz_key"), str), f"{w}.npz_key", "must be a string")
            for k in ("stride", "radius_50", "radius_90"):
                _need(k in r, w, f"has no {k!r}")
                _num(r[k], f"{w}.{k}", nonneg=True)
            _pair(r.get("centre"), f"{w}.centre")
            _pair(r.get("centre_of_mass"), f"{w}.centre_of_mass", nullable=True)
    if "activations" in e:
        _need(isinstance(e["activations"], dict), f"{at}.activations", "must be an object block -> entry")
        for b, r in e["activations"].items():
            w = f"{at}.activations[{b!r}]"
            _need(isinstance(r, dict), w, "must be an object")
            _interval(r.get("mean_abs"), f"{w}.mean_abs")
            _interval(r.get("zero_fraction"), f"{w}.zero_fraction")
            for k in ("dead_channels", "channels"):
                _need(r.get(k) is None or type(r.get(k)) is int, f"{w}.{k}", "must be an integer or null")
    if "faithfulness" in e:
        f, w = e["faithfulness"], f"{at}.faithfulness"
        _need(isinstance(f, dict), w, "must be an object")
        fr = f.get("fractions")
        _need(isinstance(fr, list) and all(_is_num(x) for x in fr), f"{w}.fractions", "must be a list of numbers")
        for k in ("deletion", "insertion"):
            c = f.get(f"{k}_curve")
            ok = isinstance(c, list) and len(c) == len(fr) and all(_is_num(x) for x in c)
            _need(ok, f"{w}.{k}_curve", f"must be a list of {len(fr)} numbers (one per fraction)")
            _interval(f.get(f"{k}_auc"), f"{w}.{k}_auc")


def _check_summary(s: Any) -> None:
    _need(isinstance(s, dict) and s.get("format") == FORMAT, "not a fishspine study:", f"no 'format': {FORMAT!r}")
    _need(s.get("version") == 1, "version", f"{s.get('version')!r} is not 1 (the only version this fishspine reads)")
    _need(isinstance(s.get("config", {}), dict), "config", "must be an object")
    for k in ("confidence", "images"):
        _num(s.get("config", {}).get(k), f"config.{k}", nonneg=True)
    models = s.get("models")
    _need(isinstance(models, dict) and len(models) > 0, "models", "must be a non-empty object label -> model")
    for m, e in models.items():
        _check_model(e, f"models[{m!r}]")
    if "cka" in s:
        c = s["cka"]
        _need(isinstance(c, dict) and isinstance(c.get("npz_key"), str), "cka", "must be an object with 'npz_key'")
        b = c.get("blocks")
        pairs = isinstance(b, list) and all(isinstance(p, list) and len(p) == 2 for p in b)
        ok = pairs and all(isinstance(x, str) for p in b for x in p) and all(p[0] in models for p in b)
        _need(ok, "cka.blocks", "must be a list of [model label, block name] pairs")


def _load_npz(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The arrays `keys` of `path`; numbers only (allow_pickle=False: loading never runs code)."""
    if not path.is_file():
        raise StudyError(f"{path}: missing (summary.json refers to it)")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise StudyError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise StudyError(f"{path}: a single .npy array, not an .npz archive of named arrays")
    try:
        with npz:
            missing = [k for k in keys if k not in npz.files]
            arrays = {k: npz[k] for k in keys if k in npz.files}  # an object array raises ValueError here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise StudyError(f"{path}: not a readable .npz of numeric arrays ({e})") from None
    if missing:
        raise StudyError(f"{path}: has no array {missing[0]!r} (summary.json names it)")
    for k, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise StudyError(f"{path}: array {k!r} is {a.dtype}, not numbers")
    return arrays


def load_study(folder: str | Path) -> Study:
    """Read and check a study folder (summary.json, erf.npz, cka.npz); raises StudyError."""
    folder = Path(folder)
    path = folder / "summary.json"
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder (a study folder holds summary.json, erf.npz, cka.npz)")
    if not path.is_file():
        raise StudyError(f"{path}: missing; not a fishspine study folder")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        _check_summary(summary)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StudyError(f"{path}: not readable JSON ({e})") from None
    except _Invalid as e:
        raise StudyError(f"{path}: {e}") from None
    keys = [r["npz_key"] for e in summary["models"].values() for r in e.get("erf", {}).values()]
    erf = _load_npz(folder / "erf.npz", keys) if keys else {}
    for k, a in erf.items():
        if a.ndim != 2 or 0 in a.shape:
            raise StudyError(f"{folder / 'erf.npz'}: array {k!r} has shape {a.shape}, not a (H, W) map")
    cka = None
    if "cka" in summary:
        key, n = summary["cka"]["npz_key"], len(summary["cka"]["blocks"])
        cka = _load_npz(folder / "cka.npz", [key])[key].astype(np.float64)
        if cka.shape != (n, n):
            raise StudyError(f"{folder / 'cka.npz'}: {key!r} has shape {cka.shape}, the summary lists {n} blocks")
    return Study(summary, erf, cka, folder)


# ---------------------------------------------------------------------- helpers


def _f(v: Any) -> float:
    return math.nan if v is None else float(v)


def _iv(d: dict) -> tuple[float, float, float]:
    return _f(d["mean"]), _f(d["lo"]), _f(d["hi"])


def _g(v: float, fmt: str = ".3g") -> str:
    return "n/a" if not math.isfinite(v) else format(v, fmt)


def _interval_text(d: dict) -> str:
    m, lo, hi = _iv(d)
    return f"{_g(m)} [{_g(lo)}, {_g(hi)}]"


def _conf(study: Study) -> str:
    c = _f(study.summary.get("config", {}).get("confidence", 0.95))
    return f"{100 * c:.0f}%" if math.isfinite(c) else "confidence"


def _depths(n: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(n)


def _with(study: Study, metric: str) -> dict[str, Any]:
    """Model label -> its `metric` entry, for the models that have it."""
    return {m: e[metric] for m, e in study.models.items() if metric in e}


def _positive_floor(*arrays: np.ndarray) -> float:
    v = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)
    v = v[np.isfinite(v) & (v > 0)]
    return float(v.min()) / 2 if v.size else 1e-12


# ---------------------------------------------------------------------- gradient traces


def trace_bands_figure(study: Study, which: str = "output") -> Figure:
    """Mean gradient norm per block against normalised depth (0 = deepest), log y, with the 95% band."""
    fig = new_figure(5.8, 3.5)
    with style_context():
        ax = fig.add_subplot()
        lines = {}
        for m, t in _with(study, "traces").items():
            ivs = np.array([_iv(t["blocks"][b][which]) for b in t["order"]], dtype=float).reshape(-1, 3)
            lines[m] = (t, _depths(len(ivs)), ivs)
        floor = _positive_floor(*(v[2] for v in lines.values()))
        for m, (t, x, ivs) in lines.items():
            mean, lo, hi = ivs.T
            ok = np.isfinite(mean) & (mean > 0)
            band = np.isfinite(lo) & np.isfinite(hi) & ok
            # A lower bound <= 0 cannot be drawn on a log axis: the band runs to the bottom instead.
            ax.fill_between(x, np.maximum(lo, floor), hi, where=band, color=study.colors[m], alpha=0.2, lw=0)
            label = f"{m}: shallowest/deepest {_interval_text(t['ratio'][which])}"
            ax.plot(x[ok], mean[ok], marker="o", ms=2.5, color=study.colors[m], label=label)
        ax.set_yscale("log")
        if lines:
            ax.set_ylim(bottom=floor)
            ax.legend(loc="best", frameon=False)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("normalised depth (0 = deepest block, 1 = shallowest)")
        ax.set_ylabel(f"‖∂L/∂{'block output' if which == 'output' else 'block weights'}‖₂ (mean)")
        ax.set_title(f"Gradient magnitude per block, mean and {_conf(study)} interval (band)")
    return fig


def trace_bands_export(study: Study, which: str = "output") -> ViewExport:
    """Traces of `which` ('output' or 'weight'): figure, one row per (model, block), the summary's traces."""
    if which not in ("output", "weight"):
        raise ValueError("which must be 'output' or 'weight'")
    rows, payload = [], {"which": which, "models": {}}
    for m, t in _with(study, "traces").items():
        for b, d in zip(t["order"], _depths(len(t["order"]))):
            e = t["blocks"][b]
            rows.append({"model": m, "block": b, "level": e.get("level"), "depth": float(d)} | e[which])
        blocks = {b: {"level": t["blocks"][b].get("level"), which: t["blocks"][b][which]} for b in t["order"]}
        ratio = t["ratio"][which]
        payload["models"][m] = {"loss": t.get("loss"), "order": t["order"], "blocks": blocks, "ratio": ratio}
    return ViewExport(lambda: trace_bands_figure(study, which), rows, payload)


# ---------------------------------------------------------------------- effective receptive fields


def erf_figure(study: Study) -> Figure:
    """One column per model, one row per output level: the mean ERF with its r50 / r90 circles."""
    models = _with(study, "erf")
    levels = sorted({int(lv) for e in models.values() for lv in e})
    cols, cell = max(len(models), 1), 1.75
    fig = new_figure(0.9 + cell * cols, 0.6 + (cell + 0.25) * max(len(levels), 1))
    with style_context():
        grid = fig.add_gridspec(max(len(levels), 1), cols)
        axes, im = [], None
        for c, (m, erf) in enumerate(models.items()):
            for r, lv in enumerate(levels):
                ax = fig.add_subplot(grid[r, c])
                axes.append(ax)
                _bare(ax)
                if c == 0:
                    ax.set_ylabel(f"level {lv}")
                e = erf.get(str(lv))
                head = f"{m}\n" if r == 0 else ""
                if e is None:
                    ax.set_title(f"{head}(no level {lv})", fontsize=7, color=study.colors[m])
                    continue
                a = study.erf[e["npz_key"]].astype(np.float64)
                top = np.nanmax(a) if np.isfinite(a).any() else 0.0
                im = ax.imshow(a / top if top > 0 else np.zeros_like(a), cmap=MAP_CMAP, vmin=0, vmax=1)
                cy, cx = (_f(v) for v in e["centre"])
                # the radii are measured about the field's centre of mass (the runner's choice), not the unit
                my, mx = (_f(v) for v in (e.get("centre_of_mass") or [None, None]))
                if not math.isfinite(my + mx):
                    my, mx = cy, cx
                for key, style in (("radius_50", "-"), ("radius_90", "--")):
                    rad = _f(e[key])
                    if math.isfinite(rad) and math.isfinite(mx + my):
                        ax.add_patch(Circle((mx, my), rad, fill=False, ec="#56B4E9", ls=style, lw=1.0))
                ax.plot([cx], [cy], marker="+", color="#56B4E9", ms=5)
                ax.set_xlim(-0.5, a.shape[1] - 0.5)
                ax.set_ylim(a.shape[0] - 0.5, -0.5)
                info = f"stride {_g(_f(e['stride']), '.0f')}: r50 {_g(_f(e['radius_50']), '.0f')} px, "
                ax.set_title(f"{head}{info}r90 {_g(_f(e['radius_90']), '.0f')} px", fontsize=7, color=study.colors[m])
        if im is not None:
            fig.colorbar(im, ax=axes, label="|∂ centre unit / ∂ input| (each map scaled to its max)", shrink=0.8)
        n = study.summary.get("config", {}).get("images")
        fig.suptitle(
            f"Effective receptive field of each level's centre unit (+), mean over {n} images\n"
            "circles about its centre of mass: the radius holding 50% (solid) and 90% (dashed) of the gradient mass",
            fontsize=8,
        )
    return fig


def erf_export(study: Study) -> ViewExport:
    """The ERF grid: figure, one row per (model, level), the summary's ERF entries."""
    rows = []
    for m, erf in _with(study, "erf").items():
        for lv in sorted(erf, key=int):
            e = erf[lv]
            com = e.get("centre_of_mass") or [None, None]
            rows.append(
                {"model": m, "level": int(lv), "stride": e["stride"], "radius_50": e["radius_50"]}
                | {"radius_90": e["radius_90"], "centre_y": e["centre"][0], "centre_x": e["centre"][1]}
                | {"centre_of_mass_y": com[0], "centre_of_mass_x": com[1]}
            )
    payload = {"models": _with(study, "erf")}
    return ViewExport(lambda: erf_figure(study), rows, payload)


# ---------------------------------------------------------------------- CKA


def _bare(ax: Any) -> None:
    """An image panel: no grid, ticks or spines (the house style is for plots)."""
    ax.grid(False)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _cka_blocks(study: Study) -> dict[str, list[tuple[int, str]]]:
    """Model label -> its (matrix index, block name) in the matrix order, models in study order."""
    out: dict[str, list[tuple[int, str]]] = {m: [] for m in study.models}
    for i, (m, b) in enumerate(study.summary["cka"]["blocks"]):
        out[m].append((i, b))
    return {m: v for m, v in out.items() if v}


def _block_ticks(set_ticks: Any, names: list[str]) -> None:
    step = max(1, math.ceil(len(names) / _MAX_TICKS))
    idx = list(range(0, len(names), step))
    set_ticks(idx, [names[i] for i in idx], fontsize=5.5)


def cka_figure(study: Study) -> Figure:
    """Linear CKA between the blocks of every pair of models (upper triangle incl. the diagonal), 0..1."""
    groups = _cka_blocks(study)
    labels, k = list(groups), len(groups)
    colour = study.colors
    fig = new_figure(max(5.5, 1.4 + 2.3 * k), max(3.6, 0.9 + 2.3 * k))
    with style_context():
        grid = fig.add_gridspec(k, k)
        axes, im = [], None
        for a in range(k):
            for b in range(a, k):
                ia, ib = groups[labels[a]], groups[labels[b]]
                sub = study.cka[np.ix_([i for i, _ in ia], [i for i, _ in ib])]
                ax = fig.add_subplot(grid[a, b])
                axes.append(ax)
                _bare(ax)
                im = ax.imshow(
                    np.ma.masked_invalid(sub), cmap="viridis", vmin=0, vmax=1, aspect="equal" if k == 1 else "auto"
                )
                if a == 0:
                    ax.set_title(labels[b], color=colour[labels[b]], fontsize=8)
                if a == b:  # the row's and the column's block names, once each, on the diagonal panel
                    _block_ticks(ax.set_yticks, [n for _, n in ia])
                    _block_ticks(ax.set_xticks, [n for _, n in ib])
                    ax.tick_params(axis="x", labelrotation=90)
                    ax.set_ylabel(labels[a], color=colour[labels[a]])
        if im is not None:
            fig.colorbar(im, ax=axes, label="linear CKA (unbiased HSIC)", shrink=0.8 if k == 1 else 0.6)
        fig.suptitle(
            f"Linear CKA between the blocks of each pair of models ({study.summary['cka'].get('batches')} batches)\n"
            "rows: the row model's blocks, columns: the column model's (names on the diagonal panels)",
            fontsize=8,
        )
    return fig


def cka_export(study: Study) -> ViewExport:
    """CKA heat maps: figure, one row per block pair shown, the block list and the full matrix."""
    if study.cka is None:
        raise ValueError("the study has no CKA matrix")
    groups = _cka_blocks(study)
    labels, rows = list(groups), []
    for a, ma in enumerate(labels):
        for mb in labels[a:]:
            for i, ba in groups[ma]:
                for j, bb in groups[mb]:
                    rows.append({"model_a": ma, "block_a": ba, "model_b": mb, "block_b": bb, "cka": study.cka[i, j]})
    payload = {
        "blocks": study.summary["cka"]["blocks"],
        "batches": study.summary["cka"].get("batches"),
        "matrix": study.cka,
    }
    return ViewExport(lambda: cka_figure(study), rows, payload)


# ---------------------------------------------------------------------- faithfulness


def faithfulness_figure(study: Study) -> Figure:
    """Deletion and insertion curves of each model's Grad-CAM, AUC with its interval in the legends."""
    fig = new_figure(7.0, 3.0)
    with style_context():
        axes = fig.subplots(1, 2, sharey=True)
        scores = set()
        for ax, kind, better in zip(axes, ("deletion", "insertion"), ("lower", "higher")):
            for m, f in _with(study, "faithfulness").items():
                scores.add(str(f.get("score")))
                y = np.array([_f(v) for v in f[f"{kind}_curve"]], dtype=float)
                x = np.array([_f(v) for v in f["fractions"]], dtype=float)
                label = f"{m} @ {f.get('block')}: AUC {_interval_text(f[f'{kind}_auc'])}"
                ax.plot(x, y, color=study.colors[m], marker="o", ms=2, label=label)
            ax.set_title(f"{kind.capitalize()} ({better} AUC is better)")
            ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'restored'} (most salient first)")
            ax.set_xlim(0, 1)
            ax.legend(frameon=False, fontsize=6, loc="best")
        axes[0].set_ylabel(f"score ({', '.join(sorted(scores))})")
        n = study.summary.get("config", {}).get("images")
        title = f"Grad-CAM faithfulness, mean curves over {n} images (AUC: mean [{_conf(study)} interval])"
        fig.suptitle(title, fontsize=8)
    return fig


def faithfulness_export(study: Study) -> ViewExport:
    """Deletion/insertion: figure, one row per (model, curve, fraction), each model's faithfulness entry."""
    rows = []
    for m, f in _with(study, "faithfulness").items():
        for kind in ("deletion", "insertion"):
            for x, y in zip(f["fractions"], f[f"{kind}_curve"]):
                rows.append({"model": m, "block": f.get("block"), "curve": kind, "fraction": x, "score": y})
    payload = {"models": _with(study, "faithfulness")}
    return ViewExport(lambda: faithfulness_figure(study), rows, payload)


# ---------------------------------------------------------------------- activation statistics


def _act_order(e: dict) -> list[str]:
    acts = e["activations"]
    order = [b["name"] for b in e.get("blocks", []) if b["name"] in acts]
    return order + [b for b in acts if b not in order]


def activation_stats_figure(study: Study) -> Figure:
    """Mean |activation| and fraction of zeros per block (forward order), with intervals as error bars."""
    fig = new_figure(6.0, 4.6)
    with style_context():
        top, bottom = fig.subplots(2, 1, sharex=True)
        means = []
        for m, acts in _with(study, "activations").items():
            order = _act_order(study.models[m])
            x = _depths(len(order))
            dead = sum(acts[b].get("dead_channels") or 0 for b in order)
            chans = sum(acts[b].get("channels") or 0 for b in order)
            for ax, key in ((top, "mean_abs"), (bottom, "zero_fraction")):
                mean, lo, hi = np.array([_iv(acts[b][key]) for b in order], dtype=float).reshape(-1, 3).T
                err = np.nan_to_num(np.abs(np.stack([mean - lo, hi - mean])))
                label = f"{m} ({dead} dead of {chans} channels)" if key == "mean_abs" else None
                ax.errorbar(x, mean, yerr=err, color=study.colors[m], marker="o", ms=2.5, capsize=1.5, label=label)
                if key == "mean_abs":
                    means.append(mean)
        if means and all((v[np.isfinite(v)] > 0).all() for v in means):
            top.set_yscale("log")
        top.set_ylabel("mean |activation|")
        top.set_title("Activation statistics per block, mean and interval over images")
        if means:
            top.legend(frameon=False, loc="best")
        bottom.set_ylabel("fraction of zeros")
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("block position in forward order (0 = first block, 1 = last)")
    return fig


def activation_stats_export(study: Study) -> ViewExport:
    """Activation statistics: figure, one row per (model, block) incl. dead channels, the summary's entries."""
    rows = []
    for m, acts in _with(study, "activations").items():
        order = _act_order(study.models[m])
        for b, d in zip(order, _depths(len(order))):
            r = acts[b]
            mean, lo, hi = _iv(r["mean_abs"])
            zm, zlo, zhi = _iv(r["zero_fraction"])
            rows.append(
                {"model": m, "block": b, "position": float(d), "mean_abs": mean, "mean_abs_lo": lo, "mean_abs_hi": hi}
                | {"zero_fraction": zm, "zero_fraction_lo": zlo, "zero_fraction_hi": zhi}
                | {"dead_channels": r.get("dead_channels"), "channels": r.get("channels")}
            )
    payload = {"models": _with(study, "activations")}
    return ViewExport(lambda: activation_stats_figure(study), rows, payload)


def study_exports(study: Study) -> dict[str, ViewExport]:
    """Name -> export of every metric the study has (the names are the figure files' stems)."""
    have = {k for e in study.models.values() for k in e} | ({"cka"} if study.cka is not None else set())
    makers = {
        "traces_output": ("traces", lambda: trace_bands_export(study, "output")),
        "traces_weight": ("traces", lambda: trace_bands_export(study, "weight")),
        "erf": ("erf", lambda: erf_export(study)),
        "cka": ("cka", lambda: cka_export(study)),
        "faithfulness": ("faithfulness", lambda: faithfulness_export(study)),
        "activations": ("activations", lambda: activation_stats_export(study)),
    }
    return {name: make() for name, (metric, make) in makers.items() if metric in have}
