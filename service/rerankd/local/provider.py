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
          model_dir: /models/my-reranker  # a folder of the layouts in rerankd.local.files, or
          model: BAAI/bge-reranker-v2-m3  # a hub repo id (rerankd.local.hub), with
          revision: main                  #   a branch, tag or commit; cache_dir: the hub cache
          onnx_file: onnx/model.onnx      # which ONNX file (default: chosen, see files.choose_onnx)
          quantized: auto                 # auto | true | false: quantised exports for this CPU
          activation: sigmoid             # sigmoid | softmax | none (default: saved with the model)
          max_length: 256                 # tokens of query + document; default: local_max_length
          threads: 2                      # scoring workers; default: local_threads (0 = cores)
          max_queued_pairs: 4096          # pairs waiting before RESOURCE_EXHAUSTED
          passages: {tokens: 256, stride: 64, pool: max}   # long documents as windows (off)

A request may set or turn off passages with `parameters: {"passages": {...} | true | false}`.
Each window is one pair to the scheduler (and to the queue bound); a document's score is the max
(or mean, or first) of its windows', and `Scored.passage` says which window won.

The bundled model's files are checked against pinned sha256s, a hub model's against what the hub
said when it was fetched; a model directory of your own is used as given. `preflight(providers)`
does that (and fetches hub models) before the server binds its ports. The CUDA execution provider
is used when onnxruntime has it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

from rerankd import errors, metrics, tracing
from rerankd.config import ProviderConfig, ProviderOptions
from rerankd.domain import Scored, Usage, rendered_texts
from rerankd.local import hub
from rerankd.local.files import (
    BUNDLED_SOURCE,
    ModelFiles,
    ModelFilesError,
    bundled_files,
    folder_files,
)
from rerankd.local.model import ACTIVATIONS, CrossEncoder, Pair, family, position_limit
from rerankd.local.scheduler import FairScheduler
from rerankd.passages import Passages, pool, requested
from rerankd.providers.base import Capabilities, ModelDescription, Provider, ProviderCall, ProviderResult

_LOG = logging.getLogger(__name__)
DEFAULT_MAX_QUEUED_PAIRS = 4096
TOKENIZER_THREADS = 2


class LocalOptions(ProviderOptions):
    """`options` of kind local (the module docstring shows each); unset ones come from settings."""

    model_dir: str | None = None
    model: str | None = None
    revision: str | None = None
    cache_dir: str | None = None
    onnx_file: str | None = None
    quantized: str | bool = "auto"
    activation: str | None = None
    max_length: int | None = None
    threads: int | None = None
    max_queued_pairs: int = DEFAULT_MAX_QUEUED_PAIRS


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Where a local provider's model comes from: a hub repo, a folder, or (neither) the bundled one."""

    repo_id: str | None = None
    revision: str = "main"
    cache_dir: Path | None = None
    model_dir: Path | None = None
    onnx_file: str | None = None
    quantized: str = "auto"

    def resolve(self) -> ModelFiles:
        """The files, fetched and verified as the source requires (ModelFilesError, one line)."""
        if self.repo_id:
            cuda = "CUDAExecutionProvider" in ort.get_available_providers()
            return hub.fetch(
                self.repo_id,
                revision=self.revision,
                cache_dir=self.cache_dir,
                onnx_file=self.onnx_file,
                quantized=self.quantized,
                cuda=cuda,
            )
        if self.model_dir is not None:
            return folder_files(self.model_dir, onnx_file=self.onnx_file, quantized=self.quantized)
        return bundled_files()

    def describe(self) -> str:
        if self.repo_id:
            return f"hub {self.repo_id}@{self.revision}"
        return f"dir {self.model_dir}" if self.model_dir is not None else BUNDLED_SOURCE


