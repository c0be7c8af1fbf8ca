"""Request headers of the HTTP front door, in linear time: `lower_headers` reads a request's headers
once, and `limited_protocol` caps how many header fields and bytes a request may send.

The cap is checked in the connection's protocol, on the raw bytes, before the HTTP parser (h11)
or anything else reads a field: a block over either cap is answered 431 Request Header Fields Too
Large, `{"message": ...}` (the app's dialect-neutral error shape) with an x-request-id, and the
connection is closed. Parsing 10,000 fields alone costs h11 about 20 ms, hence before it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from rerankd import tracing

if TYPE_CHECKING:
    from rerankd.config import Settings

_END_OF_HEAD = re.compile(rb"\n\r?\n")  # what h11 takes as the blank line that ends a request head
_LINGER_BYTES, _LINGER_S = 1024 * 1024, 1.0  # what a refused connection may still send, and for how long
_REQUEST_ID = re.compile(rb"\nx-request-id[ \t]*:[ \t]*([^\r\n]{1,256})")  # in a lower-cased head


def lower_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """A request's headers as a dict of lower-cased names, the first value of a repeated name
    winning (what Starlette's `request.headers[name]` gives), in one pass.

    `dict(request.headers)` looks each name up again in the list of all headers: quadratic, about
    a second of event-loop time for 10,000 fields.
    """
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Most header fields, and most bytes of the request line plus header fields, of one request."""

    max_count: int = 100
    max_bytes: int = 32 * 1024

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderLimits:
        return cls(settings.http_max_header_count, settings.http_max_header_bytes)

    def refusal(self, head_bytes: int, fields: int) -> str | None:
        """Why a request head of `head_bytes` (so far) with `fields` header fields is refused, or None."""
        if head_bytes > self.max_bytes:
            return f"request headers: {head_bytes} bytes or more; at most {self.max_bytes} allowed"
        if fields > self.max_count:
            return f"request headers: {fields} fields or more; at most {self.max_count} allowed"
        return None


class _LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, refusing a request head over `limits` before h11 parses it.

    After the 431 the connection closes lingering (as nginx does): our side is shut for writing
    and what the client still sends is read and dropped, up to _LINGER_BYTES or _LINGER_S, so that
    closing with unread bytes does not reset the connection before the client has read the answer.
    """

    limits: ClassVar[HeaderLimits] = HeaderLimits()
    _discard: int | None = None  # bytes still to drop after a refusal; None: serving as usual
    # The head being received, scanned incrementally (each byte once, however it is split up):
    _scanned = 0  # bytes of it already scanned for the blank line that ends it
    _lines = 0  # line ends in those bytes (the request line's included)

    def data_received(self, data: bytes) -> None:
        if self._discard is None:
            super().data_received(data)
            return
        self._discard -= len(data)
        if self._discard <= 0:
            self.transport.close()

    def handle_events(self) -> None:
        # Called with new bytes buffered (data_received) and when a kept-alive connection moves to
        # its next request; h11 waits for a request head only in state IDLE, and parses it whole
        # once its blank line is buffered: the caps are checked on every arrival before that.
        if self._discard is not None:
            return
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            pending = self.conn.trailing_data[0]
            if len(pending) < self._scanned:  # a new head (the buffer only grows while one arrives)
                self._scanned = self._lines = 0
            why = self._scan(pending)
            if why is not None:
                self._refuse(why, pending)
                return
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._scanned = self._lines = 0

    def _scan(self, pending: bytes) -> str | None:
        """Scan what arrived of the head since the last call; why it is refused, or None."""
        # From just before the last arrival (a blank line may straddle it) to just past the cap.
        end = _END_OF_HEAD.search(pending, max(self._scanned - 2, 0), self.limits.max_bytes + 2)
        stop = min(len(pending), self.limits.max_bytes + 2) if end is None else end.start() + 1
        self._lines += pending.count(b"\n", self._scanned, stop)
        self._scanned = max(stop, self._scanned)
        return self.limits.refusal(stop, self._lines - 1)

    def _refuse(self, why: str, block: bytes) -> None:
        head = block[: self.limits.max_bytes + 1024]
        found = _REQUEST_ID.search(head.lower())  # a literal search, ~5x faster than re.IGNORECASE
        theirs = head[found.start(1) : found.end(1)].decode("latin-1") if found else ""
        request_id = tracing.request_id("", {"x-request-id": theirs})
        body = json.dumps({"message": why}, separators=(",", ":")).encode()
        reply = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            f"x-request-id: {request_id}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(reply.encode("latin-1") + body)
        if not self.transport.can_write_eof():  # TLS: no half-close, close at once
            self.transport.close()
            return
        self.transport.write_eof()
        self._discard = _LINGER_BYTES
        self.loop.call_later(_LINGER_S, self.transport.close)


def limited_protocol(limits: HeaderLimits) -> type[H11Protocol]:
    """The uvicorn `http` protocol class that enforces `limits`."""
    return type("LimitedH11Protocol", (_LimitedH11Protocol,), {"limits": limits})


def incomplete_head_limit(limits: HeaderLimits) -> int:
    """h11's own bound on a buffered, unfinished request head: above ours, so ours answers first."""
    return limits.max_bytes + 1024
