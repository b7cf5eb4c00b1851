"""Errors carrying the gRPC status code and message TF Serving would return for the same request."""

from __future__ import annotations

import grpc

# tf.errors codes and gRPC status codes share their numbers.
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request or reload failed; `code` is a grpc.StatusCode and the message is client-facing."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self):
        return f"ServingError({self.code.name}, {self.message!r})"


# A gRPC client refuses trailing metadata over 16 KiB (the status message rides in it), so an
# error that echoes a 100 kB model name would reach the client as RESOURCE_EXHAUSTED. Front ends
# clip every message to this many characters, keeping its start, where the reason is.
MAX_MESSAGE_CHARS = 4096


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, or its first characters and how many were cut when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def clip_value(text: str, limit: int = 256) -> str:
    """A client-supplied name or value as it may appear inside an error message."""
    return clip(text, limit)


def code_from_number(number: int) -> grpc.StatusCode:
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)
