"""Shared fixtures: the authors' reference manifests, tiny models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("FISHSPINE_REFERENCE", REPO.parent / "shared" / "reference"))
STATE_DICTS = REFERENCE / "state_dicts"
MANIFEST_VARIANTS = sorted(p.stem for p in STATE_DICTS.glob("*.json") if not p.stem.startswith("_"))
#: Classes of a tiny model's classifier: enough for a CAM target, small enough to keep files small.
TINY_CLASSES = 10


def tiny_model(name: str, width: float = 0.25, seed: int = 0, **kwargs):
    """Zoo variant `name` narrowed to `width`, seeded, in eval mode: the one way tests get a model.

    Variants with a classifier (their spec says so) get TINY_CLASSES classes unless `num_classes`
    is given; the others get none, whatever their family.
    """
    import torch

    from fishspine.models import create_model, model_spec

    if model_spec(name).has_classifier:
        kwargs.setdefault("num_classes", TINY_CLASSES)
    torch.manual_seed(seed)
    return create_model(name, width=width, **kwargs).eval()


def load_manifest(variant: str) -> dict:
    """The authors' state_dict layout of `variant` ({'params': n, 'keys': {key: shape}})."""
    path = STATE_DICTS / f"{variant}.json"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"reference manifest {path} is missing in CI (shared/ must sit beside the clone)")
        pytest.skip(f"reference manifests not found at {STATE_DICTS}; set FISHSPINE_REFERENCE")
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def _collect_garbage_on_the_ui_thread(request):
    """Qt tests run as the app runs (app/qt/collector.py): garbage is collected on the UI thread only, never
    in a worker, where it deletes widgets from the wrong thread (the suite hung in CI that way). At the end
    of the test, once its workers are done, everything it left is collected, not inside the next test."""
    if request.node.get_closest_marker("gui") is None and "qtbot" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("qapp")
    from fishspine.app.qt.collector import MainThreadCollector

    collector = MainThreadCollector()
    collector.start()
    yield
    collector.stop()
    collector.deleteLater()
