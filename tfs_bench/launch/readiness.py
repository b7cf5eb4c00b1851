"""Readiness: ModelService.GetModelStatus reports every wanted version of every model AVAILABLE.

TF Serving opens its ports only after loading, so a refused connection while it loads is normal;
the probe records what each model last looked like, for the error that a timeout raises.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import grpc

from tfs_bench import wire

# TF Serving's ModelService messages without TensorFlow: launching a server never imports it here.
_SERVING = wire.messages()
_AVAILABLE = _SERVING.ModelVersionStatus.AVAILABLE
_GET_MODEL_STATUS = wire.method("GetModelStatus", wire.MODEL_SERVICE)
# A poll must not hang on a server that accepted the connection but does not answer.
_STATUS_RPC_TIMEOUT_S = 1.0
# gRPC backs off reconnecting for up to two minutes by default; a loading server refuses
# connections for seconds, and its ports opening must be seen within a poll interval.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
)


def _status_request(model: str):
    request = _SERVING.GetModelStatusRequest()
    request.model_spec.name = model
    return request


def _not_available(versions: tuple[int, ...], response) -> str:
    """'' when every one of `versions` (none given: any one version) is AVAILABLE, else why not."""
    reported = {s.version: s for s in response.model_version_status}
    if not versions:
        if any(s.state == _AVAILABLE for s in reported.values()):
            return ""
        return "; ".join(_describe(v, reported[v]) for v in sorted(reported)) or "no version reported"
    missing = [v for v in versions if v not in reported or reported[v].state != _AVAILABLE]
    return "; ".join(_describe(v, reported.get(v)) for v in missing)


def _describe(version: int, status) -> str:
    if status is None:
        return f"version {version} not reported"
    state = _SERVING.ModelVersionStatus.State.Name(status.state)
    error = f" ({status.status.error_message})" if status.status.error_message else ""
    return f"version {version} {state}{error}"


class ReadinessProbe:
    """Polls GetModelStatus at `target` until every wanted version of every model is AVAILABLE.

    wanted: model name -> the versions that must be AVAILABLE; none: any one version will do.
    """

    def __init__(self, target: str, wanted: Mapping[str, tuple[int, ...]]):
        self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._get_status = self._channel.unary_unary(
            _GET_MODEL_STATUS,
            request_serializer=_SERVING.GetModelStatusRequest.SerializeToString,
            response_deserializer=_SERVING.GetModelStatusResponse.FromString,
        )
        self._waiting = dict(wanted)
        self.last_seen = {name: "not polled yet" for name in wanted}
        self.ready_at: dict[str, float] = {}  # model -> time.monotonic() when first seen AVAILABLE

    @property
    def ready(self) -> bool:
        return not self._waiting

    def poll(self, deadline: float) -> None:
        """One GetModelStatus per model still waiting, none outlasting `deadline` (time.monotonic())."""
        for name, versions in list(self._waiting.items()):
            timeout_s = min(_STATUS_RPC_TIMEOUT_S, max(deadline - time.monotonic(), 0.01))
            try:
                response = self._get_status(_status_request(name), timeout=timeout_s)
            except grpc.RpcError as e:
                seen = f"{e.code().name}: {e.details()}"
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    # Not answering at all (still loading, ports closed): every model would say so.
                    self.last_seen.update({waiting: seen for waiting in self._waiting})
                    return
                self.last_seen[name] = seen
                continue
            problems = _not_available(versions, response)
            if problems:
                self.last_seen[name] = problems
            else:
                self.ready_at[name] = time.monotonic()
                self.last_seen[name] = "AVAILABLE"
                del self._waiting[name]

    def not_ready(self) -> str:
        return "; ".join(f"{name}: {self.last_seen[name]}" for name in self._waiting)

    def close(self) -> None:
        self._channel.close()
