"""`docker run` commands and compose files for the tensorflow/serving image.

The image's entrypoint starts `tensorflow_model_server --port=8500 --rest_api_port=8501 ...` and
appends the container's arguments, so a deployment passes only the remaining flags and maps the
plan's host ports onto 8500/8501. GPU deployments use the `-gpu` image and request the GPUs.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex

from tfs_bench.plan import placement

IMAGE_REPOSITORY = "tensorflow/serving"
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501


def image_name(tag: str, gpu: bool) -> str:
    """tensorflow/serving:<tag>, with the -gpu variant for GPU deployments."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}", tag):
        raise ValueError(f"invalid docker image tag {tag!r}")
    return f"{IMAGE_REPOSITORY}:{tag}-gpu" if gpu and not tag.endswith("-gpu") else f"{IMAGE_REPOSITORY}:{tag}"


@dataclasses.dataclass(frozen=True)
class Deployment:
    server: placement.ServerPlan
    image: str
    gpu: bool
    flags: tuple[str, ...]  # tensorflow_model_server flags after the entrypoint's own
    mounts: tuple[tuple[str, str], ...]  # (host path, container path), all read-only

    @property
    def container_name(self) -> str:
        return f"tfs-bench-{self.server.name.replace('_', '-')}"

    def _port_maps(self) -> list[str]:
        return [
            f"{self.server.host}:{self.server.grpc_port}:{CONTAINER_GRPC_PORT}",
            f"{self.server.host}:{self.server.rest_port}:{CONTAINER_REST_PORT}",
        ]

    def run_argv(self) -> list[str]:
        argv = ["docker", "run", "--rm", "--name", self.container_name]
        for port_map in self._port_maps():
            argv += ["-p", port_map]
        for host, container in self.mounts:
            argv += ["-v", f"{host}:{container}:ro"]
        if self.gpu:
            argv += ["--gpus", "all"]
        if self.server.cpu_set is not None:
            argv.append(f"--cpuset-cpus={placement.format_core_list(self.server.cpu_set)}")
        return argv + [self.image, *self.flags]

    def compose_service(self) -> dict:
        service = {
            "name": self.server.name,
            "image": self.image,
            "container_name": self.container_name,
            "command": list(self.flags),
            "ports": self._port_maps(),
            "volumes": [f"{host}:{container}:ro" for host, container in self.mounts],
        }
        if self.server.cpu_set is not None:
            service["cpuset"] = placement.format_core_list(self.server.cpu_set)
        if self.gpu:
            service["deploy"] = {
                "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}}
            }
        return service


def run_script(deployment: Deployment) -> str:
    return "#!/bin/sh\n# Serves this plan's server with TF Serving's docker image.\nexec " + shlex.join(deployment.run_argv()) + "\n"


def compose_yaml(services: list[dict]) -> str:
    """A compose file; every scalar is written as a JSON string, which YAML reads unchanged."""
    lines = ["services:"]
    for service in services:
        body = {k: v for k, v in service.items() if k != "name"}
        lines.append(f"  {service['name']}:")
        lines += yaml_block(body, indent=4)
    return "\n".join(lines) + "\n"


def yaml_block(value, indent: int) -> list[str]:
    """The lines of a mapping or list in block style, `indent` spaces in."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += yaml_block(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict):
                first, *rest = yaml_block(item, indent + 2)
                lines.append(f"{pad}- {first.lstrip()}")
                lines += rest
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def _yaml_scalar(value) -> str:
    if value == [] or value == {}:
        return json.dumps(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(str(value))
