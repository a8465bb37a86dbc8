"""``tracenet app``: serve the tap-to-segment web app locally.

Examples::

    tracenet app                         # http://127.0.0.1:7860, bundled model
    tracenet app --port 8000 --checkpoint runs/r50/model.safetensors
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


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
    if not 0 < args.port < 65536:
        print(f"tracenet app: error: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    if args.checkpoint is not None and not args.checkpoint.is_file():
        print(f"tracenet app: error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(
            f"tracenet app: warning: binding {args.host}: other machines on the network can use this server",
            file=sys.stderr,
        )

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
            warm_up=True,
            device_model=onnx,
        )
    except ContractError as exc:
        print(f"tracenet app: error: --onnx: {exc}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"tracenet app: open http://{shown}:{args.port}/ in a browser (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
