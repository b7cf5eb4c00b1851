"""A binary's command line parsed in the test process, so its flag rules are tested without a subprocess.

Several binaries define flags of the same name (--models, --output_dir), so no two of them can keep
their flags on absl's global FLAGS in one process: the second import would fail with
DuplicateFlagError. A test module that exercises a binary's flags imports the binary and, at once,

    LOAD = BinaryFlags(load_binary)

which moves the flags that binary defined off the global FLAGS into a FlagValues of their own; the
rule validators (tfs_bench.flag_rules) and bounds travel with them, since absl keeps a flag's
validators on the flag. For each case `parsed` puts them back on the global FLAGS, next to absl's
own flags, where app.run would parse them and where the binary's FlagHolders read them; parses
inside a flagsaver; and takes them off again, so no case sees another's values.

Only the binary's own flags and absl's are known during a case: a binary that read another
module's flags would fail here loudly (an unknown flag or a validator naming a missing flag).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterator
from types import ModuleType

import pytest
from absl import flags
from absl.testing import flagsaver


# Binary module name -> the flags it defined, off the global FLAGS.
_DETACHED: dict[str, flags.FlagValues] = {}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What `main` did: its exit status (0 when it returned) and what it printed."""

    exit_code: int
    stdout: str
    stderr: str


class BinaryFlags:
    """The flags of one binary module (`tfs_bench.<stage>.__main__`), parsed one command line at a time."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.program = module.__name__.removesuffix(".__main__")
        if module.__name__ not in _DETACHED:  # a second test module of the same binary finds them moved
            _DETACHED[module.__name__] = _detach(module)
        self._flags = _DETACHED[module.__name__]

    @contextlib.contextmanager
    def parsed(self, *args: str) -> Iterator[list[str]]:
        """`python -m <binary> *args`, parsed; yields the arguments left over, program name first."""
        was_parsed = flags.FLAGS.is_parsed()
        # flagsaver restores every flag it saved and deletes the ones it did not: the binary's.
        with flagsaver.flagsaver():
            self._flags.unparse_flags()  # every flag at its default, whatever the last case left
            flags.FLAGS.append_flag_values(self._flags)
            try:
                yield flags.FLAGS([self.program, *args])
            finally:
                if not was_parsed:
                    flags.FLAGS.unparse_flags()  # a later access before parsing must still raise

    def refusal(self, *args: str) -> str:
        """The message the command line is refused with while parsing; the test fails if it parses."""
        with pytest.raises(flags.Error) as refused:
            with self.parsed(*args):
                pass
        return str(refused.value)

    def run_main(self, *args: str) -> Outcome:
        """Parses the command line and runs the binary's `main` in this process, its output captured.

        `main` exiting (sys.exit, as tfs_bench.errors.exits_cleanly does on a TfsBenchError) gives
        its status; anything else it raises, app.UsageError included, propagates.
        """
        stdout, stderr = io.StringIO(), io.StringIO()
        with self.parsed(*args) as argv, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = self.module.main(argv) or 0
            except SystemExit as e:
                code = e.code
        return Outcome(code, stdout.getvalue(), stderr.getvalue())


def _detach(module: ModuleType) -> flags.FlagValues:
    defined = flags.FLAGS.get_flags_for_module(module)
    if not defined:
        raise AssertionError(f"{module.__name__} defines no flags on the global FLAGS")
    own = flags.FlagValues()
    for flag in defined:
        delattr(flags.FLAGS, flag.name)
        own[flag.name] = flag
    return own
