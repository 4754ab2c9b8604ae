"""Entry point of `fishspine-gui`."""

from __future__ import annotations

import os
import sys

# The pin in pyproject.toml, repeated so the message can say what to install.
PYSIDE6_REQUIREMENT = "PySide6-Essentials>=6.5,<6.12"
EXIT_ENVIRONMENT = 2  # the app cannot start here: something outside fishspine is missing


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app; say what is missing, and return 2, when it cannot start here."""
    from fishspine.app.components.display_check import check_xcb_libraries, library_named_in, missing_libraries_message

    try:
        from fishspine.app.qt.window import run
    except ImportError as exc:
        missing_library = library_named_in(str(exc))
        if missing_library:  # PySide6 is installed but a system library it links to is not
            print(missing_libraries_message([missing_library], "PySide6 (Qt)"), file=sys.stderr)
            return EXIT_ENVIRONMENT
        top = (exc.name or "").split(".")[0]
        if top in ("PySide6", "shiboken6"):
            print(
                f"fishspine-gui: PySide6 (Qt for Python) is not installed in this Python ({sys.executable}); "
                f"run `make setup`, or `{sys.executable} -m pip install '{PYSIDE6_REQUIREMENT}'`.",
                file=sys.stderr,
            )
            return EXIT_ENVIRONMENT
        if top and top != "fishspine":
            print(
                f"fishspine-gui: the package {top!r} is not installed in this Python ({sys.executable}) "
                f"({exc}); run `make setup`.",
                file=sys.stderr,
            )
            return EXIT_ENVIRONMENT
        raise  # a broken import inside fishspine is a bug: show its traceback
    args = sys.argv[1:] if argv is None else argv
    problem = None if {"-h", "--help"} & set(args) else check_xcb_libraries(os.environ)
    if problem:  # Qt would abort the process with a misleading message; say what is really missing
        print(problem, file=sys.stderr)
        return EXIT_ENVIRONMENT
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
