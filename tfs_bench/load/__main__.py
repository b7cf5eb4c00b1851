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
import importlib.util
import sys

from absl import app
from absl import flags

from tfs_bench.load import resource_log
from tfs_bench.load import resources_file
from tfs_bench.load import run_files
from tfs_bench.load import console
from tfs_bench.load import driver
from tfs_bench.load import search
from tfs_bench import addresses
from tfs_bench import flag_rules
from tfs_bench.cpu_priority import GENERATOR_PRIORITIES
from tfs_bench.errors import ConfigError
from tfs_bench.errors import exits_cleanly
from tfs_bench.load.config import MAX_WORKERS
from tfs_bench.load.config import PROTOCOLS
from tfs_bench.load.config import InputSource
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.config import check_outstanding
from tfs_bench.load.config import parse_tenant_specs
from tfs_bench.load.loadgen_log import SCENARIOS
from tfs_bench.load.schedule import ARRIVALS
from tfs_bench.load.schedule import TrafficMix
from tfs_bench.stats import REPORTED_PERCENTILES
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.verdict import check_policy
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.load.windows import window_policy

MODES = ("closed", "open", "ramp", "peak", "mlperf")
DEFAULT_SCENARIO = "Server"
# The library's records hold every default; the flags show them.
_RUN = LoadConfig.__dataclass_fields__
_WINDOWS = WindowPolicy()
_CRITERIA = ValidityCriteria()

