"""rerankd.logs: JSON lines, and the handler that writes access lines in batches."""

from __future__ import annotations

import io
import logging
import time

from rerankd.logs import ACCESS_LOGGER, BufferedStreamHandler, JsonFormatter

from tests.support import log_messages


class _Stream(io.StringIO):
    """A text stream that counts its write() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def _handler(stream: _Stream, **kwargs: float) -> BufferedStreamHandler:
    handler = BufferedStreamHandler(stream, **kwargs)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    return handler


def _messages(stream: _Stream) -> list[str]:
    return log_messages(stream.getvalue())


def test_access_lines_wait_for_the_flush_and_other_lines_keep_their_order() -> None:
    stream = _Stream()
    handler = _handler(stream, flush_every_s=3600)
    try:
        for n in range(3):
            handler.handle(_record(ACCESS_LOGGER, logging.INFO, f"call {n}"))
        assert stream.getvalue() == ""  # gathered, not written
        handler.handle(_record("rerankd.server", logging.INFO, "draining"))
        assert _messages(stream) == ["call 0", "call 1", "call 2", "draining"]
        assert stream.writes == 1  # four lines, one write
        handler.handle(_record(ACCESS_LOGGER, logging.WARNING, "refused"))  # WARNING: at once
        assert _messages(stream)[-1] == "refused"
    finally:
        handler.close()


def test_pending_lines_are_written_periodically_on_size_and_on_close() -> None:
    stream = _Stream()
    handler = _handler(stream, flush_every_s=0.05)
    handler.handle(_record(ACCESS_LOGGER, logging.INFO, "soon"))
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _messages(stream) == ["soon"]
    handler.close()

    stream = _Stream()
    handler = _handler(stream, flush_every_s=3600, max_pending_bytes=1000)
    for n in range(20):  # ~80 bytes a line: past 1,000 bytes it writes without waiting
        handler.handle(_record(ACCESS_LOGGER, logging.INFO, f"call {n}"))
    written = len(_messages(stream))
    assert 0 < written < 20
    handler.close()  # the rest
    assert _messages(stream) == [f"call {n}" for n in range(20)]


def test_a_closed_stream_is_not_an_error() -> None:
    stream = _Stream()
    handler = _handler(stream, flush_every_s=3600)
    handler.handle(_record(ACCESS_LOGGER, logging.INFO, "late"))
    stream.close()
    handler.close()  # nothing raised
