"""Why Qt cannot open a window, said before Qt is started (Qt-free, so it is testable anywhere).

Qt's xcb platform plugin aborts the whole process when one of its shared libraries is missing, and
its message names libxcb-cursor0 whatever is really missing. `ldd` on the plugin tells the truth;
this module reads it and names the missing files and the Debian packages that provide them.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Shared libraries that PySide6's xcb plugin (and PySide6 itself) load from the system, and the
# Debian package of each: keep in step with DEBIAN_PACKAGES in the Makefile.
DEBIAN_PACKAGE_OF = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$", re.MULTILINE)
_CANNOT_OPEN = re.compile(r"(\S+\.so(?:\.\d+)*): cannot open shared object file")
# Where PySide6 keeps the xcb plugin and the library it is built on, relative to its package folder.
_XCB_FILES = ("Qt/plugins/platforms/libqxcb.so", "Qt/lib/libQt6XcbQpa.so.6")


def missing_xcb_libraries(ldd_output: str) -> list[str]:
    """The shared libraries that `ldd` reports as "not found", sorted, each once."""
    return sorted(set(_NOT_FOUND.findall(ldd_output)))


def library_named_in(error_text: str) -> str | None:
    """The shared library an ImportError's "cannot open shared object file" text names, if any."""
    match = _CANNOT_OPEN.search(error_text)
    return match.group(1) if match else None


def debian_packages_for(libraries: list[str]) -> list[str]:
    """The Debian packages that provide `libraries` (those this module knows), sorted, each once."""
    return sorted({DEBIAN_PACKAGE_OF[lib] for lib in libraries if lib in DEBIAN_PACKAGE_OF})


def missing_libraries_message(libraries: list[str], what: str = "Qt's xcb display plugin") -> str:
    """One line for the user: which libraries `what` lacks, their Debian packages, what to run."""
    packages = debian_packages_for(libraries)
    unknown = [lib for lib in libraries if lib not in DEBIAN_PACKAGE_OF]
    line = f"fishspine-gui: {what} cannot load: missing {', '.join(libraries)}"
    if packages:
        line += f" (Debian packages: {' '.join(packages)})"
    line += "; run `make setup`"
    if packages:
        line += f" or `sudo apt-get install {' '.join(packages)}`"
    if unknown:
        line += f"; find the package of {', '.join(unknown)} with `apt-file search`"
    return line


def uses_xcb(environ: Mapping[str, str]) -> bool:
    """Whether Qt will try its xcb plugin in this environment (and so needs its libraries)."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        # "xcb", "xcb:option=value" or a fallback list "xcb;offscreen": the first entry is tried first.
        return platform.split(";")[0].split(":")[0].strip() == "xcb"
    if not environ.get("DISPLAY"):
        return False
    # In a Wayland session Qt prefers its wayland plugin, even though XWayland sets DISPLAY too.
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def xcb_plugin_files() -> list[Path]:
    """PySide6's xcb plugin and libQt6XcbQpa, found without importing PySide6; [] if absent."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return [root / rel for rel in _XCB_FILES if (root / rel).is_file()]


def check_xcb_libraries(environ: Mapping[str, str]) -> str | None:
    """The error line to print when Qt's xcb plugin would fail to load here, else None.

    Returns None too when the check cannot be made (no ldd, no PySide6): Qt then says its own piece.
    """
    if not uses_xcb(environ):
        return None
    outputs = []
    for path in xcb_plugin_files():
        try:
            done = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        outputs.append(done.stdout)
    missing = missing_xcb_libraries("\n".join(outputs))
    return missing_libraries_message(missing) if missing else None
