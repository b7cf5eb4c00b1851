"""An experiment from start (or resume) to end: the run directory, the machine, exports, the
manifest, the steps, and the headline figures printed at the end.

    run_dir = run_experiment(spec, where, flagfile, argv, runs_dir="runs")

A new run gets `<runs_dir>/<UTC time>-<name>/` and never replaces anything: an existing
directory is refused. `resume=True` continues the newest unfinished run of the same name (or
`run_dir`), after checking that the flags and the machine are the ones it started with.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import subprocess
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

from tfs_bench.child_process import child_env
from tfs_bench.child_process import module_argv
from tfs_bench.errors import ConfigError
from tfs_bench.errors import ModelError
from tfs_bench.export import modelcard
from tfs_bench.plan import placement
from tfs_bench.run import machine
from tfs_bench.run.experiment import RunSpec
from tfs_bench.run.experiment import UINT8_SUFFIX
from tfs_bench.run.experiment import Step
from tfs_bench.run.experiment import exported_names
from tfs_bench.run.experiment import plan_steps
from tfs_bench.run.journal import JOURNAL_FILE
from tfs_bench.run.journal import Journal
from tfs_bench.run.manifest import MANIFEST_FILE
from tfs_bench.run.manifest import ExperimentManifest
from tfs_bench.run.manifest import ModelFacts
from tfs_bench.run.manifest import read_manifest
from tfs_bench.run.manifest import write_manifest
from tfs_bench.run.progress import Progress
from tfs_bench.run.journal import StepRecord
from tfs_bench.run.runner import Runner
from tfs_bench.run.runner import StoppedOnFailure
from tfs_bench.run.runner import Where

EXPORT_TIMEOUT_S = 3600
# Rough seconds per step kind for the first ETA, before a step of the kind has finished.
_RUN_OVERHEAD_S = 3.0


def run_experiment(
    spec: RunSpec,
    where: Where,
    flagfile: str,
    argv: Sequence[str],
    runs_dir: str = "runs",
    run_dir: str | None = None,
    resume: bool = False,
    out: Callable[[str], None] = print,
    machine_probe: Callable[[], tuple[machine.TensorFlowInfo, machine.GpuInfo]] | None = None,
    stop_on_failure: bool = False,
) -> Path:
    """Runs (or resumes) the experiment; returns its run directory. Raises TfsBenchError on bad
    input; KeyboardInterrupt leaves the run resumable."""
    probe = machine_probe or (lambda: (machine.probe_tensorflow(), machine.nvml_gpus()))
    if resume:
        directory = _resumable(runs_dir, run_dir, spec.name)
        manifest = _check_resume(read_manifest(directory), flagfile)
        out(f"resuming {directory}: {_finished_count(directory)} step(s) already finished")
        devices = manifest.devices
    else:
        if run_dir is not None:
            _refuse_existing(Path(run_dir))  # before the machine is probed and models exported
        tensorflow, gpus = probe()
        devices, gpu_note = machine.find_devices(spec.devices, tensorflow, gpus)  # refuses before any file is written
        out(f"{gpu_note}; measuring on {', '.join(devices)}")
        _export_missing(spec, where, out)
        directory = _claim(runs_dir, run_dir, spec.name)
        manifest = ExperimentManifest(
            name=spec.name,
            flagfile=flagfile,
            argv=tuple(argv),
            started_at=_now(),
            packages=machine.package_versions(),
            tensorflow=tensorflow.to_json(),
            host=machine.host_facts(),
            gpu=gpus.to_json(),
            devices=devices,
            gpu_note=gpu_note if "gpu" in devices else f"{gpu_note}; GPU sections are left out (run on a machine "
            "with a GPU, TensorFlow's GPU build and the NVIDIA driver to produce them)",
            models=_model_facts(spec, where),
            seeds={"run": spec.seed},
            co_location={"generator_priority": spec.generator_priority, "generator_priority_got": None,
                         "server_nice": spec.server_nice},
        )
    write_manifest(directory, manifest)
    steps = plan_steps(spec, devices)
    journal = Journal(directory)
    progress = Progress(steps, _estimates(spec), already_done=sum(1 for s in steps if journal.finished(s.id)), out=out)
    state = {"manifest": manifest}

    def on_priority(got: str) -> None:
        state["manifest"] = dataclasses.replace(
            state["manifest"], co_location={**state["manifest"].co_location, "generator_priority_got": got}
        )
        write_manifest(directory, state["manifest"])

    runner = Runner(spec, where, directory, journal, progress, out, on_priority=on_priority,
                    stop_on_failure=stop_on_failure)
    try:
        runner.run(steps)
    except StoppedOnFailure as e:
        # Not finished: --resume runs the steps after this one (the failed step stays failed).
        out(f"stopped: {e} (--stop_on_failure); {_finished_count(directory)} of {len(steps)} step(s) finished; "
            f"continue with the same flags and --resume --run_dir={directory}")
    except KeyboardInterrupt:
        out(f"interrupted: {_finished_count(directory)} of {len(steps)} step(s) finished; continue with the same "
            f"flags and --resume --run_dir={directory}")
        raise
    else:
        state["manifest"] = dataclasses.replace(state["manifest"], finished_at=_now())
        write_manifest(directory, state["manifest"])
    for line in headlines(steps, journal):
        out(line)
    out(f"results: {directory}")
    return directory


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _refuse_existing(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        hint = " (continue it with --resume)" if (directory / MANIFEST_FILE).is_file() else ""
        raise ConfigError(f"run directory {directory} already exists and is not empty; refusing to overwrite it{hint}")


def _claim(runs_dir: str, run_dir: str | None, name: str) -> Path:
    if run_dir is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        directory = Path(runs_dir) / f"{stamp}-{name}"
    else:
        directory = Path(run_dir)
    _refuse_existing(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _resumable(runs_dir: str, run_dir: str | None, name: str) -> Path:
    if run_dir is not None:
        directory = Path(run_dir)
        if not (directory / MANIFEST_FILE).is_file():
            raise ConfigError(f"--resume: {directory} is not an experiment's run directory (no {MANIFEST_FILE})")
        return directory
    candidates = sorted(
        (d for d in Path(runs_dir).glob(f"*-{name}") if (d / MANIFEST_FILE).is_file()), key=lambda d: d.name
    ) if Path(runs_dir).is_dir() else []
    unfinished = [d for d in candidates if read_manifest(d).finished_at is None]
    if not unfinished:
        raise ConfigError(f"--resume: no unfinished run of {name!r} under {runs_dir} (give one with --run_dir)")
    return unfinished[-1]


def _check_resume(manifest: ExperimentManifest, flagfile: str) -> ExperimentManifest:
    if manifest.flagfile != flagfile:
        before, now = set(manifest.flagfile.splitlines()), set(flagfile.splitlines())
        changes = [f"was {line}" for line in sorted(before - now)] + [f"now {line}" for line in sorted(now - before)]
        raise ConfigError(
            "--resume continues an experiment with the flags it started with; these differ: " + "; ".join(changes)
        )
    host = machine.host_facts()
    for key in ("cpu_model", "logical_cpus"):
        if manifest.host.get(key) != host.get(key):
            raise ConfigError(
                f"--resume: this run started on other hardware ({key} {manifest.host.get(key)!r}, here {host.get(key)!r}); "
                "results of different machines are never pooled: start a new run"
            )
    return dataclasses.replace(manifest, resumed_at=(*manifest.resumed_at, _now()))


def _finished_count(directory: Path) -> int:
    return len(Journal(directory).records) if (directory / JOURNAL_FILE).exists() else 0


def _export_missing(spec: RunSpec, where: Where, out: Callable[[str], None]) -> None:
    """Exports every served model that has no SavedModel yet, or one of an older export format.

    In a child: the runner never imports TensorFlow. An old-format export with random weights is
    written again (the seed makes the weights); one made from a weights file is not touched, and
    the error says how to re-export it.
    """
    missing = [n for n in exported_names(spec) if _needs_export(os.path.join(where.saved_models_dir, n))]
    float32 = [n for n in missing if not n.endswith(UINT8_SUFFIX)]
    uint8 = [n[: -len(UINT8_SUFFIX)] for n in missing if n.endswith(UINT8_SUFFIX)]
    for models, encoding in ((float32, "float32"), (uint8, "uint8")):
        if not models:
            continue
        out(f"exporting {', '.join(models)} ({encoding}) to {where.saved_models_dir}")
        argv = module_argv(
            "tfs_bench.export", f"--models={','.join(models)}", f"--saved_models_dir={where.saved_models_dir}",
            f"--input_encoding={encoding}", f"--seed={spec.seed}", "--overwrite",
        )
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=EXPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ModelError(f"exporting {', '.join(models)} took over {EXPORT_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ModelError(f"exporting {', '.join(models)} failed:\n{tail}")


def _needs_export(base: str) -> bool:
    try:
        versions = placement.version_dirs(base)
    except ModelError:
        return True
    if not versions:
        return True
    latest = versions[max(versions)]
    try:
        card = modelcard.read_card(latest)
    except ModelError:
        return False  # not one of our exports: served as it is
    if card.export_format >= modelcard.EXPORT_FORMAT:
        return False
    if not card.weights.startswith("random"):
        raise ModelError(
            f"{latest} was written by an older tfs_bench (export format {card.export_format}), whose "
            "Keras variables TF Serving cannot restore; export it again: python -m tfs_bench.export "
            f"--models={card.model} --weights={card.weights} --input_encoding={card.input_encoding} --overwrite"
        )
    return True


def _model_facts(spec: RunSpec, where: Where) -> tuple[ModelFacts, ...]:
    facts = []
    for name in exported_names(spec):
        entry = placement.load_model_entry(name, os.path.abspath(os.path.join(where.saved_models_dir, name)))
        facts.append(ModelFacts(name, entry.base_path, max(entry.versions), entry.card.savedmodel_sha256 if entry.card else None))
    return tuple(facts)


def _estimates(spec: RunSpec) -> dict[str, float]:
    policy = spec.policy
    run_s = policy.warmup_s + policy.stability_windows * policy.window_s + _RUN_OVERHEAD_S
    return {
        "closed": len(spec.concurrency) * run_s,
        "peak": 5 * run_s,
        "perseus": 4 * run_s,
        "balanced": 5 * run_s,
        "reference": 5 * run_s + 10.0,  # its server starts first; one run per co-located rate
        "framework": run_s + 10.0,  # a server of its own starts first
        "raw": len(spec.concurrency) * (spec.raw_duration_s + policy.warmup_s + 4.0),
    }


def unfinished_steps(directory: Path) -> list[StepRecord]:
    """The journal's steps that finished failed or skipped, in the order they finished."""
    return [r for r in Journal(directory).records.values() if r.status != "done"]