_TARGET = flags.DEFINE_list(
    "target", ["127.0.0.1:8500"], "host:port of each server: its gRPC port, or its REST port with --protocol=rest."
)
_MODELS = flags.DEFINE_list(
    "models", [], "Tenants as name[@target][:weight]; target is a --target value or its index (default: the first)."
)
_SIGNATURE = flags.DEFINE_string("signature", _RUN["signature_name"].default, "Signature to call.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", _RUN["batch_size"].default, "Images (rows) per request.", lower_bound=1)
_MODE = flags.DEFINE_enum(
    "mode", "closed", list(MODES),
    "closed, open, ramp (PERSEUS), peak (under --sla_ms) or mlperf (MLPerf LoadGen drives the requests).",
)
_MLPERF_SCENARIO = flags.DEFINE_enum(
    "mlperf_scenario", None, list(SCENARIOS),
    "mlperf: LoadGen's scenario (default Server). Server needs --rate (its target qps) and --sla_ms (its latency "
    "bound at --sla_percentile); Offline needs --rate (expected qps); --min_duration_s, --min_requests and --seed "
    "set LoadGen's minimums and seeds. LoadGen's logs go to <output_dir>/mlperf/.",
)
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
_SLA_PERCENTILE = flags.DEFINE_float("sla_percentile", _WINDOWS.sla_percentile, "Percentile the SLA and stability are judged on.")
_WARMUP_S = flags.DEFINE_float("warmup_s", _WINDOWS.warmup_s, "Warm-up before the first window, excluded.", lower_bound=0.0)
_WINDOW_S = flags.DEFINE_float("window_s", _WINDOWS.window_s, "Measurement window length.")
_WINDOW_MIN_REQUESTS = flags.DEFINE_integer(
    "window_min_requests", _WINDOWS.window_min_requests, "A window also waits for this many requests per tenant.", lower_bound=0
)
_MIN_DURATION_S = flags.DEFINE_float(
    "min_duration_s", _CRITERIA.min_duration_s, "VALID needs the pooled windows to last this long.", lower_bound=0.0
)
_MIN_REQUESTS = flags.DEFINE_integer(
    "min_requests", _CRITERIA.min_requests, "VALID needs this many successful requests per tenant.", lower_bound=0
)
_MAX_WINDOWS = flags.DEFINE_integer("max_windows", _WINDOWS.max_windows, "Stop after this many windows if not yet stable.")
_STABILITY_TOLERANCE = flags.DEFINE_float(
    "stability_tolerance", _WINDOWS.stability_tolerance,
    f"Stable when the last {_WINDOWS.stability_windows} windows are within this fraction of their mean."
)
_MAX_OUTSTANDING = flags.DEFINE_integer(
    "max_outstanding", None,
    f"open, ramp, peak: cap on each tenant's requests in flight; arrivals beyond it are DROPPED "
    f"(default {_RUN['max_outstanding'].default}).",
    lower_bound=1,
)
_SEED = flags.DEFINE_integer("seed", _RUN["seed"].default, "Seed of the arrival schedules and of random inputs.", lower_bound=0)
_INPUT = flags.DEFINE_string("input", "random", "random, or images:DIR (images resized to the input shape).")
_PROTOCOL = flags.DEFINE_enum("protocol", "grpc", list(PROTOCOLS), "gRPC Predict or REST :predict.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where to write the run (default runs/load-<UTC time>).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a previous run in --output_dir.")
_RESUME = flags.DEFINE_bool(
    "resume", False,
    "Continue the run in --output_dir that was interrupted or failed, with the flags it started with: finished "
    "runs of a sweep or search are read back, the one that stopped is measured again.",
)
_WORKERS = flags.DEFINE_integer(
    "workers", _RUN["workers"].default, "Load-generator processes sharing the schedule.", lower_bound=1, upper_bound=MAX_WORKERS
)
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", None,
    "Run the --workers as Ray actors spread over this cluster's nodes: auto (the cluster this machine belongs "
    "to), host:port of its head, or ray://host:port (Ray Client). Each node measures on its own clock, converted "
    "at a common start; summary.json keeps each worker's node and clock offset. Needs `pip install ray`.",
)
_RAY_WORKER_CPUS = flags.DEFINE_float(
    "ray_worker_cpus", _RUN["ray_worker_cpus"].default, "With --ray_address: the CPUs each worker reserves on its node.",
    lower_bound=0.0,
)
_GENERATOR_PRIORITY = flags.DEFINE_enum(
    "generator_priority",
    _RUN["generator_priority"].default,
    list(GENERATOR_PRIORITIES),
    "CPU priority of the worker processes: realtime (SCHED_FIFO 1, keeps sends on time beside busy servers on the "
    "same host; needs root or RLIMIT_RTPRIO), normal, or auto (realtime where permitted). Recorded per worker in "
    "summary.json.",
)
_PEAK_PRECISION = flags.DEFINE_float(
    "peak_precision", None, f"peak: bisect until the bracket is within this fraction (default {search.DEFAULT_PRECISION})."
)
_MAX_RATE = flags.DEFINE_float("max_rate", None, "peak: the highest rate to probe (default: no limit).")
_RAMP_PATIENCE = flags.DEFINE_integer(
    "ramp_patience", None, f"ramp: passes without throughput gain before it stops (default {search.DEFAULT_PATIENCE}).",
    lower_bound=1,
)
_RAMP_MAX_PASSES = flags.DEFINE_integer(
    "ramp_max_passes", None, f"ramp: at most this many passes (default {search.DEFAULT_MAX_PASSES}).", lower_bound=1
)
_CLIENT_RETRIES = flags.DEFINE_integer(
    "client_retries", None,
    f"closed, ramp, peak: re-measure a run INVALID because the host kept the generator off the CPU or late "
    f"(client_starved, late_sends without client_saturated) up to this many times (default "
    f"{driver.DEFAULT_CLIENT_RETRIES}); each attempt is kept.",
    lower_bound=0,
)
_REQUEST_TIMEOUT_S = flags.DEFINE_float("request_timeout_s", _RUN["request_timeout_s"].default, "Deadline of each request.")
_CONNECT_TIMEOUT_S = flags.DEFINE_float("connect_timeout_s", _RUN["connect_timeout_s"].default, "How long to wait for each target at start.")
_SERVER_PIDS = flags.DEFINE_list(
    "server_pids", None,
    f"Server processes to monitor, as name=pid,...: CPU and memory of each process tree per window, with "
    f"GPU and an idle baseline, in <run>/{resources_file.RESOURCES_FILE}.",
)
_METRICS_URL = flags.DEFINE_multi_string(
    "metrics_url", None,
    f"Prometheus page of a server, as URL or TARGET=URL (repeat the flag or give a comma list), scraped at each "
    f"window boundary for the server-side latency breakdown in <run>/{resources_file.RESOURCES_FILE}. A tenant's "
    f"breakdown comes from its target's page; name the targets when two servers serve the same model.",
)

