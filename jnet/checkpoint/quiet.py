"""Orbax's noise, silenced: its absl error logs during a save, and TensorStore's late callbacks.

Orbax runs each operation on an asyncio loop it closes when the operation ends. When one read
or write of a checkpoint fails (a corrupt array, a full disk), TensorStore still completes the
others afterwards and calls back into the closed loop; each callback's
`RuntimeError: Event loop is closed` goes to `sys.unraisablehook`, which prints a traceback
per array. The other arrays' read tasks fail too, and when the garbage collector frees them
asyncio logs `Task exception was never retrieved` with a traceback, one per array, whenever
the collector happens to run. They say nothing the error jnet raises (or the warning it gives)
does not.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator


def _closed_loop_callback(unraisable) -> bool:
    value = unraisable.exc_value
    return isinstance(value, RuntimeError) and str(value) == "Event loop is closed"


def _filtering(previous):
    def hook(unraisable):
        if not _closed_loop_callback(unraisable):
            previous(unraisable)

    hook.jnet_filters_closed_loops = True
    return hook


def ignore_closed_loop_callbacks() -> None:
    """Drops only `RuntimeError("Event loop is closed")` from `sys.unraisablehook`; every other
    unraisable exception goes to the hook that was installed before. Idempotent."""
    if not getattr(sys.unraisablehook, "jnet_filters_closed_loops", False):
        sys.unraisablehook = _filtering(sys.unraisablehook)


class _OrphanedOrbaxTasks(logging.Filter):
    """Drops asyncio's `Task exception was never retrieved` for orbax's own coroutines only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        orphaned = message.startswith("Task exception was never retrieved")
        return not (orphaned and "orbax" in message)


def ignore_orphaned_orbax_tasks() -> None:
    """Filters the `asyncio` logger's reports of orbax's failed, never-awaited read and write
    tasks; every other asyncio message is kept. Idempotent."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _OrphanedOrbaxTasks) for f in logger.filters):
        logger.addFilter(_OrphanedOrbaxTasks())


@contextlib.contextmanager
def absl_errors_silenced() -> Iterator[None]:
    """Orbax logs a failed save's traceback from each of its threads (hundreds of lines);
    the caller raises one error instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
