"""reuse_freed_memory: once per process, off with TRACENET_SYSTEM_MALLOC, a no-op where malloc is not glibc's."""

from __future__ import annotations

import os
import subprocess
import sys

import tracenet.rft.allocator as allocator


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("TRACENET_SYSTEM_MALLOC", None)
    if env_value is not None:
        env["TRACENET_SYSTEM_MALLOC"] = env_value
    # the module loaded from its file alone (the package would import torch: seconds per subprocess)
    code = ("import importlib.util as u; s = u.spec_from_file_location('allocator', %r); m = u.module_from_spec(s); "
            "s.loader.exec_module(m); print(m.reuse_freed_memory(), m.reuse_freed_memory())" % allocator.__file__)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout.split()


def test_switched_off_by_the_environment() -> None:
    assert _run("1") == ["False", "False"]


def test_once_per_process_and_on_for_glibc() -> None:
    first, second = _run(None)
    assert first == second  # the second call answers what the first did
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if sys.platform.startswith("linux") and libc and libc.startswith("glibc"):
        assert first == "True"


def test_no_mallopt_means_false(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_DONE", None)
    monkeypatch.delenv("TRACENET_SYSTEM_MALLOC", raising=False)

    class NoMallopt:
        def __init__(self, *_a, **_k) -> None:
            pass

        def __getattr__(self, name: str):
            raise AttributeError(name)

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.reuse_freed_memory() is False
