"""Generates load against TF Serving (or the embedded server) and measures it.

  python -m tfs_bench.load --target=127.0.0.1:8500 --models=resnet50 --mode=closed --concurrency=1,2,4
  python -m tfs_bench.load --models=a,b:3 --mode=open --rate=200 --distribution=constant
  python -m tfs_bench.load --models=resnet50 --mode=peak --qps_start=10 --sla_ms=750
  python -m tfs_bench.load --flagfile=configs/<experiment>.flags

Modes: closed (one run per --concurrency value), open (one run at --rate), ramp (PERSEUS:
--qps_start, +--qps_delta per pass), peak (bracket and bisect under --sla_ms); see
docs/architecture.md, "Load generator". Writes --output_dir (see tfs_bench.load.run_files), prints
a line per window and a summary. Exits 0 when the measurement finished, whether VALID or not
(the verdict is printed and saved); 1 on an error.
"""

from __future__ import annotations

import contextlib
import datetime
import sys

from absl import app
from absl import flags

from tfs_bench.load import resource_log
from tfs_bench.load import run_files
from tfs_bench.load import driver
from tfs_bench.errors import ConfigError
from tfs_bench.errors import exits_cleanly
from tfs_bench.load.config import MAX_WORKERS
from tfs_bench.load.config import PROTOCOLS
from tfs_bench.load.config import InputSource
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.config import check_outstanding
from tfs_bench.load.config import parse_target
from tfs_bench.load.config import parse_tenant_specs
from tfs_bench.load.schedule import ARRIVALS
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.stats import REPORTED_PERCENTILES
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import check_policy
from tfs_bench.load.windows import WindowPolicy

MODES = ("closed", "open", "ramp", "peak")
DEFAULT_MAX_OUTSTANDING = 1000
DEFAULT_PEAK_PRECISION = 0.05
DEFAULT_RAMP_PATIENCE = 6
DEFAULT_RAMP_MAX_PASSES = 100
# A window also ends after this long whatever its request count (at least 30 s), so a stalled
# server cannot hang a run.
_WINDOW_MAX_FACTOR = 6