# Flags that belong to some modes only; None (their default) means "not given".
_MODE_FLAGS = {
    "concurrency": ("closed",),
    "rate": ("open", "mlperf"),
    "distribution": ("open", "ramp", "peak"),
    "max_outstanding": ("open", "ramp", "peak", "mlperf"),
    "mlperf_scenario": ("mlperf",),
    "qps_start": ("ramp", "peak"),
    "qps_delta": ("ramp",),
    "ramp_patience": ("ramp",),
    "ramp_max_passes": ("ramp",),
    "peak_precision": ("peak",),
    "max_rate": ("peak",),
    "client_retries": ("closed", "ramp", "peak"),
}
_REQUIRED = {"closed": (), "open": ("rate",), "ramp": ("qps_start", "qps_delta", "sla_ms"), "peak": ("qps_start", "sla_ms"),
             "mlperf": ()}
# LoadGen's scenarios and the flags each needs (SingleStream's --sla_ms is optional: its expected latency).
_MLPERF_REQUIRED = {"SingleStream": (), "Server": ("rate", "sla_ms"), "Offline": ("rate",)}


@flag_rules.rule("mode", *_MODE_FLAGS, "sla_ms")
def _check_mode(mode, *given):
    values = dict(zip((*_MODE_FLAGS, "sla_ms"), given))
    for name, modes in _MODE_FLAGS.items():
        if values[name] is not None and mode not in modes:
            return f"--{name} does not apply to --mode={mode} (only to {' or '.join(f'--mode={m}' for m in modes)})"
    missing = [f"--{name}" for name in _REQUIRED[mode] if values[name] is None]
    if missing:
        return f"--mode={mode} needs {' and '.join(missing)}"
    if mode == "mlperf":
        scenario = values["mlperf_scenario"] or DEFAULT_SCENARIO
        missing = [f"--{name}" for name in _MLPERF_REQUIRED[scenario] if values[name] is None]
        if missing:
            return f"--mlperf_scenario={scenario} needs {' and '.join(missing)}"
        if scenario == "Offline" and values["sla_ms"] is not None:
            return "--sla_ms does not apply to --mlperf_scenario=Offline (LoadGen's Offline has no latency bound)"
    return None


@flag_rules.rule("mode", "workers", "ray_address", "resume")
def _check_mlperf_generator(mode, workers, ray_address, resume):
    if mode != "mlperf":
        return None
    if workers != 1 or ray_address is not None:
        return "--mode=mlperf runs LoadGen in this process: leave --workers at 1 and --ray_address out"
    if resume:
        return "--resume does not apply to --mode=mlperf: a LoadGen test runs whole (start it again)"
    if importlib.util.find_spec("mlperf_loadgen") is None:
        return "--mode=mlperf needs MLPerf LoadGen, which is not installed here (pip install mlcommons-loadgen)"
    return None


@flag_rules.rule("models", "target", "mode")
def _check_models(models, targets, mode):
    specs = parse_tenant_specs(models, [addresses.normalize(t, "target") for t in targets])
    weighted = [s.tenant for s in specs if s.weight != 1.0]
    if mode == "closed" and weighted:
        return f"weights ({', '.join(weighted)}) share a rate; --mode=closed gives every tenant the same concurrency"
    return None


@flag_rules.rule("target")
def _check_targets(targets):
    if not targets:
        return "give at least one --target=host:port"
    parsed = [addresses.normalize(t, "target") for t in targets]
    if len(set(parsed)) != len(parsed):
        return f"--target lists a target twice: {', '.join(parsed)}"
    return None


@flag_rules.rule("concurrency")
def _check_concurrency(levels):
    if levels is None:
        return None
    if not levels or not all(level.isdigit() and int(level) >= 1 for level in levels):
        return f"--concurrency takes integers >= 1, got {','.join(levels)}"
    if len(set(map(int, levels))) != len(levels):
        return f"--concurrency lists a level twice: {','.join(levels)}"
    return None


flag_rules.positive("rate", "qps_start", "qps_delta", "sla_ms", "max_rate", "window_s", "request_timeout_s",
                    "connect_timeout_s")


@flag_rules.rule("sla_percentile")
def _check_sla_percentile(value):
    if value not in REPORTED_PERCENTILES:
        return f"--sla_percentile must be one of {', '.join(map(str, REPORTED_PERCENTILES))}"
    return None


@flag_rules.rule("peak_precision")
def _check_precision(value):
    return None if value is None or 0 < value < 1 else "--peak_precision must be in (0, 1)"


@flag_rules.rule("window_s", "warmup_s", "window_min_requests", "max_windows", "sla_percentile",
                 "stability_tolerance", "min_duration_s", "min_requests")
