"""The engine's errors: what went wrong in the domain's terms, each carrying its status.

Every protocol maps them in one place: HTTP answers `status` with `{"error": message}` (and
`headers`), gRPC aborts with the status code named `code`. Messages are for the client: they name
the input, what was expected and the fix, and never carry a path or a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any

_repr = reprlib.Repr()  # bounded in length and depth, however large or deep the client's value
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 40, 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6


def preview(x: Any, limit: int = 60) -> str:
    """A short repr of client input for an error message: at most `limit` characters, never
    recursing into deep structures or walking a whole list (`repr` would do both)."""
    text = _repr.repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ServeError(Exception):
    """A request the engine refuses. `status`: the HTTP status; `code`: the gRPC status code name."""

    status = 500
    code = "INTERNAL"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers


class InputError(ServeError):
    """The request is malformed or does not fit the model (name, datatype, shape, values)."""

    status, code = 400, "INVALID_ARGUMENT"


class NotFound(ServeError):
    """No such model or version."""

    status, code = 404, "NOT_FOUND"


class TimedOut(ServeError):
    """The request did not arrive in time (a stalled body)."""

    status, code = 408, "DEADLINE_EXCEEDED"


class TooLarge(ServeError):
    """More rows or bytes than the server's limits allow."""

    status, code = 413, "RESOURCE_EXHAUSTED"


class Unavailable(ServeError):
    """The model cannot answer now: loading, failed, unloaded, or its queue is full. `retry_after`
    (seconds) becomes HTTP's Retry-After header."""

    status, code = 503, "UNAVAILABLE"

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message, {"Retry-After": str(retry_after)} if retry_after is not None else None)
        self.retry_after = retry_after
