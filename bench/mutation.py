"""Mutation score of the pure measuring core, one module at a time.

    python -m bench.mutation [--modules=stats,windows,verdict,schedule,search,placement,cost,demand,prices]

For each module, small realistic bugs (a `>=` turned into `>`, a constant off by one, an `and`
turned into `or`, a string changed, …) are made one at a time by mutmut, and the module's own
tests run against each; a mutant the tests do not fail on *survives*. The score is the share
killed (failed tests, or a timeout: the mutant hung) out of all mutants, with mutants no test
reaches counted as survivors. docs/mutation.md lists the figures and every survivor's reason.

Each module runs in a scratch copy of the package and tests (mutmut writes its mutants there),
removed afterwards, so the checkout is never touched. Only that module is mutated and only its
test files run, which keeps one module to a few minutes on two cores; `--max_children` is how
many mutants run at once; `--min_score=0.9` makes a score below the bar an exit status of 1.
CPU-heavy: on a shared machine run it under `nice -n 19`.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from absl import app
from absl import flags

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Target:
    path: str  # the module's file, relative to the repository root
    tests: tuple[str, ...]  # its test files; those not (yet) in the tree are skipped


TARGETS = {
    "stats": Target(
        "tfs_bench/stats.py",
        ("tests/test_stats.py", "tests/test_stats_edges.py"),
    ),
    "windows": Target(
        "tfs_bench/load/windows.py",
        ("tests/load/test_windows.py", "tests/load/test_windows_edges.py", "tests/load/test_run_files.py"),
    ),
    "verdict": Target(
        "tfs_bench/load/verdict.py",
        ("tests/load/test_windows.py", "tests/load/test_verdict_edges.py", "tests/load/test_run_files.py"),
    ),
    "schedule": Target(
        "tfs_bench/load/schedule.py",
        ("tests/load/test_schedule.py", "tests/load/test_schedule_edges.py", "tests/load/test_schedule_statistics.py"),
    ),
    "search": Target(
        "tfs_bench/load/search.py",
        ("tests/load/test_search.py", "tests/load/test_search_edges.py", "tests/load/test_search_records.py"),
    ),
    "placement": Target(
        "tfs_bench/plan/placement.py",
        ("tests/plan/test_placement.py", "tests/plan/test_placement_edges.py", "tests/plan/test_plan_record.py"),
    ),
    "cost": Target(
        "tfs_bench/analysis/cost.py",
        ("tests/analysis/test_cost.py", "tests/analysis/test_cost_tables.py", "tests/analysis/test_cost_edges.py"),
    ),
    "demand": Target(
        "tfs_bench/analysis/demand.py",
        ("tests/analysis/test_demand.py",),
    ),
    "prices": Target(
        "tfs_bench/analysis/prices.py",
        ("tests/analysis/test_prices.py",),
    ),
}

_MODULES = flags.DEFINE_list("modules", list(TARGETS), f"Modules to mutate, of {', '.join(TARGETS)}.")
_MAX_CHILDREN = flags.DEFINE_integer("max_children", 1, "Mutants tested at once.", lower_bound=1)
_SURVIVORS = flags.DEFINE_bool("survivors", True, "List each surviving mutant's name.")
_DIFFS = flags.DEFINE_bool("diffs", False, "Also print each surviving mutant's diff.")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the figures as JSON here.")
_MIN_SCORE = flags.DEFINE_float(
    "min_score", None, "Exit with status 1 when a module scores below this (0.9 is the core's bar).",
    lower_bound=0.0, upper_bound=1.0,
)

# How mutmut names each outcome (`mutmut results --all true`); the score counts these as killed.
KILLED_STATUSES = frozenset({"killed", "timeout", "caught by type check"})
NOT_RUN_STATUSES = frozenset({"skipped"})
_RESULT_LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")
# Bugs that make a test loop or recurse still end: a mutant gets (its tests' time + 1 s) × 5 × 2
# CPU seconds before it counts as a timeout, instead of mutmut's ×15, which would spend minutes
# on each such mutant.
_CONFIG = """\
[mutmut]
source_paths = tfs_bench
also_copy =
    configs
only_mutate = {path}
timeout_multiplier = 5.0
pytest_add_cli_args =
    -p
    no:cacheprovider
    -m
    not slow
