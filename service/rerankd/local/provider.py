"""The `local` provider: an ONNX cross-encoder behind the Provider contract, at full speed.

A request goes: admission (bounded queue, RESOURCE_EXHAUSTED with a retry-after past it) ->
tokenising on a small thread pool (never on the event loop) -> the fair scheduler
(rerankd.local.scheduler), whose workers, one per core, score the pairs of every request in flight
one at a time (rerankd.local.model says why a batch of one) -> scores back in the request's order.
The same request gets the same scores whatever else is in flight.

Configuration (every provider of kind `local`; the default one is named `local`):

    providers:
      my-reranker:
        kind: local
        models: [my-reranker-v1]          # the name callers use; default: local_model_name
        options:
          model_dir: /models/my-reranker  # model.onnx + tokenizer.json; default: the bundled model
          max_length: 256                 # tokens of query + document; default: local_max_length
          threads: 2                      # scoring workers; default: local_threads (0 = cores)
          max_queued_pairs: 4096          # pairs waiting before RESOURCE_EXHAUSTED

Only the bundled model's files are checked against pinned sha256s; a model directory of your own
is used as given. The CUDA execution provider is used when onnxruntime has it.
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

from rerankd import errors, metrics, tracing
from rerankd.config import ProviderConfig
from rerankd.domain import Scored, Usage, render_text
from rerankd.local.files import resolve_model_dir, verify_bundled
from rerankd.local.model import CrossEncoder, Pair
from rerankd.local.scheduler import FairScheduler
from rerankd.providers.base import Capabilities, Provider, ProviderCall, ProviderResult

_LOG = logging.getLogger(__name__)
DEFAULT_MAX_QUEUED_PAIRS = 4096
_TOKENIZER_THREADS = 2


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalProvider(Provider):
    """An embedded cross-encoder, answering to `model_name` (the default one is also `default`)."""

    kind = "local"

    def __init__(
        self,
        name: str,
        *,
        model_dir: Path | None,
        model_name: str,
        max_length: int,
        threads: int,
        max_queued_pairs: int = DEFAULT_MAX_QUEUED_PAIRS,
    ) -> None:
        super().__init__(name)
        if max_queued_pairs < 1:
            raise ValueError(f"provider {name!r}: max_queued_pairs must be at least 1")
        self.model_dir = model_dir
        self.model_name = model_name
        self.max_length = max_length
        self.threads = threads or _cores()
        self.max_queued_pairs = max_queued_pairs
        self._encoder: CrossEncoder | None = None
        self._scheduler: FairScheduler[Pair] | None = None
        self._tokenizing = ThreadPoolExecutor(_TOKENIZER_THREADS, thread_name_prefix=f"{name}-tokenize")
        self.load_seconds = 0.0

    @classmethod
    def create(cls, name: str, config: ProviderConfig, ctx: Any) -> LocalProvider:
        settings = ctx.settings
        options = dict(config.options)
        model_dir = options.pop("model_dir", None) or settings.model_dir
        provider = cls(
            name,
            model_dir=Path(model_dir).expanduser() if model_dir else None,
            model_name=(config.models[0] if config.models else settings.local_model_name),
            max_length=int(options.pop("max_length", settings.local_max_length)),
            threads=int(options.pop("threads", settings.local_threads)),
            max_queued_pairs=int(options.pop("max_queued_pairs", DEFAULT_MAX_QUEUED_PAIRS)),
        )
        if options:
            known = "model_dir, max_length, threads, max_queued_pairs"
            raise ValueError(f"provider {name!r}: unknown options {sorted(options)} (known: {known})")
        return provider

    def models(self) -> Sequence[str]:
        return (self.model_name,)

    def capabilities(self, model: str) -> Capabilities:
        return Capabilities(max_documents=None, max_tokens=self.max_length)

    @property
    def scheduler(self) -> FairScheduler[Pair]:
        if self._scheduler is None:
            raise errors.Unavailable("the local model is still loading", provider=self.name)
        return self._scheduler

    @property
    def encoder(self) -> CrossEncoder:
        if self._encoder is None:
            raise errors.Unavailable("the local model is still loading", provider=self.name)
        return self._encoder

    async def start(self) -> None:
        """Load, verify and warm the model off the event loop, then start the workers."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        encoder = await loop.run_in_executor(self._tokenizing, self._load)
        scheduler = FairScheduler(
            encoder.score_pair,
            workers=self.threads,
            max_queued=self.max_queued_pairs,
            name=f"{self.name}-score",
            provider=self.name,
            observe_wait=metrics.LOCAL_QUEUE_SECONDS.observe,
        )
        scheduler.start()
        self._encoder, self._scheduler = encoder, scheduler
        self.load_seconds = time.perf_counter() - started
        _LOG.info(
            "local model %s loaded and warmed in %.2fs (%d workers, %s)",
            self.model_name,
            self.load_seconds,
            self.threads,
            encoder.session.get_providers()[0],
        )

    def _load(self) -> CrossEncoder:
        directory, bundled = resolve_model_dir(self.model_dir)
        if bundled:
            verify_bundled(directory)
        encoder = CrossEncoder(directory, max_length=self.max_length)
        encoder.warm_up()
        return encoder

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
        encoder, scheduler = self.encoder, self.scheduler
        with scheduler.admit(len(texts)) as admission:
            loop = asyncio.get_running_loop()
            pairs = await loop.run_in_executor(
                self._tokenizing,
                lambda: encoder.encode(
                    call.query, texts, truncation=call.truncation, max_tokens_per_doc=call.max_tokens_per_doc
                ),
            )
            tokens = sum(pair.tokens for pair in pairs)
            metrics.LOCAL_PAIRS.observe(len(pairs))
            attributes = {
                "rerankd.model": self.model_name,
                "rerankd.pairs": len(pairs),
                "rerankd.tokens": tokens,
            }
            with tracing.child_span("rerankd.local.inference", attributes):
                try:
                    scores = await scheduler.run(admission, pairs, [pair.tokens for pair in pairs])
                except errors.RerankError:
                    raise
                except Exception as exc:  # onnxruntime failed on a pair: our fault, not the caller's
                    raise errors.Internal(f"{self.name}: the model failed: {exc}") from exc
        usage = Usage(documents=len(pairs), total_tokens=tokens)
        return ProviderResult([Scored(i, s) for i, s in enumerate(scores)], usage, self.model_name)

    async def aclose(self) -> None:
        """Fail queued work with UNAVAILABLE and let the workers finish their current pair."""
        if self._scheduler is not None:
            self._scheduler.close()
            await asyncio.get_running_loop().run_in_executor(None, self._scheduler.join, 5.0)
        self._tokenizing.shutdown(wait=False, cancel_futures=True)