_TARGET = flags.DEFINE_list(
    "target", ["127.0.0.1:8500"], "host:port of each server: its gRPC port, or its REST port with --protocol=rest."
)
_MODELS = flags.DEFINE_list(
    "models", [], "Tenants as name[@target][:weight]; target is a --target value or its index (default: the first)."
)
_SIGNATURE = flags.DEFINE_string("signature", "serving_default", "Signature to call.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1, "Images (rows) per request.", lower_bound=1)
_MODE = flags.DEFINE_enum("mode", "closed", list(MODES), "closed, open, ramp (PERSEUS) or peak (under --sla_ms).")
_CONCURRENCY = flags.DEFINE_list(
    "concurrency", None, "closed: outstanding requests per tenant, one run per value, e.g. 1,2,4,8 (default 1)."
)
_RATE = flags.DEFINE_float("rate", None, "open: total requests/s, shared by the tenants in proportion to their weights.")
_DISTRIBUTION = flags.DEFINE_enum(
    "distribution", None, list(ARRIVALS), "open, ramp, peak: arrival process (default poisson)."
)
_QPS_START = flags.DEFINE_float("qps_start", None, "ramp, peak: the first rate probed, requests/s.")
_QPS_DELTA = flags.DEFINE_float("qps_delta", None, "ramp: requests/s added after each pass.")
_SLA_MS = flags.DEFINE_float("sla_ms", None, "Bound on the SLA percentile of response time (required by ramp and peak).")
_SLA_PERCENTILE = flags.DEFINE_float("sla_percentile", 95.0, "Percentile the SLA and stability are judged on.")
_WARMUP_S = flags.DEFINE_float("warmup_s", 2.0, "Warm-up before the first window, excluded.", lower_bound=0.0)
_WINDOW_S = flags.DEFINE_float("window_s", 5.0, "Measurement window length.")
_WINDOW_MIN_REQUESTS = flags.DEFINE_integer(
    "window_min_requests", 50, "A window also waits for this many requests per tenant.", lower_bound=0
)
_MIN_DURATION_S = flags.DEFINE_float(
    "min_duration_s", 10.0, "VALID needs the pooled windows to last this long.", lower_bound=0.0
)
_MIN_REQUESTS = flags.DEFINE_integer(
    "min_requests", 100, "VALID needs this many successful requests per tenant.", lower_bound=0
)
_MAX_WINDOWS = flags.DEFINE_integer("max_windows", 10, "Stop after this many windows if not yet stable.")
_STABILITY_TOLERANCE = flags.DEFINE_float(
    "stability_tolerance", 0.10, "Stable when the last 3 windows are within this fraction of their mean."
)
_MAX_OUTSTANDING = flags.DEFINE_integer(
    "max_outstanding", None,
    f"open, ramp, peak: cap on each tenant's requests in flight; arrivals beyond it are DROPPED "
    f"(default {DEFAULT_MAX_OUTSTANDING}).",
    lower_bound=1,
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the arrival schedules and of random inputs.", lower_bound=0)
_INPUT = flags.DEFINE_string("input", "random", "random, or images:DIR (images resized to the input shape).")
_PROTOCOL = flags.DEFINE_enum("protocol", "grpc", list(PROTOCOLS), "gRPC Predict or REST :predict.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the run (default runs/load-<UTC time>).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a previous run in --output_dir.")
_WORKERS = flags.DEFINE_integer(
    "workers", 1, "Load-generator processes sharing the schedule.", lower_bound=1, upper_bound=MAX_WORKERS
)
_PEAK_PRECISION = flags.DEFINE_float(
    "peak_precision", None, f"peak: bisect until the bracket is within this fraction (default {DEFAULT_PEAK_PRECISION})."
)
_MAX_RATE = flags.DEFINE_float("max_rate", None, "peak: the highest rate to probe (default: no limit).")
_RAMP_PATIENCE = flags.DEFINE_integer(
    "ramp_patience", None, f"ramp: passes without throughput gain before it stops (default {DEFAULT_RAMP_PATIENCE}).",
    lower_bound=1,
)
_RAMP_MAX_PASSES = flags.DEFINE_integer(
    "ramp_max_passes", None, f"ramp: at most this many passes (default {DEFAULT_RAMP_MAX_PASSES}).", lower_bound=1
)
_REQUEST_TIMEOUT_S = flags.DEFINE_float("request_timeout_s", 30.0, "Deadline of each request.")
_CONNECT_TIMEOUT_S = flags.DEFINE_float("connect_timeout_s", 10.0, "How long to wait for each target at start.")
_SERVER_PIDS = flags.DEFINE_list(
    "server_pids", None,
    f"Server processes to monitor, as name=pid,...: CPU and memory of each process tree per window, with "
    f"GPU and an idle baseline, in <run>/{resource_log.RESOURCES_FILE}.",
)
_METRICS_URL = flags.DEFINE_multi_string(
    "metrics_url", None,
    f"Prometheus page of a server (repeat the flag or give a comma list), scraped at each window boundary "
    f"for the server-side latency breakdown in <run>/{resource_log.RESOURCES_FILE}.",
)

# Flags that belong to some modes only; None (their default) means "not given".
_MODE_FLAGS = {
    "concurrency": ("closed",),
    "rate": ("open",),
    "distribution": ("open", "ramp", "peak"),
    "max_outstanding": ("open", "ramp", "peak"),
    "qps_start": ("ramp", "peak"),
    "qps_delta": ("ramp",),
    "ramp_patience": ("ramp",),
    "ramp_max_passes": ("ramp",),
    "peak_precision": ("peak",),
    "max_rate": ("peak",),
}
_REQUIRED = {"closed": (), "open": ("rate",), "ramp": ("qps_start", "qps_delta", "sla_ms"), "peak": ("qps_start", "sla_ms")}


def _rule(check):
    """Turns a check that raises ConfigError (or returns a message) into an absl validator."""

    def validator(value):
        try:
            problem = check(value)
        except ConfigError as e:
            problem = str(e)
        if problem:
            raise flags.ValidationError(problem)
        return True

    return validator


@flags.multi_flags_validator(["mode", *_MODE_FLAGS, "sla_ms"], message="")
@_rule
def _check_mode(values):
    mode = values["mode"]
    for name, modes in _MODE_FLAGS.items():
        if values[name] is not None and mode not in modes:
            return f"--{name} does not apply to --mode={mode} (only to --mode={' or '.join(modes)})"
    missing = [f"--{name}" for name in _REQUIRED[mode] if values[name] is None]
    if missing:
        return f"--mode={mode} needs {' and '.join(missing)}"
    return None


@flags.multi_flags_validator(["models", "target", "mode"], message="")
@_rule
def _check_models(values):
    targets = [parse_target(t) for t in values["target"]]
    specs = parse_tenant_specs(values["models"], targets)
    weighted = [s.tenant for s in specs if s.weight != 1.0]
    if values["mode"] == "closed" and weighted:
        return f"weights ({', '.join(weighted)}) share a rate; --mode=closed gives every tenant the same concurrency"
    return None


@flags.validator("target", message="")
@_rule
def _check_targets(targets):
    if not targets:
        return "give at least one --target=host:port"
    parsed = [parse_target(t) for t in targets]
    if len(set(parsed)) != len(parsed):
        return f"--target lists a target twice: {', '.join(parsed)}"
    return None


@flags.validator("concurrency", message="")
@_rule
def _check_concurrency(levels):
    if levels is None:
        return None
    if not levels or not all(level.isdigit() and int(level) >= 1 for level in levels):
        return f"--concurrency takes integers >= 1, got {','.join(levels)}"
    if len(set(map(int, levels))) != len(levels):
        return f"--concurrency lists a level twice: {','.join(levels)}"
    return None


def _positive(name: str):
    @flags.validator(name, message=f"--{name} must be > 0")
    def check(value):
        return value is None or value > 0

    return check


for _name in ("rate", "qps_start", "qps_delta", "sla_ms", "max_rate", "window_s", "request_timeout_s",
              "connect_timeout_s"):
    _positive(_name)


@flags.validator("sla_percentile", message=f"--sla_percentile must be one of {', '.join(map(str, REPORTED_PERCENTILES))}")
def _check_sla_percentile(value):
    return value in REPORTED_PERCENTILES


@flags.validator("stability_tolerance", message="--stability_tolerance must be in (0, 1)")
def _check_tolerance(value):
    return 0 < value < 1


@flags.validator("peak_precision", message="--peak_precision must be in (0, 1)")
def _check_precision(value):
    return value is None or 0 < value < 1


@flags.validator("max_windows", message="--max_windows must be at least 3 (stability compares the last 3 windows)")
def _check_max_windows(value):
    return value >= WindowPolicy.stability_windows


@flags.multi_flags_validator(["window_s", "min_duration_s", "max_windows"], message="")
@_rule
def _check_windows(values):
    window_s = values["window_s"]
    if not window_s > 0:
        return None  # --window_s's own validator says so
    policy = WindowPolicy(window_s=window_s, window_max_s=_window_max_s(window_s), max_windows=values["max_windows"])
    check_policy(policy, ValidityCriteria(min_duration_s=values["min_duration_s"]))
    return None


@flags.multi_flags_validator(["max_outstanding", "workers"], message="")
@_rule
def _check_outstanding(values):
    if values["max_outstanding"] is not None:
        check_outstanding(values["max_outstanding"], values["workers"])
    return None


@flags.multi_flags_validator(["max_rate", "qps_start"], message="--max_rate must be at least --qps_start")
def _check_max_rate(values):
    return values["max_rate"] is None or values["qps_start"] is None or values["max_rate"] >= values["qps_start"]


@flags.validator("input", message="")
@_rule
def _check_input(text):
    InputSource.parse(text)
    return None


@flags.validator("server_pids", message="")
@_rule
def _check_server_pids(items):
    if items is not None:
        resource_log.parse_server_pids(items)
    return None


@flags.validator("metrics_url", message="")
@_rule
def _check_metrics_urls(values):
    if values is not None:
        resource_log.split_urls(values)
    return None


@flags.validator("signature", message="--signature must not be empty")
def _check_signature(name):
    return bool(name)


@flags.multi_flags_validator(["output_dir", "overwrite"], message="")
@_rule
def _check_output_dir(values):
    if values["output_dir"] is not None:
        if not values["output_dir"]:
            return "--output_dir must not be empty (leave it out for runs/load-<UTC time>)"
        run_files.check_output_dir(values["output_dir"], values["overwrite"])
    return None


def _window_max_s(window_s: float) -> float:
    return max(WindowPolicy.window_max_s, _WINDOW_MAX_FACTOR * window_s)


def _policy() -> WindowPolicy:
    return WindowPolicy(
        window_s=_WINDOW_S.value,
        window_min_requests=_WINDOW_MIN_REQUESTS.value,
        window_max_s=_window_max_s(_WINDOW_S.value),
        warmup_s=_WARMUP_S.value,
        max_windows=_MAX_WINDOWS.value,
        sla_percentile=_SLA_PERCENTILE.value,
        stability_tolerance=_STABILITY_TOLERANCE.value,
    )


def _output_dir() -> str:
    if _OUTPUT_DIR.value:
        return _OUTPUT_DIR.value
    return "runs/load-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def _mix(specs) -> TrafficMix:
    mode = _MODE.value
    if mode == "closed":
        return TrafficMix.closed_loop(specs, 1)  # each level of the sweep sets its concurrency
    rate = _RATE.value if mode == "open" else _QPS_START.value
    return TrafficMix.open_loop(specs, rate, _DISTRIBUTION.value or "poisson", _SEED.value)


def _config() -> LoadConfig:
    targets = tuple(parse_target(t) for t in _TARGET.value)
    specs = parse_tenant_specs(_MODELS.value, targets)
    return LoadConfig(
        mix=_mix(specs),
        targets=targets,
        output_dir=_output_dir(),
        signature_name=_SIGNATURE.value,
        batch_size=_BATCH_SIZE.value,
        input_source=InputSource.parse(_INPUT.value),
        protocol=_PROTOCOL.value,
        policy=_policy(),
        criteria=ValidityCriteria(min_duration_s=_MIN_DURATION_S.value, min_requests=_MIN_REQUESTS.value),
        max_outstanding=_MAX_OUTSTANDING.value or DEFAULT_MAX_OUTSTANDING,
        workers=_WORKERS.value,
        seed=_SEED.value,
        overwrite=_OVERWRITE.value,
        request_timeout_s=_REQUEST_TIMEOUT_S.value,
        connect_timeout_s=_CONNECT_TIMEOUT_S.value,
    )


def invocation() -> dict:
    """This command line as a flagfile (every flag of this binary), for run.json."""
    module_flags = flags.FLAGS.get_key_flags_for_module(sys.modules[__name__])
    return {"argv": sys.argv, "flagfile": "\n".join(f.serialize() for f in module_flags if f.serialize())}


class _Printer(driver.LoadObserver):
    def __init__(self, sla_percentile: float, sla_ms: float | None):
        self._sla_percentile = sla_percentile
        self._sla_ms = sla_ms

    def run_started(self, label, config):
        tenants = ", ".join(
            f"{t.tenant} at {t.rate_rps:g} rps" if t.open_loop else f"{t.tenant} x{t.concurrency}"
            for t in config.mix.tenants
        )
        _say(f"[{label}] {tenants}; {config.workers} worker(s); warm-up {config.policy.warmup_s:g} s")

    def window_closed(self, label, window):
        _say(run_files.format_window(label, window, self._sla_percentile))

    def run_finished(self, label, result):
        _say(run_files.format_result(label, result, self._sla_ms))


def _monitoring() -> resource_log.MonitoringObserver | None:
    """The resource and server-metrics monitor, when --server_pids or --metrics_url asks for one."""
    if _SERVER_PIDS.value is None and _METRICS_URL.value is None:
        return None
    return resource_log.MonitoringObserver(
        resource_log.parse_server_pids(_SERVER_PIDS.value or ()),
        resource_log.split_urls(_METRICS_URL.value or ()),
    )


def _say(text: str) -> None:
    print(text, flush=True)


@exits_cleanly
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _config()
    printer = _Printer(_SLA_PERCENTILE.value, _SLA_MS.value)
    monitoring = _monitoring()
    observer = printer if monitoring is None else driver.ChainedObserver(printer, monitoring)
    with monitoring or contextlib.nullcontext():  # stops the monitor even when a run raises
        _measure(config, observer)
    _say(f"results: {config.output_dir}")


def _measure(config: LoadConfig, observer: driver.LoadObserver) -> None:
    mode = _MODE.value
    if mode == "closed":
        levels = tuple(int(c) for c in _CONCURRENCY.value or ["1"])
        results = driver.sweep_concurrency(config, levels, observer, invocation=invocation())
        _say("concurrency sweep:\n" + run_files.format_runs(zip((f"concurrency-{n}" for n in levels), results)))
    elif mode == "open":
        driver.run_load(config, observer, label=f"open-{_RATE.value:g}rps", invocation=invocation())
    elif mode == "ramp":
        ramp = driver.perseus_ramp(
            config, _QPS_START.value, _QPS_DELTA.value, _SLA_MS.value,
            patience=_RAMP_PATIENCE.value or DEFAULT_RAMP_PATIENCE,
            max_passes=_RAMP_MAX_PASSES.value or DEFAULT_RAMP_MAX_PASSES,
            observer=observer, invocation=invocation(),
        )
        _say(run_files.format_ramp(ramp, _SLA_PERCENTILE.value, _SLA_MS.value))
    else:
        peak = driver.find_peak(
            config, _QPS_START.value, _SLA_MS.value,
            precision=_PEAK_PRECISION.value or DEFAULT_PEAK_PRECISION,
            max_rate_rps=_MAX_RATE.value, observer=observer, invocation=invocation(),
        )
        _say(run_files.format_peak(peak, _SLA_PERCENTILE.value, _SLA_MS.value))


def run():
    app.run(main)


if __name__ == "__main__":
    run()
