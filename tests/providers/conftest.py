"""Fixtures every provider test module shares.

Each module defines `running`: its provider's fake (tests/fakes), started once per module.
`fake` hands that fake to a test with its recorded requests and injected faults cleared; `http` is
a fresh outbound client (rerankd's own, on aiohttp) for tests that send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rerankd.providers.http import HttpClient

from tests.fakes.base import FakeProvider


@pytest.fixture
def fake(running: FakeProvider) -> FakeProvider:
    running.clear()
    return running


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.aclose()
