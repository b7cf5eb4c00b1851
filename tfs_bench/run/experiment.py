"""What an experiment measures: its settings (`RunSpec`) and the ordered steps they ask for.

Pure: no files, no processes. For each device (cpu, and gpu where one was found):

1. dedicated, per model: a closed-loop sweep over `concurrency` (`closed`), then the peak open-loop
   rate under the SLA (`peak`), starting at `peak_start_fraction` of the sweep's best VALID
   throughput; the model's server runs alone.
2. raw, per model: in-process TensorFlow throughput at the same batch size and thread settings,
   at each concurrency of the sweep (`raw`): the serving tax's denominator.
3. each shared placement (multi_model, multi_process), for every ordered pair of models (A, B) and
   each fraction f of `perseus_fractions`: A held at f × its dedicated peak while B's rate is
   searched for its peak under the SLA (`perseus`, PERSEUS's protocol, roles swapped by the pair
   order); then a balanced mix, every model at the same share of its own dedicated peak, scaled
   together to the peak under the SLA (`balanced`).
4. after the shared placements, per model: the model alone again in a dedicated server at each
   offered rate it had at the shared operating points (`reference`), so that interference
   compares co-located and dedicated runs at the same offered rate.
5. on CPU, framework-inefficiency sweeps of one model in a dedicated server, each a closed-loop
   run at the sweep's best concurrency (`framework`): the default server, each intra/inter-op
   thread setting, batching on, and uint8 input instead of float32.

A step's `needs` are the steps whose results give its rates; when one of them failed, the step is
skipped with that reason. Steps of one deployment (the same servers) are consecutive, so each
server set starts once.
"""

from __future__ import annotations

import dataclasses
import re

from tfs_bench.errors import ConfigError
from tfs_bench.load.verdict import ValidityCriteria
from tfs_bench.load.windows import WindowPolicy
from tfs_bench.plan.placement import HOSTINGS
from tfs_bench.plan.placement import Threads

SERVER_KINDS = ("embedded", "binary", "docker", "external")
DEVICE_CHOICES = ("auto", "cpu", "gpu")
SHARED_HOSTINGS = tuple(h for h in HOSTINGS if h != "dedicated")
STEP_KINDS = ("closed", "peak", "raw", "perseus", "balanced", "reference", "framework")
ENCODINGS = ("float32", "uint8")
UINT8_SUFFIX = "_uint8"  # tfs_bench.export writes the uint8 variant of <model> as <model>_uint8
REFERENCE = "reference"


