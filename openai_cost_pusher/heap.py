"""Give the C heap's free pages back to the system once a cycle lets a day go.

A cycle holds a data set's window of tables (one float array per day, some 1.6 MB
each at 10,000 projects), a day's samples and the parsed results batches, and lets
each day go once it has landed. glibc keeps what is freed between blocks still live
as free memory of the heap, resident until reused: at 10,000 projects with daily
usage the process held 569 MiB after a backfill, and 466 with the free pages
returned (docs/performance.md). `malloc_trim(0)` returns every free whole page of
the heap to the system (it stays mapped, and costs nothing to reuse but the page
faults), in some 3 ms at that size.

Where the C library has no `malloc_trim` (musl, macOS, Windows), trimming does
nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    """Return the C library's `malloc_trim`, or None where it has none."""
    try:
        libc = ctypes.CDLL(None)  # the process' own symbols: its C library's
    except (OSError, TypeError):  # pragma: no cover - Windows takes no None here
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def trimmable() -> bool:
    """Return whether `trim` can return free memory here (glibc)."""
    return _TRIM is not None


def trim() -> None:
    """Return the heap's free whole pages to the system, where the C library can."""
    if _TRIM is not None:
        _TRIM(0)