def _check_windows(window_s, warmup_s, window_min_requests, max_windows, sla_percentile, stability_tolerance,
                   min_duration_s, min_requests):
    if not window_s > 0 or sla_percentile not in REPORTED_PERCENTILES:
        return None  # their own rules say so
    policy = window_policy(window_s, warmup_s, window_min_requests, max_windows, sla_percentile, stability_tolerance)
    check_policy(policy, ValidityCriteria(min_duration_s=min_duration_s, min_requests=min_requests))
    return None


@flag_rules.rule("max_outstanding", "workers")
def _check_outstanding(max_outstanding, workers):
    if max_outstanding is not None:
        check_outstanding(max_outstanding, workers)
    return None


@flag_rules.rule("max_rate", "qps_start")
def _check_max_rate(max_rate, qps_start):
    if max_rate is not None and qps_start is not None and max_rate < qps_start:
        return "--max_rate must be at least --qps_start"
    return None


@flag_rules.rule("input")
def _check_input(text):
    InputSource.parse(text)


@flag_rules.rule("server_pids")
def _check_server_pids(items):
    if items is not None:
        resource_log.parse_server_pids(items)


@flag_rules.rule("metrics_url", "target")
def _check_metrics_urls(values, targets):
    if values is not None:
        try:
            known = _targets(targets or ())
        except ConfigError:
            known = ()  # the --target rule names that problem
        resource_log.split_urls(values, known)


@flag_rules.rule("ray_address")
def _check_ray_address(address):
    if address is None:
        return None
    if not address.strip():
        return "--ray_address must not be empty: give auto, host:port or ray://host:port"
    if importlib.util.find_spec("ray") is None:
        return "--ray_address needs Ray, which is not installed here (pip install ray)"
    return None


@flag_rules.rule("signature")
def _check_signature(name):
    return None if name else "--signature must not be empty"


@flag_rules.rule("output_dir", "overwrite", "resume")
def _check_output_dir(output_dir, overwrite, resume):
    if resume:
        if overwrite:
            return "--resume continues the run in --output_dir and --overwrite replaces it: give one"
        if not output_dir:
            return "--resume needs --output_dir: the directory of the run to continue"
        return None  # what the directory holds is checked against the flags once they are all read
    if output_dir is not None:
        if not output_dir:
            return "--output_dir must not be empty (leave it out for runs/load-<UTC time>)"
        run_files.check_output_dir(output_dir, overwrite)
    return None


def _policy() -> WindowPolicy:
    return window_policy(_WINDOW_S.value, _WARMUP_S.value, _WINDOW_MIN_REQUESTS.value, _MAX_WINDOWS.value,
                         _SLA_PERCENTILE.value, _STABILITY_TOLERANCE.value)


def _output_dir() -> str:
    if _OUTPUT_DIR.value:
        return _OUTPUT_DIR.value
    return "runs/load-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")


def _mix(specs) -> TrafficMix:
    mode = _MODE.value
    if mode == "closed" or (mode == "mlperf" and (_MLPERF_SCENARIO.value or DEFAULT_SCENARIO) != "Server"):
        return TrafficMix.closed_loop(specs, 1)  # each level of the sweep sets its concurrency
    rate = _RATE.value if mode in ("open", "mlperf") else _QPS_START.value
    return TrafficMix.open_loop(specs, rate, _DISTRIBUTION.value or "poisson", _SEED.value)


def _targets(values) -> tuple[str, ...]:
    return tuple(addresses.normalize(t, "target") for t in values)