class LocalProvider(Provider):
    """An embedded cross-encoder, answering to `model_name` (the default one is also `default`)."""

    kind = "local"
    Options = LocalOptions

    def __init__(
        self,
        name: str,
        *,
        timeout_s: float | None = None,
        forward_metadata: Sequence[str] = (),
        model_dir: Path | None = None,
        model_name: str,
        max_length: int,
        threads: int,
        max_queued_pairs: int = DEFAULT_MAX_QUEUED_PAIRS,
        source: ModelSource | None = None,
        activation: str | None = None,
        passages: Passages | None = None,
        explicit_max_length: bool = False,
    ) -> None:
        super().__init__(name, timeout_s=timeout_s, forward_metadata=forward_metadata)
        if max_queued_pairs < 1:
            raise ValueError(f"provider {name!r}: max_queued_pairs must be at least 1")
        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"provider {name!r}: activation must be one of {', '.join(ACTIVATIONS)}")
        self.source = source or ModelSource(model_dir=model_dir)
        self.model_dir = self.source.model_dir
        self.model_name = model_name
        self.max_length = max_length
        self.explicit_max_length = explicit_max_length
        self.threads = threads or _cores()
        self.max_queued_pairs = max_queued_pairs
        self.activation = activation
        self.passages = passages
        self.files: ModelFiles | None = None
        self.family = "bert" if self.source.repo_id is None and self.model_dir is None else "unknown"
        self._encoder: CrossEncoder | None = None
        self._scheduler: FairScheduler[Pair] | None = None
        self._tokenizing = ThreadPoolExecutor(TOKENIZER_THREADS, thread_name_prefix=f"{name}-tokenize")
        self.load_seconds = 0.0

    @classmethod
    def create(cls, name: str, config: ProviderConfig, ctx: Any) -> LocalProvider:
        settings = ctx.settings
        options: LocalOptions = config.options
        model_dir, repo_id = options.model_dir, options.model
        if model_dir and repo_id:
            raise ValueError(f"provider {name!r}: options model_dir and model exclude each other")
        if not model_dir and not repo_id:
            model_dir, repo_id = settings.model_dir, settings.local_model
        if model_dir and repo_id:
            raise ValueError(
                "model_dir (RERANKD_MODEL_DIR) and local_model (RERANKD_LOCAL_MODEL) exclude each other"
            )
        cache_dir = options.cache_dir or settings.local_cache_dir
        source = ModelSource(
            repo_id=str(repo_id) if repo_id else None,
            revision=options.revision or settings.local_model_revision,
            cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
            model_dir=Path(model_dir).expanduser() if model_dir else None,
            onnx_file=options.onnx_file,
            quantized=str(options.quantized).lower(),
        )
        explicit = options.max_length is not None or "local_max_length" in settings.model_fields_set
        if config.models:
            model_name = config.models[0]
        elif source.repo_id and "local_model_name" not in settings.model_fields_set:
            model_name = source.repo_id.rsplit("/", 1)[-1]
        else:
            model_name = settings.local_model_name
        return cls(
            name,
            timeout_s=config.timeout_s,
            forward_metadata=config.forward_metadata,
            source=source,
            model_name=model_name,
            max_length=options.max_length if options.max_length is not None else settings.local_max_length,
            explicit_max_length=explicit,
            threads=options.threads if options.threads is not None else settings.local_threads,
            max_queued_pairs=options.max_queued_pairs,
            activation=options.activation,
            passages=_passages_option(name, options.passages),
        )

    def prepare(self) -> ModelFiles:
        """Fetch and verify the model's files, and check max_length against its positions
        (blocking; idempotent). ModelFilesError with one line when they are missing or wrong."""
        if self.files is not None:
            return self.files
        files = self.source.resolve()
        limit = position_limit(files)
        if limit is not None and self.max_length > limit:
            if self.explicit_max_length:
                raise ModelFilesError(
                    f"provider {self.name!r}: max_length {self.max_length} is over the {limit} positions"
                    f" of {files.source}; set max_length to {limit} or less"
                )
            self.max_length = limit  # the default (512) on a model with fewer positions
        self.family = family(files) if files.config else self.family
        self.files = files
        return files

    def describe(self, model: str = "") -> ModelDescription:
        """What ListModels / `rerankd models` show of this model: family, max length, source."""
        source = self.files.source if self.files is not None else self.source.describe()
        return ModelDescription(family=self.family, max_length=self.max_length, source=source)

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
        # Read at scrape time (no cost per call): the queue alert compares the two.
        metrics.child(metrics.LOCAL_QUEUED, self.name).set_function(lambda: scheduler.queued)
        metrics.child(metrics.LOCAL_QUEUE_CAPACITY, self.name).set(self.max_queued_pairs)
        self.load_seconds = time.perf_counter() - started
        _LOG.info(
            "local model %s (%s, max length %d, %s) loaded and warmed in %.2fs (%d workers, %s)",
            self.model_name,
            encoder.family,
            self.max_length,
            encoder.files.source,
            self.load_seconds,
            self.threads,
            encoder.session.get_providers()[0],
        )

    def _load(self) -> CrossEncoder:
        encoder = CrossEncoder(self.prepare(), max_length=self.max_length, activation=self.activation)
        encoder.warm_up()
        self.family = encoder.family
        return encoder

    async def rerank(self, call: ProviderCall) -> ProviderResult:
        if call.model and call.model != self.model_name:
            raise errors.NotFound(
                f"{self.name}: no model {call.model!r} (this provider serves {self.model_name!r})"
            )
        texts = rendered_texts(call.documents, call.rank_fields)
        passages = requested(call.parameters, self.passages)
        encoder, scheduler = self.encoder, self.scheduler
        with scheduler.admit(len(texts)) as admission:
            loop = asyncio.get_running_loop()
            pairs = await loop.run_in_executor(
                self._tokenizing,
                lambda: encoder.encode(
                    call.query,
                    texts,
                    truncation=call.truncation,
                    max_tokens_per_doc=call.max_tokens_per_doc,
                    passages=passages,
                ),
            )
            if len(pairs) > len(texts):
                scheduler.grow(admission, len(pairs) - len(texts))  # each window is a pair to score
            tokens = sum(pair.tokens for pair in pairs)
            metrics.LOCAL_PAIRS.observe(len(pairs))
            attributes = (
                {"rerankd.model": self.model_name, "rerankd.pairs": len(pairs), "rerankd.tokens": tokens}
                if tracing.recording()
                else tracing.NO_ATTRIBUTES
            )
            with tracing.child_span("rerankd.local.inference", attributes):
                try:
                    scores = await scheduler.run(admission, pairs, [pair.tokens for pair in pairs])
                except errors.RerankError:
                    raise
                except Exception as exc:  # onnxruntime failed on a pair: our fault, not the caller's
                    raise errors.Internal(f"{self.name}: the model failed: {exc}") from exc
        usage = Usage(documents=len(texts), total_tokens=tokens)
        if passages is None:
            return ProviderResult([Scored(i, s) for i, s in enumerate(scores)], usage, self.model_name)
        return ProviderResult(pool(pairs, scores, len(texts), passages.pool), usage, self.model_name)

    async def aclose(self) -> None:
        """Fail queued work with UNAVAILABLE and let the workers finish their current pair."""
        if self._scheduler is not None:
            self._scheduler.close()
            await asyncio.get_running_loop().run_in_executor(None, self._scheduler.join, 5.0)
        self._tokenizing.shutdown(wait=False, cancel_futures=True)


def _passages_option(provider: str, value: Any) -> Passages | None:
    try:
        return Passages.parse(value)
    except ValueError as exc:
        raise ValueError(f"provider {provider!r}: options.passages {exc}") from None


def preflight(providers: Mapping[str, Provider]) -> None:
    """Fetch and verify every local provider's model files, before the server binds its ports.

    Blocking (a first fetch downloads the model). Raises ModelFilesError with a one-line message
    (`rerankd serve` prints it and exits 2) when a model is missing, unreachable or not verified.
    """
    for provider in providers.values():
        if isinstance(provider, LocalProvider):
            provider.prepare()
