"""``tracenet app``: serve the tap-to-segment web app locally.

Examples::

    tracenet app                         # http://127.0.0.1:7860, bundled model
    tracenet app --port 8000 --checkpoint runs/r50/model.safetensors
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import math
import sys
from pathlib import Path

from tracenet.app.security import LOOPBACK_HOSTS

__all__ = ["add_arguments", "limit_malloc_arenas", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``tracenet app`` options to ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the bundled model)")
    parser.add_argument(
        "--onnx",
        type=Path,
        help="ONNX export the page runs on the device (`tracenet export --format onnx`; default: the bundled "
        "model's export when no --checkpoint is given, else none: server mode only)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest accepted upload in MB (default 20)"
    )
    parser.add_argument(
        "--max-megapixels", type=float, default=40.0, help="largest accepted image in megapixels (default 40)"
    )
    parser.add_argument("--max-store-mb", type=float, default=512.0,
                        help="memory for opened images and their cached masks, MB (default 512)")
    parser.add_argument("--max-request-mb", type=float, default=768.0,
                        help="memory one request may need for decoded pixels, MB (default 768: a 40 MP segment, "
                        "a 16 MP edit)")
    parser.add_argument("--max-work-mb", type=float, default=1024.0,
                        help="memory all requests in progress may need together, MB (default 1024)")
    parser.add_argument("--max-jobs", type=int, default=2, help="request threads at the model at once (default 2)")
    parser.add_argument("--max-taps", type=int, default=16, help="taps in one edit request (default 16)")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="also answer to this host name (e.g. the machine's name when binding 0.0.0.0)")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; returns the process exit code (2 when the app's dependencies are missing)."""
    try:
        import uvicorn

        from tracenet.app.server import create_app
    except ImportError as exc:
        print(
            f"tracenet app: error: {exc.name or exc} is not installed; install the app extras with "
            "pip install 'tracenet[app]'",
            file=sys.stderr,
        )
        return 2
    problem = _check_numbers(args)
    if problem:
        print(f"tracenet app: error: {problem}", file=sys.stderr)
        return 2
    if args.checkpoint is not None and not args.checkpoint.is_file():
        print(f"tracenet app: error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    allowed_hosts = _allowed_hosts(args.host, args.allow_host)
    if args.host not in LOOPBACK_HOSTS:
        print(
            f"tracenet app: warning: binding {args.host}: other machines on the network can use this server"
            + ("" if allowed_hosts is not None else "; it answers to any host name (--allow-host NAME limits it)"),
            file=sys.stderr,
        )
    limit_malloc_arenas()  # before the model and the worker threads start

    checkpoint = None if args.checkpoint is None else str(args.checkpoint)
    from tracenet.app.device import ContractError, default_export

    onnx = args.onnx if args.onnx is not None else (default_export() if checkpoint is None else None)
    if onnx is None:
        print("tracenet app: note: no --onnx export for this checkpoint; the page segments on the server only",
              file=sys.stderr)

    def factory() -> object:
        import tracenet

        return tracenet.load(checkpoint)

    try:
        app = create_app(
            factory,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=int(args.max_megapixels * 1e6),
            max_store_bytes=int(args.max_store_mb * 2**20),
            max_request_bytes=int(args.max_request_mb * 2**20),
            max_work_bytes=int(args.max_work_mb * 2**20),
            max_jobs=args.max_jobs,
            max_threads=args.max_jobs + 2,
            max_taps=args.max_taps,
            allowed_hosts=allowed_hosts,
            warm_up=True,
            device_model=onnx,
        )
    except ContractError as exc:
        print(f"tracenet app: error: --onnx: {exc}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"tracenet app: open http://{shown}:{args.port}/ in a browser (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_keep_alive=5,
                limit_concurrency=MAX_CONNECTIONS)
    return 0


MAX_CONNECTIONS = 64
"""Open connections uvicorn serves at once; more get 503 (bounds raw request bodies held in memory)."""

LIMITS = {  # flag: (attribute, largest accepted value)
    "--max-upload-mb": ("max_upload_mb", 1024.0),
    "--max-megapixels": ("max_megapixels", 1000.0),
    "--max-store-mb": ("max_store_mb", 1 << 20),
    "--max-request-mb": ("max_request_mb", 1 << 20),
    "--max-work-mb": ("max_work_mb", 1 << 20),
    "--max-jobs": ("max_jobs", 256),
    "--max-taps": ("max_taps", 10_000),
}


def _check_numbers(args: argparse.Namespace) -> str | None:
    """What is wrong with the numeric options, or None."""
    if not 0 < args.port < 65536:
        return f"--port must be in 1..65535, got {args.port}"
    for flag, (name, top) in LIMITS.items():
        value = getattr(args, name)
        if not (math.isfinite(value) and 0 < value <= top):
            return f"{flag} must be a number > 0 and at most {top:g}, got {value}"
    if args.max_request_mb > args.max_work_mb:
        return f"--max-request-mb ({args.max_request_mb:g}) must not exceed --max-work-mb ({args.max_work_mb:g})"
    return None


def _allowed_hosts(host: str, extra: list[str]) -> frozenset[str] | None:
    """Host names the server answers to: loopback names, the bound address and ``--allow-host`` names; None
    (any name) for a wildcard bind (0.0.0.0, ::) without ``--allow-host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        return None if not extra else LOOPBACK_HOSTS | set(extra)
    return LOOPBACK_HOSTS | {host, *extra}


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``; what ``MALLOC_ARENA_MAX=2`` does at start-up).

    glibc gives each thread that allocates its own arena, up to 8 per core, and keeps freed memory in them: under
    load the server's worker threads, each running the model, grew RSS by ~1.5 GB. Must run before those
    threads start. Returns False where it does not apply (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-8, arenas))  # -8 = M_ARENA_MAX
