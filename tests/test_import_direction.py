"""Imports point one way between the stages; read from the sources with ast, nothing is imported.

What counts as importing a module M: `import M` or `import M.sub`; `from M import x` and
`from M.sub import x`; `from P import m` where P.m is M (so `from tfs_bench import load` imports
tfs_bench.load); the relative forms of these; and `importlib.import_module(...)` or
`__import__(...)` with a literal name (an f-string's fields read as `*`). An import inside a
function counts the same as one at the top.

The rules:
- tfs_bench/monitors never imports tfs_bench.load: the load generator uses the monitors.
- tfs_bench/load never imports tfs_bench.run, tfs_bench.analysis or tfs_bench.report: those
  read what a load run writes.
- In tfs_bench/, only tfs_bench/analysis and tfs_bench/report import pandas or matplotlib.
- Nothing in tfs_bench/, bench/ or tests/ imports a binary (a `<package>.__main__` module, e.g.
  `import tfs_bench.load.__main__` or `from tfs_bench.load import __main__`; importing the package
  `tfs_bench.load` or `from tfs_bench.load import config` is fine), except a test module that
  exercises a binary's flags, which is one that also imports tests/binary_flags.py: that helper
  moves a binary's flags off absl's global FLAGS, without which two binaries cannot be imported into
  one process.
- Nothing the load stage imports (tfs_bench/load but `raw_throughput`, which measures TensorFlow
  itself in a child process, and every tfs_bench module those import, transitively) imports
  tensorflow, tensorflow_serving or keras: a generator on a small box or shipped to many nodes
  does not carry TensorFlow.
- Nothing the launch stage imports (tfs_bench/launch, transitively) imports them either: the
  servers it starts run TensorFlow, the process that starts them (tfs_bench.run) need not.
- Nothing in tfs_bench/ imports from tests/ or bench/ (`bench.*`, or a tests/ module by the name
  pytest gives it, e.g. `conftest`, `server_support`).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO_ROOT

SOURCE_DIRS = ("tfs_bench", "bench", "tests")
DYNAMIC_IMPORTS = ("import_module", "__import__")


@dataclasses.dataclass(frozen=True)
class Import:
    path: str  # relative to the repository root
    line: int
    statement: str  # as written
    modules: tuple[str, ...]  # every module name it may import

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.statement}"


def _package_of(path: str) -> list[str]:
    """The package a file's relative imports start from (tests/ and bench/ files: their directory)."""
    return list(Path(path).parent.parts)


def _from_base(node: ast.ImportFrom, path: str) -> str:
    if node.level == 0:
        return node.module or ""
    package = _package_of(path)
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _literal_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "*" for v in node.values)
    return None


def _dynamic_name(node: ast.Call) -> str | None:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in DYNAMIC_IMPORTS or not node.args:
        return None
    return _literal_name(node.args[0])


