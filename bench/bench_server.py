"""Servers for the benchmarks: planned and launched the way a user's experiment is."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tfs_bench.export import known_answer
from tfs_bench.launch import launchers
from tfs_bench.launch import ports
from tfs_bench.plan import placement
from tfs_bench.plan import plan_files
from tfs_bench.plan import plan_record


def planned_server(models, work_dir: Path, nice: int = 0, **request) -> launchers.RunningServer:
    """One embedded server hosting `models` (placement.ModelEntry), with Prometheus on REST,
    started at niceness +`nice`."""
    plan = placement.make_plan(placement.PlanRequest(
        models=tuple(models), hosting="multi_model", device="cpu", port_base=ports.free_port_base(1), **request))
    path = plan_files.write_plan(plan, work_dir / "plan", docker_image="tensorflow/serving:latest")
    (server,) = plan_record.read_plan(path).servers
    return launchers.launch(launchers.LaunchSpec("embedded", server, log_dir=str(work_dir), nice=nice))


@contextlib.contextmanager
def half_plus_two_server(**request) -> Iterator[launchers.RunningServer]:
    """Serves half_plus_two (latest version: y = 0.5x + 3) until the block ends."""
    with tempfile.TemporaryDirectory(prefix="tfs_bench_bench_") as tmp:
        base = known_answer.write_models(str(Path(tmp) / "models"))
        entry = placement.load_model_entry(known_answer.MODEL_NAME, str(base))
        with planned_server([entry], Path(tmp), **request) as server:
            yield server
