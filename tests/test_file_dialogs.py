"""Every file dialog opens in the folder of the last file chosen."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtWidgets import QFileDialog  # noqa: E402

from fishspine.app.qt import file_dialogs  # noqa: E402


def test_the_next_dialog_starts_where_the_last_file_was(qtbot, monkeypatch, tmp_path):
    starts = []

    def fake(answer):
        def dialog(parent, title, start, filter_):
            starts.append(start)
            return answer, filter_

        return dialog

    monkeypatch.setitem(file_dialogs._last, "folder", "")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", fake([str(tmp_path / "ckpts" / "a.pth")]))
    assert file_dialogs.open_files(None, "Open", "*") == [str(tmp_path / "ckpts" / "a.pth")]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", fake(str(tmp_path / "out" / "fig.pdf")))
    file_dialogs.save_file(None, "Export", "fig.pdf", "*")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", fake(""))  # cancelled: the folder stays
    file_dialogs.open_file(None, "Open session", "*")
    file_dialogs.open_file(None, "Open session", "*")
    assert starts == ["", str(tmp_path / "ckpts" / "fig.pdf"), str(tmp_path / "out"), str(tmp_path / "out")]
