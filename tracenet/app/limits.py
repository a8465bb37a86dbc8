"""What bounds the web app's memory and time: a byte budget for requests in progress and a gate on model jobs.

Why: a 4 KB PNG can declare 36 megapixels, ~100 MB once decoded, and an edit of it needs ~30 bytes per pixel of
working arrays; twenty such requests waiting for the model would hold gigabytes. So every request reserves its
decoded-pixel bytes *before* decoding (the size is read from the file header) from :class:`ByteBudget`, and the
model runs behind :class:`JobGate`, which lets a bounded number of request threads wait for it, so the other
threads stay free for pages and images. Both answer "busy" (HTTP 503) after a bounded wait, never hang.

The per-pixel costs below were measured with ``tracemalloc`` on a 2 MP photo (effect + PNG encoding peaks: blur
30 B/px, replace 14, splash 15, cutout 8); decoding holds Pillow's 4 B/px image next to the 3 B/px array.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DECODE_BYTES_PER_PIXEL", "EDIT_BYTES_PER_PIXEL", "SEGMENT_BYTES_PER_PIXEL", "Busy", "ByteBudget",
           "JobGate", "TooBig"]

DECODE_BYTES_PER_PIXEL = 8
"""Decoding an upload: Pillow's image (up to 4 B/px) plus the ``H x W x 3`` array, with slack."""
SEGMENT_BYTES_PER_PIXEL = 8
"""A segment / clickable request: the full-size mask, its PNG / polygon / RLE encodings, cached masks."""
EDIT_BYTES_PER_PIXEL = 40
"""An edit: the effect's float32 working arrays (blur peaks at 30 B/px) and the encoded result."""


class Busy(RuntimeError):
    """The server is at its configured limit now; the client should retry later (HTTP 503)."""


class TooBig(ValueError):
    """One request needs more than the server allows any request (HTTP 413)."""


class ByteBudget:
    """Bytes of decoded pixels that requests in progress may hold together (``limit``), and per request
    (``per_request``). :meth:`hold` is one request's account; :meth:`Hold.add` waits up to ``wait_s`` for room."""

    def __init__(self, limit: int, *, per_request: int, wait_s: float = 30.0) -> None:
        if limit < 1 or per_request < 1:
            raise ValueError(f"byte limits must be >= 1, got limit={limit}, per_request={per_request}")
        self.limit = int(limit)
        self.per_request = min(int(per_request), self.limit)
        self.wait_s = wait_s
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self) -> Iterator[Hold]:
        """One request's reservations, all released when the block ends."""
        account = Hold(self)
        try:
            yield account
        finally:
            with self._cond:
                self.in_use -= account.held
                self._cond.notify_all()


class Hold:
    """Bytes reserved by one request (see :meth:`ByteBudget.hold`)."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.held = 0

    def add(self, nbytes: int, what: str) -> None:
        """Reserve ``nbytes`` more for ``what`` (named in errors): :class:`TooBig` past the per-request limit,
        :class:`Busy` when other requests hold the budget for longer than ``wait_s``."""
        b = self._budget
        if self.held + nbytes > b.per_request:
            raise TooBig(f"{what} needs {_mib(self.held + nbytes)} of memory to process, more than this server "
                         f"allows one request ({_mib(b.per_request)}); send a smaller image")
        deadline = time.monotonic() + b.wait_s
        with b._cond:
            while b.in_use + nbytes > b.limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(f"the server is busy with other large images ({_mib(b.in_use)} of "
                               f"{_mib(b.limit)} in use); try again in a moment")
                b._cond.wait(left)
            b.in_use += nbytes
            self.held += nbytes


class JobGate:
    """At most ``max_jobs`` request threads at the model at once (running or waiting for its lock); one more
    waits up to ``wait_s`` for a place, then gets :class:`Busy`. Keep it below the server's worker threads so
    that page, image and example requests always find a free thread."""

    def __init__(self, max_jobs: int, *, wait_s: float = 30.0) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        self.max_jobs = max_jobs
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(max_jobs)

    @contextmanager
    def enter(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy(f"the model has been busy for {self.wait_s:g} s ({self.max_jobs} requests at it); try "
                       "again in a moment")
        try:
            yield
        finally:
            self._slots.release()


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MB"
