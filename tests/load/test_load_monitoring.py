"""The load run's monitoring observer against a real embedded server with Prometheus metrics."""

import dataclasses
import subprocess
import sys
import threading

import pytest

from conftest import REPO_ROOT
from conftest import run_env
from load_support import MODEL
from load_support import QUICK_CRITERIA
from load_support import QUICK_FLAGS
from load_support import QUICK_POLICY
from server_support import log_tail
from server_support import start_embedded
from server_support import write_config
from tfs_bench import addresses
from tfs_bench.plan import plan_files
from tfs_bench import tfs_protos
from tfs_bench.load.config import LoadConfig
from tfs_bench.load.resources_file import IdleBaseline
from tfs_bench.load.resources_file import MonitoredWindow
from tfs_bench.errors import ConfigError
from tfs_bench.load.resource_log import MetricsSource
from tfs_bench.load.resource_log import MonitoringObserver
from tfs_bench.load.resource_log import split_urls
from tfs_bench.load.resources_file import read_resources
from tfs_bench.load.run_files import read_windows
from tfs_bench.load.driver import ChainedObserver
from tfs_bench.load.driver import LoadObserver
from tfs_bench.load.driver import run_load
from tfs_bench.monitors.gpu import GpuSampler
from tfs_bench.monitors.scrape import metrics_url
from tfs_bench.load.schedule import TenantLoad
from tfs_bench.load.schedule import TrafficMix


def start_monitored(known_answer_dir, tmp):
    monitoring = write_config(tmp / "monitoring.config", tfs_protos.to_text(plan_files.monitoring_config()))
    return start_embedded(
        [f"--model_name={MODEL}", f"--model_base_path={known_answer_dir / MODEL}", f"--monitoring_config_file={monitoring}"],
        tmp,
        [MODEL],
    )


@pytest.fixture(scope="module")
def server(known_answer_dir, tmp_path_factory):
    server = start_monitored(known_answer_dir, tmp_path_factory.mktemp("monitored_server"))
    yield server
    assert server.stop() == 0, log_tail(server)


def metrics_url_of(server) -> str:
    rest = addresses.parse(server.rest_address)
    return metrics_url(rest.host, rest.port)


def monitor_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "monitor" in t.name]


def test_each_window_gets_server_cpu_and_a_latency_breakdown(server, tmp_path):
    config = LoadConfig(
        mix=TrafficMix((TenantLoad(MODEL, MODEL, concurrency=2),)),
        targets=(server.grpc_target,),
        output_dir=str(tmp_path / "run"),
        policy=QUICK_POLICY,
        criteria=QUICK_CRITERIA,
    )
    url = metrics_url_of(server)
    with MonitoringObserver({"tfs": server.pid}, [url], baseline_s=0.3, interval_s=0.2) as monitoring:
        run_load(config, ChainedObserver(LoadObserver(), monitoring))
        assert monitor_threads() == []  # run_finished stopped and joined it

    baseline, *lines = read_resources(tmp_path / "run")
    windows = read_windows(tmp_path / "run")
    assert isinstance(baseline, IdleBaseline) and baseline.resources.cpu_samples >= 2
    # The run reports this machine's GPUs as NVML sees them, with or without a GPU: "ok" with
    # every device, or "unavailable" with the reason and none.
    with GpuSampler() as machine:
        expected = machine.status
    assert baseline.gpu_status == expected
    assert bool(expected.reason) == (expected.status == "unavailable")
    assert all(isinstance(line, MonitoredWindow) for line in lines)
    assert [line.window for line in lines] == [w.index for w in windows]
    for line, window in zip(lines, windows):
        resources = line.resources
        assert (resources.start_ns, resources.end_ns) == (window.start_ns, window.end_ns)
        [tfs] = resources.servers
        assert tfs.root_pid == server.pid and tfs.cpu_s > 0
        assert resources.gpu_status == expected
        assert [g.index for g in resources.gpus] == list(range(expected.device_count))
        tenant = line.breakdown[MODEL]
        assert tenant.status == "ok", tenant
        breakdown = tenant.breakdown
        assert tenant.url == url and breakdown.entrypoint == "GRPC"
        client_us = window.tenants[MODEL].service_time.mean_ms * 1000
        assert breakdown.client_mean_service_time_us == pytest.approx(client_us)
        assert 0 < breakdown.request_latency_mean_us < client_us
        assert line.server_metrics[0].delta.status == "ok"


@pytest.fixture(scope="module")
def second_server(known_answer_dir, tmp_path_factory):
    server = start_monitored(known_answer_dir, tmp_path_factory.mktemp("second_server"))
    yield server
    assert server.stop() == 0, log_tail(server)


