"""Packaging and layering: the wheel holds every subpackage under fishspine.*, and nothing below
the app imports Qt."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

LAYERS = {
    "app": "fishspine.app",
    "analysis": "fishspine.analysis",
    "models": "fishspine.models",
    "training": "fishspine.training",
    "cli": "fishspine.cli",
    "bench": "fishspine.bench",
    "assets": "fishspine.assets",
}


def _source_packages() -> set[str]:
    found = set()
    for folder, dotted in LAYERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([dotted, *rel.parts]))
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob("fishspine-*.whl")
    return whl


def test_wheel_contains_every_subpackage_under_fishspine(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("__init__.py")}
    missing = _source_packages() - packaged
    assert not missing, f"subpackages not listed in pyproject.toml: {sorted(missing)}"
    assert not [n for n in names if n.split("/")[0] in LAYERS], "a generic top-level module leaked"
    assert "fishspine/assets/__init__.py" in names


def test_wheel_declares_both_commands(wheel):
    z = zipfile.ZipFile(wheel)
    (ep,) = [n for n in z.namelist() if n.endswith("entry_points.txt")]
    text = z.read(ep).decode()
    assert "fishspine = fishspine.cli.main:main" in text
    assert "fishspine-gui = fishspine.app.main:main" in text


def test_import_linter_contracts_hold(wheel, tmp_path):
    # Lint the installed layout (fishspine.* as a user gets it), with the repo's contracts.
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    lint = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(site))
    res = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Contracts: 4 kept, 0 broken" in res.stdout


def test_everything_but_the_widgets_imports_without_qt():
    """Import every module below the app, and the app's Qt-free components, with PySide6 made unimportable."""
    modules = []
    for folder in ("models", "analysis", "training", "cli", "app/components"):
        top, *sub = folder.split("/")
        for py in sorted((REPO / folder).rglob("*.py")):
            rel = py.relative_to(REPO / top).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            modules.append(".".join([LAYERS[top], *parts]))
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph'):\n"
        "            raise ImportError('Qt imported below the app: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
