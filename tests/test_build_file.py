"""BUILD stays in sync with the tree: every Python file has a target, and deps match imports.

Bazel cannot run here, so the BUILD file is evaluated with stand-ins for the rules it uses
(its Starlark is a subset of Python) and checked against the sources' own imports.
"""

import ast
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# Import name -> pip requirement name, for third-party imports.
PIP_NAMES = {
    "absl": "absl-py",
    "google": "protobuf",
    "grpc": "grpcio",
    "grpc_tools": "grpcio-tools",
    "hypothesis": "hypothesis",
    "keras": "tensorflow",
    "kubernetes_validate": "kubernetes-validate",  # Keras 3 ships as a dependency of the tensorflow wheel
    "matplotlib": "matplotlib",
    "mlperf_loadgen": "mlcommons-loadgen",
    "ml_dtypes": "tensorflow",  # numpy's bfloat16; ships as a dependency of the tensorflow wheel
    "numpy": "numpy",
    "pandas": "pandas",
    "PIL": "pillow",
    "psutil": "psutil",
    "pyarrow": "pyarrow",
    "pynvml": "nvidia-ml-py",
    "pytest": "pytest",
    "ray": "ray",
    "tensorflow": "tensorflow",
    "tensorflow_serving": "tensorflow-serving-api",
    "yaml": "pyyaml",
}
SOURCE_DIRS = ("tfs_bench", "tests", "bench")


def _load_build():
    targets = {}

    def rule(kind):
        def define(name, srcs=(), deps=(), main=None, **_):
            assert name not in targets, f"target {name} defined twice"
            targets[name] = {"kind": kind, "srcs": list(srcs), "deps": list(deps), "main": main}

        return define

    def py_proto_library(name, deps, **_):
        # Bazel generates `<proto>_pb2.py` beside each .proto of the proto_library it wraps.
        assert name not in targets, f"target {name} defined twice"
        protos = [src for dep in deps for src in targets[dep.lstrip(":")]["srcs"]]
        targets[name] = {"kind": "py_proto_library", "srcs": [], "deps": list(deps), "main": None,
                         "generates": [p[: -len(".proto")] + "_pb2.py" for p in protos]}

    def forbidden_glob(*_, **__):
        raise AssertionError("list files explicitly; a glob cannot be checked against the tree")

    namespace = {
        "load": lambda *args, **kwargs: None,
        "package": lambda **kwargs: None,
        "py_library": rule("py_library"),
        "py_binary": rule("py_binary"),
        "py_test": rule("py_test"),
        "proto_library": rule("proto_library"),
        "py_proto_library": py_proto_library,
        "requirement": lambda name: f"requirement:{name}",
        "glob": forbidden_glob,
    }
    exec(compile((REPO_ROOT / "BUILD").read_text(), "BUILD", "exec"), namespace)
    return targets


TARGETS = _load_build()


GENERATED = {path: name for name, t in TARGETS.items() for path in t.get("generates", ())}


def _files(suffix):
    return sorted(
        p.relative_to(REPO_ROOT).as_posix()
        for d in SOURCE_DIRS
        if (REPO_ROOT / d).is_dir()
        for p in (REPO_ROOT / d).rglob(f"*{suffix}")
    )


def _python_files():
    """Every Python source, without what a py_proto_library generates (built, not kept in git)."""
    return [p for p in _files(".py") if p not in GENERATED]


def _module_of(path: str) -> str:
    if path.startswith("tests/"):
        return Path(path).stem  # pytest puts tests/ on sys.path: `from conftest import ...`
    module = path[:-3].replace("/", ".")
    return module[: -len(".__init__")] if module.endswith(".__init__") else module


def _imports(path: str) -> set[str]:
    tree = ast.parse((REPO_ROOT / path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_python_file_is_in_exactly_one_target():
    owners = {}
    for name, target in TARGETS.items():
        for src in target["srcs"]:
            assert src not in owners, f"{src} is in both {owners[src]} and {name}"
            owners[src] = name
    files = _python_files() + _files(".proto")
    assert sorted(set(files) - set(owners)) == [], "files missing from BUILD"
    assert sorted(set(owners) - set(files)) == [], "BUILD lists files that do not exist"
    for path, name in GENERATED.items():
        assert (REPO_ROOT / path[: -len("_pb2.py")]).with_suffix(".proto").is_file(), name


def test_tests_and_binaries_have_the_right_rules():
    for name, target in TARGETS.items():
        for src in target["srcs"]:
            is_test = Path(src).name.startswith("test_")
            assert (target["kind"] == "py_test") == is_test, f"{src} in {target['kind']} {name}"
            assert (target["kind"] == "proto_library") == src.endswith(".proto"), f"{src} in {target['kind']} {name}"
        if target["kind"] == "py_binary":
            assert target["main"] in target["srcs"]
            assert 'if __name__ == "__main__":' in (REPO_ROOT / target["main"]).read_text()


def test_deps_name_defined_targets_and_cover_imports():
    provided = {}
    for name, target in TARGETS.items():
        for src in target["srcs"]:
            if src.endswith(".py"):
                provided[_module_of(src)] = name
    for path, name in GENERATED.items():
        provided[_module_of(path)] = name
    # Top-level names of this repository's modules: tfs_bench, bench, and test helpers imported by
    # their stem (pytest puts tests/ on sys.path).
    first_party = {"tfs_bench"} | {module.split(".")[0] for module in provided}
    problems = []
    for name, target in TARGETS.items():
        deps = set(target["deps"])
        for dep in deps:
            if not dep.startswith(("requirement:", "@")):  # @repo//: another Bazel repository's target
                if dep.lstrip(":") not in TARGETS:
                    problems.append(f"{name}: dep {dep} is not a target")
        for src in target["srcs"]:
            if not src.endswith(".py"):
                continue
            for imported in _imports(src):
                top = imported.split(".")[0]
                if imported in ("tfs_bench", "bench"):
                    continue  # package roots; `from tfs_bench import x` needs x, not __init__
                if imported in provided:
                    owner = provided[imported]
                    if owner != name and f":{owner}" not in deps:
                        problems.append(f"{name}: {src} imports {imported}; add :{owner} to deps")
                elif top in PIP_NAMES:
                    if f"requirement:{PIP_NAMES[top]}" not in deps:
                        problems.append(f'{name}: {src} imports {top}; add requirement("{PIP_NAMES[top]}")')
                elif top in first_party and imported.split(".")[-1][:1].islower():
                    if imported not in provided and ".".join(imported.split(".")[:-1]) not in provided:
                        problems.append(f"{name}: {src} imports {imported}, which no target provides")
                elif top not in sys.stdlib_module_names and top not in first_party:
                    problems.append(f"{name}: {src} imports {top}, a third-party module PIP_NAMES does not know")
    assert problems == []


@pytest.mark.parametrize("name", sorted(n for n, t in TARGETS.items() if t["kind"] == "py_test"))
def test_every_test_depends_on_the_conftest_pytest_loads_for_it(name):
    assert ":test_support" in TARGETS[name]["deps"]
