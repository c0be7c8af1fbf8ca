"""Logging set-up: one JSON object per line on stderr (access lines carry their fields).

Access lines are written in batches (at most 0.2 s late, see BufferedStreamHandler); every other
line is written at once.

Every line names the caller of the call it belongs to (`caller`, from rerankd.auth.CALLER) and
passes through errors.scrub, which removes registered keys and tokens and anything shaped like a
credential, from the message, the access fields and exception traces alike. Uncaught exceptions
(sys.excepthook) are logged the same way, so a crash trace cannot print a key either.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

import orjson

from rerankd import errors
from rerankd.auth import CALLER


class JsonFormatter(logging.Formatter):
    """Formats records as JSON; `extra={"access": {...}}` fields are merged into the object."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": errors.scrub_short(record.getMessage()),
        }
        caller = CALLER.get()
        if caller is not None:
            entry["caller"] = caller.name
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            for key, value in access.items():
                entry[key] = errors.scrub_short(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else ""
            entry["exc"] = errors.scrub(self.formatException(record.exc_info))
        try:
            return orjson.dumps(entry).decode()  # same JSON as json.dumps(ensure_ascii=False), faster
        except TypeError:  # what orjson refuses (a lone surrogate, an integer past 64 bits)
            return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


ACCESS_LOGGER = "rerankd.access"


class BufferedStreamHandler(logging.StreamHandler):
    """A stream handler that writes access lines in batches.

    Access lines (logger rerankd.access, below WARNING) are gathered and written together every
    `flush_every_s` seconds, or at once when `max_pending_bytes` have gathered; any other line
    writes what is pending and then itself, at once, so lines stay in order and lifecycle and
    error lines are never late. Why: every write() gives up the GIL, and on a busy server each
    give-up invites a switch to gRPC's poller thread; one write per call cost about 0.35 ms of
    CPU per call on one core (bench/results/gateway.md), one write per batch costs nothing
    measurable. At most `flush_every_s` of access lines is lost if the process is killed hard;
    a drain (SIGTERM) flushes them.
    """

    def __init__(
        self, stream: TextIO, *, flush_every_s: float = 0.2, max_pending_bytes: int = 64 * 1024
    ) -> None:
        super().__init__(stream)
        self.max_pending_bytes = max_pending_bytes
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_periodically, args=(flush_every_s,), name="rerankd-log-flush", daemon=True
        )
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._pending_bytes += len(line)
        if (
            record.name != ACCESS_LOGGER
            or record.levelno >= logging.WARNING
            or self._pending_bytes >= self.max_pending_bytes
        ):
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the stream is gone (closed, broken pipe): nothing to do
            pass

    def flush(self) -> None:
        assert self.lock is not None  # created by Handler.__init__
        with self.lock:
            self._write_pending()

    def _flush_periodically(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("rerankd").critical("uncaught exception", exc_info=(kind, value, traceback))


def configure(level: str = "INFO") -> None:
    for old in logging.getLogger().handlers:
        if isinstance(old, BufferedStreamHandler):
            old.close()  # writes what it still holds
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Lines never show where a call was made from, nor thread/process names: skip collecting them
    # (the logging HOWTO's "Optimization" section; a stack walk per line otherwise).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught
