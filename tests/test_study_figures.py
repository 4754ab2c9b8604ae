"""Figures of a study folder: every export written, maps with colour bars, the summary's numbers in the
CSV rows, missing metrics skipped, and malformed folders refused with the file named."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest

from fishspine.analysis.figures.base import FIGURE_FORMATS
from fishspine.analysis.figures.study import (
    Study,
    StudyError,
    cka_export,
    erf_export,
    load_study,
    study_exports,
    trace_bands_export,
)
from tests.study_fixture import write_synthetic_study

ALL = {"traces_output", "traces_weight", "erf", "cka", "faithfulness", "activations"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study")
    write_synthetic_study(path, models=3)
    return path


@pytest.fixture(scope="module")
def study(folder) -> Study:
    return load_study(folder)


def _colorbars(fig) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _num(text: str) -> float:
    return float("nan") if text == "" else float(text)


def test_every_export_writes_figures_csv_and_json(study, tmp_path):
    exports = study_exports(study)
    assert set(exports) == ALL
    for name, ex in exports.items():
        written = ex.write(tmp_path / name)
        assert sorted(p.suffix for p in written) == sorted([f".{f}" for f in FIGURE_FORMATS] + [".csv", ".json"])
        assert all(p.stat().st_size > 0 for p in written), name
        assert len(_csv(tmp_path / f"{name}.csv")) == len(ex.rows) > 0
        json.loads((tmp_path / f"{name}.json").read_text())  # NaN written as null, so strict JSON


def test_maps_have_one_colour_bar_scaled_0_to_1(study):
    for ex, label in ((erf_export(study), "each map scaled to its max"), (cka_export(study), "CKA")):
        fig = ex.figure()
        bars = _colorbars(fig)
        assert len(bars) == 1
        assert label in bars[0].ax.get_ylabel()
        assert (bars[0].norm.vmin, bars[0].norm.vmax) == (0, 1)
    for name in ("traces_output", "faithfulness", "activations"):
        assert _colorbars(study_exports(study)[name].figure()) == []


def test_erf_grid_models_by_levels_each_map_scaled_to_its_max(study):
    fig = erf_export(study).figure()
    images = [ax for ax in fig.axes if ax.images and getattr(ax, "_colorbar", None) is None]
    assert len(images) == 3 * 3  # 3 models x 3 levels
    for ax in images:
        assert np.nanmax(ax.images[0].get_array()) == pytest.approx(1.0)
        assert len(ax.patches) == 2  # the r50 and r90 circles
    e = study.models["ResNet-50"]["erf"]["3"]
    title = f"stride 8: r50 {e['radius_50']:.0f} px, r90 {e['radius_90']:.0f} px"
    assert any(title in ax.get_title() for ax in images)
    radii = sorted(p.get_radius() for p in images[0].patches)
    assert radii == pytest.approx(sorted([e["radius_50"], e["radius_90"]]))


def test_cka_panels_for_every_pair_including_self(study):
    fig = cka_export(study).figure()
    panels = [ax for ax in fig.axes if ax.images and getattr(ax, "_colorbar", None) is None]
    assert len(panels) == 3 * 4 // 2
    shapes = sorted(ax.images[0].get_array().shape for ax in panels)
    assert shapes == sorted([(9, 9), (9, 12), (9, 7), (12, 12), (12, 7), (7, 7)])


def test_trace_legend_names_ratio_and_interval(study):
    fig = trace_bands_export(study, "output").figure()
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    r = study.models["FishNet-99"]["traces"]["ratio"]["output"]
    assert any(t.startswith("FishNet-99: shallowest/deepest") and f"[{r['lo']:.3g}, {r['hi']:.3g}]" in t for t in texts)
    assert fig.axes[0].get_yscale() == "log"


def test_csv_rows_carry_the_summary_numbers(study, tmp_path):
    s = study.summary
    exports = study_exports(study)
    for name, ex in exports.items():
        ex.write(tmp_path / name, formats=())
    for which in ("output", "weight"):
        for r in _csv(tmp_path / f"traces_{which}.csv"):
            iv = s["models"][r["model"]]["traces"]["blocks"][r["block"]][which]
            for k in ("mean", "lo", "hi"):
                want = float("nan") if iv[k] is None else iv[k]
                np.testing.assert_equal(_num(r[k]), want)
    rows = _csv(tmp_path / "erf.csv")
    assert len(rows) == 9
    for r in rows:
        e = s["models"][r["model"]]["erf"][r["level"]]
        assert (_num(r["radius_50"]), _num(r["radius_90"]), int(r["stride"])) == (
            e["radius_50"],
            e["radius_90"],
            e["stride"],
        )
        assert [_num(r["centre_y"]), _num(r["centre_x"])] == e["centre"]
    names = [tuple(b) for b in s["cka"]["blocks"]]
    rows = _csv(tmp_path / "cka.csv")
    assert len(rows) == sum(a * b for a, b in ((9, 9), (9, 12), (9, 7), (12, 12), (12, 7), (7, 7)))
    for r in rows:
        i, j = names.index((r["model_a"], r["block_a"])), names.index((r["model_b"], r["block_b"]))
        assert _num(r["cka"]) == study.cka[i, j]
    for r in _csv(tmp_path / "faithfulness.csv"):
        f = s["models"][r["model"]]["faithfulness"]
        k = f["fractions"].index(_num(r["fraction"]))
        assert _num(r["score"]) == f[f"{r['curve']}_curve"][k]
    for r in _csv(tmp_path / "activations.csv"):
        a = s["models"][r["model"]]["activations"][r["block"]]
        assert int(r["dead_channels"]) == a["dead_channels"]
        assert _num(r["mean_abs"]) == a["mean_abs"]["mean"]
        assert _num(r["zero_fraction_hi"]) == a["zero_fraction"]["hi"]
    payload = json.loads((tmp_path / "cka.json").read_text())
    np.testing.assert_array_equal(np.array(payload["matrix"], dtype=float), study.cka)


def test_metrics_the_summary_lacks_are_skipped(tmp_path):
    write_synthetic_study(tmp_path, models=2, metrics=("traces", "erf"))
    assert not (tmp_path / "cka.npz").exists()
    study = load_study(tmp_path)
    assert study.cka is None
    assert set(study_exports(study)) == {"traces_output", "traces_weight", "erf"}
    with pytest.raises(ValueError):
        cka_export(study)


def test_a_level_one_model_lacks_leaves_its_cell_empty(tmp_path):
    summary = write_synthetic_study(tmp_path, models=2, metrics=("erf",))
    del summary["models"]["FishNet-99"]["erf"]["5"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    fig = erf_export(load_study(tmp_path)).figure()
    titles = [ax.get_title() for ax in fig.axes]
    assert "(no level 5)" in titles
    assert sum(1 for ax in fig.axes if ax.images and getattr(ax, "_colorbar", None) is None) == 5


# ---------------------------------------------------------------------- malformed folders


class _Payload:
    """Unpickling this creates the file `path`: what a loaded npz must never do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _edit_summary(folder: Path, edit) -> None:
    s = json.loads((folder / "summary.json").read_text())
    edit(s)
    (folder / "summary.json").write_text(json.dumps(s))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _bad_cases(tmp: Path):
    sentinel = tmp / "pickle-ran"
    return {
        "no folder": (lambda f: f.rename(f.with_name("gone")), "", "not a folder"),
        "no summary": (lambda f: (f / "summary.json").unlink(), "summary.json", "missing"),
        "not json": (lambda f: (f / "summary.json").write_text("{nope"), "summary.json", "JSON"),
        "format": (lambda f: _edit_summary(f, lambda s: s.update(format="other")), "summary.json", "fishspine-study"),
        "a list": (lambda f: (f / "summary.json").write_text("[1, 2]"), "summary.json", "fishspine-study"),
        "version": (lambda f: _edit_summary(f, lambda s: s.update(version=2)), "summary.json", "version"),
        "no models": (lambda f: _edit_summary(f, lambda s: s.update(models={})), "summary.json", "models"),
        "radius text": (
            lambda f: _edit_summary(f, lambda s: s["models"]["ResNet-50"]["erf"]["3"].update(radius_50="big")),
            "summary.json",
            "radius_50",
        ),
        "short curve": (
            lambda f: _edit_summary(f, lambda s: s["models"]["SCNet-50"]["faithfulness"]["deletion_curve"].pop()),
            "summary.json",
            "deletion_curve",
        ),
        "order": (
            lambda f: _edit_summary(f, lambda s: s["models"]["ResNet-50"]["traces"]["order"].append("layer9")),
            "summary.json",
            "order",
        ),
        "cka unknown model": (
            lambda f: _edit_summary(f, lambda s: s["cka"]["blocks"].append(["VGG", "conv1"])),
            "summary.json",
            "cka.blocks",
        ),
        "no erf.npz": (lambda f: (f / "erf.npz").unlink(), "erf.npz", "missing"),
        "erf key": (lambda f: np.savez(f / "erf.npz", other=np.zeros((4, 4))), "erf.npz", "m0_level3"),
        "erf 3d": (
            lambda f: np.savez(f / "erf.npz", **{k: np.zeros((2, 4, 4)) for k in np.load(f / "erf.npz").files}),
            "erf.npz",
            "shape",
        ),
        "erf garbage": (lambda f: (f / "erf.npz").write_bytes(b"PK\x03\x04garbage"), "erf.npz", "readable"),
        "cka shape": (lambda f: np.savez(f / "cka.npz", cka=np.eye(5)), "cka.npz", "shape"),
        "cka npy": (lambda f: (f / "cka.npz").write_bytes(_npy(np.eye(28))), "cka.npz", "single .npy"),
        "cka text": (lambda f: np.savez(f / "cka.npz", cka=np.array(["a"])), "cka.npz", "not numbers"),
        "cka object": (
            lambda f: np.savez(f / "cka.npz", cka=np.array([_Payload(str(sentinel))], dtype=object)),
            "cka.npz",
            "readable",
        ),
    }, sentinel


