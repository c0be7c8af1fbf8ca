"""The steps every front door shares, so gRPC and HTTP serve a request the same way.

    identify()        request id and the server's span, from the caller's ids and headers/metadata
    Pipeline.open()   the call's record (api/call.py): opened once per call, ended once by the
                      front door with Call.finish(status), however the call ends
    Pipeline.rerank() validate, set the deadline, build the outbound trace headers and call the
                      router, with the call's server span current
    Pipeline.targets() what a model name resolves to (for dialect checks made before any work)

A front door decodes its wire format to a RerankQuery, runs it through the pipeline and encodes the
Ranked answer (or the error) back; the call record says how it ended.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from rerankd import auth, authz, tracing
from rerankd.api.call import Call
from rerankd.config import Settings
from rerankd.domain import Ranked, RerankQuery, TraceContext
from rerankd.routing import PartialSink, Router, Target
from rerankd.validation import Limits, validate


class CallIds(NamedTuple):
    """The ids one call is known by: the request id and the server's own span in the caller's trace."""

    request_id: str
    trace: TraceContext


def identify(explicit_request_id: str, message_trace: TraceContext, headers: Mapping[str, str]) -> CallIds:
    """Ids for one call from the message's own fields and lower-cased headers (or gRPC metadata)."""
    request_id = tracing.request_id(explicit_request_id, headers)
    caller = tracing.incoming(message_trace, headers)
    return CallIds(request_id, tracing.server_trace(caller))


class HttpServerCall(NamedTuple):
    """What the HTTP front door knows of a request that its server span's conventions need."""

    scope: Mapping[str, Any]  # the ASGI scope: method, scheme, path, http_version, client
    headers: Mapping[str, str]  # lower-cased
    route: str  # the matched route (`/v2/rerank`): rerankd's routes have no parameters


class Pipeline:
    """Call records, validation, deadline and tracing around Router.rerank, for every front door."""

    def __init__(self, router: Router, settings: Settings) -> None:
        self.router = router
        self.settings = settings
        self.limits = Limits.from_settings(settings)

    def open(
        self,
        method: str,
        ids: CallIds,
        caller: str,
        *,
        model: str = "",
        documents: int = 0,
        http: HttpServerCall | None = None,
    ) -> Call:
        """The record of one call of `method` (a stable label: see api/call.py), opened now. Its
        server span follows the gRPC conventions (named `method`), or the HTTP ones when the HTTP
        front door passes `http` (named `POST /v2/rerank`)."""
        name, attributes = method, None
        if tracing.recording():
            if http is None:
                attributes = tracing.grpc_server_attributes(method)
            else:
                name = f"{http.scope.get('method', 'HTTP')} {http.route}"
                attributes = tracing.http_server_attributes(http.scope, http.headers, http.route)
            attributes.update(
                {
                    "rerankd.request_id": ids.request_id,
                    "rerankd.model": model or "default",
                    "rerankd.documents": documents,
                }
            )
        call = Call(
            method,
            ids.request_id,
            ids.trace,
            caller=caller,
            access_line=self.settings.access_log_enabled,
            span_name=name,
            span_attributes=attributes,
        )
        call.model, call.documents = model, documents
        return call

    async def rerank(
        self,
        call: Call,
        query: RerankQuery,
        time_remaining: float | None = None,
        *,
        on_partial: PartialSink | None = None,
    ) -> Ranked:
        """Validate `query` and serve it within `time_remaining` (default: the configured budget).

        The query carries the call's request id and trace context; provider calls get x-request-id
        and a traceparent under their attempt span (children of the call's server span).
        `on_partial` receives each finished chunk's scores (progressive streams). Errors propagate:
        the front door ends the call.
        """
        call.model, call.documents = query.model, len(query.documents)
        with tracing.current(call.span):
            authz.check(auth.current_caller(), query.model, len(query.documents))  # PERMISSION_DENIED
            validate(query, self.limits)
            budget = time_remaining if time_remaining is not None else self.settings.default_deadline_s
            ranked = await self.router.rerank(
                query,
                deadline=time.monotonic() + budget,
                headers=tracing.outbound_headers(query.trace, query.request_id),
                on_partial=on_partial,
            )
        call.answered(ranked)
        return ranked

    def targets(self, model: str) -> list[Target]:
        """The targets `model` resolves to; errors.NotFound when nothing serves it."""
        return self.router.resolve(model)
