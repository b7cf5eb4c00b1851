"""How every binary checks its flags: rules are plain functions, registered as absl validators.

A rule takes the values of the flags it names, in order, and raises ConfigError (the library's
own checks and record constructors do) or returns a message string when they are wrong; any other
return value means they are fine, so a parser or constructor can serve as the rule itself. absl runs it
when the flags are parsed, so a bad command line fails with `FATAL Flags parsing error: <message>`
before `main`, and the same check serves library callers, who get the ConfigError.

    @flag_rules.rule("max_rate", "qps_start")
    def _max_rate_above_start(max_rate, qps_start):
        if max_rate is not None and qps_start is not None and max_rate < qps_start:
            return "--max_rate must be at least --qps_start"

    flag_rules.rule("port", "rest_api_port", unless="version")(options.check_ports)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from absl import flags

from tfs_bench.errors import ConfigError

Check = Callable[..., object]


def rule(*names: str, unless: str | None = None, flag_values: flags.FlagValues = flags.FLAGS) -> Callable[[Check], Check]:
    """Registers `check(*values of names)` as a validator; skipped while the bool flag `unless` is set."""
    if not names:
        raise ValueError("a flag rule names at least one flag")
    watched = [*names, unless] if unless else list(names)

    def register(check: Check) -> Check:
        def validator(values: dict) -> bool:
            if unless and values[unless]:
                return True
            try:
                problem = check(*(values[name] for name in names))
            except ConfigError as e:
                problem = str(e)
            if isinstance(problem, str) and problem:
                raise flags.ValidationError(problem)
            return True

        flags.register_multi_flags_validator(watched, validator, flag_values=flag_values)
        return check

    return register


def positive(*names: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Each named flag, when given (not None), must be > 0."""
    for name in names:
        rule(name, flag_values=flag_values)(_positive_check(name))


def directory_path_problem(flag: str, path: str | None) -> str | None:
    """Why `path` cannot be (or be made) a directory: it, or the nearest existing parent, is a file."""
    if not path:
        return None
    here = Path(path).absolute()
    for candidate in (here, *here.parents):
        if candidate.exists():
            if candidate.is_dir():
                return None
            where = "" if candidate == here else f": {candidate}"
            return f"--{flag} {here}{where} is a file, not a directory"
    return None


def directory(*names: str, flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Each named flag, when given, must name a directory or a path one can be made at."""
    for name in names:
        rule(name, flag_values=flag_values)(lambda path, name=name: directory_path_problem(name, path))


def _positive_check(name: str) -> Check:
    def check(value):
        return None if value is None or value > 0 else f"--{name} must be > 0, got {value:g}"

    return check
