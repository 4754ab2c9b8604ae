"""Images are opened only as raster formats, and only from regular files of a bounded size."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fishspine.analysis import images
from fishspine.analysis.images import ImageError, load_image, sample_image


def load_with_timeout(path: Path, seconds: float = 20) -> BaseException | np.ndarray:
    """load_image(path) in a thread: its result or exception, or a test failure if it hangs."""
    outcome: list = []

    def target():
        try:
            outcome.append(load_image(path))
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"load_image({path}) still running after {seconds} s")
    return outcome[0]


def test_a_good_image_still_loads(tmp_path):
    for suffix in (".png", ".jpg", ".bmp", ".tif", ".webp", ".gif"):
        path = tmp_path / f"ok{suffix}"
        Image.fromarray(sample_image(32)).save(path)
        pixels = load_image(path)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_postscript_named_png_is_refused_and_not_run(tmp_path, capfd):
    # Pillow would hand an EPS to Ghostscript (with -dSAFER, so the PostScript cannot write files);
    # this one prints a marker to the standard output Ghostscript inherits, which capfd sees.
    eps = (
        "%!PS-Adobe-3.0 EPSF-3.0\n"
        "%%BoundingBox: 0 0 10 10\n"
        "(FISHSPINE-POSTSCRIPT-RAN) print flush\n"
        "newpath 0 0 moveto 10 10 lineto stroke\n"
        "showpage\n"
        "%%EOF\n"
    )
    path = tmp_path / "photo.png"
    path.write_text(eps)
    with pytest.raises(ImageError, match=r"photo\.png: not an image PIL can read"):
        load_image(path)
    # Without Ghostscript installed only the refusal is checked: nothing could have run the PostScript.
    assert "FISHSPINE-POSTSCRIPT-RAN" not in capfd.readouterr().out


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome = load_with_timeout(fifo)
    assert isinstance(outcome, ImageError), outcome
    assert "pipe.png" in str(outcome) and "not a regular file" in str(outcome)


def test_link_to_a_device_is_refused(tmp_path):
    link = tmp_path / "zeros.png"
    link.symlink_to("/dev/zero")
    outcome = load_with_timeout(link)
    assert isinstance(outcome, ImageError), outcome
    assert "zeros.png" in str(outcome) and "not a regular file" in str(outcome)


def test_folder_is_refused(tmp_path):
    folder = tmp_path / "album.png"
    folder.mkdir()
    with pytest.raises(ImageError, match=r"album\.png: is a folder"):
        load_image(folder)


def test_huge_file_is_refused_without_reading_it(tmp_path, monkeypatch):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: 2 GB long, nothing on disk

    def no_open(*args, **kwargs):
        raise AssertionError("the file was opened")

    monkeypatch.setattr("PIL.Image.open", no_open)
    monkeypatch.setattr(images.os, "open", no_open)
    with pytest.raises(ImageError, match=r"huge\.png: .*too large.*512 MB"):
        load_image(huge)


def test_decompression_bomb_is_an_error_not_a_warning(tmp_path, monkeypatch):
    # 9500 x 9500 = 90.25 M pixels: just over Pillow's default limit, where Pillow only warns.
    path = tmp_path / "bomb.png"
    Image.new("1", (9_500, 9_500)).save(path)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(ImageError, match=r"bomb\.png: too large.*90250000 pixels"):
        load_image(path)
    # The bound holds where Pillow's own check is switched off, too.
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError, match=r"bomb\.png: 9500x9500 pixels is too large"):
        load_image(path)
    monkeypatch.undo()
    # Far over the limit, where Pillow raises its own error.
    path = tmp_path / "bigger.png"
    Image.new("1", (20_000, 20_000)).save(path)
    with pytest.raises(ImageError, match=r"bigger\.png: .*too large"):
        load_image(path)


def test_unreadable_file_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "secret.png"
    Image.fromarray(sample_image(8)).save(path)
    path.chmod(0)
    with pytest.raises(ImageError, match="secret.png: cannot be read"):
        load_image(path)