def _modules(node: ast.AST, path: str) -> tuple[str, ...]:
    if isinstance(node, ast.Import):
        return tuple(alias.name for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        base = _from_base(node, path)
        return (base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*"))
    if isinstance(node, ast.Call):
        name = _dynamic_name(node)
        return (name,) if name else ()
    return ()


@functools.cache
def imports_of(path: str) -> tuple[Import, ...]:
    source = (REPO_ROOT / path).read_text()
    return tuple(_imports(ast.parse(source, path), source, path))


def _imports(tree: ast.AST, source: str, path: str) -> Iterator[Import]:
    for node in ast.walk(tree):
        modules = _modules(node, path)
        if modules:
            yield Import(path, node.lineno, ast.get_source_segment(source, node) or ast.unparse(node), modules)


def python_files(*dirs: str) -> list[str]:
    return sorted(p.relative_to(REPO_ROOT).as_posix() for d in dirs for p in (REPO_ROOT / d).rglob("*.py"))


def names(module: str, prefix: str) -> bool:
    """Whether `module` is `prefix` or inside it."""
    return module == prefix or module.startswith(prefix + ".")


def offending(paths: list[str], forbidden: Callable[[str], bool]) -> list[str]:
    return [str(imp) for path in paths for imp in imports_of(path) if any(forbidden(m) for m in imp.modules)]


def _under(*dirs: str) -> list[str]:
    return [p for p in python_files("tfs_bench") if any(p.startswith(d + "/") for d in dirs)]


def is_binary(module: str) -> bool:
    """`<package>.__main__` or inside it; a bare `import __main__` (the running script) is not a binary."""
    return "__main__" in module.split(".")[1:]


def test_monitors_never_import_the_load_generator():
    problems = offending(_under("tfs_bench/monitors"), lambda m: names(m, "tfs_bench.load"))
    assert not problems, "tfs_bench/monitors must not import tfs_bench.load:\n" + "\n".join(problems)


def test_the_load_generator_never_imports_what_reads_its_runs():
    later = ("tfs_bench.run", "tfs_bench.analysis", "tfs_bench.report")
    problems = offending(_under("tfs_bench/load"), lambda m: any(names(m, stage) for stage in later))
    assert not problems, f"tfs_bench/load must not import {', '.join(later)}:\n" + "\n".join(problems)


def test_only_analysis_and_report_import_pandas_or_matplotlib():
    allowed = _under("tfs_bench/analysis", "tfs_bench/report")
    paths = [p for p in python_files("tfs_bench") if p not in allowed]
    problems = offending(paths, lambda m: names(m, "pandas") or names(m, "matplotlib"))
    assert not problems, "only tfs_bench/analysis and tfs_bench/report may import pandas or matplotlib:\n" + "\n".join(
        problems
    )


def exercises_binary_flags(path: str) -> bool:
    return Path(path).name.startswith("test_") and any(
        names(m, "binary_flags") for imp in imports_of(path) for m in imp.modules
    )


def test_no_module_imports_a_binary_but_the_tests_of_its_flags():
    paths = [p for p in python_files(*SOURCE_DIRS) if not exercises_binary_flags(p)]
    problems = offending(paths, is_binary)
    assert not problems, (
        "only a test that exercises a binary's flags (and imports binary_flags) may import a __main__ module:\n"
        + "\n".join(problems)
    )


def test_the_package_never_imports_tests_or_bench():
    helpers = {Path(p).stem for p in python_files("tests")} | {"tests", "bench"}
    problems = offending(python_files("tfs_bench"), lambda m: m.split(".")[0] in helpers)
    assert not problems, "tfs_bench must not import from tests/ or bench/:\n" + "\n".join(problems)


TENSORFLOW = ("tensorflow", "tensorflow_serving", "keras")


def _file_of(module: str) -> str | None:
    for candidate in (module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"):
        if (REPO_ROOT / candidate).is_file():
            return candidate
    return None


def files_imported_from(starts: list[str], skipped: str | None = None) -> list[str]:
    """`starts` and every tfs_bench file they import, transitively, except the module `skipped`."""
    todo = list(starts)
    seen = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for imp in imports_of(path):
            for module in imp.modules:
                if names(module, "tfs_bench") and module != skipped:
                    found = _file_of(module)
                    if found is not None:
                        todo.append(found)
    return sorted(seen)


def load_stage_files() -> list[str]:
    """tfs_bench/load's files but raw_throughput, and every tfs_bench file they import (transitively)."""
    starts = [p for p in _under("tfs_bench/load") if p != "tfs_bench/load/raw_throughput.py"]
    return files_imported_from(starts, skipped="tfs_bench.load.raw_throughput")


def test_the_load_stage_imports_no_tensorflow_even_through_what_it_imports():
    files = load_stage_files()
    assert "tfs_bench/monitors/gpu.py" in files and "tfs_bench/wire/__init__.py" in files  # it follows imports
    problems = offending(files, lambda m: any(names(m, tf) for tf in TENSORFLOW))
    assert not problems, "the load stage must not import TensorFlow:\n" + "\n".join(problems)


def test_the_launch_stage_imports_no_tensorflow_even_through_what_it_imports():
    # tfs_bench.run launches and waits for servers: TensorFlow runs in them, not in the launcher.
    files = files_imported_from(_under("tfs_bench/launch"))
    assert "tfs_bench/launch/readiness.py" in files and "tfs_bench/wire/__init__.py" in files
    problems = offending(files, lambda m: any(names(m, tf) for tf in TENSORFLOW))
    assert not problems, "the launch stage must not import TensorFlow:\n" + "\n".join(problems)
