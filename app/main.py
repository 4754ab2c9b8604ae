"""Entry point of `fishspine-gui`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Start the desktop app."""
    try:
        from .window import run
    except ImportError:
        print("fishspine-gui: the desktop app is not built yet; use the `fishspine` command "
              "(fishspine --help).", file=sys.stderr)
        return 1
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
