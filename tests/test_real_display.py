"""The app on a real X server (Xvfb) through Qt's xcb plugin, as `make run` opens it on a desktop.

The other GUI tests use Qt's offscreen plugin, which needs none of the X libraries; this one catches
a fresh machine where the window cannot open at all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from fishspine.app.components.display_check import check_xcb_libraries

from .conftest import REPO

pytestmark = pytest.mark.gui

SCREEN = (1400, 900)  # the main window's size (MainWindow.resize), so the whole window fits


@pytest.fixture
def x_display() -> Iterator[str]:
    """A fresh Xvfb on a free display number (chosen by Xvfb itself), stopped afterwards."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb is not installed: run `make setup` (it installs the Debian package xvfb)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(write_end)
    try:
        # Xvfb writes the display number once it accepts connections; EOF means it died.
        with os.fdopen(read_end) as numbers:
            number = numbers.readline().strip()
        if not number:
            server.wait(timeout=10)
            pytest.fail(f"Xvfb did not start: {server.stderr.read().decode(errors='replace')[-2000:]}")
        yield f":{number}"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        server.stderr.close()


def xcb_environment(display: str) -> dict[str, str]:
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", DISPLAY=display)
    for name in ("WAYLAND_DISPLAY", "XAUTHORITY"):
        env.pop(name, None)
    return env


def test_xcb_plugin_finds_all_its_libraries():
    problem = check_xcb_libraries({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0"})
    assert problem is None, f"{problem} (the Makefile's DEBIAN_PACKAGES lacks a package)"


def test_the_window_opens_and_renders_on_a_real_x_server(x_display, tmp_path):
    env = xcb_environment(x_display)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from PySide6.QtGui import QGuiApplication\napp = QGuiApplication([])\nprint(app.platformName())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "xcb", probe.stderr

    shot = tmp_path / "window.png"
    app = subprocess.run(
        [sys.executable, "-m", "fishspine.app.main", "--screenshot", str(shot), "--timeout", "120"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert app.returncode == 0, app.stderr[-4000:]
    assert "offscreen" not in app.stderr
    assert shot.is_file(), app.stderr[-4000:]

    from PIL import Image

    with Image.open(shot) as img:
        assert img.size == SCREEN
        pixels = np.asarray(img.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"the screenshot is nearly blank ({len(colours)} colours)"
