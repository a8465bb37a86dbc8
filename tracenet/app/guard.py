"""ASGI middleware that keeps the server up: a request body limit and JSON 500s for unexpected errors."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyTooLarge", "GuardMiddleware"]

log = logging.getLogger("tracenet.app")


class BodyTooLarge(HTTPException):
    """Raised while reading a request body past the limit (an HTTPException so FastAPI passes it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request is larger than {_mb(limit)}; upload a smaller image (downscale or "
            "re-encode it as JPEG)",
        )


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


async def _send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Reject bodies over ``max_body_bytes`` with 413 and turn any unhandled exception into a 500 JSON reply.

    The ``Content-Length`` header is checked before reading; chunked bodies are counted while they stream in.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await _send_json(send, 413, BodyTooLarge(limit).detail)
            return

        started = False
        received = 0

        async def counting_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if not started:
                await _send_json(send, 413, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the whole point: the server stays up
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_json(
                    send,
                    500,
                    f"internal error ({exc.__class__.__name__}: {exc}); the server is still running, "
                    "try again or report this message",
                )
