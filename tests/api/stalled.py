"""A gRPC caller that stops reading: a raw HTTP/2 client (the h2 library) that sends one call and
never acknowledges the data it receives (no WINDOW_UPDATE), so the server's writes stall once the
flow-control window is spent. Used by the slow-caller tests and bench/stalled.py.
"""

from __future__ import annotations

import socket
import struct

import h2.config
import h2.connection
import h2.events


class StalledCaller:
    """One connection, one call on it, nothing read after the first bytes."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.events: list[h2.events.Event] = []

    def call(self, method: str, message: bytes, *, end: bool = True, timeout_s: float | None = None) -> int:
        """Start `method` (e.g. "/rerankd.v1.RerankService/RerankStream") with one serialized request
        message; leave the request stream open when `end` is false. Returns the stream id."""
        stream = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "rerankd"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        if timeout_s is not None:
            headers.append(("grpc-timeout", f"{int(timeout_s * 1000)}m"))
        self.conn.send_headers(stream, headers)
        framed = b"\x00" + struct.pack(">I", len(message)) + message
        window = self.conn.local_flow_control_window(stream)
        sent = 0
        while sent < len(framed):  # the server acknowledges what it reads: follow its window
            window = self.conn.local_flow_control_window(stream)
            if window == 0:
                self.pump(1.0)
                continue
            chunk = framed[sent : sent + min(window, self.conn.max_outbound_frame_size)]
            self.conn.send_data(stream, chunk)
            sent += len(chunk)
            self.sock.sendall(self.conn.data_to_send())
        if end:
            self.conn.end_stream(stream)
        self.sock.sendall(self.conn.data_to_send())
        return stream

    def pump(self, seconds: float) -> list[h2.events.Event]:
        """Read frames for up to `seconds`, answering pings and settings but never opening the
        window: the data the server sends is received and not acknowledged."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return []
        if not data:
            return []
        events = self.conn.receive_data(data)
        self.events += events
        outgoing = self.conn.data_to_send()
        if outgoing:
            self.sock.sendall(outgoing)
        return events

    def received_bytes(self) -> int:
        return sum(len(e.data) for e in self.events if isinstance(e, h2.events.DataReceived))

    def ended(self) -> bool:
        """Whether the server ended the stream (trailers, a reset, or closing the connection)."""
        return any(
            isinstance(e, h2.events.StreamReset | h2.events.StreamEnded | h2.events.ConnectionTerminated)
            for e in self.events
        )

    def close(self) -> None:
        self.sock.close()
