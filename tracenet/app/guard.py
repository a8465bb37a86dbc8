"""ASGI middleware that keeps the server up: a request body limit, a timeout for slow request bodies, and JSON
500s for unexpected errors."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.exceptions import HTTPException

__all__ = ["BodyTooLarge", "GuardMiddleware", "add_missing_headers", "send_json"]

log = logging.getLogger("tracenet.app")


class BodyTooLarge(HTTPException):
    """Raised while reading a request body past the limit (an HTTPException so FastAPI passes it through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request is larger than {_mb(limit)}; upload a smaller image (downscale or "
            "re-encode it as JPEG)",
        )


class BodyTimeout(HTTPException):
    """Raised when a client sends no part of its request body for ``body_timeout_s`` seconds (slow clients)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s; the connection was closed")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} kB"


def add_missing_headers(message: Any, extra: list[tuple[bytes, bytes]]) -> Any:
    """An ASGI ``http.response.start`` message with the ``extra`` headers (lower-case byte names) appended,
    except those it already sets; other messages unchanged."""
    if message["type"] != "http.response.start":
        return message
    headers = list(message.get("headers") or [])
    present = {k.lower() for k, _ in headers}
    return {**message, "headers": headers + [(k, v) for k, v in extra if k not in present]}


async def send_json(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """Reject bodies over ``max_body_bytes`` with 413, bodies that stall for ``body_timeout_s`` between two
    chunks (or take ``4 * body_timeout_s`` in all) with 408, and turn any unhandled exception into a 500 JSON reply.

    The ``Content-Length`` header is checked before reading; chunked bodies are counted while they stream in.
    """

    def __init__(self, app: Any, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

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
            await send_json(send, 413, BodyTooLarge(limit).detail)
            return

        started = False
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * self.body_timeout_s

        body_done = False

        async def counting_receive() -> Any:
            nonlocal received, body_done
            if body_done:  # after the body only http.disconnect can come: wait for it as long as it takes
                return await receive()
            wait = min(self.body_timeout_s, deadline - loop.time())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(0.0, wait))
            except asyncio.TimeoutError:
                raise BodyTimeout(self.body_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyTimeout) as exc:
            if not started:
                await send_json(send, exc.status_code, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the whole point: the server stays up
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await send_json(
                    send,
                    500,
                    f"internal error ({exc.__class__.__name__}: {exc}); the server is still running, "
                    "try again or report this message",
                )
