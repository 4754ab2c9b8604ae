"""fishspine-gui says which library or package is missing instead of letting Qt abort."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from fishspine.app.components import display_check
from fishspine.app.components.display_check import (
    DEBIAN_PACKAGE_OF,
    check_xcb_libraries,
    missing_libraries_message,
    missing_xcb_libraries,
    uses_xcb,
)

from .conftest import REPO

# `ldd libqxcb.so` on a Debian 12 with libxcb-icccm4 and libxcb-keysyms1 not installed (shortened).
LDD_TWO_MISSING = """\
\tlinux-vdso.so.1 (0x00007f9618c5b000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f9618b8d000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f9617f79000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f9618b2a000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f9618b22000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f96177b9000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f9616e1e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\t/lib64/ld-linux-x86-64.so.2 (0x00007f9618c5d000)
"""
LDD_ALL_FOUND = "\n".join(line for line in LDD_TWO_MISSING.splitlines() if "not found" not in line)


def test_missing_libraries_are_read_from_ldd_output():
    assert missing_xcb_libraries(LDD_TWO_MISSING) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_xcb_libraries(LDD_ALL_FOUND) == []
    assert missing_xcb_libraries("") == []


def test_message_names_files_packages_and_the_fix_on_one_line():
    msg = missing_libraries_message(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "\n" not in msg
    assert "libxcb-icccm.so.4" in msg and "libxcb-keysyms.so.1" in msg
    assert "libxcb-icccm4 libxcb-keysyms1" in msg
    assert "make setup" in msg


def test_message_for_a_library_without_a_known_package_still_names_it():
    msg = missing_libraries_message(["libxcb-new-thing.so.7"])
    assert "libxcb-new-thing.so.7" in msg and "make setup" in msg and "apt-file" in msg


@pytest.mark.parametrize(
    "environ,expected",
    [
        ({"DISPLAY": ":0"}, True),
        ({}, False),  # no display: Qt fails on its own, with a clear message
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
        ({"QT_QPA_PLATFORM": "xcb"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb:nograb"}, True),
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland;xcb"}, False),
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, False),
    ],
)
def test_xcb_is_checked_only_where_qt_would_use_it(environ, expected):
    assert uses_xcb(environ) is expected


def fake_ldd(output: str):
    def run(cmd, **kwargs):
        assert cmd[0] == "ldd"
        return subprocess.CompletedProcess(cmd, 0, stdout=output, stderr="")

    return run


def test_check_runs_ldd_on_the_plugin_and_reports(monkeypatch, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    monkeypatch.setattr(display_check, "xcb_plugin_files", lambda: [plugin])
    monkeypatch.setattr(display_check.subprocess, "run", fake_ldd(LDD_TWO_MISSING))
    msg = check_xcb_libraries({"DISPLAY": ":0"})
    assert msg and "libxcb-icccm4 libxcb-keysyms1" in msg
    assert check_xcb_libraries({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}) is None
    monkeypatch.setattr(display_check.subprocess, "run", fake_ldd(LDD_ALL_FOUND))
    assert check_xcb_libraries({"DISPLAY": ":0"}) is None


def test_check_stands_aside_without_ldd(monkeypatch, tmp_path):
    def no_ldd(cmd, **kwargs):
        raise FileNotFoundError("ldd")

    monkeypatch.setattr(display_check, "xcb_plugin_files", lambda: [tmp_path])
    monkeypatch.setattr(display_check.subprocess, "run", no_ldd)
    assert check_xcb_libraries({"DISPLAY": ":0"}) is None


def test_main_prints_the_missing_libraries_and_does_not_start_qt(monkeypatch, capsys):
    from fishspine.app import main as main_module
    from fishspine.app.qt import window

    started = []
    monkeypatch.setattr(window, "run", lambda argv: started.append(argv) or 0)
    monkeypatch.setattr(
        display_check, "check_xcb_libraries", lambda environ: missing_libraries_message(["libxcb-icccm.so.4"])
    )
    assert main_module.main([]) == 2
    assert not started
    assert "libxcb-icccm.so.4" in capsys.readouterr().err


def run_main_with(prelude: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(prelude) + "\nfrom fishspine.app.main import main\nsys.exit(main([]))\n"
    return subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_main_without_pyside6_says_how_to_install_it():
    done = run_main_with("sys.modules['PySide6'] = None")
    assert done.returncode == 2, done.stderr
    assert "PySide6" in done.stderr and "not installed" in done.stderr
    assert "pip install" in done.stderr and "make setup" in done.stderr
    assert "not built yet" not in done.stderr


def test_main_names_a_system_library_pyside6_cannot_open():
    done = run_main_with("""
        class NoEGL:
            def find_spec(self, name, path=None, target=None):
                if name == "PySide6.QtGui":
                    raise ImportError("libEGL.so.1: cannot open shared object file: No such file or directory",
                                      name=name)
        sys.meta_path.insert(0, NoEGL())
    """)
    assert done.returncode == 2, done.stderr
    assert "libEGL.so.1" in done.stderr and "libegl1" in done.stderr and "make setup" in done.stderr


def test_every_known_package_is_installed_by_the_makefile():
    makefile = (REPO / "Makefile").read_text()
    listed = re.search(r"^DEBIAN_PACKAGES\s*:=(.*?)(?<!\\)\n", makefile, re.MULTILINE | re.DOTALL).group(1)
    packages = set(listed.replace("\\\n", " ").split())
    assert set(DEBIAN_PACKAGE_OF.values()) <= packages
    assert {"xvfb", "xauth"} <= packages  # the real-display test starts Xvfb