def _config() -> LoadConfig:
    targets = _targets(_TARGET.value)
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
        max_outstanding=_MAX_OUTSTANDING.value or _RUN["max_outstanding"].default,
        workers=_WORKERS.value,
        seed=_SEED.value,
        overwrite=_OVERWRITE.value,
        request_timeout_s=_REQUEST_TIMEOUT_S.value,
        connect_timeout_s=_CONNECT_TIMEOUT_S.value,
        generator_priority=_GENERATOR_PRIORITY.value,
        ray_address=_RAY_ADDRESS.value,
        ray_worker_cpus=_RAY_WORKER_CPUS.value,
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
        where = "" if config.ray_address is None else f" on the Ray cluster at {config.ray_address}"
        _say(f"[{label}] {tenants}; {config.workers} worker(s){where}; warm-up {config.policy.warmup_s:g} s")

    def workers_placed(self, label, workers):
        for w in workers:
            offset_ns, uncertainty_ns = w.clock
            _say(f"[{label}] worker {w.worker} on node {w.node}: clock offset {offset_ns / 1e3:+.1f} us "
                 f"± {uncertainty_ns / 1e3:.1f} us")

    def window_closed(self, label, window):
        _say(console.format_window(label, window, self._sla_percentile))

    def run_finished(self, label, result):
        _say(console.format_result(label, result, self._sla_ms))

    def run_repeated(self, label, result, next_label):
        _say(f"[{label}] INVALID because of the host, not the server: measuring again as {next_label}")

    def run_kept(self, label, result):
        _say(f"[{label}] measured before this --resume; read back:")
        _say(console.format_result(label, result, self._sla_ms))


def _monitoring() -> resource_log.MonitoringObserver | None:
    """The resource and server-metrics monitor, when --server_pids or --metrics_url asks for one."""
    if _SERVER_PIDS.value is None and _METRICS_URL.value is None:
        return None
    return resource_log.MonitoringObserver(
        resource_log.parse_server_pids(_SERVER_PIDS.value or ()),
        resource_log.split_urls(_METRICS_URL.value or (), _targets(_TARGET.value)),
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
    try:
        with monitoring or contextlib.nullcontext():  # stops the monitor even when a run raises
            _measure(config, observer)
    except KeyboardInterrupt:
        print(f"interrupted: every window measured so far is kept in {config.output_dir}; a run that did not "
              f"finish has {run_files.FAILURE_FILE} instead of {run_files.SUMMARY_FILE}; continue with the same "
              f"flags and --resume --output_dir={config.output_dir}", file=sys.stderr)
        sys.exit(130)
    _say(f"results: {config.output_dir}")


def _measure(config: LoadConfig, observer: driver.LoadObserver) -> None:
    mode = _MODE.value
    if mode == "closed":
        levels = tuple(int(c) for c in _CONCURRENCY.value or ["1"])
        results = driver.sweep_concurrency(config, levels, observer, invocation=invocation(), client_retries=_retries(),
                                           resume=_RESUME.value)
        _say("concurrency sweep:\n" + console.format_runs(zip((f"concurrency-{n}" for n in levels), results)))
    elif mode == "mlperf":
        _run_mlperf(config, observer)
    elif mode == "open":
        driver.run_load(config, observer, label=f"open-{_RATE.value:g}rps", invocation=invocation(), resume=_RESUME.value)
    elif mode == "ramp":
        ramp = driver.perseus_ramp(
            config, _QPS_START.value, _QPS_DELTA.value, _SLA_MS.value,
            patience=_RAMP_PATIENCE.value or search.DEFAULT_PATIENCE,
            max_passes=_RAMP_MAX_PASSES.value or search.DEFAULT_MAX_PASSES,
            observer=observer, invocation=invocation(), client_retries=_retries(), resume=_RESUME.value,
        )
        _say(console.format_ramp(ramp, _SLA_PERCENTILE.value, _SLA_MS.value))
    else:
        peak = driver.find_peak(
            config, _QPS_START.value, _SLA_MS.value,
            precision=_PEAK_PRECISION.value or search.DEFAULT_PRECISION,
            max_rate_rps=_MAX_RATE.value, observer=observer, invocation=invocation(), client_retries=_retries(),
            resume=_RESUME.value,
        )
        _say(console.format_peak(peak, _SLA_PERCENTILE.value, _SLA_MS.value))


def _run_mlperf(config: LoadConfig, observer: driver.LoadObserver) -> None:
    from tfs_bench.load import mlperf  # LoadGen is imported only by this mode

    settings = mlperf.loadgen_settings(config, _MLPERF_SCENARIO.value or DEFAULT_SCENARIO, _RATE.value, _SLA_MS.value)
    outcome = mlperf.run_mlperf(config, settings, observer, invocation=invocation())
    _say(console.format_loadgen(outcome.loadgen, outcome.result, _SLA_PERCENTILE.value))


def _retries() -> int:
    return driver.DEFAULT_CLIENT_RETRIES if _CLIENT_RETRIES.value is None else _CLIENT_RETRIES.value


def run():
    app.run(main)


if __name__ == "__main__":
    run()
