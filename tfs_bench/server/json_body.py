"""Reading a REST request's JSON the way TF Serving's RapidJSON parser reads it, safely.

Python's json module differs from RapidJSON at the edges a hostile client reaches for: a number
too big for a double becomes `inf` (RapidJSON: "Number too big to be stored in double"), an
integer of more than 4,300 digits raises ValueError, and deep nesting raises RecursionError.
Each of those is a client error here, INVALID_ARGUMENT (HTTP 400), never an unanswered request.
"""

from __future__ import annotations

import json
import math
from typing import Any

from tfs_bench.server import status


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"Number too big to be stored in double: {status.clip_value(text, 64)}")
    return value


def parse(raw: bytes) -> Any:
    """The JSON document in `raw`; raises ServingError (INVALID_ARGUMENT) naming what is wrong."""
    try:
        return json.loads(raw, parse_float=_finite_float)
    except UnicodeDecodeError as e:
        raise status.invalid_argument(f"JSON Parse error: the body is not UTF-8 ({e.reason})") from None
    except RecursionError:
        raise status.invalid_argument("JSON Parse error: the document nests too deeply") from None
    except ValueError as e:  # JSONDecodeError, too many digits, a number too big for a double
        raise status.invalid_argument(f"JSON Parse error: {status.clip_value(str(e), 300)}") from None
