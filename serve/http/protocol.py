"""uvicorn's httptools HTTP/1.1 protocol with a header-read timeout and JSON 400s for bad framing.

`protocol_class(header_timeout, max_header_bytes)` is what `python -m serve` hands uvicorn as
`http=`. It adds:

- A header-read timeout: a connection that has not sent a complete request head within
  `--header-timeout` seconds of connecting (or of starting its next request) is closed, with a
  408 when it had begun a request. uvicorn itself bounds only idle keep-alive connections, so a
  client trickling header bytes (or sending none) held its connection forever. One repeating
  timer per server sweeps the open connections (as `httpio._BodyDeadlines` does for bodies): a
  request pays two attribute writes, not a timer of its own.
- A header size limit: a request head (request line and headers) beyond `--max-header-bytes` is
  answered 431 and the connection closed. httptools buffered any amount before (64 MiB of headers
  got a 200 and left the server 260 MB larger). The bytes of a head still incomplete after each
  read are counted, so memory stays within the limit plus one read.
- Requests the parser refuses (malformed, or Content-Length together with Transfer-Encoding,
  which llhttp rejects per RFC 9112 6.1) are answered 400 with a JSON `{"error": ...}` like
  every other error, and the connection is closed, so nothing pipelined behind them is read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serve.http.httpio import dumps

logger = logging.getLogger(__name__)


def _close_response(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = dumps({"error": message})
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head += [
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(head)


class _Sweeper:
    """Closes the connections of one server whose header deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set, period: float):
        self.loop, self.connections, self.period, self.armed = loop, connections, period, False

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.loop.call_later(self.period, self._tick)

    def _tick(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections):
            deadline = getattr(conn, "header_deadline", None)
            if deadline is not None and deadline <= now:
                conn.header_timed_out()
        self.armed = False
        if self.connections:
            self.arm()


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus the header timeout and JSON 400s; see the module docstring."""

    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_deadline: float | None = None
        self.request_begun = False
        self.head_bytes = 0  # bytes received of a request head not yet complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_deadline = self.loop.time() + self.header_timeout
        sweeper = getattr(self.server_state, "header_sweeper", None)
        if sweeper is None or sweeper.loop is not self.loop:
            period = min(0.5, self.header_timeout / 4)
            sweeper = self.server_state.header_sweeper = _Sweeper(self.loop, self.connections, period)
        sweeper.arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.request_begun = True
        if self.header_deadline is None:  # the next request on a kept-alive connection
            self.header_deadline = self.loop.time() + self.header_timeout
            self.server_state.header_sweeper.arm()

    def on_headers_complete(self) -> None:
        self.header_deadline, self.request_begun, self.head_bytes = None, False, 0
        super().on_headers_complete()

    def header_timed_out(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        if self.request_begun:
            message = (
                f"request headers not received within {self.header_timeout:g} s (--header-timeout); "
                "send the whole request head promptly"
            )
            self.transport.write(_close_response(408, message, self.server_state.default_headers))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does (we serve no WebSockets)
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            self.header_deadline = None
            if self.transport.is_closing():
                return  # refused below already (431): the parser's follow-up error says nothing new
            reason = str(exc) or "unparseable request"  # llhttp's fixed reason, not client text
            logger.info("refused a malformed HTTP request from %s: %s", self.client, reason)
            message = (
                f"malformed HTTP/1.1 request ({reason}); a request needs valid framing: Content-Length "
                "or Transfer-Encoding: chunked, never both (RFC 9112 6.1). The connection is closed"
            )
            self.transport.write(_close_response(400, message, self.server_state.default_headers))
            self.transport.close()
            return
        if self.request_begun:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_header_bytes:
                self._refuse_large_head()

    def _refuse_large_head(self) -> None:
        self.header_deadline, self.request_begun = None, False
        logger.info("refused a request head over %d bytes from %s", self.max_header_bytes, self.client)
        message = (
            f"request headers exceed {self.max_header_bytes} bytes (--max-header-bytes); send fewer or "
            "shorter headers. The connection is closed"
        )
        self.transport.write(_close_response(431, message, self.server_state.default_headers))
        self.transport.close()
        self.parser = httptools.HttpRequestParser(self)  # drop what the old parser buffered


def protocol_class(header_timeout: float, max_header_bytes: int = 64 * 1024) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's `http=`, with this header timeout and head size limit."""
    return type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout": header_timeout, "max_header_bytes": max_header_bytes},
    )
