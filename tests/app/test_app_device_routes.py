"""What the server gives the page's on-device mode: the export's files, cross-origin isolation headers on every
response, a CSP the page works under (unless another layer set one), and `tracenet app --onnx` handling."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from tracenet.app.device import DEVICE_CSP, ISOLATION_HEADERS, IsolationHeaders, default_export


@pytest.fixture(scope="module")
def device_client():
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    with TestClient(create_app(), base_url="http://127.0.0.1") as c:  # default model: the export is served
        yield c


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/device/worker.js", "/api/health",
                                  "/static/vendor/onnxruntime-web/ort.wasm.bundle.min.mjs", "/api/nothing"])
def test_every_response_is_cross_origin_isolated(device_client, path):
    r = device_client.get(path)
    for name, value in ISOLATION_HEADERS.items():
        assert r.headers[name] == value, (path, name)
    assert r.headers["content-security-policy"] == DEVICE_CSP
    assert "script-src 'self' 'wasm-unsafe-eval'" in DEVICE_CSP and "connect-src 'self'" in DEVICE_CSP


def test_module_scripts_and_wasm_have_their_types(device_client):
    vendor = "/static/vendor/onnxruntime-web"
    assert device_client.get(f"{vendor}/ort.wasm.bundle.min.mjs").headers["content-type"].startswith("text/javascript")
    r = device_client.get(f"{vendor}/ort-wasm-simd-threaded.wasm")
    assert r.headers["content-type"] == "application/wasm" and r.content[:4] == b"\0asm"
    assert "MIT License" in device_client.get(f"{vendor}/LICENSE").text


def test_the_export_is_served_as_shipped(device_client):
    contract = device_client.get("/api/device/model.json").json()
    shipped = json.loads((default_export() / "model.json").read_text())
    assert contract.pop("zoom") is not None  # the server's own setting (tests/app/test_device_js_zoom.py)
    assert contract == shipped | {"encoder_url": "/api/device/encoder.onnx", "decoder_url": "/api/device/decoder.onnx"}
    for name in ("encoder.onnx", "decoder.onnx"):
        assert device_client.get(contract[name.replace(".onnx", "_url")]).content == (default_export() / name).read_bytes()
    r = device_client.get("/api/device/default.safetensors")
    assert r.status_code == 404 and "encoder.onnx" in r.json()["detail"]


def test_a_server_without_an_export_says_why(helpers):
    from fastapi.testclient import TestClient

    from tracenet.app import create_app

    with TestClient(create_app(lambda: helpers.FloodFillSegmenter()), base_url="http://127.0.0.1") as c:
        for path in ("/api/device/model.json", "/api/device/encoder.onnx"):
            r = c.get(path)
            assert r.status_code == 404 and "tracenet app --onnx" in r.json()["detail"]


def test_a_csp_set_elsewhere_is_kept():
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.get("/own")
    def own() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src 'none'"})

    app.add_middleware(IsolationHeaders)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.get("/own")
    assert r.headers["content-security-policy"] == "default-src 'none'"
    assert r.headers["cross-origin-embedder-policy"] == "require-corp"


def _args(argv: list[str]) -> argparse.Namespace:
    from tracenet.app.command import add_arguments

    parser = argparse.ArgumentParser(prog="tracenet app")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_app_onnx_option(monkeypatch, tmp_path, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    from tracenet.app.command import run

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app))
    export = tmp_path / "export"
    shutil.copytree(default_export(), export)
    assert run(_args(["--onnx", str(export)])) == 0
    assert any(getattr(r, "path", "") == "/api/device/model.json" for r in seen["app"].routes)
    (export / "decoder.onnx").write_bytes(b"not a graph")
    assert run(_args(["--onnx", str(export)])) == 2
    err = capsys.readouterr().err
    assert "--onnx" in err and "decoder.onnx" in err and "sha256 differs" in err