@pytest.mark.parametrize("case", sorted(_bad_cases(Path("/x"))[0]))
def test_malformed_folder_is_refused_with_the_file_named(tmp_path, case):
    cases, sentinel = _bad_cases(tmp_path)
    folder = tmp_path / "study"
    write_synthetic_study(folder, models=3)
    damage, file, words = cases[case]
    damage(folder)
    with pytest.raises(StudyError) as err:
        load_study(folder)
    message = str(err.value)
    assert str(folder / file).rstrip("/") in message and words in message, message
    assert not sentinel.exists()  # the pickled object was never built


def _leaves(data, path=()):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _leaves(v, (*path, i))
    yield path


def _set(data, path, value):
    for k in path[:-1]:
        data = data[k]
    if value is KeyError:
        del data[path[-1]]
    else:
        data[path[-1]] = value


#: The figures that read a part of a model's entry (any other damage can touch every figure).
_READERS = {
    "traces": ("traces_output", "traces_weight"),
    "erf": ("erf",),
    "activations": ("activations",),
    "blocks": ("activations",),
    "faithfulness": ("faithfulness",),
}


def _damage_and_draw(tmp_path: Path, count: int, seed: int) -> tuple[int, int]:
    """`count` random damages of the summary's fields (a wrong type, null, -1, removed): each is
    refused by load_study with StudyError naming summary.json, or every figure it touches draws."""
    base = write_synthetic_study(tmp_path / "base", models=2, metrics=("traces", "erf", "activations", "faithfulness"))
    paths = [p for p in _leaves(base) if p]
    rng = random.Random(seed)
    refused = drawn = 0
    for k in range(count):
        path = rng.choice(paths)
        value = rng.choice(["text", None, -1, [], {}, True, KeyError])
        s = copy.deepcopy(base)
        if isinstance(path[-1], int) and value is KeyError:
            value = None
        _set(s, path, value)
        folder = tmp_path / f"s{k}"
        folder.mkdir()
        (folder / "erf.npz").symlink_to(tmp_path / "base" / "erf.npz")
        (folder / "summary.json").write_text(json.dumps(s))
        try:
            study = load_study(folder)
        except StudyError as e:
            assert "summary.json" in str(e)
            refused += 1
            continue
        exports = study_exports(study)
        touched = _READERS.get(path[2], ()) if path[0] == "models" and len(path) > 2 else tuple(exports)
        for name in touched:
            if name in exports:
                exports[name].figure().savefig(io.BytesIO(), format="png", dpi=20)
                json.dumps(exports[name].rows, default=str)
        drawn += 1
    return refused, drawn


def test_a_damaged_summary_is_refused_or_drawn_never_a_crash(tmp_path):
    refused, drawn = _damage_and_draw(tmp_path, 40, seed=0)
    assert refused > 5 and drawn > 5


@pytest.mark.slow
def test_many_damaged_summaries_are_refused_or_drawn(tmp_path):
    refused, drawn = _damage_and_draw(tmp_path, 150, seed=1)  # 400 took 48 s of the suite's budget
    assert refused > 20 and drawn > 20
