"""The main job: an experiment from one flagfile to a run directory.

  python -m tfs_bench.run --flagfile=configs/quickstart.flags
  python -m tfs_bench.run --flagfile=configs/quickstart.flags --resume    # continue the newest unfinished one

Exports missing models, plans every placement on every device found, launches, measures, tears
down, and writes runs/<UTC time>-<name>/ (tfs_bench.run.orchestrate).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from tfs_bench import flag_rules
from tfs_bench.analysis.demand import parse_demand
from tfs_bench.analysis.demand import parse_instances
from tfs_bench.analysis.demand import select_rows
from tfs_bench.analysis.prices import DEFAULT_PRICES
from tfs_bench.analysis.prices import read_prices
from tfs_bench.analysis.results import Costing
from tfs_bench.cpu_priority import GENERATOR_PRIORITIES
from tfs_bench.errors import ConfigError
from tfs_bench.errors import exits_cleanly
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import window_policy
from tfs_bench.plan.placement import HOSTINGS
from tfs_bench.report.build import report_after_run
from tfs_bench.run import experiment
from tfs_bench.run.journal import JOURNAL_FILE
from tfs_bench.run.orchestrate import run_experiment
from tfs_bench.run.orchestrate import unfinished_steps
from tfs_bench.run.runner import Where
from tfs_bench.stats import REPORTED_PERCENTILES

_SPEC = experiment.RunSpec.__dataclass_fields__
_CRITERIA = ValidityCriteria.__dataclass_fields__

_NAME = flags.DEFINE_string("name", "experiment", "Names the run directory: runs/<UTC time>-<name>.")
_MODELS = flags.DEFINE_list("models", [], "Models to serve (zoo names; exported to --saved_models_dir when missing).")
_PLACEMENTS = flags.DEFINE_list("placements", list(HOSTINGS), f"Placements to measure: {', '.join(HOSTINGS)}.")
_DEVICES = flags.DEFINE_enum(
    "devices", _SPEC["devices"].default, list(experiment.DEVICE_CHOICES),
    "auto: the CPU, and the GPU where TensorFlow and NVML both see one; or only cpu, or only gpu.",
)
_SLA_MS = flags.DEFINE_float("sla_ms", _SPEC["sla_ms"].default, "The SLA: this percentile of response time must stay under it.")
_SLA_PERCENTILE = flags.DEFINE_float("sla_percentile", _SPEC["sla_percentile"].default, "The SLA's percentile.")
_CONCURRENCY = flags.DEFINE_list(
    "concurrency", [str(c) for c in _SPEC["concurrency"].default], "Closed-loop levels of each dedicated sweep."
)
_PEAK_START = flags.DEFINE_float(
    "peak_start_fraction", _SPEC["peak_start_fraction"].default,
    "A dedicated peak search starts at this fraction of the sweep's best throughput.",
)
_PEAK_PRECISION = flags.DEFINE_float("peak_precision", _SPEC["peak_precision"].default, "Bisect peaks to within this fraction.")
_PERSEUS_FRACTIONS = flags.DEFINE_list(
    "perseus_fractions", [f"{f:g}" for f in _SPEC["perseus_fractions"].default],
    "PERSEUS: the fixed tenant's rates, as fractions of its dedicated peak.",
)
_RAW = flags.DEFINE_bool("raw", True, "Measure raw in-process TensorFlow throughput (the serving tax's denominator).")
_RAW_DURATION = flags.DEFINE_float("raw_duration_s", _SPEC["raw_duration_s"].default, "Seconds of each raw measurement.")
_FRAMEWORK_MODEL = flags.DEFINE_string("framework_model", None, "CPU framework sweeps: the model (none: no sweeps).")
_FRAMEWORK_THREADS = flags.DEFINE_list("framework_threads", [], "CPU framework sweeps: intra x inter-op settings, e.g. 1x1,2x1.")
_FRAMEWORK_BATCHING = flags.DEFINE_bool("framework_batching", False, "CPU framework sweeps: also with batching on.")
_FRAMEWORK_UINT8 = flags.DEFINE_bool("framework_uint8", False, "CPU framework sweeps: also with uint8 input.")
_WINDOW_S = flags.DEFINE_float("window_s", WindowPolicy.window_s, "Measurement window length.")
_WINDOW_MIN_REQUESTS = flags.DEFINE_integer("window_min_requests", WindowPolicy.window_min_requests, "A window lasts until it has this many requests.", lower_bound=0)
_WARMUP_S = flags.DEFINE_float("warmup_s", WindowPolicy.warmup_s, "Warm-up before the first window.", lower_bound=0.0)
_MAX_WINDOWS = flags.DEFINE_integer("max_windows", WindowPolicy.max_windows, "At most this many windows per run.", lower_bound=1)
_STABILITY_TOLERANCE = flags.DEFINE_float("stability_tolerance", WindowPolicy.stability_tolerance, "Stability: the last windows agree within this fraction.")
_MIN_DURATION_S = flags.DEFINE_float(
    "min_duration_s", _CRITERIA["min_duration_s"].default, "VALID needs at least this long measured."
)
_MIN_REQUESTS = flags.DEFINE_integer(
    "min_requests", _CRITERIA["min_requests"].default, "VALID needs at least this many requests.", lower_bound=1
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _SPEC["batch_size"].default, "Images per request.", lower_bound=1)
_SERVER = flags.DEFINE_enum("server", _SPEC["server"].default, list(experiment.SERVER_KINDS), "What serves the models.")
_SERVER_BINARY = flags.DEFINE_string(
    "server_binary", None, "--server=binary: tensorflow_model_server; docker: the docker client (default: on PATH)."
)
_EXTERNAL_TARGETS = flags.DEFINE_list(
    "external_targets", [], "--server=external: plan server name=host:port of each running server."
)
_DOCKER_TAG = flags.DEFINE_string("docker_image_tag", "latest", "--server=docker: the tensorflow/serving image tag.")
_SERVER_NICE = flags.DEFINE_integer(
    "server_nice", _SPEC["server_nice"].default,
    "Niceness added to servers we start, so the co-located generator gets the CPU first (0: none).",
    lower_bound=0, upper_bound=19,
)
_GENERATOR_PRIORITY = flags.DEFINE_enum(
    "generator_priority", _SPEC["generator_priority"].default, list(GENERATOR_PRIORITIES), "CPU priority of the load generator's workers."
)
_CLIENT_RETRIES = flags.DEFINE_integer(
    "client_retries", _SPEC["client_retries"].default, "Re-measure a run INVALID because of the host this many times.",
    lower_bound=0,
)
_IDLE_BASELINE_S = flags.DEFINE_float(
    "idle_baseline_s", _SPEC["idle_baseline_s"].default,
    "Seconds of the machine at rest sampled before each load run (resources.jsonl's baseline).", lower_bound=0.0,
)
_DEPLOYMENT_WARMUP_S = flags.DEFINE_float(
    "deployment_warmup_s", _SPEC["deployment_warmup_s"].default,
    "Closed-loop traffic to every model of each deployment just started, before it is measured (0: none).",
    lower_bound=0.0,
)
_SEED = flags.DEFINE_integer("seed", _SPEC["seed"].default, "Seed of schedules, inputs and random weights.", lower_bound=0)
_DEMAND = flags.DEFINE_list(
    "demand", [], "The report's cost section: inferences/s to serve per model, MODEL=RATE items (none: no fleet ranking).",
)
_PRICES = flags.DEFINE_string("prices", None, "The report's price table (default: the suite's configs/prices.csv).")
_INSTANCES = flags.DEFINE_list(
    "instances", [], "Price-table rows the measured machine stands for, PROVIDER:INSTANCE[:REGION] (none: every row of its kind).",
)
_SAVED_MODELS_DIR = flags.DEFINE_string("saved_models_dir", "saved_models", "Where exports are (and go).")
_RUNS_DIR = flags.DEFINE_string("runs_dir", "runs", "Where run directories are created.")
_RUN_DIR = flags.DEFINE_string("run_dir", None, "This run's directory (default <runs_dir>/<UTC time>-<name>).")
_RESUME = flags.DEFINE_bool("resume", False, "Continue an unfinished run (--run_dir, or the newest of --name).")
_STOP_ON_FAILURE = flags.DEFINE_bool(
    "stop_on_failure", False,
    "Stop at the first failed step (the run stays resumable) instead of moving on to the next one.",
)

_NOT_THE_EXPERIMENT = ("resume", "run_dir", "flagfile", "stop_on_failure")


@flag_rules.rule("models")
def _check_models(models):
    return None if models else "--models is required: the models to serve"


@flag_rules.rule("sla_percentile")
def _check_percentile(value):
    if value not in REPORTED_PERCENTILES:
        return f"--sla_percentile must be one of {', '.join(f'{p:g}' for p in REPORTED_PERCENTILES)}"
    return None


def _ints(flag: str, values) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{flag} takes integers, got {','.join(values)}") from None


def _floats(flag: str, values) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{flag} takes numbers, got {','.join(values)}") from None


def _threads(values) -> tuple[tuple[int, int], ...]:
    settings = []
    for value in values:
        intra, sep, inter = value.partition("x")
        if not sep or not intra.isdigit() or not inter.isdigit():
            raise ConfigError(f"--framework_threads takes INTRAxINTER items, e.g. 2x1, got {value!r}")
        settings.append((int(intra), int(inter)))
    return tuple(settings)


def _pairs(values) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, address = value.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"--external_targets takes name=host:port items, got {value!r}")
        pairs[name] = address
    return pairs


def spec_from_flags() -> experiment.RunSpec:
    policy = window_policy(
        window_s=_WINDOW_S.value,
        window_min_requests=_WINDOW_MIN_REQUESTS.value,
        warmup_s=_WARMUP_S.value,
        max_windows=_MAX_WINDOWS.value,
        sla_percentile=_SLA_PERCENTILE.value,
        stability_tolerance=_STABILITY_TOLERANCE.value,
    )
    criteria = ValidityCriteria(min_duration_s=_MIN_DURATION_S.value, min_requests=_MIN_REQUESTS.value)
    return experiment.RunSpec(
        name=_NAME.value,
        models=tuple(_MODELS.value),
        placements=tuple(_PLACEMENTS.value),
        devices=_DEVICES.value,
        sla_ms=_SLA_MS.value,
        sla_percentile=_SLA_PERCENTILE.value,
        concurrency=_ints("concurrency", _CONCURRENCY.value),
        peak_start_fraction=_PEAK_START.value,
        peak_precision=_PEAK_PRECISION.value,
        perseus_fractions=_floats("perseus_fractions", _PERSEUS_FRACTIONS.value),
        raw=_RAW.value,
        raw_duration_s=_RAW_DURATION.value,
        framework=experiment.FrameworkSweeps(
            model=_FRAMEWORK_MODEL.value,
            threads=_threads(_FRAMEWORK_THREADS.value),
            batching=_FRAMEWORK_BATCHING.value,
            uint8=_FRAMEWORK_UINT8.value,
        ),
        policy=policy,
        criteria=criteria,
        batch_size=_BATCH_SIZE.value,
        server=_SERVER.value,
        server_nice=_SERVER_NICE.value,
        generator_priority=_GENERATOR_PRIORITY.value,
        client_retries=_CLIENT_RETRIES.value,
        idle_baseline_s=_IDLE_BASELINE_S.value,
        deployment_warmup_s=_DEPLOYMENT_WARMUP_S.value,
        seed=_SEED.value,
    )


def _costing(spec: experiment.RunSpec) -> Costing:
    """The report's cost settings, checked before anything is measured."""
    demand = parse_demand(_DEMAND.value)
    unknown = [m for m in demand if m not in spec.models]
    if unknown:
        raise ConfigError(f"--demand names {', '.join(unknown)}, not in --models ({', '.join(spec.models)})")
    prices = read_prices(_PRICES.value or DEFAULT_PRICES)
    instances = parse_instances(_INSTANCES.value)
    select_rows(prices, instances)
    return Costing(prices=prices, demand=demand, instances=instances)


