"""A request's input aliases against its signature's, with TF Serving's messages.

TensorFlow-free (it needs only the signature's `inputs` mapping), so the JSON worker process
(`json_offload`) runs the same check as the serving process.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Mapping

from tfs_bench.server import status


def check_input_aliases(signature, aliases: Collection[str]) -> None:
    """Raises INVALID_ARGUMENT unless `aliases` are exactly `signature.inputs`' keys."""
    expected: Mapping = signature.inputs
    if len(aliases) != len(expected):
        sent, wanted = sorted(aliases), sorted(expected)
        raise status.invalid_argument(
            f"input size does not match signature: {len(aliases)}!={len(expected)} "
            f"len({{{','.join(sent)}}}) != len({{{','.join(wanted)}}}). "
            f"Sent extra: {{{','.join(sorted(set(sent) - set(wanted)))}}}. "
            f"Missing but required: {{{','.join(sorted(set(wanted) - set(sent)))}}}."
        )
    for alias in aliases:
        if alias not in expected:
            raise status.invalid_argument(
                f"input tensor alias not found in signature: {alias}. "
                f"Inputs expected to be in the set {{{','.join(expected)}}}."
            )
