"""The `fishspine` command end to end, as a user runs it (a subprocess on real files)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fishspine.cli.main import build_parser
from fishspine.models.checkpoints import save_checkpoint

from .conftest import tiny_model

FISHSPINE = str(Path(sys.executable).with_name("fishspine"))


def run(*args: str) -> subprocess.CompletedProcess:
    # argparse wraps help to the terminal's width: a fixed one gives the same text on every machine.
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run([FISHSPINE, *args], capture_output=True, text=True, timeout=600, env=env)


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, its one-line help, its parser) for every subcommand registered, nested ones too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), helps.get(name), sub
                yield from subcommands(sub, (*path, name))


COMMANDS = list(subcommands(build_parser()))


def test_help_lists_every_command():
    res = run("--help")
    assert res.returncode == 0
    top = [(path[0], text) for path, text, _p in COMMANDS if len(path) == 1]
    assert len(top) >= 8
    listing = " ".join(res.stdout.split())  # however argparse wraps it for the terminal's width
    for cmd, text in top:
        assert f"{cmd} {text}" in listing, cmd


@pytest.mark.parametrize("path,text,parser", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_every_command_has_help_that_names_its_options(path, text, parser):
    assert text and text.strip(), f"{' '.join(path)} has no help text in its parent's list"
    res = run(*path, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: fishspine {' '.join(path)}")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(name in res.stdout for name in action.choices)
        elif action.option_strings:
            assert any(o in res.stdout for o in action.option_strings), (path, action.option_strings)
        else:
            assert (action.metavar or action.dest) in res.stdout, (path, action.dest)


def test_models_lists_zoo_with_exact_params():
    res = run("models", "--family", "resnet")
    assert res.returncode == 0
    assert "resnet50" in res.stdout and "25,557,032" in res.stdout


def test_models_lists_input_sizes_and_rejects_an_unknown_family():
    res = run("models", "--family", "spinenet")
    assert res.returncode == 0 and re.search(r"^spinenet49S +spinenet +640 ", res.stdout, re.MULTILINE)
    res = run("models", "--family", "spine")
    assert res.returncode == 2
    assert "unknown family 'spine'; known families: fishnet, resnet, scnet, spinenet" in res.stderr


def test_inspect_recognises_a_torchvision_file(tmp_path):
    import torchvision

    path = tmp_path / "r101.pth"
    torch.save(torchvision.models.resnet101().state_dict(), path)
    res = run("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "variant:   resnet101" in res.stdout
    assert "params:    44,549,160" in res.stdout
    assert "layer4.2" in res.stdout  # the blocks are listed


def test_inspect_fishspine_checkpoint(tmp_path):
    path = save_checkpoint(tiny_model("resnet50"), tmp_path / "m.safetensors", trained_on="unit test")
    res = run("inspect", "-q", str(path))
    assert res.returncode == 0, res.stderr
    assert "format:    fishspine" in res.stdout and "trained_on=unit test" in res.stdout


@pytest.mark.parametrize("content,needle", [(None, "no such file"), (b"hello", "not a checkpoint")])
def test_inspect_fails_clearly(tmp_path, content, needle):
    path = tmp_path / "x.pth"
    if content is not None:
        path.write_bytes(content)
    res = run("inspect", str(path))
    assert res.returncode == 2
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_bench_models_writes_a_table(tmp_path):
    out = tmp_path / "bench"
    res = run(
        "bench",
        "models",
        "resnet50",
        "--device",
        "cpu",
        "--batch",
        "1",
        "--warmup",
        "0",
        "--repeats",
        "1",
        "--modes",
        "fp32",
        "-o",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    table = out.with_suffix(".md").read_text()
    assert "| torchvision_resnet50 | 224 | 4.09 |" in table
    assert "| resnet50 | 224 | 4.09 |" in table


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    from PIL import Image

    from fishspine.analysis.images import sample_image

    path = tmp_path_factory.mktemp("img") / "sample.png"
    Image.fromarray(sample_image(96)).save(path)
    return path


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    a = save_checkpoint(tiny_model("resnet50"), folder / "r50.safetensors")
    b = save_checkpoint(tiny_model("spinenet49S"), folder / "s49s.safetensors")
    return a, b


def _valid_figures(stem: Path):
    assert stem.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in stem.with_suffix(".svg").read_bytes()[:2000]


def test_graph_command_writes_figure_and_data(tmp_path):
    res = run("graph", "spinenet49", "-o", str(tmp_path / "g"), "--color-by", "macs")
    assert res.returncode == 0, res.stderr
    _valid_figures(tmp_path / "g")
    import json

    data = json.loads((tmp_path / "g.json").read_text())
    assert data["layout"] == "scale-permuted" and len(data["nodes"]) == 23
    assert data["input_size"] == 640  # MACs at SpineNet's own input size, as the app counts them
    assert "block6" in (tmp_path / "g.csv").read_text()


def test_graph_says_when_the_suffix_chose_one_format(tmp_path, capsys):
    from fishspine.cli.main import main

    assert main(["graph", "resnet50", "-o", str(tmp_path / "g.svg")]) == 0
    assert "the suffix chose SVG" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.csv", "g.json", "g.svg"]
    assert main(["graph", "resnet50", "-o", str(tmp_path / "h.svg"), "--formats", "png", "pdf"]) == 0
    assert sorted(p.name for p in tmp_path.glob("h.*")) == ["h.csv", "h.json", "h.pdf", "h.png"]
    assert main(["graph", "resnet50", "-o", str(tmp_path / "x.jpeg")]) == 2
    assert "a figure is .png, .svg or .pdf" in capsys.readouterr().err


@pytest.mark.parametrize(
    "cmd,stem", [("activations", "sample_activations"), ("cam", "sample_gradcam"), ("gradients", "gradient_trace")]
)
def test_image_commands_on_real_checkpoints(tmp_path, image_file, two_checkpoints, cmd, stem):
    a, b = two_checkpoints
    res = run(
        cmd,
        "--ckpt",
        f"R50={a}",
        "--ckpt",
        str(b),
        str(image_file),
        "-o",
        str(tmp_path),
        "--size",
        "96",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    _valid_figures(tmp_path / stem)
    text = (tmp_path / f"{stem}.csv").read_text()
    assert "R50" in text and "s49s" in text


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_cam_command_writes_input_attributions(tmp_path, image_file, two_checkpoints, method, capsys):
    import json

    from fishspine.analysis.attribution.input_attribution import input_attribution_job
    from fishspine.analysis.images import load_image, resize_longer_side, to_input
    from fishspine.analysis.jobs import run_job
    from fishspine.cli.main import main
    from fishspine.models.checkpoints import load_checkpoint

    a, b = two_checkpoints
    assert (
        main(
            [
                "cam",
                "--method",
                method,
                "--ckpt",
                f"R50={a}",
                "--ckpt",
                str(b),
                str(image_file),
                "-o",
                str(tmp_path),
                "--size",
                "64",
                "--device",
                "cpu",
                "--formats",
                "png",
                "svg",
                "pdf",
            ]
        )
        == 0
    )
    stem = tmp_path / f"sample_{method}"
    _valid_figures(stem)
    cams = {c["model"]: c for c in json.loads(stem.with_suffix(".json").read_text())["cams"]}
    assert set(cams) == {"R50", "s49s"} and {c["block"] for c in cams.values()} == {"input"}
    assert {c["method"] for c in cams.values()} == {method} and cams["s49s"]["target"] == "feature energy"
    direct = run_job(
        input_attribution_job(
            load_checkpoint(a).model, to_input(resize_longer_side(load_image(image_file), 64)), method
        )
    )
    assert cams["R50"]["class_index"] == direct.class_index
    assert cams["R50"]["raw_max"] == pytest.approx(direct.raw_max, rel=1e-4), "the command computes the job's map"
    assert str(stem.with_suffix(".png")) in capsys.readouterr().out


def test_cam_command_refuses_a_block_for_an_input_attribution(tmp_path, image_file, two_checkpoints, capsys):
    from fishspine.cli.main import main

    assert (
        main(
            [
                "cam",
                "--method",
                "occlusion",
                "--block",
                "layer4.2",
                "--ckpt",
                str(two_checkpoints[0]),
                str(image_file),
                "-o",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "--block is for the CAM methods" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "resnet50", "{missing}"], "no such file"),
        (["--model", "resnet50", "{text}"], "not an image"),
        (["--ckpt", "{text}", "{image}"], "not a checkpoint"),
        (["{image}"], "no model given"),
    ],
)
def test_image_commands_fail_clearly(tmp_path, image_file, args, needle):
    text = tmp_path / "notes.png"
    text.write_text("hello")
    args = [a.format(missing=tmp_path / "nope.png", text=text, image=image_file) for a in args]
    res = run("activations", *args, "-o", str(tmp_path / "out"), "--width", "0.25")
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_coco_command_prints_table_and_writes_every_figure(tmp_path):
    import json

    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(20, n_categories=3, dets_per_image=15, seed=2, with_masks=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "a.json").write_text(json.dumps(dets))
    (tmp_path / "b.json").write_text(json.dumps(dets[::2]))
    res = run(
        "coco",
        "--gt",
        str(tmp_path / "gt.json"),
        "--dt",
        f"ResNet-50={tmp_path / 'a.json'}",
        "--dt",
        f"FishNet-150={tmp_path / 'b.json'}",
        "--baseline",
        "ResNet-50",
        "--iou-types",
        "bbox",
        "segm",
        "-o",
        str(tmp_path / "out"),
    )
    assert res.returncode == 0, res.stderr
    assert "COCO bbox evaluation" in res.stdout and "COCO segm evaluation" in res.stdout
    assert "FishNet-150" in res.stdout and ("(-" in res.stdout or "(+" in res.stdout)
    for kind in ("table", "sizes", "pr", "classes_FishNet-150"):
        _valid_figures(tmp_path / "out" / f"coco_bbox_{kind}")
    table = json.loads((tmp_path / "out" / "coco_segm.json").read_text())
    assert table["baseline"] == "ResNet-50" and "area_source" in table


def test_coco_command_rejects_results_from_another_split(tmp_path):
    import json

    from fishspine.analysis.coco.synthetic import synthetic_coco

    gt, dets = synthetic_coco(5, n_categories=2, seed=3)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "a.json").write_text(json.dumps([dict(d, image_id=d["image_id"] + 1000) for d in dets]))
    res = run("coco", "--gt", str(tmp_path / "gt.json"), "--dt", f"A={tmp_path / 'a.json'}", "-o", str(tmp_path))
    assert res.returncode == 2 and "not an image id of the ground truth" in res.stderr


def test_data_synth_then_train_then_inspect(tmp_path):
    res = run("data", "synth", str(tmp_path / "d"), "--train", "4", "--val", "2", "--size", "96")
    assert res.returncode == 0, res.stderr
    assert "train: 4 images" in res.stdout
    res = run(
        "train",
        "--backbone",
        "spinenet49S",
        "--data",
        str(tmp_path / "d"),
        "--out",
        str(tmp_path / "r"),
        "--epochs",
        "1",
        "--batch",
        "2",
        "--image-size",
        "96",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r" / "val_detections.json").exists()
    res = run("inspect", "-q", str(tmp_path / "r" / "detector_epoch1.safetensors"))
    assert res.returncode == 0 and "variant:   spinenet49S" in res.stdout
    assert "detector:  FCOS over this backbone" in res.stdout and "circle" in res.stdout
    res = run("train", "--backbone", "resnet50", "--data", str(tmp_path / "nothing"), "--device", "cpu")
    assert res.returncode == 2 and "instances_train.json" in res.stderr
