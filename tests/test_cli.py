"""The `fishspine` command end to end, as a user runs it (a subprocess on real files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fishspine.models import create_model
from fishspine.models.checkpoints import save_checkpoint

FISHSPINE = str(Path(sys.executable).with_name("fishspine"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FISHSPINE, *args], capture_output=True, text=True, timeout=600)


def test_help_lists_every_command():
    res = run("--help")
    assert res.returncode == 0
    for cmd in ("models", "inspect", "bench"):
        assert cmd in res.stdout


def test_models_lists_zoo_with_exact_params():
    res = run("models", "--family", "resnet")
    assert res.returncode == 0
    assert "resnet50" in res.stdout and "25,557,032" in res.stdout


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
    path = save_checkpoint(create_model("resnet50", width=0.25, num_classes=3), tmp_path / "m.safetensors",
                           trained_on="unit test")
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
    res = run("bench", "models", "resnet50", "--device", "cpu", "--batch", "1", "--warmup", "0",
              "--repeats", "1", "--modes", "fp32", "-o", str(out))
    assert res.returncode == 0, res.stderr
    table = out.with_suffix(".md").read_text()
    assert "| torchvision_resnet50 | 224 | 4.09 |" in table
    assert "| resnet50 | 224 | 4.09 |" in table
