"""`rerankd serve` as the CLI runs it, plus a sampler of the process's RSS, open descriptors and tasks.

For soaks: every `--every` seconds one JSON line goes to `--stats`:
{"t": seconds since start, "rss_kb": ..., "fds": ..., "tasks": ..., "threads": ...}, read from
/proc/self and asyncio.all_tasks() on the server's own loop. The server is built from the same
settings, logging set-up and event loop as `rerankd serve` (gRPC only, no embedded model):

    python -m bench.serve --config rerankd.yaml --port 50051 --stats stats.jsonl --every 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rerankd import eventloop, logs
from rerankd.config import load_settings
from rerankd.server import serve


def sample(started: float) -> dict[str, float]:
    """This process's resident memory, open descriptors, asyncio tasks and threads, now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {
        "t": round(time.monotonic() - started, 1),
        "rss_kb": pages * os.sysconf("SC_PAGE_SIZE") // 1024,
        "fds": len(os.listdir("/proc/self/fd")),
        "tasks": len(asyncio.all_tasks()),
        "threads": threading.active_count(),
    }


async def sampler(path: Path, every: float) -> None:
    started = time.monotonic()
    with path.open("a") as out:
        while True:
            out.write(json.dumps(sample(started)) + "\n")
            out.flush()
            await asyncio.sleep(every)


async def run(args: argparse.Namespace) -> None:
    settings = load_settings(
        host="127.0.0.1",
        port=args.port,
        http_enabled=False,
        config=args.config,
        local_enabled=False,
        log_level=args.log_level,
    )
    logs.configure(settings.log_level)
    sampling = asyncio.create_task(sampler(Path(args.stats), args.every)) if args.stats else None
    try:
        await serve(settings)
    finally:
        if sampling is not None:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True, help="YAML file of providers and routes")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--stats", default="", help="append samples here as JSON lines")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    eventloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
