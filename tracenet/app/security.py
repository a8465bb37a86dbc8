"""ASGI middleware against cross-site use of the local server: Host and Origin checks, hardening headers.

A web page the user visits can make the browser send requests to ``http://127.0.0.1:7860`` (cross-site
request forgery) or point its own host name at 127.0.0.1 (DNS rebinding). So:

- the ``Host`` header must name this server: by default only loopback names (``127.0.0.1``, ``localhost``,
  ``[::1]``), plus whatever the user binds to on purpose (``tracenet app --host``, ``--allow-host``); anything
  else is 403. ``allowed_hosts=None`` accepts any host (only for a deliberate public bind to ``0.0.0.0``);
- a request that carries an ``Origin`` header (browsers send one on every cross-origin request and on every
  POST) must come from this same server (scheme-less ``host:port`` equal to ``Host``), else 403; so must one
  marked ``Sec-Fetch-Site: cross-site``, except plain GETs of the page itself;
- every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, a Content-Security-Policy
  that allows only the app's own scripts, styles, images and connections (plus ``data:`` / ``blob:`` images for
  masks and downloads, and WebAssembly compilation, ``'wasm-unsafe-eval'``, for the on-device mode's
  onnxruntime-web; it allows no JavaScript ``eval``) and no framing, ``Referrer-Policy: no-referrer`` and
  ``Cross-Origin-Resource-Policy: same-origin``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tracenet.app.guard import add_missing_headers, send_json

__all__ = ["LOOPBACK_HOSTS", "SECURITY_HEADERS", "SecurityMiddleware", "host_name"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def host_name(netloc: str) -> str:
    """``"127.0.0.1:7860"`` -> ``"127.0.0.1"``, ``"[::1]:80"`` -> ``"::1"``, lower case; ``""`` if unparsable."""
    try:
        return (urlsplit(f"//{netloc}").hostname or "").lower()
    except ValueError:
        return ""


class SecurityMiddleware:
    """Refuse requests for other host names or from other origins (403); add the hardening headers."""

    def __init__(self, app: Any, allowed_hosts: frozenset[str] | set[str] | None = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else frozenset(h.lower().strip("[]") for h in allowed_hosts)

    def _refusal(self, scope: Any) -> str | None:
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get(b"host", "")
        if self.allowed is not None and host_name(host) not in self.allowed:
            return (f"this server answers only to {', '.join(sorted(self.allowed))}, not to the host {host!r} "
                    "(start it with --allow-host NAME to add a name)")
        origin = headers.get(b"origin")
        if origin is not None:
            parts = urlsplit(origin) if origin != "null" else None
            if parts is None or parts.netloc.lower() != host.lower():
                return f"cross-origin request from {origin!r} refused; use the app's own page"
        elif headers.get(b"sec-fetch-site") == "cross-site" and scope.get("method") != "GET":
            return "cross-site request refused; use the app's own page"
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            await send(add_missing_headers(message, SECURITY_HEADERS))

        refusal = self._refusal(scope)
        if refusal is not None:
            await send_json(with_headers, 403, refusal)
            return
        await self.app(scope, receive, with_headers)
