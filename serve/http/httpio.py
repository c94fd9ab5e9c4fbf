"""HTTP plumbing shared by the V2 and TF Serving routes: errors, JSON bodies, instrumented endpoints.

Every error leaves the server as `{"error": "..."}` with 400/404/408/413/503; anything unexpected
is logged with its traceback and answered 500 with a fixed message (no paths, no traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from serve.engine.errors import InputError, ServeError, TimedOut, TooLarge

logger = logging.getLogger(__name__)

JSON = "application/json"
INTERNAL = "internal server error; the server log has the details"
MAX_DEPTH = 1024  # JSON nesting limit (orjson's own): deeper bodies are refused with 400


def clip(text: str, limit: int = 80) -> str:
    """`text` (a client's path or method) cut to at most `limit` characters for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dumps(obj: Any) -> bytes:
    """`obj` as compact JSON (orjson: numpy float64 arrays directly, in Python's shortest repr).
    Callers check predictions for NaN/inf first: orjson would write them as null."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`obj` as compact JSON."""
    return Response(dumps(obj), status_code=status, media_type=JSON, headers=headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": message}, status, headers)


class _BodyDeadlines:
    """Body reads in flight on one event loop and their deadlines, checked by one repeating timer.

    Cheaper than a timer per request (asyncio.timeout costs ~4 µs a request, ~3% of a batch-1
    infer; this costs two dict operations): the timer runs only while reads are in flight, and
    an overdue read's task is cancelled, which `read_body` turns into 408.
    """

    PERIOD = 0.1  # seconds between checks: how late a 408 may come

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.reads, self.armed = loop, {}, False

    def start(self, task: asyncio.Task, timeout: float) -> list:
        entry = [self.loop.time() + timeout, False]  # deadline, fired
        self.reads[task] = entry
        if not self.armed:
            self.armed = True
            self.loop.call_later(self.PERIOD, self._check)
        return entry

    def _check(self) -> None:
        now = self.loop.time()
        for task, entry in list(self.reads.items()):
            if entry[0] <= now and not entry[1]:
                entry[1] = True
                task.cancel()
        if self.reads:
            self.loop.call_later(self.PERIOD, self._check)
        else:
            self.armed = False


_deadlines: _BodyDeadlines | None = None  # of the running loop (one per server; tests make more)


def _deadlines_for(loop: asyncio.AbstractEventLoop) -> _BodyDeadlines:
    global _deadlines
    if _deadlines is None or _deadlines.loop is not loop:
        _deadlines = _BodyDeadlines(loop)
    return _deadlines


async def read_body(
    request: Request, limit: int, header: bytes | None = None, timeout: float | None = None
) -> tuple[bytes, str | None]:
    """The request body (413 past `limit` bytes, refused before reading when Content-Length says so),
    and the value of request header `header` (lower-case bytes) if asked for and present.

    A body not received in full within `timeout` seconds is answered 408 with `Connection: close`:
    a client that sends headers and stalls (slowloris) holds a connection only that long. uvicorn
    has no such timeout of its own (its --timeout-keep-alive covers idle connections only).
    """
    if timeout is None:
        return await _read_body(request, limit, header)
    loop = asyncio.get_running_loop()
    deadlines = _deadlines if _deadlines is not None and _deadlines.loop is loop else _deadlines_for(loop)
    task = asyncio.current_task()
    entry = deadlines.start(task, timeout)
    try:
        return await _read_body(request, limit, header)
    except asyncio.CancelledError:
        if not entry[1]:
            raise  # cancelled by someone else (shutdown): not ours to swallow
        task.uncancel()
        raise TimedOut(
            f"request body not received within {timeout:g} s (--body-timeout); send the whole body promptly",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:  # nobody is left to read the answer; counted as a bad request
        raise InputError(
            "client disconnected before sending the whole body", headers={"Connection": "close"}
        ) from None
    finally:
        del deadlines.reads[task]


async def _read_body(request: Request, limit: int, header: bytes | None) -> tuple[bytes, str | None]:
    declared = value = None
    for k, v in request.scope["headers"]:  # one pass over the raw ASGI headers; no Headers object
        if k == b"content-length":
            declared = v
        elif k == header:
            value = v.decode("latin-1")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(
            f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes "
            "(--max-body-bytes); send fewer rows per request",
        )
    # The ASGI messages directly (Starlette's `request.body()` goes through an async generator):
    # the server enforces Content-Length; a chunked body is counted against the limit as it comes.
    receive = request.receive
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    body = message.get("body", b"")
    chunks, total = [body], len(body)
    while True:
        if total > limit:
            raise TooLarge(
                f"request body exceeds the limit of {limit} bytes (--max-body-bytes); "
                "send fewer rows per request",
            )
        if not message.get("more_body", False):
            return (body if len(chunks) == 1 else b"".join(chunks)), value
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        total += len(chunk)
        chunks.append(chunk)


def parse_json_object(data: bytes | memoryview, what: str = "request body") -> dict[str, Any]:
    """Parse a JSON object or raise 400 saying what was wrong; at most MAX_DEPTH levels of nesting.

    orjson parses (the fast path: 100k numbers in ~3 ms); what it refuses is parsed again by the
    standard library, so the body means what it meant before orjson: NaN/Infinity literals
    and integers beyond 64 bits parse, and reach the same validation (and messages) as before.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise InputError(
                f"{what} nests JSON deeper than {MAX_DEPTH} levels; expected a JSON object "
                "with flat or [rows, n] nested tensors",
            ) from None
        try:
            obj = json.loads(bytes(data))
        except RecursionError:
            raise InputError(
                f"{what} nests JSON deeper than the server allows; expected a JSON object "
                "with flat or [rows, n] nested tensors",
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{what} is not valid JSON ({exc}); expected a JSON object") from None
        _refuse_lone_surrogates(obj, what)
    if not isinstance(obj, dict):
        raise InputError(f"{what} is a JSON {type(obj).__name__}; expected a JSON object")
    return obj


def _refuse_lone_surrogates(obj: Any, what: str) -> None:
    """400 for an escaped lone surrogate (`"\\ud800"`): the standard library parses it into a str
    that is not Unicode text, which no response (orjson, UTF-8) can carry. orjson refuses such
    bodies, so only the fallback parse needs this walk."""
    try:
        json.dumps(obj, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("utf-8", "backslashreplace").decode("ascii")
        raise InputError(
            f"{what} holds the escaped lone surrogate {bad}, which is not Unicode text; "
            "escape a character outside the BMP as a surrogate pair",
        ) from None


Endpoint = Callable[[Request], Awaitable[Response]]


def instrumented(route: str, handler: Endpoint, observe: Callable[[str, str, int, float], None]) -> Endpoint:
    """Wrap `handler`: a ServeError (serve/engine/errors.py) -> its status and JSON error (the one
    place HTTP maps the engine's errors), anything else -> logged 500; time and count it.

    A wrapper per route instead of a middleware keeps the hot path short and labels metrics
    by the route template (bounded cardinality) rather than the raw path.
    """

    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await handler(request)
        except ServeError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except Exception:
            logger.exception("internal error in %s %s", request.method, route)
            response = error_response(500, INTERNAL)
        observe(route, request.scope["method"], response.status_code, time.perf_counter() - start)
        return response

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    return endpoint