def headlines(steps: Sequence[Step], journal: Journal) -> list[str]:
    """The experiment's figures in a few lines: dedicated peaks, serving tax, shared peaks."""
    lines = ["headline figures (SLA-compliant peaks of VALID runs):"]
    done = {sid: r.result for sid, r in journal.records.items() if r.status == "done"}
    for step in steps:
        result = done.get(step.id)
        if step.kind == "peak":
            lines.append(f"  {step.device} dedicated {step.model}: peak {_rps(result)}")
        elif step.kind == "raw" and result is not None:
            served = done.get(f"{step.device}/dedicated/{step.model}/closed", {}).get("best_throughput_rps")
            tax = "" if not served else f", serving tax {served / result['best_images_per_s']:.2f} (served ÷ raw)"
            lines.append(f"  {step.device} raw {step.model}: {result['best_images_per_s']:.1f} images/s{tax}")
        elif step.kind == "balanced":
            lines.append(f"  {step.device} {step.deployment.hosting} balanced mix: peak {_rps(result)}")
    failed = [r for r in journal.records.values() if r.status != "done"]
    if failed:
        lines.append(f"  {len(failed)} step(s) did not finish done: " + "; ".join(f"{r.step} ({r.status})" for r in failed))
    return lines


def _rps(result) -> str:
    return "not measured" if result is None else f"{result['peak_rps']:g} rps"
