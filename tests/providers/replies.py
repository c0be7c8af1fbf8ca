"""Provider answers for the pure parser tests (no server involved)."""

from __future__ import annotations

import json
from typing import Any

from rerankd.providers.http import HttpReply


def reply(body: Any, status: int = 200) -> HttpReply:
    """An HTTP answer with `body` as its JSON."""
    return HttpReply(status, {}, json.dumps(body).encode())