def reference_rate(offered_rps: float) -> float:
    """The rate a `reference` step repeats a co-located tenant's offered rate at (and the key the
    analysis matches the two by): rounded to 0.01 requests/s."""
    return round(offered_rps, 2)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class FrameworkSweeps:
    """The CPU framework-inefficiency sweeps: one model, the settings compared with its default."""

    model: str | None = None  # None: no sweeps
    threads: tuple[tuple[int, int], ...] = ()  # (intra_op, inter_op) settings
    batching: bool = False  # also measure with server-side batching on
    max_batch_size: int = 8
    batch_timeout_micros: int = 2000
    uint8: bool = False  # also measure the uint8-input export

    def __post_init__(self):
        object.__setattr__(self, "threads", tuple(tuple(t) for t in self.threads))
        for intra, inter in self.threads:
            if intra < 1 or inter < 1:
                raise ConfigError(f"framework thread settings are intra x inter with both >= 1, got {intra}x{inter}")
        if len(set(self.threads)) != len(self.threads):
            raise ConfigError("framework thread settings list one twice")
        if self.max_batch_size < 1 or self.batch_timeout_micros < 0:
            raise ConfigError("framework batching needs max_batch_size >= 1 and batch_timeout_micros >= 0")
        if self.model is None and (self.threads or self.batching or self.uint8):
            raise ConfigError("framework sweeps need a model (--framework_model)")

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "threads": [list(t) for t in self.threads]}

    @classmethod
    def from_json(cls, d: dict) -> "FrameworkSweeps":
        return cls(**{**d, "threads": tuple(tuple(t) for t in d["threads"])})


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything an experiment's flags say, validated; the manifest stores it as flags too."""

    name: str
    models: tuple[str, ...]
    placements: tuple[str, ...] = HOSTINGS
    devices: str = "auto"
    sla_ms: float = 750.0
    sla_percentile: float = 95.0
    concurrency: tuple[int, ...] = (1, 2, 4)
    peak_start_fraction: float = 0.5
    peak_precision: float = 0.1
    perseus_fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    raw: bool = True
    raw_duration_s: float = 5.0
    framework: FrameworkSweeps = FrameworkSweeps()
    policy: WindowPolicy = WindowPolicy()
    criteria: ValidityCriteria = ValidityCriteria()
    batch_size: int = 1
    server: str = "embedded"
    server_nice: int = 10
    generator_priority: str = "auto"
    client_retries: int = 2
    idle_baseline_s: float = 1.0  # before each load run: the machine at rest, for utilisation figures
    deployment_warmup_s: float = 4.0  # closed-loop traffic to each model of a deployment just started
    seed: int = 0

    def __post_init__(self):
        for name in ("models", "placements", "concurrency", "perseus_fractions"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not _NAME.match(self.name or ""):
            raise ConfigError(f"--name must be letters, digits, '_', '.' or '-' (it names the run directory), got {self.name!r}")
        if not self.models:
            raise ConfigError("--models: name at least one model")
        _unique("--models", self.models)
        unknown = [p for p in self.placements if p not in HOSTINGS]
        if unknown or not self.placements:
            raise ConfigError(f"--placements takes {', '.join(HOSTINGS)}, got {list(self.placements)}")
        _unique("--placements", self.placements)
        if any(p in SHARED_HOSTINGS for p in self.placements) and "dedicated" not in self.placements:
            raise ConfigError("shared placements are measured against the dedicated baseline: add dedicated to --placements")
        if any(p in SHARED_HOSTINGS for p in self.placements) and len(self.models) < 2:
            raise ConfigError("shared placements need at least two models in --models")
        if self.devices not in DEVICE_CHOICES:
            raise ConfigError(f"--devices must be one of {', '.join(DEVICE_CHOICES)}, got {self.devices!r}")
        if not self.sla_ms > 0:
            raise ConfigError(f"--sla_ms must be > 0, got {self.sla_ms}")
        if self.sla_percentile != self.policy.sla_percentile:
            raise ConfigError("the SLA percentile and the window policy's must agree")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise ConfigError(f"--concurrency takes integers >= 1, got {list(self.concurrency)}")
        _unique("--concurrency", self.concurrency)
        if not 0 < self.peak_start_fraction <= 1:
            raise ConfigError(f"--peak_start_fraction must be in (0, 1], got {self.peak_start_fraction}")
        if not 0 < self.peak_precision < 1:
            raise ConfigError(f"--peak_precision must be in (0, 1), got {self.peak_precision}")
        if any(not 0 < f < 1 for f in self.perseus_fractions):
            raise ConfigError(f"--perseus_fractions must be in (0, 1), got {list(self.perseus_fractions)}")
        _unique("--perseus_fractions", self.perseus_fractions)
        if not self.raw_duration_s > 0:
            raise ConfigError(f"--raw_duration_s must be > 0, got {self.raw_duration_s}")
        if self.framework.model is not None and self.framework.model not in self.models:
            raise ConfigError(f"--framework_model {self.framework.model!r} is not one of --models")
        if self.batch_size < 1:
            raise ConfigError(f"--batch_size must be >= 1, got {self.batch_size}")
        if self.server not in SERVER_KINDS:
            raise ConfigError(f"--server must be one of {', '.join(SERVER_KINDS)}, got {self.server!r}")
        if self.server in ("docker", "external") and self.server_nice:
            raise ConfigError(
                f"--server={self.server}: the servers are not our child processes, so --server_nice cannot reach "
                "them; set --server_nice=0"
            )
        if not 0 <= self.server_nice <= 19:
            raise ConfigError(f"--server_nice must be in 0..19, got {self.server_nice}")
        if self.idle_baseline_s < 0:
            raise ConfigError(f"--idle_baseline_s must be >= 0, got {self.idle_baseline_s}")
        if self.deployment_warmup_s < 0:
            raise ConfigError(f"--deployment_warmup_s must be >= 0, got {self.deployment_warmup_s}")
        if self.client_retries < 0 or self.seed < 0:
            raise ConfigError("--client_retries and --seed must be >= 0")


def _unique(flag: str, values) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ConfigError(f"{flag} lists {seen[0]} twice")


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A set of servers measured together: a placement of some models on a device, and a variant."""

    device: str
    hosting: str
    models: tuple[str, ...]  # the models served (a dedicated deployment serves one)
    variant: str = "default"  # framework sweeps: threads-IxJ, batching, uint8; "reference": the interference reference
    threads: Threads = Threads()
    batching: bool = False
    encoding: str = "float32"

    @property
    def key(self) -> str:
        """Where its measurements go under the run directory."""
        if self.hosting == "dedicated" and self.variant == "default":
            return f"{self.device}/dedicated/{self.models[0]}"
        if self.variant == REFERENCE:
            return f"{self.device}/reference/{self.models[0]}"
        if self.variant != "default":
            return f"{self.device}/framework/{self.models[0]}/{self.variant}"
        return f"{self.device}/{self.hosting}"

    def served_name(self, model: str) -> str:
        """The exported model's directory name (the uint8 variant lives beside the float32 one)."""
        return model + UINT8_SUFFIX if self.encoding == "uint8" else model


@dataclasses.dataclass(frozen=True)
class Step:
    """One measurement. `id` is unique in the experiment and names its directory."""

    id: str
    kind: str
    device: str
    deployment: Deployment | None  # None for raw: no server
    model: str | None = None  # closed, peak, raw, framework: the model; perseus: the searched one
    fixed_model: str | None = None  # perseus: the tenant held at a fixed rate
    fraction: float | None = None  # perseus: the fixed tenant's share of its dedicated peak
    needs: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in STEP_KINDS:
            raise ValueError(f"step kind must be one of {STEP_KINDS}, got {self.kind!r}")


def closed_id(device: str, model: str) -> str:
    return f"{device}/dedicated/{model}/closed"


def peak_id(device: str, model: str) -> str:
    return f"{device}/dedicated/{model}/peak"


def plan_steps(spec: RunSpec, devices: tuple[str, ...]) -> tuple[Step, ...]:
    """Every step of the experiment on `devices` (those found), in the order they run."""
    steps: list[Step] = []
    for device in devices:
        steps += _dedicated_steps(spec, device)
        if spec.raw:
            steps += [
                Step(f"{device}/raw/{m}", "raw", device, None, model=m, needs=(closed_id(device, m),))
                for m in spec.models
            ]
        shared = [p for p in spec.placements if p in SHARED_HOSTINGS]
        for hosting in shared:
            steps += _shared_steps(spec, device, hosting)
        if shared:
            steps += _reference_steps(spec, device)
        if device == "cpu" and spec.framework.model is not None:
            steps += _framework_steps(spec, device)
    ids = [s.id for s in steps]
    assert len(set(ids)) == len(ids), ids
    return tuple(steps)


def _dedicated_steps(spec: RunSpec, device: str) -> list[Step]:
    steps = []
    for model in spec.models:
        deployment = Deployment(device, "dedicated", (model,))
        steps.append(Step(closed_id(device, model), "closed", device, deployment, model=model))
        steps.append(Step(peak_id(device, model), "peak", device, deployment, model=model, needs=(closed_id(device, model),)))
    return steps


def _shared_steps(spec: RunSpec, device: str, hosting: str) -> list[Step]:
    deployment = Deployment(device, hosting, spec.models)
    peaks = tuple(peak_id(device, m) for m in spec.models)
    steps = []
    for fixed in spec.models:
        for searched in spec.models:
            if fixed == searched:
                continue
            for fraction in spec.perseus_fractions:
                steps.append(Step(
                    f"{deployment.key}/perseus/{fixed}-at-{fraction:g}/{searched}", "perseus", device, deployment,
                    model=searched, fixed_model=fixed, fraction=fraction, needs=(peak_id(device, fixed), peak_id(device, searched)),
                ))
    steps.append(Step(f"{deployment.key}/balanced", "balanced", device, deployment, needs=peaks))
    return steps


def reference_id(device: str, model: str) -> str:
    return f"{device}/reference/{model}/alone"


def _reference_steps(spec: RunSpec, device: str) -> list[Step]:
    """Each model alone at the rates it was offered when co-located (read from the shared steps'
    results when the step runs; it needs only the model's dedicated peak, so a failed shared step
    costs its own rates, not the reference)."""
    return [
        Step(reference_id(device, m), "reference", device, Deployment(device, "dedicated", (m,), variant=REFERENCE),
             model=m, needs=(peak_id(device, m),))
        for m in spec.models
    ]


def _framework_steps(spec: RunSpec, device: str) -> list[Step]:
    model = spec.framework.model
    sweeps = spec.framework
    variants = [Deployment(device, "dedicated", (model,), variant="server-default")]
    variants += [
        Deployment(device, "dedicated", (model,), variant=f"threads-{i}x{j}", threads=Threads(intra_op=i, inter_op=j))
        for i, j in sweeps.threads
    ]
    if sweeps.batching:
        variants.append(Deployment(device, "dedicated", (model,), variant="batching", batching=True))
    if sweeps.uint8:
        variants.append(Deployment(device, "dedicated", (model,), variant="uint8", encoding="uint8"))
    return [
        Step(f"{d.key}/closed", "framework", device, d, model=model, needs=(closed_id(device, model),))
        for d in variants
    ]


def exported_names(spec: RunSpec) -> tuple[str, ...]:
    """The exports the experiment serves: every model, and the uint8 variant its sweeps compare."""
    names = list(spec.models)
    if spec.framework.model is not None and spec.framework.uint8:
        names.append(spec.framework.model + UINT8_SUFFIX)
    return tuple(names)
