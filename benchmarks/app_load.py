"""Load test of the web app on loopback: N clients for T seconds; server RSS before / after / peak and latency.

    python benchmarks/app_load.py --clients 20 --seconds 60                        # this tree, as shipped
    git archive main | tar -x -C /tmp/base                                          # another version ...
    python benchmarks/app_load.py --clients 20 --seconds 60 --baseline /tmp/base   # ... measured in the same run

Starts the server in a child process on 127.0.0.1 (a free port), waits until the bundled model is loaded, sends
one request of each kind, then reads the child's RSS ("before"). Each client opens one of the bundled example
photos and loops until the time is up: a tap at a random pixel (``/api/segment``, PNG mask), and every tenth
request a blur edit of the last tap (``/api/edit`` by image id). RSS is read again when the clients stop ("after";
"peak" is the kernel's high-water mark VmHWM). Prints one table row per configuration: requests, errors (any
status other than 200; 503 "busy" counts as an error), p50 / p95 latency.

Rows: ``this tree`` = ``create_app`` defaults after ``limit_malloc_arenas()`` (what ``tracenet app`` runs);
``baseline`` = the checkout given with ``--baseline``, served by its own ``create_app(warm_up=True)``.
Everything stays on 127.0.0.1 and ends when the time is up (the child is killed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {"cat.png": (451, 300), "coffee.png": (512, 384), "astronaut.png": (512, 512)}

SERVER = """
import sys, uvicorn
from tracenet.app.server import create_app
try:
    from tracenet.app.command import limit_malloc_arenas
    limit_malloc_arenas()
except ImportError:  # a baseline from before the arena cap
    pass
uvicorn.run(create_app(warm_up=True), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def _post(url: str, fields: dict[str, str], timeout: float = 120) -> tuple[int, bytes]:
    data = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _client(base: str, seed: int, until: float, latencies: list[float], errors: list[str]) -> None:
    rng = random.Random(seed)
    name = list(EXAMPLES)[seed % len(EXAMPLES)]
    w, h = EXAMPLES[name]
    status, body = _post(f"{base}/api/images", {"example": name})
    if status != 200:
        errors.append(f"open {status}: {body[:200]!r}")
        return
    image_id = json.loads(body)["image_id"]
    k = 0
    while time.monotonic() < until:
        x, y = rng.randrange(w), rng.randrange(h)
        t0 = time.perf_counter()
        if k % 10 == 9:
            status, body = _post(f"{base}/api/edit", {"image_id": image_id, "taps": f"{x},{y}", "effect": "blur"})
            ok = status in (200, 422)  # 422: nothing found at a random tap is a correct answer
        else:
            status, body = _post(f"{base}/api/segment", {"image_id": image_id, "x": str(x), "y": str(y)})
            ok = status == 200
        latencies.append((time.perf_counter() - t0) * 1e3)
        if not ok:
            errors.append(f"{status}: {body[:200]!r}")
        k += 1


def run_config(config: str, tree: Path, clients: int, seconds: float) -> dict:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(tree))
    child = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=tree)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=5) as r:
                    if json.loads(r.read())["model_loaded"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"the {config} server did not start")
            time.sleep(0.5)
        _client(base, 0, time.monotonic() + 1.0, [], [])  # one of each request kind before measuring
        before = _rss_mb(child.pid)
        latencies: list[float] = []
        errors: list[str] = []
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=_client, args=(base, i, until, latencies, errors)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after, peak = _rss_mb(child.pid), _rss_mb(child.pid, "VmHWM")
    finally:
        child.kill()
        child.wait()
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    return {"config": config, "clients": clients, "seconds": seconds, "requests": len(latencies),
            "errors": len(errors), "first_errors": errors[:3], "rss_before_mb": before, "rss_after_mb": after,
            "rss_peak_mb": peak, "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p95_ms": q[18]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--baseline", type=Path, help="a checkout of another version to measure in the same run")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.seconds <= 600):
        parser.error("--clients must be in 1..200 and --seconds in 1..600 (this is a bounded test)")
    trees = [("this tree", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    rows = [run_config(name, tree, args.clients, args.seconds) for name, tree in trees]
    print(f"\n{args.clients} clients for {args.seconds:g} s on 127.0.0.1; {os.cpu_count()} CPUs\n")
    print("| config | requests | errors | RSS before (MB) | RSS after (MB) | growth (MB) | peak (MB) | p50 (ms) | p95 (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['requests']} | {r['errors']} | {r['rss_before_mb']:.0f} | {r['rss_after_mb']:.0f} "
              f"| {r['rss_after_mb'] - r['rss_before_mb']:+.0f} | {r['rss_peak_mb']:.0f} | {r['p50_ms']:.0f} "
              f"| {r['p95_ms']:.0f} |")
        for e in r["first_errors"]:
            print(f"  {r['config']} error: {e}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
