"""Mutation testing of the core promise modules with mutmut (not run in CI).

Each module group is mutated against its own fast test files only, one group at a time, in a scratch copy of the
repository (mutmut writes a ``mutants/`` tree there, never here), at low priority:

    pip install -e ".[dev]"
    python scripts/mutation_test.py                       # every group (about an hour on 2 busy cores, mostly
                                                          # the two tracer groups; the others take minutes)
    python scripts/mutation_test.py metrics selection     # some groups
    python scripts/mutation_test.py metrics --recheck results/mutation/summary.json   # that run's survivors only
    python scripts/mutation_test.py --list                # what is mutated against which tests

It prints a kill-rate table per module (markdown) and the surviving mutants' diffs, and writes both to ``--out``
(default ``results/mutation``): ``summary.json``, ``summary.md`` and ``<group>-survivors.diff`` (at most 150
diffs). ``docs/MUTATION.md`` records a measured run and why each remaining survivor is harmless (an equivalent
mutant) where that has been worked out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# group -> (modules to mutate, the fast test files that guard them)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "tracer-rules": (
        ["tracenet/rft/sliding.py", "tracenet/rft/resample.py", "tracenet/rft/rules.py"],
        ["tests/rft/test_pooling_edges.py", "tests/rft/test_rules_and_errors.py", "tests/rft/test_rules_by_op.py",
         "tests/rft/test_rules_bitwise.py", "tests/rft/test_segment_inplace.py", "tests/rft/test_plan_by_hand.py"],
    ),
    "tracer-planner": (  # every planner mutant reaches every case: a few cases of the op-by-op file, one per rule
        ["tracenet/rft/plan.py", "tracenet/rft/dependency.py", "tracenet/rft/regions.py"],
        ["tests/rft/test_rules_and_errors.py", "tests/rft/test_pooling_edges.py"]
        + [f"tests/rft/test_rules_by_op.py::test_every_output_location_equals_the_full_run[{case}]" for case in
           ("conv3_s2_p1", "conv3x5_s21_p12", "maxpool2_ceil", "avgpool3_s2_p1_ceil_nopad", "bilinear_x2",
            "nearest_size", "f_pad_negative", "times_full_map", "chunk_getitem", "squeeze_excite")]
        + ["tests/rft/test_rules_by_op.py::test_macs_of_pools_and_global_products_by_hand",
           "tests/rft/test_dependency.py", "tests/rft/test_plan_by_hand.py"],
    ),
    "selection": (
        ["tracenet/model/postprocess.py", "tracenet/tap/geometry.py"],
        ["tests/model/test_model_postprocess.py", "tests/model/test_selection_rules.py",
         "tests/model/test_selection_edges.py", "tests/tap/test_tap_core.py"],
    ),
    "metrics": (
        ["tracenet/eval/metrics.py", "tracenet/eval/instance.py"],
        ["tests/eval/test_eval_metrics.py", "tests/eval/test_metric_edges.py", "tests/eval/test_instance_edges.py"],
    ),
    "checkpoint-resume": (
        ["tracenet/train/checkpointing.py", "tracenet/train/schedule.py"],
        ["tests/train/test_checkpointing_unit.py", "tests/train/test_checkpointing_edges.py",
         "tests/train/test_train_config.py", "tests/train/test_resume_schedule.py"],
    ),
}

# what mutmut calls each outcome -> our column
OUTCOMES = {"killed": "killed", "survived": "survived", "timeout": "timeout", "no tests": "no_tests",
            "suspicious": "suspicious", "segfault": "killed", "skipped": "skipped",
            "check was interrupted by user": "interrupted", "not checked": "not_checked"}


def _names(listing: str, status: str) -> list[str]:
    """Mutant names with ``status`` in ``mutmut results --all true`` output."""
    return [line.strip().rpartition(": ")[0] for line in listing.splitlines() if line.strip().endswith(f": {status}")]


def _module_of(mutant: str) -> str:
    """``tracenet.rft.rules.x_f__mutmut_3`` -> ``tracenet/rft/rules.py`` (mutmut names functions ``x_...`` and
    methods ``x\u01c1Class\u01c1method``)."""
    parts = []
    for part in mutant.split("."):
        if part.startswith(("x_", "x\u01c1")):
            break
        parts.append(part)
    return "/".join(parts) + ".py"


def _copy_repo(dst: Path) -> None:
    """The tracked files (plus untracked, not ignored ones) without the large result folders."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if rel.startswith(("training/", "results/", "docs/", "benchmarks/")):
            continue
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _mutmut_cfg(modules: list[str], tests: list[str]) -> str:
    lines = ["[mutmut]", "source_paths=tracenet", "only_mutate="]
    lines += [f"    {m}" for m in modules]
    lines += ["pytest_add_cli_args_test_selection="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args=", "    -p", "    no:cacheprovider", "    -x", "    -q"]
    return "\n".join(lines) + "\n"


def _digests(modules: list[str]) -> dict[str, str]:
    return {m: hashlib.sha256((ROOT / m).read_bytes()).hexdigest() for m in modules}


def run_group(name: str, work: Path, out: Path, children: int, earlier: dict | None = None) -> dict:
    """Mutate the group's modules and run its tests against every mutant; with ``earlier`` (this group's row of
    an earlier ``summary.json``, same module code) only that run's survivors are run again and the mutants it
    killed count as killed."""
    modules, tests = GROUPS[name]
    recheck: set[str] = set()
    if earlier is not None:
        recheck = set(earlier["survivors"])
        if earlier.get("digests", _digests(modules)) != _digests(modules):
            raise SystemExit(f"{name}: the modules changed since the earlier run; run the whole group again")
    tests = [t for t in tests if (ROOT / t.partition("::")[0]).exists()]
    repo = work / name
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    _copy_repo(repo)
    (repo / "setup.cfg").write_text(_mutmut_cfg(modules, tests))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut puts its mutants/ first itself
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CI="true")
    start = time.time()
    mutmut = [sys.executable, "-m", "mutmut"]
    run = subprocess.run(["nice", "-n", "10", *mutmut, "run", "--max-children", str(children), *sorted(recheck)],
                         cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    minutes = (time.time() - start) / 60
    listing = subprocess.run([*mutmut, "results", "--all", "true"], cwd=repo, env=env, capture_output=True,
                             text=True).stdout
    counts = {v: 0 for v in dict.fromkeys(OUTCOMES.values())}
    per_module = {m: dict(counts) for m in modules}
    survivors = []
    for line in listing.splitlines():
        mutant, _, status = line.strip().rpartition(": ")
        if not mutant:
            continue
        if recheck and mutant not in recheck:
            status = "killed"  # by the earlier run
        counts[OUTCOMES.get(status, "not_checked")] += 1
        per_module.setdefault(_module_of(mutant), dict.fromkeys(counts, 0))[OUTCOMES.get(status, "not_checked")] += 1
        if status in ("survived", "no tests", "timeout", "suspicious"):
            survivors.append(mutant)
    # `mutmut show` starts a process per mutant: only for the true survivors, and at most 150 of them
    shown = [m for m in survivors if m in set(_names(listing, "survived"))][:150]
    diffs = [subprocess.run([*mutmut, "show", m], cwd=repo, env=env, capture_output=True, text=True).stdout
             for m in shown]
    (out / f"{name}-survivors.diff").write_text("\n".join(diffs))
    total = sum(counts.values())
    killed = counts["killed"]
    row = {"group": name, "modules": modules, "tests": tests, "mutants": total, **counts,
           "kill_rate": killed / total if total else None, "minutes": round(minutes, 1),
           "mutmut_exit": run.returncode, "survivors": survivors, "digests": _digests(modules),
           "rechecked": len(recheck),
           "per_module": {m: {**c, "mutants": sum(c.values())} for m, c in per_module.items()}}
    if run.returncode != 0:
        row["mutmut_stderr_tail"] = run.stderr[-2000:]
    return row


def _rate(killed: int, total: int) -> str:
    return "-" if not total else f"{100 * killed / total:.1f}%"


def _table(rows: list[dict]) -> str:
    """One line per mutated module, then the group's total with its wall time."""
    head = ("| group | module | mutants | killed | survived | no tests | timeout | kill rate | minutes |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    body = ""
    for r in rows:
        for module, c in r["per_module"].items():
            body += (f"| {r['group']} | `{module.removeprefix('tracenet/')}` | {c['mutants']} | {c['killed']} | "
                     f"{c['survived']} | {c['no_tests']} | {c['timeout']} | {_rate(c['killed'], c['mutants'])} | |\n")
        body += (f"| {r['group']} | all | {r['mutants']} | {r['killed']} | {r['survived']} | {r['no_tests']} | "
                 f"{r['timeout']} | {_rate(r['killed'], r['mutants'])} | {r['minutes']} |\n")
    return head + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("groups", nargs="*", help=f"groups to run (default: all of {', '.join(GROUPS)})")
    ap.add_argument("--list", action="store_true", help="print the groups, their modules and tests, and exit")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "mutation")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--children", type=int, default=1, help="parallel mutmut workers (default 1: shared machine)")
    ap.add_argument("--recheck", type=Path, default=None, metavar="SUMMARY_JSON",
                    help="run only the survivors of an earlier run (its summary.json; the mutated modules unchanged) "
                         "against the current tests, counting the mutants it killed as killed")
    args = ap.parse_args(argv)
    if args.list:
        for name, (modules, tests) in GROUPS.items():
            print(f"{name}:\n  mutate: {' '.join(modules)}\n  tests:  {' '.join(tests)}")
        return 0
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    if shutil.which("nice") is None:
        ap.error("needs the `nice` command")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tracenet-mutation-"))
    rows = []
    for name in args.groups or list(GROUPS):
        print(f"[mutation] {name} ...", flush=True)
        earlier = None
        if args.recheck is not None:
            earlier = {r["group"]: r for r in json.loads(args.recheck.read_text())["groups"]}.get(name)
            if earlier is None:
                ap.error(f"{args.recheck} has no group {name}")
        rows.append(run_group(name, work, args.out, args.children, earlier))
        r = rows[-1]
        print(f"[mutation] {name}: {r['killed']}/{r['mutants']} killed in {r['minutes']} min", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    table = _table(rows)
    print(table)
    (args.out / "summary.md").write_text(f"Measured at commit {commit} (plus uncommitted changes, if any).\n\n{table}")
    (args.out / "summary.json").write_text(json.dumps({"commit": commit, "groups": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
