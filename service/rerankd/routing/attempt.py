"""One attempt at one target, and the record of every attempt a request made.

`send_attempt` makes one provider call under its own span (CLIENT for a hosted provider, INTERNAL
for the embedded model; the provider sees that span as its parent in `traceparent`), inside its
timeout, and checks that the answer is one score per document asked for. `AttemptLog` is the
request's list of attempts (`Ranked.attempts`), one entry per call, with a failure's scrubbed
message.
"""

from __future__ import annotations

import asyncio
import json
import operator
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opentelemetry.trace import SpanKind

from rerankd import errors, metrics, tracing
from rerankd.domain import Attempt, Scored
from rerankd.providers.base import ProviderCall, ProviderResult
from rerankd.routing.targets import Target

_MAX_MESSAGE = 300


@dataclass(slots=True)
class AttemptLog:
    """Every attempt one request made, in the order they ended."""

    attempts: list[Attempt] = field(default_factory=list)

    def add(
        self,
        target: Target,
        error: errors.RerankError | None,
        elapsed_s: float,
        attempt: int,
        prefix: str = "",
        note: str = "",
    ) -> Attempt:
        """Record one attempt; a failure's message is `prefix` + the error + `note` (the retry wait)."""
        message = ""
        if error is not None:
            message = errors.scrub(prefix + str(error))[: _MAX_MESSAGE - len(note)] + note
        record = Attempt(
            provider=target.provider.name,
            model=target.model,
            outcome="OK" if error is None else error.code.name,
            duration_ms=elapsed_s * 1000.0,
            attempt=attempt,
            message=message,
        )
        self.attempts.append(record)
        return record

    def cancelled(self, target: Target, elapsed_s: float, attempt: int, prefix: str = "") -> Attempt:
        """Record an attempt cancelled before it answered (a hedge that lost, a caller gone)."""
        record = Attempt(
            provider=target.provider.name,
            model=target.model,
            outcome="CANCELLED",
            duration_ms=elapsed_s * 1000.0,
            attempt=attempt,
            message=errors.scrub(prefix + "cancelled")[:_MAX_MESSAGE],
        )
        self.attempts.append(record)
        return record

    def __len__(self) -> int:
        return len(self.attempts)


async def send_attempt(target: Target, call: ProviderCall, timeout: float, attempt: int) -> ProviderResult:
    """One provider call under its own span, CLIENT for a hosted provider (its HTTP request adds the
    HTTP client conventions: providers/http.py), INTERNAL for the embedded model; a timeout is
    DeadlineExceeded."""
    name = target.provider.name
    remote = target.provider.kind != "local"  # the embedded model: no network call
    attributes: Mapping[str, Any] = tracing.NO_ATTRIBUTES
    if tracing.recording():
        attributes = {
            "rerankd.provider": name,
            "rerankd.provider_kind": target.provider.kind,
            "rerankd.model": target.model,
            "rerankd.documents": len(call.documents),
            "rerankd.attempt": attempt,
            **({"http.request.resend_count": attempt - 1} if remote and attempt > 1 else {}),
        }
    started = time.perf_counter()
    outcome = "OK"
    kind = SpanKind.CLIENT if remote else SpanKind.INTERNAL
    with tracing.child_span("rerankd.provider_attempt", attributes, kind) as span:
        headers = tracing.inject(call.headers, span)
        forwarded = forwarded_metadata(target.provider.forward_metadata, call.metadata)
        if forwarded:
            headers["x-metadata"] = forwarded
        try:
            async with asyncio.timeout(timeout):
                result = await target.provider.rerank(replace(call, timeout=timeout, headers=headers))
            check_answer(name, call, result.scores)
        except TimeoutError:
            outcome = "DEADLINE_EXCEEDED"
            raise errors.DeadlineExceeded(f"{name}: no answer within {timeout:.3f}s", provider=name) from None
        except errors.RerankError as exc:
            outcome = exc.code.name
            raise
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        finally:
            if span.is_recording():
                tracing.end_attempt_span(span, outcome)
            model = metrics.attempt_model_label(target.label, target.model)  # ad-hoc: "other"
            metrics.child(metrics.ATTEMPTS, name, model, outcome).inc()
            metrics.child(metrics.ATTEMPT_SECONDS, name).observe(time.perf_counter() - started)
    metrics.child(metrics.DOCUMENTS, name).inc(len(call.documents))
    return result


def forwarded_metadata(allowed: Sequence[str], metadata: Mapping[str, str]) -> str:
    """The caller metadata a provider may see (its allow-list; "*" = all), as a JSON object."""
    if not allowed or not metadata:
        return ""
    kept = dict(metadata) if "*" in allowed else {k: v for k, v in metadata.items() if k in allowed}
    return json.dumps(kept, separators=(",", ":")) if kept else ""  # ASCII: a header value


def check_answer(provider: str, call: ProviderCall, scores: list[Scored]) -> None:
    """Refuse an answer that is not one score per document asked for (BadResponse, so retried
    and failed over): an index twice or outside the documents sent, or fewer results than every
    document (top_n unset, as for each chunk) or min(top_n, documents). More than top_n is fine
    (the local model scores every document; the router cuts to top_n after the merge). Three
    C-level passes over the indices (about 10 us for 1,000); scores are checked by the parsers."""
    count = len(call.documents)
    indices = set(map(_BY_INDEX, scores))
    if len(indices) != len(scores):
        raise errors.BadResponse(f"{provider}: answer scores a document twice", provider=provider)
    if indices and (min(indices) < 0 or max(indices) >= count):
        raise errors.BadResponse(
            f"{provider}: answer has a result outside the {count} documents sent", provider=provider
        )
    wanted = count if call.top_n is None else min(call.top_n, count)
    if len(indices) < wanted:
        raise errors.BadResponse(
            f"{provider}: answer has {len(indices)} results for {count} documents ({wanted} expected)",
            provider=provider,
        )


_BY_INDEX = operator.attrgetter("index")
