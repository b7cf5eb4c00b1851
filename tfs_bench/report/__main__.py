"""Re-render an experiment's report from its run directory (or several), without measuring.

  python -m tfs_bench.report --run_dir=runs/20261203T120020Z-quickstart
  python -m tfs_bench.report --run_dir=runs/cpu-box --run_dir=runs/gpu-box --output_dir=reports/cpu-vs-gpu

--demand, --prices and --instances default to those in the (first) run's flags.txt.
"""

from __future__ import annotations

from pathlib import Path

from absl import app
from absl import flags

from tfs_bench.analysis.demand import parse_demand
from tfs_bench.analysis.demand import parse_instances
from tfs_bench.analysis.prices import DEFAULT_PRICES
from tfs_bench.analysis.prices import read_prices
from tfs_bench.analysis.results import Costing
from tfs_bench.analysis.run_data import read_run
from tfs_bench.errors import exits_cleanly
from tfs_bench.report.build import REPORT_DIR
from tfs_bench.report.build import summary_lines
from tfs_bench.report.build import write_report

_RUN_DIR = flags.DEFINE_multi_string("run_dir", [], "A run directory of tfs_bench.run (repeat the flag to compare runs).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the report goes (default: <first run_dir>/report).")
_DEMAND = flags.DEFINE_list("demand", None, "Inferences/s to serve per model, MODEL=RATE items (default: the run's).")
_PRICES = flags.DEFINE_string("prices", None, "The price table (default: the run's --prices, else the suite's configs/prices.csv).")
_INSTANCES = flags.DEFINE_list(
    "instances", None, "Price-table rows the measured machines stand for, PROVIDER:INSTANCE[:REGION] (default: the run's).",
)


def costing_for(run_dirs, demand=None, prices=None, instances=None) -> Costing:
    """The cost settings: those given, else the first run's flags, else the defaults."""
    flags_of_run = read_run(run_dirs[0]).flags if run_dirs else {}

    def items(given, name):
        if given is not None:
            return list(given)
        text = flags_of_run.get(name, "")
        return [v for v in text.split(",") if v]

    return Costing(
        prices=read_prices(prices or _recorded_prices(flags_of_run.get("prices"))),
        demand=parse_demand(items(demand, "demand")),
        instances=parse_instances(items(instances, "instances")),
    )


def _recorded_prices(path: str | None) -> Path:
    """The run's --prices: as recorded (relative to where the run ran), else the same path in this
    suite's tree (configs/ ships with it), else the suite's table."""
    if not path:
        return DEFAULT_PRICES
    recorded = Path(path)
    in_suite = DEFAULT_PRICES.parents[1] / recorded
    if recorded.is_file() or recorded.is_absolute() or not in_suite.is_file():
        return recorded
    return in_suite


@exits_cleanly
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _RUN_DIR.value:
        raise app.UsageError("--run_dir is required (a run directory of tfs_bench.run)")
    costing = costing_for(_RUN_DIR.value, _DEMAND.value, _PRICES.value, _INSTANCES.value)
    output = Path(_OUTPUT_DIR.value) if _OUTPUT_DIR.value else Path(_RUN_DIR.value[0]) / REPORT_DIR
    for line in summary_lines(write_report(_RUN_DIR.value, output, costing)):
        print(line)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
