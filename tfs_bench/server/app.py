"""The server's lifecycle: configure TensorFlow, load every model, then open the ports; stop cleanly.

Order matters and follows TF Serving: thread pools and GPU memory are set before the first model
loads (TF fixes them at its first op), and the gRPC and REST ports open only once every initially
configured model is AVAILABLE, so a client that can connect can also predict.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time

from absl import logging

from tfs_bench import addresses
from tfs_bench.errors import ConfigError
from tfs_bench.ticker import Ticker
from tfs_bench.server import batching
from tfs_bench.server import devices
from tfs_bench.server import grpc_service
from tfs_bench.server import inference as inference_lib
from tfs_bench.server import json_offload
from tfs_bench.server import metrics as metrics_lib
from tfs_bench.server import model_config
from tfs_bench.server import options as options_lib
from tfs_bench.server import predict
from tfs_bench.server import rest
from tfs_bench.server import servables
from tfs_bench.server import warmup
from tfs_bench.server.config_files import ServerConfig
from tfs_bench.server.models import ModelManager
from tfs_bench.server.options import ServerOptions
from tfs_bench.server.status import ServingError

BATCH_SCHEDULER_CLOSE_TIMEOUT_S = 10.0


class SignalStop:
    """A stop flag a signal handler can set safely: the handler only writes to a pipe.

    (threading.Event.set() takes a lock, which a handler interrupting its own thread inside that
    lock would wait for forever.)
    """

    def __init__(self):
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._set = False

    def set(self, *_signal_args) -> None:
        try:
            os.write(self._write_fd, b"x")
        except BlockingIOError:
            pass  # already full of wake-ups

    def wait(self, timeout_s: float | None = None) -> bool:
        if not self._set:
            ready, _, _ = select.select([self._read_fd], [], [], timeout_s)
            self._set = bool(ready)
        return self._set

    def is_set(self) -> bool:
        return self.wait(0)

    def close(self) -> None:
        os.close(self._read_fd)
        os.close(self._write_fd)


class _ConfigFilePoller:
    """Re-reads --model_config_file every N s and reloads the models when it changed."""

    def __init__(self, path: str, interval_s: float, models: ModelManager, initial, reload_timeout_s: float):
        self._path = path
        self._interval_s = interval_s
        self._models = models
        self._last = initial
        self._reload_timeout_s = reload_timeout_s
        # A reload in progress finishes before stop() returns; it is bounded by its own timeout.
        self._ticker = Ticker("config-file-poller", interval_s, self._poll, stop_timeout_s=None)
        self.start = self._ticker.start
        self.stop = self._ticker.stop

    def _poll(self) -> None:
        try:
            configs = model_config.read_file(self._path)
            if configs != self._last:
                logging.info("%s changed; reloading %d model(s)", self._path, len(configs))
                self._last = configs  # a failed reload is not retried until the file changes
                self._models.reload(configs, self._reload_timeout_s)
        except (ConfigError, ServingError) as e:
            # TF Serving keeps serving the previous config when a new one is bad.
            logging.error("Model config reload from %s failed: %s", self._path, e)


def _check_ports_free(options: ServerOptions) -> None:
    """Fails start-up at once when a listening port is taken.

    TF Serving opens its ports only after every model has loaded, so a port in use shows up
    minutes into a start-up with large models; checking first says so in milliseconds. (Another
    process can still take the port before it is bound; that fails at bind time, as before.)
    """
    for listener, port in (("gRPC", options.grpc_port), ("HTTP/REST", options.rest_api_port)):
        if not port:
            continue
        family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: TIME_WAIT is no conflict
            try:
                probe.bind((options.host, port))
            except OSError as e:
                raise ConfigError(
                    f"cannot listen for {listener} on {addresses.join(options.host, port)}: {e.strerror or e} "
                    "(checked before loading any model)"
                ) from None


class ModelServer:
    """One embedded server: models, batch scheduler, metrics, gRPC and REST listeners."""

    def __init__(self, options: ServerOptions, config: ServerConfig):
        self._options = options
        self._config = config
        self._metrics = metrics_lib.ServerMetrics() if config.prometheus_path else None
        self._scheduler = None
        self._models: ModelManager | None = None
        self._grpc = None
        self._grpc_executor = None
        self._rest: rest.RestServer | None = None
        self._json_offload: json_offload.JsonOffload | None = None
        self._config_poller: _ConfigFilePoller | None = None

    @property
    def rest_port(self) -> int | None:
        return self._rest.port if self._rest else None

    @property
    def batch_scheduler(self) -> batching.BatchScheduler | None:
        """The shared scheduler (None without --enable_batching); its queue depths show load."""
        return self._scheduler

    def start(self, stop) -> bool:
        """Loads the models and opens the ports; False if `stop` was set while loading.

        Raises ConfigError when the server cannot start; call stop() in either case.
        """
        options = self._options
        _check_ports_free(options)
        if options.ignored_inter_op:
            logging.warning(
                "--tensorflow_inter_op_parallelism=%d is ignored without --tensorflow_intra_op_parallelism > 0 "
                "(as tensorflow_model_server ignores it); ops run in TensorFlow's inter-op pool",
                options.inter_op_parallelism,
            )
        devices.configure_threads(*options.thread_counts)
        devices.limit_gpu_memory(options.per_process_gpu_memory_fraction)
        if self._config.batching is not None:
            self._scheduler = batching.BatchScheduler(self._config.batching, self._metrics)
        self._models = ModelManager(self._load, options.file_system_poll_wait_s)
        if not self._models.serve(self._config.models, stop):
            return False
        predictor = predict.Predictor(self._models, self._scheduler, self._metrics)
        inference = inference_lib.Inference(predictor, options.enable_signature_method_name_check)
        self._start_grpc(inference)
        self._start_rest(inference)
        if options.model_config_file and options.model_config_file_poll_wait_s > 0:
            self._config_poller = _ConfigFilePoller(
                options.model_config_file,
                options.model_config_file_poll_wait_s,
                self._models,
                self._config.models,
                options.reload_timeout_s,
            )
            self._config_poller.start()
        return True

    def _load(self, name: str, version: int, path: str):
        started = time.perf_counter()
        try:
            servable = servables.load(name, version, path)
            if self._options.enable_model_warmup:
                count = warmup.replay(servable)
                if count:
                    logging.info("Finished reading %d warmup records for %s version %d", count, name, version)
        except ServingError:
            if self._metrics is not None:
                self._metrics.observe_model_load_failure(path)
            raise
        if self._metrics is not None:
            self._metrics.observe_model_load(path, (time.perf_counter() - started) * 1e6)
        return servable

    def _start_grpc(self, inference: inference_lib.Inference) -> None:
        options = self._options
        if not options.grpc_port and not options.grpc_socket_path:
            return
        batching_options = self._config.batching
        threads = options_lib.grpc_handler_threads(options.grpc_max_threads, os.cpu_count() or 1, batching_options)
        if batching_options is not None and threads < batching_options.max_batch_size:
            logging.warning(
                "--grpc_max_threads=%d is below max_batch_size=%d: a request waiting in a batch "
                "holds a handler thread, so batches of one-item requests cannot fill",
                threads, batching_options.max_batch_size,
            )
        self._grpc, self._grpc_executor = grpc_service.start_server(
            host=options.host,
            port=options.grpc_port,
            socket_path=options.grpc_socket_path,
            channel_arguments=options.grpc_channel_arguments,
            prediction_service=grpc_service.PredictionService(inference, options.max_tensor_fill_bytes),
            model_service=grpc_service.ModelService(self._models, options.reload_timeout_s),
            max_workers=threads,
        )
        if options.grpc_port:
            logging.info("Running gRPC ModelServer at %s:%d (%d handler threads) ...",
                         options.host, options.grpc_port, threads)
        if options.grpc_socket_path:
            logging.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

    def _start_rest(self, inference: inference_lib.Inference) -> None:
        options = self._options
        if self._config.prometheus_path and not options.rest_api_port:
            logging.warning("Prometheus metrics are enabled but --rest_api_port is 0: not exported")
        if not options.rest_api_port:
            return
        self._json_offload = json_offload.JsonOffload(options.rest_json_workers, options.rest_json_offload_bytes)
        api = rest.RestApi(
            inference, self._models, options.rest_api_timeout_ms, self._metrics, self._config.prometheus_path,
            self._json_offload,
        )
        try:
            limits = rest.RestLimits(
                max_body_bytes=options.rest_max_body_bytes,
                max_inflight_body_bytes=options.rest_max_inflight_body_bytes,
                idle_timeout_s=options.rest_idle_timeout_s,
                max_connections=options.rest_max_connections,
            )
            self._rest = rest.RestServer(options.host, options.rest_api_port, api, limits)
        except OSError as e:
            raise ConfigError(f"cannot listen for HTTP/REST on {options.host}:{options.rest_api_port}: {e}") from None
        self._rest.start()
        logging.info("Exporting HTTP/REST API at:%s:%d ...", options.host, self.rest_port)

    def stop(self) -> None:
        """Stops accepting, lets in-flight requests finish (bounded), joins every thread."""
        grace_s = self._options.shutdown_grace_s
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
            self._grpc_executor.shutdown(wait=True)
        if self._rest is not None:
            self._rest.stop()
        if self._json_offload is not None:
            self._json_offload.close()
        if self._config_poller is not None:
            self._config_poller.stop()
        if self._scheduler is not None:
            self._scheduler.close(BATCH_SCHEDULER_CLOSE_TIMEOUT_S)
        if self._models is not None:
            self._models.stop()


def serve_until_signalled(options: ServerOptions, config: ServerConfig) -> int:
    """Runs the server until SIGTERM or SIGINT; returns the exit status. Raises ConfigError."""
    stop = SignalStop()
    previous = {sig: signal.signal(sig, stop.set) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = ModelServer(options, config)
    try:
        if server.start(stop):
            stop.wait()
            logging.info("Shutting down on signal")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.close()
    return 0
