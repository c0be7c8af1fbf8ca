"""Helpers of the local model's tests: deterministic filler documents, and waiting on a condition."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

_VOCABULARY = (
    "the city river bridge capital france paris germany berlin history museum train station market "
    "people population winter summer mountain lake old new large small north south church tower "
    "school street garden king queen war peace art music food wine bread cheese language law"
)
WORDS = _VOCABULARY.split()


def text(words: int, seed: int) -> str:
    """`words` words drawn with `seed`; the same arguments always give the same text."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def texts(count: int, low: int, high: int, seed: int) -> list[str]:
    """`count` documents of `low`..`high` words each."""
    rng = random.Random(seed)
    return [text(rng.randint(low, high), seed * 100_003 + i) for i in range(count)]


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Return once `condition()` holds; TimeoutError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > end:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.002)
