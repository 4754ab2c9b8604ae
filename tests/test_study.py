"""`fishspine study`: every metric over a set of images, resumed after a stop, equal under torchrun."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fishspine.analysis.images import sample_image
from fishspine.analysis.jobs import JobCancelled, run_job
from fishspine.analysis.study.runner import StudyConfig, StudyError, study_job
from fishspine.models.checkpoints import save_checkpoint

from .conftest import tiny_model

FISHSPINE = str(Path(sys.executable).with_name("fishspine"))
SIZE = 64
#: A classifier and a backbone without one: the two kinds of target a study scores.
MODELS = {"R50": "resnet50", "S49": "spinenet49"}


def write_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(sample_image(80 + 8 * (i % 3), seed=i)).save(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def models():
    return {label: tiny_model(name, seed=i) for i, (label, name) in enumerate(MODELS.items())}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = write_images(tmp_path_factory.mktemp("images"), 10)
    return sorted(folder.glob("*.png"))


def numbers(data, path=""):
    """Every number of a summary, by its path (what two runs of one study must share)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k not in ("seconds", "world_size"):
                yield from numbers(v, f"{path}/{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from numbers(v, f"{path}/{i}")
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        yield path, data


def assert_same_numbers(a: dict, b: dict, rel: float) -> None:
    na, nb = dict(numbers(a)), dict(numbers(b))
    assert na.keys() == nb.keys()
    for k in na:
        assert math.isclose(na[k], nb[k], rel_tol=rel, abs_tol=1e-12), (k, na[k], nb[k])


def test_every_metric_of_every_backbone(models, images, tmp_path):
    config = StudyConfig(size=SIZE, batch=4, deletion_steps=8)
    summary = run_job(study_job(models, images, tmp_path, config))
    assert json.loads((tmp_path / "summary.json").read_text())["models"].keys() == models.keys()
    assert summary["config"]["images"] == len(images)
    for label, model in models.items():
        m = summary["models"][label]
        names = [b.name for b in model.blocks]
        # traces: every block by name, deepest first, means inside their intervals
        assert m["traces"]["order"] == names[::-1]
        for name in names:
            out = m["traces"]["blocks"][name]["output"]
            assert out["n"] == len(images) and out["lo"] <= out["mean"] <= out["hi"]
        assert m["traces"]["loss"] == ("cross_entropy" if model.has_classifier else "feature_energy")
        # activations: mean |a| > 0, a fraction of zeros, dead channels counted within the channels
        for name in names:
            a = m["activations"][name]
            assert a["mean_abs"]["mean"] > 0 and 0 <= a["zero_fraction"]["mean"] <= 1
            assert 0 <= a["dead_channels"] <= a["channels"]
        # ERF: one map per output level, the radius holding 90% at least that holding 50%
        erf = np.load(tmp_path / "erf.npz")
        assert sorted(int(k) for k in m["erf"]) == sorted(model.spec.output_levels)
        for level in m["erf"].values():
            assert erf[level["npz_key"]].shape == (SIZE, SIZE)
            assert 0 <= level["radius_50"] <= level["radius_90"]
        # faithfulness: curves of steps + 1 points, AUCs in their intervals
        f = m["faithfulness"]
        assert len(f["deletion_curve"]) == len(f["insertion_curve"]) == 9
        assert f["score"] == ("probability" if model.has_classifier else "feature_energy_ratio")
        for key in ("deletion_auc", "insertion_auc"):
            assert f[key]["lo"] <= f[key]["mean"] <= f[key]["hi"]
    # CKA over every block of both backbones: 1 on the diagonal, symmetric
    cka = np.load(tmp_path / "cka.npz")["cka"]
    total = sum(len(m.blocks) for m in models.values())
    assert cka.shape == (total, total) and len(summary["cka"]["blocks"]) == total
    assert np.allclose(np.diag(cka), 1.0) and np.allclose(cka, cka.T)
    assert summary["cka"]["batches"] == 2  # chunks of 4, 4, 2: the last is too small for the estimator


def test_a_stopped_study_resumes_to_the_same_numbers(models, images, tmp_path):
    config = StudyConfig(size=SIZE, batch=4, metrics=("traces", "activations", "cka"))
    whole = run_job(study_job(models, images, tmp_path / "whole", config))
    steps = []
    with pytest.raises(JobCancelled):
        # stop once the first chunk is saved
        run_job(
            study_job(models, images, tmp_path / "stopped", config), steps.append, lambda: "saved" in steps[-1].text
        )
    assert (tmp_path / "stopped" / "state").is_dir() and not (tmp_path / "stopped" / "summary.json").exists()
    resumed_steps = []
    resumed = run_job(study_job(models, images, tmp_path / "stopped", config, resume=True), resumed_steps.append)
    assert resumed_steps[0].done == 4 * len(models)  # the first chunk is not computed again
    assert_same_numbers(whole, resumed, rel=0)


def test_resume_refuses_another_study(models, images, tmp_path):
    config = StudyConfig(size=SIZE, batch=4, metrics=("activations",))
    run_job(study_job(models, images, tmp_path, config))
    with pytest.raises(StudyError, match="other models, images or settings"):
        run_job(study_job(models, images[:5], tmp_path, config, resume=True))


def test_an_unreadable_image_is_skipped_and_listed(models, images, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    config = StudyConfig(size=SIZE, batch=4, metrics=("activations",))
    summary = run_job(study_job(models, [*images[:3], bad], tmp_path / "out", config))
    assert summary["config"]["images"] == 3
    assert [s["file"] for s in summary["skipped"]] == [str(bad)]


def test_cka_needs_minibatches_of_four():
    with pytest.raises(StudyError, match="at least 4"):
        StudyConfig(batch=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_torchrun_equal_one(tmp_path):
    """torchrun with gloo on the CPU shards the images; every number of summary.json equals one process's."""
    folder = write_images(tmp_path / "images", 10)
    ckpts = []
    for i, (label, name) in enumerate(MODELS.items()):
        path = save_checkpoint(tiny_model(name, seed=i), tmp_path / f"{label}.safetensors")
        ckpts += ["--ckpt", f"{label}={path}"]
    common = [*ckpts, str(folder), "--size", str(SIZE), "--batch", "4", "--deletion-steps", "8", "--formats", "png"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [FISHSPINE, "study", *common, "-o", str(tmp_path / "one")], capture_output=True, text=True, env=env
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
         "-m", "fishspine.cli.main", "study", *common, "-o", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    a = json.loads((tmp_path / "one" / "summary.json").read_text())
    b = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert (a["config"]["world_size"], b["config"]["world_size"]) == (1, 2)
    assert_same_numbers(a, b, rel=1e-5)
    for name in ("erf.npz", "cka.npz"):
        with np.load(tmp_path / "one" / name) as x, np.load(tmp_path / "two" / name) as y:
            for k in x.files:
                np.testing.assert_allclose(x[k], y[k], rtol=1e-5, atol=1e-12)
    # each rank kept its own state, of its own chunks
    assert sorted(p.name for p in (tmp_path / "two" / "state").iterdir()) == ["rank0-of-2.npz", "rank1-of-2.npz"]


def test_a_coco_split_lists_its_images_by_id_and_stays_in_its_folder(tmp_path):
    from fishspine.analysis.study.dataset import StudyInputError, coco_split

    folder = write_images(tmp_path / "val", 3)
    names = sorted(p.name for p in folder.iterdir())
    gt = {
        "images": [{"id": 7, "file_name": names[0], "height": 80, "width": 80},
                   {"id": 2, "file_name": names[2], "height": 96, "width": 96}],
        "annotations": [],
        "categories": [{"id": 1, "name": "thing"}],
    }  # fmt: skip
    ann = tmp_path / "gt.json"
    ann.write_text(json.dumps(gt))
    assert coco_split(ann, folder) == [folder / names[2], folder / names[0]]
    assert coco_split(ann, folder, limit=1) == [folder / names[2]]
    gt["images"][0]["file_name"] = "../../etc/passwd"
    ann.write_text(json.dumps(gt))
    with pytest.raises(StudyInputError, match="leaves the image folder"):
        coco_split(ann, folder)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--coco", "{gt}"], "--coco needs --images"),
        (["{folder}", "--coco", "{gt}", "--images", "{folder}"], "not both"),
        ([], "give an image folder"),
        (["{folder}", "--batch", "2"], "at least 4"),
        (["{empty}"], "no image files"),
    ],
)
def test_the_command_refuses_what_it_cannot_study(tmp_path, capsys, args, message):
    from fishspine.cli.main import main

    folder = write_images(tmp_path / "images", 2)
    (tmp_path / "empty").mkdir()
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    subs = {"{folder}": str(folder), "{gt}": str(gt), "{empty}": str(tmp_path / "empty")}
    argv = ["study", "--model", "resnet50", "--width", "0.25", "-o", str(tmp_path / "out")]
    assert main(argv + [subs.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
