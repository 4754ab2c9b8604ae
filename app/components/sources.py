"""Turning what the user opens (checkpoints, zoo names, images, folders) into state entries. No Qt."""

from __future__ import annotations

from pathlib import Path

import fishspine.assets
from fishspine.app.components.state import ImageEntry, ModelEntry

CHECKPOINT_SUFFIXES = {".pth", ".pt", ".tar", ".safetensors", ".bin", ".ckpt"}
DEMO_DIR = Path(fishspine.assets.__file__).resolve().parent / "demo"
DEMO_ZOO = ("resnet50", "fishnet150", "scnet50", "spinenet49")
DEMO_WIDTH = 0.25


def classify(path: str | Path) -> str:
    """'image', 'checkpoint', 'session', 'study', 'folder' or 'unknown', from the path alone.

    A folder holding summary.json is a study (`fishspine study` writes its figures beside it, which
    are images, but not ones to analyse)."""
    from fishspine.analysis.images import IMAGE_SUFFIXES

    p = Path(path)
    if p.is_dir():
        return "study" if (p / "summary.json").is_file() else "folder"
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix == ".fishspine" or p.name.endswith(".fishspine.json"):
        return "session"
    return "unknown"


def load_model_source(source: str, device: str = "cpu") -> ModelEntry:
    """A checkpoint path, or "zoo:<name>:<width>" for an untrained zoo model, with its MACs counted."""
    entry = _load_model_source(source, device)
    from fishspine.analysis.architecture.graph import block_macs

    entry.macs = sum(block_macs(entry.model, entry.model.spec.input_size).values())
    return entry


def _load_model_source(source: str, device: str) -> ModelEntry:
    from fishspine.models import create_model, model_family
    from fishspine.models.checkpoints import load_checkpoint

    if source.startswith("zoo:"):
        _, name, width = source.split(":")
        model = create_model(name, width=float(width)).to(device).eval()
        label = name if float(width) == 1.0 else f"{name}×{float(width):g}"
        return ModelEntry(
            label,
            model,
            name,
            model_family(name),
            sum(p.numel() for p in model.parameters()),
            source,
            trained=False,
            device=str(device),
        )
    ckpt = load_checkpoint(source, device)
    trained = ckpt.format != "fishspine" or bool(ckpt.meta.get("trained_on"))
    return ModelEntry(
        Path(source).stem,
        ckpt.model,
        ckpt.variant,
        ckpt.family,
        ckpt.num_params,
        str(source),
        trained=trained,
        device=str(device),
        categories=list(ckpt.detector_spec.category_names) if ckpt.detector_spec is not None else [],
    )


def load_image_path(path: str | Path) -> ImageEntry:
    """An image file as an entry; ImageError with a clear message otherwise."""
    from fishspine.analysis.images import load_image

    return ImageEntry(Path(path).name, str(path), load_image(path))


def images_in(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted."""
    from fishspine.analysis.images import IMAGE_SUFFIXES

    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# The shipped demo's baseline, named by its files (checkpoints/ and coco/ share the stem): a fact of the
# demo's data, not a test of an architecture family.
DEMO_BASELINE = "ResNet-50"


def baseline_first(path: Path) -> tuple[bool, str]:
    """Sort key of the demo's files: the baseline the others are compared with first."""
    return (path.stem != DEMO_BASELINE, path.stem)


def demo_sources() -> dict:
    """The demo: {"models": sources, "images": paths, "coco_gt": path, "coco_results": {name: path},
    "coco_baseline": name}.

    The shipped demo (assets/demo: trained checkpoints, sample images, the generated dataset's val
    ground truth and each backbone's detections) when present, else untrained tiny zoo models.
    """
    checkpoints = sorted(DEMO_DIR.glob("checkpoints/*.safetensors"), key=baseline_first) if DEMO_DIR.is_dir() else []
    if not checkpoints:
        return {
            "models": [f"zoo:{n}:{DEMO_WIDTH}" for n in DEMO_ZOO],
            "images": [],
            "coco_gt": "",
            "coco_results": {},
            "coco_baseline": "",
        }
    coco = DEMO_DIR / "coco"
    gt = coco / "instances_val.json"
    results = {p.stem: str(p) for p in sorted(coco.glob("*.json"), key=baseline_first) if p != gt}
    return {
        "models": [str(p) for p in checkpoints],
        "images": [str(p) for p in images_in(DEMO_DIR / "images")] if (DEMO_DIR / "images").is_dir() else [],
        "coco_gt": str(gt) if gt.exists() else "",
        "coco_results": results,
        "coco_baseline": DEMO_BASELINE if DEMO_BASELINE in results else "",
    }
