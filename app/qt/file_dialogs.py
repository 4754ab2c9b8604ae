"""File dialogs that open where the user last was: one remembered folder for the whole app session."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

_last = {"folder": ""}


def last_folder() -> str:
    """The folder of the last file chosen in any dialog ("" before the first)."""
    return _last["folder"]


def remember(path: str) -> None:
    """Remember the folder of `path` (a file) for the next dialog."""
    if path:
        _last["folder"] = str(Path(path).parent)


def open_files(parent: QWidget, title: str, filter_: str) -> list[str]:
    """Files to open, starting in the last folder."""
    paths, _ = QFileDialog.getOpenFileNames(parent, title, last_folder(), filter_)
    if paths:
        remember(paths[0])
    return paths


def open_file(parent: QWidget, title: str, filter_: str) -> str:
    """A file to open, starting in the last folder ("" when cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, title, last_folder(), filter_)
    remember(path)
    return path


def save_file(parent: QWidget, title: str, name: str, filter_: str) -> str:
    """A file to write, proposed as `name` in the last folder ("" when cancelled)."""
    start = str(Path(last_folder()) / name) if last_folder() else name
    path, _ = QFileDialog.getSaveFileName(parent, title, start, filter_)
    remember(path)
    return path
