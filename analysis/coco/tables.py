"""The per-scale table as text for papers: LaTeX (booktabs) and Markdown, from per_scale_table's rows.

Numbers are the rows' own, rounded to one decimal as the text table and the figure show them, so a
.tex or .md file always agrees with the CSV written beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

TABLE_COLUMNS = ("AP", "AP50", "AP75", "AP_S", "AP_M", "AP_L")
LATEX_HEADERS = {
    "AP": "AP",
    "AP50": "AP$_{50}$",
    "AP75": "AP$_{75}$",
    "AP_S": "AP$_S$",
    "AP_M": "AP$_M$",
    "AP_L": "AP$_L$",
}
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped, for use in running text or a table cell."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _num(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.1f}"


def _signed(v: float) -> str:
    return f"{v:+.1f}"


def latex_table(
    rows: Sequence[Mapping[str, Any]],
    baseline: str | None = None,
    columns: Sequence[str] = TABLE_COLUMNS,
    note: str = "",
) -> str:
    """A booktabs tabular (\\toprule, \\midrule, \\bottomrule): values in %, deltas against the baseline
    with their bootstrap interval when the rows carry one; the baseline marked with a dagger."""
    lines = [f"% {line}" for line in note.splitlines() if line.strip()]
    lines.append("% needs \\usepackage{booktabs}")
    lines.append("\\begin{tabular}{l" + "r" * len(columns) + "}")
    lines.append("\\toprule")
    lines.append(" & ".join(["Backbone"] + [LATEX_HEADERS.get(c, latex_escape(c)) for c in columns]) + " \\\\")
    lines.append("\\midrule")
    for r in rows:
        name = latex_escape(str(r["backbone"]))
        if baseline is not None and r["backbone"] == baseline:
            name += "$^\\dagger$"
        cells = [name]
        for c in columns:
            cell = _num(r[c])
            d = r.get(f"Δ{c}")
            if d is not None and not math.isnan(d):
                lo, hi = r.get(f"Δ{c}_lo"), r.get(f"Δ{c}_hi")
                if lo is not None and not math.isnan(lo):
                    cell += f" {{\\scriptsize (${_signed(d)}$ [${_signed(lo)}$, ${_signed(hi)}$])}}"
                else:
                    cell += f" {{\\scriptsize (${_signed(d)}$)}}"
            cells.append(cell)
        lines.append(" & ".join(cells) + " \\\\")
    lines.append("\\bottomrule")
    lines.append("\\end{tabular}")
    return "\n".join(lines) + "\n"


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    baseline: str | None = None,
    columns: Sequence[str] = TABLE_COLUMNS,
    note: str = "",
) -> str:
    """A Markdown (GitHub) table: one row per backbone, the baseline marked "(baseline)"."""
    from fishspine.analysis.coco.evaluation import format_cell

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| backbone | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for r in rows:
        name = esc(str(r["backbone"])) + (" (baseline)" if baseline is not None and r["backbone"] == baseline else "")
        lines.append("| " + " | ".join([name] + [format_cell(r, c) for c in columns]) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"
