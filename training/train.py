"""Training a backbone with an FCOS detection head on any COCO-format dataset.

`iter_train` is a job (analysis/jobs.py: progress, then it returns a summary) so the app or the command
line can run it.
Every epoch writes the whole detector (backbone, pyramid and head) in fishspine's format
(`detector_epochN.safetensors`: `load_checkpoint` opens it as its backbone, with the detector beside),
`last.pt` with the detector, the optimiser and the label map for `--resume` (plain tensors and
containers: it loads with `weights_only=True`), and a line of `metrics.jsonl` (mean loss, learning rate,
time, and with `eval_images` the AP on that many validation images). The learning rate and the order
of the images are functions of the step and the epoch, so a resumed run trains exactly as an
uninterrupted one. At the end the detector's validation detections are written as a COCO result json.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fishspine.analysis.device import resolve_device
from fishspine.analysis.jobs import Job, Progress
from fishspine.models import create_model, model_spec
from fishspine.models.checkpoints import save_checkpoint
from fishspine.models.detector import DetectorSpec, detector_for


@dataclass
class TrainConfig:
    """One training run."""

    backbone: str
    data: str  # folder with annotations/instances_{split}.json and the images in {split}/ (or the folder itself)
    out: str = "runs"
    width: float = 0.25
    epochs: int = 12
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    image_size: int = 320
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    max_steps: int = 0  # stop after this many steps in total (0: no limit); for tests and budgets
    train_split: str = "train"  # e.g. "train2017" for COCO itself
    val_split: str = "val"
    fpn_channels: int = 128
    flip: bool = True  # random horizontal flips of the training images
    until_epoch: int = 0  # stop after this epoch without predicting (0: train every epoch); resume later
    eval_images: int = 0  # after each epoch, the AP on this many validation images goes to metrics.jsonl
    warmup_steps: int = 50


class CocoDetectionData:
    """Images and boxes of one split of a COCO-format dataset, labels made contiguous (0..K-1)."""

    def __init__(self, root: str | Path, split: str, image_size: int, categories: list[int] | None = None) -> None:
        root = Path(root)
        ann = root / "annotations" / f"instances_{split}.json"
        if not ann.exists():
            raise ValueError(
                f"{ann}: not found; a dataset folder holds annotations/instances_{split}.json "
                f"and the images in {split}/"
            )
        gt = json.loads(ann.read_text())
        self.root, self.split, self.size, self.gt = root, split, image_size, gt
        self.categories = categories or sorted(c["id"] for c in gt["categories"])
        names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
        self.category_names = [names.get(c, str(c)) for c in self.categories]
        self.label_of = {c: i for i, c in enumerate(self.categories)}
        self.images = gt["images"]
        self.boxes: dict[int, list] = {im["id"]: [] for im in self.images}
        for a in gt["annotations"]:
            if not a.get("iscrowd", 0) and a["category_id"] in self.label_of and a["bbox"][2] > 1 and a["bbox"][3] > 1:
                self.boxes[a["image_id"]].append((a["bbox"], self.label_of[a["category_id"]]))

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], float]:
        """(image in [0, 1] scaled so its longer side is image_size, target, scale)."""
        from PIL import Image

        from fishspine.analysis.images import open_raster

        im = self.images[i]
        path = self.root / self.split / im["file_name"]
        if not path.exists():
            path = self.root / im["file_name"]
        with open_raster(path) as img:
            img = img.convert("RGB")
            scale = self.size / max(img.size)
            if scale != 1:
                img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
        boxes = [
            [b[0] * scale, b[1] * scale, (b[0] + b[2]) * scale, (b[1] + b[3]) * scale] for b, _ in self.boxes[im["id"]]
        ]
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([lbl for _, lbl in self.boxes[im["id"]]], dtype=torch.int64),
        }
        return x, target, scale


def _backbone_for(cfg: TrainConfig):
    kwargs: dict[str, Any] = {"width": cfg.width}
    if model_spec(cfg.backbone).has_classifier:
        kwargs["num_classes"] = 0  # the detector needs the features, not a classifier
    return create_model(cfg.backbone, **kwargs)


def _detector_for(cfg: TrainConfig, data: CocoDetectionData):
    backbone = _backbone_for(cfg)
    spec = DetectorSpec(
        len(data.categories), cfg.image_size, cfg.fpn_channels, list(data.categories), list(data.category_names)
    )
    return backbone, detector_for(backbone, spec), spec


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to 0 at `total` steps."""
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def _flip(x: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    boxes = target["boxes"].clone()
    w = x.shape[-1]
    boxes[:, 0], boxes[:, 2] = w - target["boxes"][:, 2], w - target["boxes"][:, 0]
    return x.flip(-1), {**target, "boxes": boxes}


def iter_train(cfg: TrainConfig) -> Job[dict[str, Any]]:
    """A job: train, with progress per step (the text has the loss); returns a summary."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train = CocoDetectionData(cfg.data, cfg.train_split, cfg.image_size)
    val = CocoDetectionData(cfg.data, cfg.val_split, cfg.image_size, train.categories)
    backbone, detector, spec = _detector_for(cfg, train)
    detector.to(device)
    optimizer = torch.optim.AdamW(detector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    start_epoch = 0
    if cfg.resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        detector.load_state_dict(state["detector"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = state["epoch"]
    steps_per_epoch = math.ceil(len(train) / cfg.batch)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    use_bf16 = device.type == "cuda"
    step, losses, t0 = start_epoch * steps_per_epoch, [], time.perf_counter()
    last_epoch = min(cfg.epochs, cfg.until_epoch) if cfg.until_epoch else cfg.epochs
    for epoch in range(start_epoch, last_epoch):
        detector.train()
        rng = np.random.default_rng([cfg.seed, epoch])  # the epoch's order and flips, whatever came before
        order = rng.permutation(len(train))
        flips = rng.random(len(train)) < 0.5
        epoch_losses, t_epoch = [], time.perf_counter()
        for b in range(steps_per_epoch):
            if cfg.max_steps and step >= cfg.max_steps:
                break
            batch = []
            for i in order[b * cfg.batch : (b + 1) * cfg.batch]:
                x, target, _ = train.load(int(i))
                batch.append(_flip(x, target) if cfg.flip and flips[i] else (x, target))
            images = [x.to(device) for x, _ in batch]
            targets = [{k: v.to(device) for k, v in t.items()} for _, t in batch]
            lr = learning_rate(cfg, step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss_parts = detector(images, targets)
            loss = sum(loss_parts.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(detector.parameters(), 10.0)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            epoch_losses.append(losses[-1])
            yield Progress(step, total, f"epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.3f}")
        _save_epoch(cfg, backbone, detector, spec, optimizer, epoch + 1)
        seconds = time.perf_counter() - t_epoch
        _log_epoch(
            cfg, detector, val, device, epoch + 1, step, epoch_losses, learning_rate(cfg, step - 1, total), seconds
        )
        if cfg.max_steps and step >= cfg.max_steps:
            last_epoch = epoch + 1
            break
    summary = {
        "backbone": cfg.backbone,
        "steps": step,
        "epochs": max(last_epoch, start_epoch),
        "losses": losses,
        "seconds": time.perf_counter() - t0,
        "checkpoint": str(out / f"detector_epoch{max(last_epoch, start_epoch)}.safetensors"),
        "detections": None,
        "device": str(device),
    }
    if last_epoch < cfg.epochs and not cfg.max_steps:
        return summary  # stopped on request (until_epoch): `resume` continues
    result_path = out / "val_detections.json"
    result_path.write_text(json.dumps(predict(detector, val, device)))
    summary["detections"] = str(result_path)
    return summary


def _log_epoch(
    cfg: TrainConfig, detector, val, device, epoch: int, step: int, losses: list, lr: float, seconds: float
) -> None:
    line: dict[str, Any] = {
        "epoch": epoch,
        "step": step,
        "loss": float(np.mean(losses)) if losses else None,
        "lr": lr,  # the last step's
        "seconds": round(seconds, 1),
    }
    if cfg.eval_images:
        from fishspine.analysis.coco.evaluation import evaluate_one

        n = min(cfg.eval_images, len(val))
        dets = predict(detector, val, device, limit=n)
        ids = {im["id"] for im in val.images[:n]}
        gt = {
            **val.gt,
            "images": val.images[:n],
            "annotations": [a for a in val.gt["annotations"] if a["image_id"] in ids],
        }
        stats = evaluate_one(gt, dets, cfg.backbone).summary()
        line.update({"val_images": n, "AP": stats["AP"], "AP50": stats["AP50"]})
    with open(Path(cfg.out) / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _save_epoch(cfg: TrainConfig, backbone, detector, spec: DetectorSpec, optimizer, epoch: int) -> None:
    out = Path(cfg.out)
    save_checkpoint(
        backbone,
        out / f"detector_epoch{epoch}.safetensors",
        trained_on=f"{Path(cfg.data).name}: FCOS detection, {epoch} epochs",
        detector=detector,
        detector_spec=spec,
        train_config=asdict(cfg),
    )
    state = {
        "epoch": epoch,
        "detector": detector.state_dict(),
        "optimizer": optimizer.state_dict(),
        "categories": spec.categories,
        "config": asdict(cfg),
    }
    from fishspine.models.atomic_files import atomic_path

    with atomic_path(out / "last.pt") as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def predict(detector, data: CocoDetectionData, device: torch.device, batch: int = 8, limit: int = 0) -> list[dict]:
    """COCO result entries for every image of `data` (the first `limit`), in its original coordinates
    and category ids."""
    detector.eval()
    results = []
    n = min(limit, len(data)) if limit else len(data)
    for b in range(0, n, batch):
        items = [data.load(i) for i in range(b, min(b + batch, n))]
        outs = detector([x.to(device) for x, _, _ in items])
        for (_image, _, scale), o, im in zip(items, outs, data.images[b : b + batch]):
            for box, score, label in zip(
                o["boxes"].cpu().tolist(), o["scores"].cpu().tolist(), o["labels"].cpu().tolist()
            ):
                x0, y0, x1, y1 = (v / scale for v in box)
                results.append(
                    {
                        "image_id": im["id"],
                        "category_id": data.categories[label],
                        "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                        "score": round(float(score), 5),
                    }
                )
    return results


def load_detector(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The detector saved in `run_dir/last.pt` (weights only), ready for `predict`, and its categories."""
    state = torch.load(Path(run_dir) / "last.pt", map_location=device, weights_only=True)
    cfg = TrainConfig(**state["config"])
    spec = DetectorSpec(len(state["categories"]), cfg.image_size, cfg.fpn_channels, list(state["categories"]))
    detector = detector_for(_backbone_for(cfg), spec)
    detector.load_state_dict(state["detector"])
    return detector.to(device).eval(), state["categories"]
