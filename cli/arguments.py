"""Argument types for the `fishspine` command: each refuses an out-of-range value with a one-line
argparse error (exit status 2) that says what is allowed, before any work starts.

Each function returns a callable for argparse's `type=` (or an `action=` class for checks that need
several values), so a value is checked where it is declared.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NAME_MAX = 255  # bytes in one file-name component on Linux, macOS and Windows file systems
_CUDA = re.compile(r"cuda(:\d{1,3})?")


def _number(text: str, kind: type, allowed: str) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not {'an integer' if kind is int else 'a number'}; allowed: {allowed}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a finite number; allowed: {allowed}")
    return value


def bounded_int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in [lo, hi] (no upper bound when hi is None)."""
    allowed = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"

    def parse(text: str) -> int:
        if len(text) > 40:
            raise argparse.ArgumentTypeError(f"{text[:20]!r}… is too long; allowed: {allowed}")
        value = _number(text, int, allowed)
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {allowed}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


def multiple_of(step: int, lo: int, hi: int) -> Callable[[str], int]:
    """An integer in [lo, hi] that is a multiple of `step`."""
    inner = bounded_int(lo, hi)

    def parse(text: str) -> int:
        value = inner(text)
        if value % step:
            raise argparse.ArgumentTypeError(
                f"{value} is not a multiple of {step}; allowed: multiples of {step} from {lo} to {hi}"
            )
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
    """A finite number in [lo, hi], or (lo, hi] when `lo_open`."""
    allowed = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        value = _number(text[:100], float, allowed)
        if value < lo or value > hi or (lo_open and value == lo):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is out of range; allowed: {allowed}")
        return value

    parse.__name__ = "number"
    return parse


def device_name(text: str) -> str:
    """auto, cpu, cuda or cuda:N (never meta or other torch device types: they hold no data)."""
    if text in ("auto", "cpu") or _CUDA.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a device; allowed: auto, cpu, cuda, cuda:N")


def _check_name_lengths(path: Path, extra: int = 0) -> None:
    """Each component fits in NAME_MAX bytes; the last one with `extra` bytes of suffixes added to it."""
    for part in path.parts:
        room = NAME_MAX - (extra if part == path.name else 0)
        if len(part.encode("utf-8", "surrogateescape")) > room:
            raise argparse.ArgumentTypeError(
                f"the name {part[:30]!r}… is too long for the file system; allowed: at most {room} bytes"
            )


def output_folder(text: str) -> Path:
    """A folder to write into: it may not exist yet, but must not be an existing file."""
    path = Path(text)
    _check_name_lengths(path)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text[:80]} is an existing file; allowed: a folder (new or existing)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(
                f"{str(parent)[:80]} is an existing file, so {text[:80]} cannot be a folder"
            )
    return path


def output_stem(suffix_bytes: int = 16) -> Callable[[str], str]:
    """A file name or stem to write (suffixes such as .json are added): not an existing folder."""

    def parse(text: str) -> str:
        path = Path(text)
        _check_name_lengths(path, suffix_bytes)
        if path.is_dir():
            raise argparse.ArgumentTypeError(
                f"{text[:80]} is a folder; allowed: a file name or stem such as {Path(text) / 'figure'}"
            )
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{str(parent)[:80]} is an existing file, not a folder")
        return text

    parse.__name__ = "output"
    return parse


def _regular_file(text: str, suffix_bytes: int = 0) -> Path:
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL character")
    path = Path(text)
    _check_name_lengths(path.with_name(path.stem) if path.name else path, suffix_bytes)
    try:
        info = os.stat(path)  # follows links: a link to /dev/zero is judged as the device
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{text[:120]}: no such file") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text[:120]}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise argparse.ArgumentTypeError(f"{text[:120]}: is a folder; allowed: a file")
    if not stat.S_ISREG(info.st_mode):
        # reading a FIFO blocks forever and a device never ends: refuse them before anything opens them
        raise argparse.ArgumentTypeError(
            f"{text[:120]}: is not a regular file (a pipe, socket or device); allowed: a file"
        )
    return path


def input_file(suffix_bytes: int = 0) -> Callable[[str], Path]:
    """An existing regular file (not a folder, FIFO or device) whose name, with `suffix_bytes` more for
    outputs named after it, fits the file system."""

    def parse(text: str) -> Path:
        return _regular_file(text, suffix_bytes)

    parse.__name__ = "file"
    return parse


def input_folder(text: str) -> Path:
    """An existing folder to read from (a folder of images)."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text[:120]}: no such folder; allowed: a folder of images")
    return path


def labelled(max_label: int = 200, split_last: bool = False) -> Callable[[str], str]:
    """A [LABEL=]FILE spec (split at the first "=", or the last when `split_last`, as the command does):
    FILE an existing regular file, LABEL (or the file's stem) short enough to become part of file names."""

    def parse(text: str) -> str:
        label, sep, path = text.rpartition("=") if split_last else text.partition("=")
        if not sep:
            label, path = Path(text).stem, text
        if len(label.encode("utf-8", "surrogateescape")) > max_label:
            raise argparse.ArgumentTypeError(
                f"the name {label[:30]!r}… is too long; allowed: at most "
                f"{max_label} bytes (it becomes part of file names)"
            )
        _regular_file(path)
        return text

    parse.__name__ = "spec"
    return parse


def detection_box(text: str) -> tuple[float, float, float, float] | str:
    """ "top" (each detector's top detection), or X,Y,W,H: a box in the image's pixels as COCO writes
    it, returned as (x0, y0, x1, y1)."""
    if text.strip().lower() == "top":
        return "top"
    allowed = "top, or X,Y,W,H in the image's pixels (a COCO bbox), e.g. 30,17,40,52"
    parts = text.split(",")
    if len(text) > 200 or len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a box; allowed: {allowed}")
    x, y, w, h = (_number(v.strip(), float, allowed) for v in parts)
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: width and height must be positive; allowed: {allowed}")
    return (x, y, x + w, y + h)


class Increasing(argparse.Action):
    """Several numbers (nargs) that must be strictly increasing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Sequence[Any] | str | None,
        option_string: str | None = None,
    ) -> None:
        values = list(values or [])
        if any(b <= a for a, b in zip(values, values[1:])):
            shown = " ".join(f"{v:g}" for v in values)
            raise argparse.ArgumentError(
                self, f"{shown} is not increasing; allowed: each value larger than the one before"
            )
        setattr(namespace, self.dest, values)
