"""Heap arenas for the long-running app: how many glibc may create for its worker threads.

glibc gives threads that allocate at the same time arenas of their own, up to 8 per core, and what is
freed stays in the arena it came from, so under load the app keeps the high-water mark of every
arena: RSS crept up about 2 MB/min at N = 20 with memory in use flat (docs/load.md, "Memory over
ten minutes"). `limit_arenas()` caps them once at start-up, before Gradio starts its threads. It does
not find or fix leaks (a leak is memory in use, not free), and it is a no-op where the C library is
not glibc (macOS, musl, Windows).
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_arenas(count: int) -> bool:
    """Let glibc create at most `count` malloc arenas (0 leaves its default); True when glibc accepted it.

    Arenas already created stay; threads started afterwards share them."""
    if count <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))
