"""The one figure code path: a house style, atomic writes of figures (PNG/SVG/PDF) and data (CSV/JSON).

Every figure fishspine produces, in the command line or the app, is a matplotlib `Figure` built
with `new_figure` and written with `save_figure`, so the GUI's export and the CLI's output are
the same file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)  # headless unless an embedding app chose a backend first

from matplotlib.figure import Figure  # noqa: E402

from fishspine.models.atomic_files import atomic_write_bytes  # noqa: E402

FIGURE_FORMATS = ("png", "svg", "pdf")
PNG_DPI = 300

#: One colour per model column, in order (colour-blind safe, Okabe-Ito). Superseded by `model_colors`,
#: which gives a model the same colour whatever the order it was loaded in.
MODEL_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

#: Each architecture family's hue (Okabe-Ito, as the demo's four backbones have always been drawn), then
#: darker and lighter shades of it for the second, third ... model of that family.
FAMILY_COLORS: dict[str, tuple[str, ...]] = {
    "resnet": ("#0072B2", "#003F62", "#51B0E6", "#002235"),
    "fishnet": ("#D55E00", "#753400", "#E99E63", "#401C00"),
    "scnet": ("#009E73", "#00573F", "#46E5B9", "#002F23"),
    "spinenet": ("#CC79A7", "#81315E", "#DAB5CA", "#471B33"),
}
#: Names that mean a family without containing its name (ResNeXt is registered in the ResNet family).
FAMILY_ALIASES = {"resnext": "resnet"}
#: Models of no known family (a result file called "ours"): hues no family uses.
OTHER_COLORS = ("#000000", "#E69F00", "#777777", "#8C6D00", "#B0B0B0")

STYLE: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "svg.fonttype": "none",  # keep text as text in SVG
    "pdf.fonttype": 42,  # TrueType in PDF, editable in Illustrator
    "figure.dpi": 100,
    "svg.hashsalt": "fishspine",  # reproducible SVG ids: the same figure gives the same file
}


def new_figure(width_in: float = 6.0, height_in: float = 4.0) -> Figure:
    """A figure in the house style (not attached to pyplot, so nothing global leaks)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width_in, height_in), layout="constrained")
    fig.set_layout_engine("constrained")
    return fig


def style_context():
    """Context manager applying the house style while artists are created."""
    return matplotlib.rc_context(STYLE)


def model_color(index: int) -> str:
    """The colour of the `index`-th model column (by position: `model_colors` keeps a model's colour)."""
    return MODEL_COLORS[index % len(MODEL_COLORS)]


def family_of(label: str) -> str:
    """The architecture family a model's label names ("ResNet-50" -> "resnet", "spinenet49_run2" ->
    "spinenet"), or "" when it names none of FAMILY_COLORS's."""
    text = re.sub(r"[^a-z0-9]", "", label.lower())
    for key in sorted([*FAMILY_COLORS, *FAMILY_ALIASES], key=len, reverse=True):  # "resnext" before "resnet"
        if key in text:
            return FAMILY_ALIASES.get(key, key)
    return ""


def _natural(label: str) -> list:
    # "ResNet-50" before "ResNet-101": numbers compare as numbers
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", label.lower()) if t]


def model_colors(names: Iterable[str], families: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each model's colour, the same whatever order `names` come in: its family's hue (`families[name]`, else
    the family its name contains), and within a family a shade by the models' natural name order
    (ResNet-50 before ResNet-101). Models of no known family share OTHER_COLORS the same way."""
    names = list(dict.fromkeys(names))
    families = families or {}
    groups: dict[str, list[str]] = {}
    for n in names:
        family = (families.get(n) or family_of(n)).lower()
        groups.setdefault(family if family in FAMILY_COLORS else "", []).append(n)
    out = {}
    for family, members in groups.items():
        shades = FAMILY_COLORS.get(family, OTHER_COLORS)
        for k, n in enumerate(sorted(members, key=lambda n: (_natural(n), n))):
            out[n] = shades[k % len(shades)]
    return {n: out[n] for n in names}


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """`fig` rendered to bytes in `fmt` (png at PNG_DPI, svg or pdf)."""
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; use one of {', '.join(FIGURE_FORMATS)}")
    buf = io.BytesIO()
    # No dates in the files: the same figure gives the same bytes, from the app or the command line.
    metadata = {
        "png": None,
        "svg": {"Creator": "fishspine", "Date": None},
        "pdf": {"Creator": "fishspine", "CreationDate": None},
    }[fmt]
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format=fmt, dpi=PNG_DPI if fmt == "png" else None, metadata=metadata)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, formats: Iterable[str] | None = None) -> list[Path]:
    """Write `fig` atomically. With `formats`, `path` is a stem and one file per format is written;
    otherwise the format comes from the suffix of `path`. Returns the paths written."""
    path = Path(path)
    if formats is None:
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in FIGURE_FORMATS:
            raise ValueError(f"{path}: unknown figure format {fmt or '(none)'!r}; use a .png, .svg or .pdf file name")
        targets = [(path, fmt)]
    else:
        targets = [(path.with_suffix(f".{f}"), f) for f in formats]
    written = []
    for target, fmt in targets:
        atomic_write_bytes(target, figure_bytes(fig, fmt))
        written.append(target)
    return written


def save_figures(make: Callable[[], Figure], stem: str | os.PathLike, formats: Iterable[str]) -> list[Path]:
    """A fresh figure from `make` per format, written as STEM.<format>: a figure drawn once for one renderer
    lays out again (by a fraction of a point, or more with legends outside the axes) for the next, and each
    file must equal the same format written alone (the app's Export)."""
    return [path for fmt in formats for path in save_figure(make(), stem, [fmt])]


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON, atomically; NaN and infinities become null (JSON has neither)."""
    path = Path(path)
    text = json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())
    return path


def _finite(data: Any) -> Any:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, Mapping):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    if hasattr(data, "tolist") and not isinstance(data, (str, bytes)):
        return _finite(data.tolist())
    return data


@dataclass
class ViewExport:
    """What a view's Export writes, and what the matching command writes: a figure, CSV rows, a JSON payload.

    The app's views and the command line build it through the same functions from the same result
    objects, so an export equals the command's output for the same settings.
    """

    figure: Callable[[], Figure]  # built on demand: the app builds it only when asked
    rows: list[dict]
    payload: Any

    def write(self, stem: str | os.PathLike, formats: Iterable[str] = FIGURE_FORMATS) -> list[Path]:
        """The figure in each of `formats`, then STEM.csv and STEM.json; the paths written."""
        stem = Path(stem)
        written = save_figures(self.figure, stem, formats)
        written.append(write_csv(stem.with_suffix(".csv"), self.rows))
        written.append(write_json(stem.with_suffix(".json"), self.payload))
        return written


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write `rows` (dicts) as CSV with a header, atomically."""
    path = Path(path)
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
