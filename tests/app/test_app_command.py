"""`tracenet app` argument handling (the server itself is exercised by the other app tests)."""

from __future__ import annotations

import argparse

import pytest

from tracenet.app.command import add_arguments, run


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tracenet app")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_bind_loopback_7860():
    args = _args([])
    assert (args.host, args.port, args.checkpoint) == ("127.0.0.1", 7860, None)


def test_run_builds_the_app_and_serves_it(monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert run(_args(["--port", "8123", "--max-upload-mb", "5"])) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert any(r.path == "/api/segment" for r in seen["app"].routes)


def test_run_warns_when_binding_all_interfaces(monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    assert run(_args(["--host", "0.0.0.0"])) == 0
    assert "other machines" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["--port", "70000"], "--port"), (["--checkpoint", "/nowhere.safetensors"], "does not exist")],
)
def test_bad_arguments_exit_2(argv, words, capsys):
    assert run(_args(argv)) == 2
    assert words in capsys.readouterr().err