def test_each_tenant_gets_the_breakdown_of_the_server_it_sends_to(server, second_server, tmp_path):
    """The same model name on two servers: each tenant's figures come from its own target's page."""
    first, second = server.grpc_target, second_server.grpc_target
    mix = TrafficMix((
        TenantLoad(MODEL, MODEL, concurrency=1),  # no target: the first
        TenantLoad(f"{MODEL}@{second}", MODEL, target=second, concurrency=1),
    ))
    config = LoadConfig(mix=mix, targets=(first, second), output_dir=str(tmp_path / "named"),
                        policy=QUICK_POLICY, criteria=QUICK_CRITERIA)
    # The second server's page first: taking the first page that times the model would be wrong.
    sources = [MetricsSource(metrics_url_of(second_server), second), MetricsSource(metrics_url_of(server), first)]
    with MonitoringObserver({}, sources, baseline_s=0, interval_s=0.2) as monitoring:
        run_load(config, ChainedObserver(LoadObserver(), monitoring))
    _, *lines = read_resources(tmp_path / "named")
    assert lines
    for line in lines:
        mine, theirs = line.breakdown[MODEL], line.breakdown[f"{MODEL}@{second}"]
        assert (mine.status, theirs.status) == ("ok", "ok"), (mine, theirs)
        assert (mine.url, theirs.url) == (metrics_url_of(server), metrics_url_of(second_server))

    # Pages without their targets, two of which time the model: no guess, and the fix is named.
    unnamed = dataclasses.replace(config, output_dir=str(tmp_path / "unnamed"))
    urls = [metrics_url_of(server), metrics_url_of(second_server)]
    with MonitoringObserver({}, urls, baseline_s=0, interval_s=0.2) as monitoring:
        run_load(unnamed, ChainedObserver(LoadObserver(), monitoring))
    _, *lines = read_resources(tmp_path / "unnamed")
    later = [line for line in lines if line.server_metrics]  # a window after the first scrape
    assert later
    for line in later:
        tenant = line.breakdown[MODEL]
        assert tenant.status == "ambiguous" and tenant.url is None, tenant
        assert "--metrics_url=TARGET=URL" in tenant.reason and urls[0] in tenant.reason


def test_metrics_urls_with_and_without_targets_are_parsed_and_checked():
    targets = ("127.0.0.1:8500", "127.0.0.1:8510")
    url_a, url_b = "http://127.0.0.1:8501/metrics", "http://127.0.0.1:8511/metrics"
    assert split_urls([f"127.0.0.1:8500={url_a}, {url_b}"], targets) == [
        MetricsSource(url_a, "127.0.0.1:8500"), MetricsSource(url_b)
    ]
    assert split_urls([f" 127.0.0.1:8510 ={url_b}"], targets) == [MetricsSource(url_b, "127.0.0.1:8510")]
    with pytest.raises(ConfigError, match=r"127.0.0.1:9000 is not one of the targets \(127.0.0.1:8500, 127.0.0.1:8510\)"):
        split_urls([f"127.0.0.1:9000={url_a}"], targets)
    with pytest.raises(ConfigError, match="gives a target two pages"):
        split_urls([f"127.0.0.1:8500={url_a}", f"127.0.0.1:8500={url_b}"], targets)
    with pytest.raises(ConfigError, match="lists a URL twice"):
        split_urls([url_a, f"127.0.0.1:8500={url_a}"], targets)
    with pytest.raises(ConfigError, match="is not host:port"):
        split_urls([f"localhost={url_a}"], targets)
    with pytest.raises(ConfigError, match="must be http or https"):
        split_urls(["127.0.0.1:8500=ftp://h/metrics"], targets)


def test_close_stops_the_monitor_of_a_run_that_never_finished(tmp_path):
    config = LoadConfig(
        mix=TrafficMix((TenantLoad(MODEL, MODEL, concurrency=1),)),
        targets=("127.0.0.1:1",),
        output_dir=str(tmp_path),
    )
    with MonitoringObserver({}, baseline_s=0, interval_s=0.1) as monitoring:
        monitoring.run_started("run", config)
        assert monitor_threads() != []
    assert monitor_threads() == []
    [baseline] = read_resources(tmp_path)
    assert isinstance(baseline, IdleBaseline)


def test_a_failed_run_stops_the_monitor_through_a_chained_observer(tmp_path):
    from tfs_bench.load.driver import ChainedObserver

    config = LoadConfig(
        mix=TrafficMix((TenantLoad(MODEL, MODEL, concurrency=1),)),
        targets=("127.0.0.1:1",),
        output_dir=str(tmp_path),
    )
    monitoring = MonitoringObserver({}, baseline_s=0, interval_s=0.1)
    observers = ChainedObserver(LoadObserverSpy(), monitoring)
    observers.run_started("run", config)
    assert monitor_threads() != []
    observers.run_failed("run", RuntimeError("a worker died"))
    assert monitor_threads() == []


class LoadObserverSpy:
    def run_started(self, label, config):
        pass

    def run_failed(self, label, error):
        self.failed = error


def test_the_cli_flags_write_resources_per_window(server, tmp_path):
    out = tmp_path / "run"
    url = metrics_url_of(server)
    argv = [
        sys.executable, "-m", "tfs_bench.load", f"--target={server.grpc_target}", f"--models={MODEL}",
        f"--output_dir={out}", f"--server_pids=tfs={server.pid}", f"--metrics_url={url}", *QUICK_FLAGS,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, env=run_env(), cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr

    run_dir = out / "concurrency-1"
    baseline, *lines = read_resources(run_dir)
    assert isinstance(baseline, IdleBaseline)
    assert [line.window for line in lines] == [w.index for w in read_windows(run_dir)]
    assert all(line.breakdown[MODEL].status == "ok" for line in lines)
