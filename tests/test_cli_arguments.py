"""Out-of-range command-line values are refused by the parser: exit status 2, one line naming the
option and what is allowed, no traceback, before any model or file is loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fishspine.cli.main import build_parser, main


@pytest.fixture
def files(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"not really a png, but the parser never opens it")
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    existing_file = tmp_path / "taken"
    existing_file.write_text("x")
    long_stem = tmp_path / ("a" * 240 + ".png")
    long_stem.write_bytes(b"x")
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    return {
        "IMG": str(image),
        "GT": str(gt),
        "FILE": str(existing_file),
        "LONG": str(long_stem),
        "FIFO": str(fifo),
        "DIR": str(tmp_path),
    }


ACT = ["activations", "--model", "resnet50", "{IMG}", "-o", "{DIR}/out"]
COCO = ["coco", "--gt", "{GT}", "--dt", "m={GT}", "-o", "{DIR}/out"]
TRAIN = ["train", "--backbone", "resnet50", "--data", "{DIR}"]

CASES = [
    # (argv, option named in the message, what the message says is allowed)
    ([*ACT, "--width", "nan"], "--width", "(0, 8]"),
    ([*ACT, "--width", "0"], "--width", "(0, 8]"),
    ([*ACT, "--width", "1000"], "--width", "(0, 8]"),
    ([*ACT, "--size", "0"], "--size", "from 32 to 4096"),
    ([*ACT, "--size", "-4"], "--size", "from 32 to 4096"),
    ([*ACT, "--size", "100000"], "--size", "from 32 to 4096"),
    ([*ACT, "--size", "3.5"], "--size", "from 32 to 4096"),
    ([*ACT, "--device", "meta"], "--device", "auto, cpu, cuda, cuda:N"),
    ([*ACT, "--device", "cuda:x"], "--device", "auto, cpu, cuda, cuda:N"),
    ([*ACT, "--rows", "0"], "--rows", "from 1 to 64"),
    (["cam", *ACT[1:], "--alpha", "1.5"], "--alpha", "[0, 1]"),
    (["cam", *ACT[1:], "--alpha", "-0.1"], "--alpha", "[0, 1]"),
    (["cam", *ACT[1:], "--alpha", "nan"], "--alpha", "[0, 1]"),
    (["cam", *ACT[1:], "--class", "-1"], "--class", "from 0 to"),
    (["gradients", *ACT[1:], "--device", "meta"], "--device", "auto, cpu"),
    ([*ACT[:-1], "{FILE}"], "-o/--output", "allowed: a folder"),
    ([*ACT[:-1], "{FILE}/sub"], "-o/--output", "is an existing file"),
    ([*ACT[:3], "{LONG}", "-o", "{DIR}/out"], "IMG", "too long for the file system"),
    ([*COCO, "--area-ranges", "nan", "96"], "--area-ranges", "allowed"),
    ([*COCO, "--area-ranges", "96", "32"], "--area-ranges", "not increasing"),
    ([*COCO, "--area-ranges", "0", "32"], "--area-ranges", "(0, 100000]"),
    ([*COCO, "--max-dets", "0", "10", "100"], "--max-dets", "from 1 to"),
    ([*COCO, "--max-dets", "100", "10", "1"], "--max-dets", "not increasing"),
    (["coco", "--gt", "{GT}", "--dt", "x" * 300 + "={GT}", "-o", "{DIR}/out"], "--dt", "at most 200 bytes"),
    (["coco", "--gt", "{DIR}", "--dt", "m={GT}", "-o", "{DIR}/out"], "--gt", "is a folder"),
    ([*COCO[:-1], "{FILE}"], "-o/--output", "allowed: a folder"),
    (["inspect", "{FIFO}"], "checkpoint", "not a regular file"),
    (["inspect", "/dev/zero"], "checkpoint", "not a regular file"),
    ([*TRAIN, "--lr", "0"], "--lr", "(0, 10]"),
    ([*TRAIN, "--lr", "nan"], "--lr", "(0, 10]"),
    ([*TRAIN, "--lr", "-0.001"], "--lr", "(0, 10]"),
    ([*TRAIN, "--epochs", "0"], "--epochs", "from 1 to"),
    ([*TRAIN, "--batch", "0"], "--batch", "from 1 to"),
    ([*TRAIN, "--width", "inf"], "--width", "(0, 8]"),
    ([*TRAIN, "--image-size", "8"], "--image-size", "from 32 to 4096"),
    ([*TRAIN, "--device", "meta"], "--device", "auto, cpu"),
    (["bench", "models", "--batch", "0"], "--batch", "from 1 to"),
    (["bench", "models", "--device", "meta"], "--device", "auto, cpu"),
    (["bench", "models", "-o", "{DIR}"], "-o/--output", "is a folder"),
    (["graph", "resnet50", "--size", "0", "-o", "{DIR}/g"], "--size", "from 32 to 4096"),
    (["data", "synth", "{FILE}"], "output", "allowed: a folder"),
    (["data", "synth", "{DIR}/d", "--size", "5"], "--size", "from 32 to 4096"),
]


def _argv(argv: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in argv]


@pytest.mark.parametrize("argv,option,allowed", CASES, ids=[" ".join(c[0][-2:])[:40] for c in CASES])
def test_out_of_range_values_get_one_line_from_the_parser(files, capsys, argv, option, allowed):
    with pytest.raises(SystemExit) as info:
        main(_argv(argv, files))
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert f"error: argument {option}:" in last and allowed in last, last


def test_the_defaults_and_good_values_still_parse(files):
    parser = build_parser()
    args = parser.parse_args(
        _argv([*ACT, "--width", "0.25", "--size", "64", "--device", "cuda:1", "--rows", "4"], files)
    )
    assert (args.width, args.size, args.device, args.rows) == (0.25, 64, "cuda:1", 4)
    args = parser.parse_args(_argv([*COCO, "--area-ranges", "16", "128", "--max-dets", "1", "5", "20"], files))
    assert args.area_ranges == [16.0, 128.0] and args.max_dets == [1, 5, 20]
    args = parser.parse_args(_argv(COCO, files))
    assert args.max_dets == [1, 10, 100] and args.area_ranges is None
    args = parser.parse_args(_argv(TRAIN, files))
    assert (args.lr, args.epochs, args.batch, args.width, args.device) == (1e-3, 12, 8, 0.25, "auto")


def test_the_installed_command_prints_no_traceback(files):
    res = subprocess.run(
        [sys.executable, "-m", "fishspine.cli.main", *_argv([*ACT, "--device", "meta"], files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "fishspine activations: error: argument --device: 'meta' is not a device; allowed: auto, cpu, cuda, cuda:N"
    )
