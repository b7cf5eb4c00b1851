"""The progress lines: step k of n, elapsed, and an ETA that learns from the steps measured."""

from tfs_bench.run.experiment import RunSpec
from tfs_bench.run.experiment import plan_steps
from tfs_bench.run.progress import Progress

SPEC = RunSpec(name="p", models=("a",), placements=("dedicated",), raw=False)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_eta_uses_estimates_then_the_durations_measured():
    closed, peak = plan_steps(SPEC, ("cpu",))
    lines, clock = [], Clock()
    progress = Progress((closed, peak), {"closed": 30.0, "peak": 100.0}, out=lines.append, clock=clock)
    assert progress.eta_s() == 130.0
    progress.started(closed)
    clock.now = 20.0
    progress.finished(closed, "done", "best 90 rps")
    assert progress.eta_s() == 100.0
    progress.started(peak)
    assert lines == [
        "[1/2] cpu/dedicated/a/closed  (elapsed 0:00, ETA 2:10)",
        "    done in 20 s: best 90 rps",
        "[2/2] cpu/dedicated/a/peak  (elapsed 0:20, ETA 1:40)",
    ]


def test_a_resumed_experiment_counts_what_finished_before():
    closed, peak = plan_steps(SPEC, ("cpu",))
    lines = []
    progress = Progress((closed, peak), {"closed": 30.0, "peak": 3700.0}, already_done=1, out=lines.append, clock=Clock())
    progress.skipped_before_start(closed)
    progress.started(peak)
    assert lines == ["[2/2] cpu/dedicated/a/peak  (elapsed 0:00, ETA 1:01:40)"]


def test_a_measured_duration_replaces_the_estimate_of_its_kind_only():
    spec = RunSpec(name="p", models=("a", "b"), placements=("dedicated",), raw=False)
    steps = plan_steps(spec, ("cpu",))
    clock = Clock()
    progress = Progress(steps, {"closed": 10.0, "peak": 50.0}, out=lambda line: None, clock=clock)
    progress.started(steps[0])
    clock.now = 40.0
    progress.finished(steps[0], "done", "")
    assert progress.eta_s() == 50.0 + 40.0 + 50.0  # a's peak, b's closed (measured 40), b's peak
    progress.started(steps[1])
    clock.now = 41.0
    progress.finished(steps[1], "failed", "no")  # a failure's duration is not a measurement's
    assert progress.eta_s() == 40.0 + 50.0
