"""Fixtures shared by the bench tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.fastfake import FastFake


@pytest.fixture(scope="module")
async def fake_url() -> AsyncIterator[str]:
    """bench/fastfake.py's instant Cohere v2 fake, served on the test loop."""
    fake = FastFake()
    url = await fake.start()
    try:
        yield url
    finally:
        fake.close()
