"""An optional in-memory response cache per route, bounded by entries and bytes, with a TTL.

The key is a SHA-256 over the route name and everything in the request that can change the
ranking: query, every document (id, text, fields), top_n, rank_fields, truncation,
max_tokens_per_doc and the provider parameters. Only digests and rankings (index, score) are
kept, never query or document text. `return_documents`, trace ids and metadata do not change the
ranking and are not part of the key. A hit costs no provider call, reports no usage and no
attempts, and is marked `cache="hit"` so the front door can say so in response metadata.

Least recently used entries are dropped first when either bound is reached; expired entries are
dropped when met. The cache lives on the event loop thread: no locks, no awaits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rerankd.config import CacheConfig
from rerankd.domain import Ranked, RerankQuery, Scored, Usage

_ENTRY_OVERHEAD = 256  # bytes of bookkeeping per entry (key, tuple, object headers), roughly
_RESULT_BYTES = 72  # one Scored: object + int + float, roughly


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    size: int
    results: tuple[Scored, ...]
    provider: str
    model: str


class ResponseCache:
    """Rankings of recent requests of one route."""

    def __init__(self, config: CacheConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(route: str, query: RerankQuery) -> str:
        """The digest of everything in `query` (for `route`) that can change its ranking."""
        digest = hashlib.sha256()
        head = [
            route,
            query.query,
            query.top_n,
            list(query.rank_fields),
            query.truncation.value,
            query.max_tokens_per_doc,
            json.dumps(query.parameters, sort_keys=True, separators=(",", ":"), default=str),
            len(query.documents),
        ]
        digest.update(json.dumps(head, separators=(",", ":")).encode())
        for doc in query.documents:
            digest.update(b"\x1e")
            digest.update(
                json.dumps([doc.id, doc.text, sorted(doc.fields.items())], separators=(",", ":")).encode()
            )
        return digest.hexdigest()

    def get(self, key: str) -> Ranked | None:
        """A fresh copy of the cached ranking for `key`, or None."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return Ranked(list(entry.results), Usage(), entry.provider, entry.model, [], cache="hit")

    def put(self, key: str, ranked: Ranked) -> None:
        """Keep `ranked` for the TTL; too large an answer is not kept."""
        size = _ENTRY_OVERHEAD + _RESULT_BYTES * len(ranked.results)
        if size > self.config.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(
            self._clock() + self.config.ttl_s, size, tuple(ranked.results), ranked.provider, ranked.model
        )
        self.bytes += size
        while len(self._entries) > self.config.max_entries or self.bytes > self.config.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