def experiment_flagfile() -> str:
    """The flags that define the experiment, one per line (not --resume or --run_dir)."""
    names = [holder.name for holder in globals().values() if isinstance(holder, flags.FlagHolder)]
    lines = (flags.FLAGS[name].serialize() for name in names if name not in _NOT_THE_EXPERIMENT)
    return "\n".join(line for line in lines if line)


@exits_cleanly
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    spec = spec_from_flags()
    where = Where(
        saved_models_dir=_SAVED_MODELS_DIR.value,
        server_binary=_SERVER_BINARY.value,
        external_targets=_pairs(_EXTERNAL_TARGETS.value),
        docker_image_tag=_DOCKER_TAG.value,
    )
    costing = _costing(spec)
    try:
        directory = run_experiment(
            spec, where, experiment_flagfile(), sys.argv, runs_dir=_RUNS_DIR.value, run_dir=_RUN_DIR.value,
            resume=_RESUME.value, stop_on_failure=_STOP_ON_FAILURE.value,
        )
    except KeyboardInterrupt:
        sys.exit(130)
    reported = report_after_run(directory, costing)
    unfinished = unfinished_steps(directory)
    if unfinished:
        print(f"error: {len(unfinished)} step(s) did not finish done (the journal, {directory / JOURNAL_FILE}, "
              "says why); the report covers the others", file=sys.stderr)
        sys.exit(3)
    if not reported:
        sys.exit(1)


def run():
    app.run(main)


if __name__ == "__main__":
    run()
