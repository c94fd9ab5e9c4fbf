"""Bind the HTTP listening sockets before anything else starts, so that a port in use or an address
this machine does not have is one `error:` line naming the flag to change, exit 2 (issue 21).

uvicorn binds inside its start-up and, when that fails, logs the OSError and exits 3 after the
app's lifespan has begun (so model-loading lines followed the failure). `python -m serve` and
`python -m serve.web` bind here first and hand the sockets to uvicorn (`Server.run(sockets=...)`).
"""

from __future__ import annotations

import errno
import socket

from oneneuron.errors import InputError

BACKLOG = 2048  # uvicorn's default


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address `host` resolves to, on `port` (0: one free port for all)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(
            f"cannot listen on {host}:{port}: cannot resolve it ({exc.strerror}); pass an address of "
            "this machine, e.g. --host 127.0.0.1 (or 0.0.0.0 for every interface)"
        ) from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):  # dedupe, keep order
            if sockets and port == 0:  # the port picked for the first address, for the others too
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's create_server
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise InputError(_message(host, port, exc)) from exc
            sock.listen(BACKLOG)  # connections wait in the backlog until uvicorn accepts, none refused
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _message(host: str, port: int, exc: OSError) -> str:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: the port is in use (another server?); pick another --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need root); pick a --port from 1024 up"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{where}: {host} is not an address of this machine; pass --host 127.0.0.1 "
            "(or 0.0.0.0 for every interface)"
        )
    return f"{where}: {exc.strerror or exc}; check --host and --port"


def bound_port(sockets: list[socket.socket]) -> int:
    """The port the sockets are bound to: the real one when --port 0 picked it."""
    return sockets[0].getsockname()[1]
