"""Work split over forked processes, for the commands: a fork starts at once and shares what the parent
already loaded (parsed JSON, imported modules) without pickling it; only the results travel back.

Forking is safe only in a process with a single thread (a thread holding a lock at the fork leaves it
locked forever in the child), so callers ask `fork_is_safe()` first and run in one process otherwise
(the app, whose worker threads run its evaluations).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any


def fork_is_safe() -> bool:
    """Linux, and no thread but this one (Python's; a foreign thread that ever ran Python counts too)."""
    return sys.platform.startswith("linux") and threading.active_count() == 1


def side_by_side(fn: Callable[..., Any], jobs: Sequence[tuple]) -> list:
    """[fn(*job) for job in jobs], the first here and each other in a forked process at the same time.
    An exception in a process is raised here; a process that dies without a word (killed for memory,
    say) has its job done here afterwards."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    running = []
    for job in jobs[1:]:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=_child, args=(send, fn, job), daemon=True)
        process.start()
        send.close()
        running.append((receive, process, job))
    out = [fn(*jobs[0])] if jobs else []
    for receive, process, job in running:
        try:
            ok, value = receive.recv()
        except EOFError:
            ok, value = True, fn(*job)
        finally:
            receive.close()
            process.join()
        if not ok:
            raise value
        out.append(value)
    return out


def _child(send, fn: Callable[..., Any], job: tuple) -> None:
    try:
        send.send((True, fn(*job)))
    except BaseException as exc:  # noqa: BLE001 - raised again in the parent
        send.send((False, exc))
    finally:
        send.close()
