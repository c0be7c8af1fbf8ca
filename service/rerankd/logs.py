"""Logging set-up: one JSON object per line on stderr (access lines carry their fields).

Every line names the caller of the call it belongs to (`caller`, from rerankd.auth.CALLER) and
passes through errors.scrub, which removes registered keys and tokens and anything shaped like a
credential, from the message, the access fields and exception traces alike. Uncaught exceptions
(sys.excepthook) are logged the same way, so a crash trace cannot print a key either.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from types import TracebackType
from typing import Any

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
        return json.dumps(entry, ensure_ascii=False)


def _log_uncaught(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("rerankd").critical("uncaught exception", exc_info=(kind, value, traceback))


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
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
