"""Keep freed feature maps for reuse instead of handing them back to the system (glibc malloc only).

PyTorch on CPU allocates every tensor with ``malloc``. glibc serves blocks above its mmap threshold (at most 32 MB
by default) with a fresh ``mmap`` and unmaps them on free, so every large feature map of every run starts as
untouched pages and pays a page fault per 4 KiB on first write. At a 1024x768 input most activations are such
blocks: an out-of-place ReLU on a 96x384x512 float map took 74 ms that way and 12 ms once freed memory is
reused (one thread, measured on this project's machine); a convolution producing it 143 -> 105 ms. Both the
traced and the full run gain (this is process-wide); the price is that the process keeps its peak heap
(about the largest run's activations) instead of returning it.

Set ``TRACENET_SYSTEM_MALLOC=1`` to leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DONE: bool | None = None


def reuse_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold_bytes`` (once per process). Returns whether malloc
    now reuses freed blocks below that size (``False`` on other C libraries, or when ``TRACENET_SYSTEM_MALLOC``
    is set)."""
    global _DONE
    if _DONE is not None:
        return _DONE
    _DONE = False
    if os.environ.get("TRACENET_SYSTEM_MALLOC", "") not in ("", "0"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _DONE = bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes))
    return _DONE
