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


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--max-megapixels", "inf"], "--max-megapixels must be a number > 0"),
        (["--max-megapixels", "nan"], "--max-megapixels must be a number > 0"),
        (["--max-upload-mb", "-5"], "--max-upload-mb must be a number > 0"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be a number > 0"),
        (["--max-jobs", "0"], "--max-jobs must be a number > 0"),
        (["--max-taps", "-1"], "--max-taps must be a number > 0"),
        (["--max-request-mb", "2048", "--max-work-mb", "1024"], "must not exceed --max-work-mb"),
    ],
)
def test_bad_limits_exit_2_before_serving(argv, words, monkeypatch, capsys):
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("served with a bad limit"))
    assert run(_args(argv)) == 2
    assert words in capsys.readouterr().err


def test_limits_reach_the_app_and_uvicorn(monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert run(_args(["--max-store-mb", "64", "--max-request-mb", "100", "--max-work-mb", "200", "--max-jobs", "2",
                      "--max-taps", "3"])) == 0
    state = seen["app"].state
    assert state.store.max_bytes == 64 << 20
    assert (state.budget.per_request, state.budget.limit) == (100 << 20, 200 << 20)
    assert seen["timeout_keep_alive"] == 5 and seen["limit_concurrency"] >= 16


@pytest.mark.parametrize(
    ("host", "extra", "allowed"),
    [
        ("127.0.0.1", [], {"127.0.0.1", "localhost", "::1"}),
        ("192.168.1.5", [], {"127.0.0.1", "localhost", "::1", "192.168.1.5"}),
        ("0.0.0.0", [], None),  # a deliberate public bind answers to any name (with a warning)
        ("0.0.0.0", ["my-box.lan"], {"127.0.0.1", "localhost", "::1", "my-box.lan"}),
    ],
)
def test_allowed_hosts_follow_the_bind_address(host, extra, allowed):
    from tracenet.app.command import _allowed_hosts

    assert _allowed_hosts(host, extra) == (None if allowed is None else frozenset(allowed))


def test_malloc_arenas_are_capped_on_glibc():
    import platform

    from tracenet.app.command import limit_malloc_arenas

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt(M_ARENA_MAX) is glibc's")
    assert limit_malloc_arenas(8) is True
