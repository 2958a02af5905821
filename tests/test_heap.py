"""The app's worker threads share the few malloc arenas it allows, instead of one arena each."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from tutor.app.heap import limit_arenas

# A fresh process (arenas, once created, stay): eight threads allocate at once, then glibc lists its arenas.
ARENAS = """
import ctypes, sys, threading
from tutor.app.heap import limit_arenas
limit_arenas(int(sys.argv[1]))
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(20000):
        libc.free(libc.malloc(1000))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, out)
libc.fclose(out)
"""


def glibc() -> bool:
    try:
        ctypes.CDLL("libc.so.6").malloc_info
    except (OSError, AttributeError):
        return False
    return True


def arenas_after_eight_threads(limit: int, tmp_path: Path) -> int:
    report = tmp_path / f"malloc_info-{limit}.xml"
    subprocess.run([sys.executable, "-c", ARENAS, str(limit), str(report)], check=True, timeout=60)
    return report.read_text().count("<heap nr=")


@pytest.mark.skipif(not glibc(), reason="needs glibc (mallopt, malloc_info)")
@pytest.mark.parametrize("limit", [1, 2])
def test_worker_threads_share_the_limited_arenas(limit: int, tmp_path: Path) -> None:
    assert arenas_after_eight_threads(limit, tmp_path) == limit


@pytest.mark.skipif(not glibc(), reason="needs glibc (mallopt, malloc_info)")
def test_no_limit_leaves_glibc_alone(tmp_path: Path) -> None:
    assert limit_arenas(0) is False
    assert arenas_after_eight_threads(0, tmp_path) > 2  # glibc's default: an arena per busy thread