pytest_add_cli_args_test_selection =
{tests}
"""


@dataclasses.dataclass(frozen=True)
class ModuleScore:
    module: str
    path: str
    tests: tuple[str, ...]
    statuses: dict[str, int]  # mutmut status -> mutants
    survivors: dict[str, str]  # mutant not killed -> its status (survived, no tests, suspicious, …)

    @property
    def mutants(self) -> int:
        return sum(n for s, n in self.statuses.items() if s not in NOT_RUN_STATUSES)

    @property
    def killed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s in KILLED_STATUSES)

    @property
    def score(self) -> float:
        return self.killed / self.mutants if self.mutants else 1.0

    def to_json(self) -> dict:
        return {
            "module": self.module,
            "path": self.path,
            "tests": list(self.tests),
            "mutants": self.mutants,
            "killed": self.killed,
            "score": self.score,
            "statuses": dict(sorted(self.statuses.items())),
            "survivors": self.survivors,
        }


def _mutmut(args: list[str], cwd: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    # The library's own entry point: `python -m mutmut` would import its main module twice.
    code = "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # import the scratch copy only
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=stdout, stderr=subprocess.STDOUT, text=True
    )


def _scratch_copy(target: Target, tests: tuple[str, ...], scratch: Path) -> None:
    for name in ("tfs_bench", "tests", "configs"):  # configs: the price table some tests read
        shutil.copytree(REPO_ROOT / name, scratch / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO_ROOT / "pyproject.toml", scratch / "pyproject.toml")  # pytest's settings
    tests_cfg = "\n".join(f"    {t}" for t in tests)
    (scratch / "setup.cfg").write_text(_CONFIG.format(path=target.path, tests=tests_cfg))


def parse_results(text: str) -> dict[str, str]:
    """`mutmut results --all true` -> {mutant name: status}."""
    results = {}
    for line in text.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            results[match["name"]] = match["status"].strip()
    return results


def _natural(item: tuple[str, str]) -> tuple[str, int]:
    """Orders mutants of a function by number (…_mutmut_2 before …_mutmut_10)."""
    stem, _, number = item[0].rpartition("_")
    return (stem, int(number)) if number.isdigit() else (item[0], 0)


def measure(module: str, target: Target, max_children: int, diffs: bool) -> ModuleScore:
    tests = tuple(t for t in target.tests if (REPO_ROOT / t).is_file())
    if not tests:  # with no selection, mutmut would run the whole suite against every mutant
        raise RuntimeError(f"none of the test files of {module} exist: {', '.join(target.tests)}")
    with tempfile.TemporaryDirectory(prefix=f"mutation.{module}.") as tmp:
        scratch = Path(tmp)
        _scratch_copy(target, tests, scratch)
        with open(scratch / "run.log", "w") as log:  # a progress spinner; kept only for errors
            run = _mutmut(["run", "--max-children", str(max_children)], scratch, stdout=log)
        if run.returncode != 0:
            tail = (scratch / "run.log").read_text()[-4000:]
            raise RuntimeError(f"mutmut run failed for {module} (exit {run.returncode}):\n{tail}")
        listing = _mutmut(["results", "--all", "true"], scratch)
        results = parse_results(listing.stdout)
        if listing.returncode != 0 or not results:
            raise RuntimeError(f"no mutation results for {target.path}:\n{listing.stdout[-4000:]}")
        survivors = {
            n: s for n, s in sorted(results.items(), key=_natural) if s not in KILLED_STATUSES | NOT_RUN_STATUSES
        }
        if diffs:
            for name in survivors:
                print(_mutmut(["show", name], scratch).stdout, flush=True)
    return ModuleScore(module, target.path, tests, dict(collections.Counter(results.values())), survivors)


def format_score(s: ModuleScore) -> str:
    others = ", ".join(f"{n} {status}" for status, n in sorted(s.statuses.items()) if status != "killed")
    return (
        f"{s.module:>10}  {s.path:<28} {s.killed:4d}/{s.mutants:<4d} killed  {s.score:6.1%}"
        + (f"  ({others})" if others else "")
    )


def main(argv):
    del argv
    unknown = sorted(set(_MODULES.value) - set(TARGETS))
    if unknown:
        raise app.UsageError(f"unknown --modules {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if importlib.util.find_spec("mutmut") is None:
        raise app.UsageError("mutmut is not installed: python3 -m pip install -r requirements.txt")
    scores, broken = [], []
    for module in _MODULES.value:
        try:
            score = measure(module, TARGETS[module], _MAX_CHILDREN.value, _DIFFS.value)
        except RuntimeError as e:  # the other modules' figures are still worth having
            print(f"{module:>10}  not measured: {e}", flush=True)
            broken.append(module)
            continue
        scores.append(score)
        print(format_score(score), flush=True)
        if _SURVIVORS.value:
            for name, status in score.survivors.items():
                print(f"{'':>12}{status}: {name}", flush=True)
    if _OUTPUT.value:
        Path(_OUTPUT.value).write_text(json.dumps([s.to_json() for s in scores], indent=2) + "\n")
    low = [s.module for s in scores if _MIN_SCORE.value is not None and s.score < _MIN_SCORE.value]
    if low:
        print(f"below {_MIN_SCORE.value:.0%}: {', '.join(low)}", flush=True)
    if broken:
        print(f"not measured: {', '.join(broken)}", flush=True)
    return 1 if low or broken else 0


if __name__ == "__main__":
    app.run(main)
