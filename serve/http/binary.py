"""Triton's binary tensor data extension for the V2 HTTP protocol.

Spec: github.com/triton-inference-server/server docs/protocol/extension_binary_data.md.
A request may carry tensors as raw little-endian bytes after its JSON header: the header
`Inference-Header-Content-Length` gives the JSON's size, and each such input says
`"parameters": {"binary_data_size": N}`; the chunks follow in input order. An output is
returned in binary when its `parameters.binary_data` is true or, when it does not say, when
the request's `parameters.binary_data_output` is true (tritonclient.http sets that when no
outputs are requested). The response then carries the same header and the raw bytes after it.
"""

from __future__ import annotations

from serve.engine.errors import InputError, preview
from serve.http.httpio import dumps

HEADER = "inference-header-content-length"
HEADER_RAW = HEADER.encode()  # ASGI header names are lower-case bytes


def split(body: bytes, header_length: str | None) -> tuple[memoryview | bytes, memoryview]:
    """Split a request body into its JSON header and the binary tensor data after it."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise InputError(
            f"Inference-Header-Content-Length {preview(header_length)} is not a byte count between 0 "
            f"and the body size {len(body)}; it must give the size of the JSON header",
        )
    view = memoryview(body)
    return view[:n], view[n:]


class Chunks:
    """The binary section of a request, handed out to inputs in order."""

    def __init__(self, blob: memoryview):
        self.blob, self.offset = blob, 0

    def take(self, size: object, name: str) -> memoryview:
        if type(size) is not int or size < 0:
            raise InputError(
                f"input {name!r}: binary_data_size {preview(size)} is not a byte count; "
                "expected a non-negative integer",
            )
        if self.offset + size > len(self.blob):
            raise InputError(
                f"input {name!r}: binary_data_size {preview(size)} but only {len(self.blob) - self.offset} "
                "bytes of binary data follow the JSON header (Inference-Header-Content-Length)",
            )
        chunk = self.blob[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def finish(self) -> None:
        if self.offset != len(self.blob):
            raise InputError(
                f"{len(self.blob) - self.offset} bytes of binary data after the JSON header "
                "belong to no input; check binary_data_size and Inference-Header-Content-Length",
            )


def encode(header: dict, buffers: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A response body (JSON then raw outputs) and its headers; plain JSON when nothing is binary."""
    text = dumps(header)
    if not buffers:
        return text, {}
    return b"".join([text, *buffers]), {"Inference-Header-Content-Length": str(len(text))}
