"""The real `fishspine` command on every file of the bad-input corpus (tests/bad_inputs.py): each is
refused with exit status 2 and one error line, no traceback, within the timeout.

The runs are subprocesses started together in one fixture (they mostly wait on imports), then
judged one test per case; a last test prints how many were refused cleanly, gave a traceback,
hung or were accepted. Each run starts Python and torch (seconds), so the fast suite runs one case
of each kind (FAST) and the whole corpus is marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bad_inputs import write_bad_checkpoints, write_bad_coco, write_bad_images

TIMEOUT_S = 120
IMAGE_CASES = ["fifo", "folder", "dev_zero_link", "empty", "text", "missing", "truncated_png", "png_header_only"]
# Image files are hardened on another branch (analysis/images.py); a case that still gives a
# traceback here is expected to fail until that lands.
IMAGES_ELSEWHERE: set[str] = set()
FAST = {
    "coco:gt_ann_short_bbox",
    "coco:gt_ann_rle_string_overrun",
    "coco:dt_score_string",
    "coco:dt_unknown_image",
    "coco:dt_nan_literal",
    "coco:gt_huge_integer",
    "coco:dt_deep_nesting",
    "coco:gt_fifo",
    "coco:dt_dev_zero_link",
    "image:fifo",
    "inspect:dev_zero_link",
    "inspect:text",
}
CHECKPOINT_CASES = ["fifo", "folder", "dev_zero_link", "empty", "text", "missing", "json_as_pth"]


@dataclass
class Outcome:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stderr: str

    @property
    def verdict(self) -> str:
        if self.returncode is None:
            return "hang"
        if "Traceback" in self.stderr:
            return "traceback"
        if self.returncode == 0:
            return "accepted"
        errors = [line for line in self.stderr.splitlines() if line.startswith("fishspine") and ": error: " in line]
        return "refused cleanly" if self.returncode == 2 and len(errors) == 1 else "other failure"


def _run(argv: list[str], cwd: Path) -> Outcome:
    try:
        res = subprocess.run(
            [sys.executable, "-m", "fishspine.cli.main", *argv],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(
            argv,
            None,
            (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "",
        )
    return Outcome(argv, res.returncode, res.stderr)


def _commands(root: Path) -> dict[str, list[str]]:
    good_gt, good_dt, coco = write_bad_coco(root / "coco")
    out = str(root / "out")
    commands = {}
    for name, (role, path, iou_type) in coco.items():
        gt, dt = (path, good_dt) if role == "gt" else (good_gt, path)
        commands[f"coco:{name}"] = [
            "coco",
            "--gt",
            str(gt),
            "--dt",
            f"m={dt}",
            "--iou-types",
            iou_type,
            "--formats",
            "png",
            "-o",
            out,
        ]
    images = write_bad_images(root / "images")
    for name in IMAGE_CASES:
        commands[f"image:{name}"] = [
            "activations",
            "--model",
            "resnet50",
            "--width",
            "0.25",
            "--device",
            "cpu",
            "--formats",
            "png",
            str(images[name]),
            "-o",
            out,
        ]
    checkpoints = write_bad_checkpoints(root / "checkpoints")
    for name in CHECKPOINT_CASES:
        commands[f"inspect:{name}"] = ["inspect", str(checkpoints[name])]
    return commands


def _case_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return list(_commands(Path(d)))


CASES = _case_names()


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """The outcome of each case this session selected (all of them unless slow ones are deselected)."""
    selected = {
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    root = tmp_path_factory.mktemp("bad_inputs")
    commands = {name: argv for name, argv in _commands(root).items() if name in selected}
    with ThreadPoolExecutor(max_workers=max(2, min(8, 2 * (os.cpu_count() or 1)))) as pool:
        futures = {name: pool.submit(_run, argv, root) for name, argv in commands.items()}
        return {name: f.result() for name, f in futures.items()}


def _marks(case: str) -> list:
    kind, _, name = case.partition(":")
    marks = [] if case in FAST else [pytest.mark.slow]
    if kind == "image" and name in IMAGES_ELSEWHERE:
        marks.append(pytest.mark.xfail(strict=False, reason="images hardened on branch hardening"))
    return marks


@pytest.mark.parametrize("case", [pytest.param(c, marks=_marks(c)) for c in CASES])
def test_each_bad_input_is_refused_cleanly(outcomes, case):
    outcome = outcomes[case]
    assert outcome.verdict == "refused cleanly", (
        f"{' '.join(outcome.argv)}\nexit {outcome.returncode}: {outcome.verdict}\n{outcome.stderr[-2000:]}"
    )


def test_counts(outcomes):
    counts = Counter(o.verdict for o in outcomes.values())
    line = ", ".join(
        f"{k}: {counts.get(k, 0)}" for k in ("refused cleanly", "traceback", "hang", "accepted", "other failure")
    )
    print(f"\nbad-input corpus, {len(outcomes)} runs of the fishspine command: {line}")
    assert (
        counts["refused cleanly"] + counts["traceback"] + counts["hang"] + counts["accepted"] + counts["other failure"]
        == len(outcomes)
        > 0
    )
