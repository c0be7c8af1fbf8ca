"""The event loop `rerankd serve` runs on: uvloop's where it is installed, else asyncio's own.

uvloop (libuv) spends less CPU per call on the gRPC server, the outbound HTTP client and the
timers around them than asyncio's pure-Python loop: about 15% less per Rerank call through a
provider (bench/results/gateway.md). grpc.aio runs on any asyncio-compatible loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_LOG = logging.getLogger("rerankd.server")
T = TypeVar("T")


def loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The name of the loop to use and a function making one."""
    try:
        import uvloop
    except ImportError:  # not installed (e.g. on Windows): asyncio's loop
        return "asyncio", asyncio.new_event_loop
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new loop of the preferred kind (as asyncio.run does)."""
    name, factory = loop_factory()
    _LOG.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
