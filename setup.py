"""The build step pyproject.toml cannot declare: the wire messages (load and launch stages) are compiled from
tfs_bench/wire/serving.proto by grpcio-tools before the package's files are collected."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithWire(build_py):
    def run(self):
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # the source tree, not an installed copy
        from tfs_bench.wire import build

        build.build()
        super().run()


setup(cmdclass={"build_py": BuildPyWithWire})
