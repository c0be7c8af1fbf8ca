"""The `local` provider: the embedded cross-encoder behind the Provider contract.

Tokenising and scoring run on a thread pool (never on the event loop), one pair per task group,
so both cores are busy and a slow request cannot block the server. Work not yet started is
dropped when the caller cancels.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.domain import Scored, Usage, render_text
from rerankd.local.files import resolve_model_dir, verify_bundled
from rerankd.local.model import CrossEncoder, Pair
from rerankd.providers.base import Capabilities, Provider, ProviderCall, ProviderResult

_LOG = logging.getLogger(__name__)
_PAIRS_PER_TASK = 4  # small groups: little scheduling overhead, fair interleaving between requests


class LocalProvider(Provider):
    """The embedded model, answering to `model_name` (and routed as `default`)."""

    kind = "local"

    def __init__(
        self, name: str, *, model_dir: Path | None, model_name: str, max_length: int, threads: int
    ) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.model_name = model_name
        self.max_length = max_length
        self.threads = threads or max(os.cpu_count() or 1, 1)
        self._encoder: CrossEncoder | None = None
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="rerankd-local")
        self.load_seconds = 0.0

    @classmethod
    def create(cls, name: str, config: ProviderConfig, ctx: Any) -> LocalProvider:
        settings = ctx.settings
        options = config.options
        model_dir = options.get("model_dir", settings.model_dir)
        return cls(
            name,
            model_dir=Path(model_dir) if model_dir else None,
            model_name=(config.models[0] if config.models else settings.local_model_name),
            max_length=int(options.get("max_length", settings.local_max_length)),
            threads=int(options.get("threads", settings.local_threads)),
        )

    def models(self) -> Sequence[str]:
        return (self.model_name,)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=None, max_tokens=self.max_length)

    async def start(self) -> None:
        """Load, verify and warm the model off the event loop."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self._encoder = await loop.run_in_executor(self._pool, self._load)
        self.load_seconds = time.perf_counter() - started
        _LOG.info("local model %s loaded and warmed in %.2fs", self.model_name, self.load_seconds)

    def _load(self) -> CrossEncoder:
        directory, bundled = resolve_model_dir(self.model_dir)
        if bundled:
            verify_bundled(directory)
        encoder = CrossEncoder(directory, max_length=self.max_length)
        for pair in encoder.encode("warm up", ["the first call pays for lazy initialisation"]):
            encoder.score_pair(pair)
        return encoder

    @property
    def encoder(self) -> CrossEncoder:
        if self._encoder is None:
            raise errors.Unavailable("the local model is still loading", provider=self.name)
        return self._encoder

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        if call.model and call.model != self.model_name:
            raise errors.NotFound(
                f"{self.name}: no model {call.model!r} (this provider serves {self.model_name!r})"
            )
        texts = []
        for index, doc in enumerate(call.documents):
            text = render_text(doc, call.rank_fields)
            if text is None:
                raise errors.invalid(f"documents[{index}]", "has no text to rank")
            texts.append(text)
        loop = asyncio.get_running_loop()
        encoder = self.encoder
        pairs = await loop.run_in_executor(
            self._pool,
            lambda: encoder.encode(
                call.query, texts, truncation=call.truncation, max_tokens_per_doc=call.max_tokens_per_doc
            ),
        )
        groups = [pairs[i : i + _PAIRS_PER_TASK] for i in range(0, len(pairs), _PAIRS_PER_TASK)]
        scored = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _score_all, encoder, g) for g in groups)
        )
        scores = [score for group in scored for score in group]
        usage = Usage(documents=len(pairs), total_tokens=sum(p.tokens for p in pairs))
        return ProviderResult([Scored(i, s) for i, s in enumerate(scores)], usage, self.model_name)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _score_all(encoder: CrossEncoder, pairs: list[Pair]) -> list[float]:
    return [encoder.score_pair(pair) for pair in pairs]
