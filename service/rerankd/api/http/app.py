"""The ASGI app of the HTTP front door: the auth seam, the routes (generated from a listener's
layout, dialects.py), the one handler that serves a rerank call in any dialect (ids and trace
headers, body size limit, client disconnects, access log, errors in the dialect's own shape), and
the one that answers a dialect's GET endpoints (TEI's /info and /health).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rerankd import auth, errors, tracing
from rerankd.api.call import OK
from rerankd.api.http.base import Dialect, Lookup, Served
from rerankd.api.http.dialects import SHARED_PORT, Layout
from rerankd.api.http.headers import lower_headers
from rerankd.api.http.openapi import openapi_document
from rerankd.api.pipeline import CallIds, HttpServerCall, Pipeline, identify
from rerankd.config import Settings
from rerankd.domain import TraceContext

_LOG = logging.getLogger("rerankd.http")
_T = TypeVar("_T")
_PORTKEY_TRACE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# -- Auth seam ----------------------------------------------------------------------------------

Authorizer = Callable[[Mapping[str, str]], Awaitable[None]]
"""Checks a request's lower-cased headers before any work; raises errors.Unauthenticated to refuse."""


async def admit_everyone(headers: Mapping[str, str]) -> None:
    """The authorizer when authentication is off: every caller is admitted, no header is read.

    With authentication configured, server.build passes `auth.http_authorizer` instead (Bearer or
    Api-Key, the same tokens as on gRPC); a refusal raised as errors.Unauthenticated is reported in
    each dialect's own error shape with status 401.
    """


# -- The app ------------------------------------------------------------------------------------


class _ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


def _wants_portkey(headers: Mapping[str, str]) -> bool:
    return any(name.startswith("x-portkey-") for name in headers)


def _always_ready() -> bool:
    return True


class RerankHttpApi:
    """The ASGI app's endpoints over one Pipeline, for one listener's layout (dialects.py)."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: Settings,
        *,
        authorize: Authorizer = admit_everyone,
        ready: Callable[[], bool] = _always_ready,
        layout: Layout = SHARED_PORT,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.authorize = authorize
        self.served = Served(pipeline, ready)
        self.layout = layout
        self.max_body_bytes = settings.max_receive_message_bytes
        self.openapi = openapi_document(layout)
        self._openapi_bytes = _dumps(self.openapi)

    def app(self) -> Starlette:
        routes = []
        for dialect, prefix in self.layout:
            routes.append(Route(prefix + dialect.path, self._rerank_endpoint(dialect), methods=["POST"]))
            for lookup in dialect.lookups:
                endpoint = self._lookup_endpoint(dialect, lookup)
                routes.append(Route(prefix + lookup.path, endpoint, methods=["GET"]))
        routes.append(Route("/openapi.json", self._openapi, methods=["GET"]))
        return Starlette(routes=routes, exception_handlers={HTTPException: _http_exception})

    def _rerank_endpoint(self, dialect: Dialect[Any]) -> Callable[[Request], Awaitable[Response]]:
        async def rerank(request: Request) -> Response:
            return await self.handle(request, dialect)

        return rerank

    def _lookup_endpoint(
        self, dialect: Dialect[Any], lookup: Lookup
    ) -> Callable[[Request], Awaitable[Response]]:
        async def look(request: Request) -> Response:
            return await self.look_up(request, dialect, lookup)

        return look

    async def _openapi(self, request: Request) -> Response:
        return Response(self._openapi_bytes, media_type="application/json")

    async def look_up(self, request: Request, dialect: Dialect[Any], lookup: Lookup) -> Response:
        """Answer one of `dialect`'s GET endpoints; errors in its shape, ids as on every answer."""
        headers = lower_headers(request.scope)
        ids = identify("", TraceContext(), headers)
        out_headers = _id_headers(ids, headers, dialect.portkey_ids)
        try:
            if not lookup.public:
                await self.authorize(headers)
            status, payload = lookup.serve(self.served)
        except errors.RerankError as exc:
            status, payload = dialect.error(dialect.presented(exc))
            if exc.retry_after is not None:
                out_headers["retry-after"] = str(max(math.ceil(exc.retry_after), 0))
        except Exception:
            _LOG.exception("unexpected error in GET %s (request id %s)", request.url.path, ids.request_id)
            status, payload = dialect.error(errors.internal_for(ids.request_id))
        if payload is None:
            return Response(status_code=status, headers=out_headers)
        return _json(status, payload, out_headers)

    async def handle(self, request: Request, dialect: Dialect[Any]) -> Response:
        """Serve one rerank call on `dialect`'s path (in the variant its headers choose); every
        outcome is answered in that dialect's shape, and the call's record (api/call.py) ends once
        with the true status."""
        headers = lower_headers(request.scope)  # one pass: dict(request.headers) is quadratic
        dialect = dialect.variant(headers)
        ids = identify("", TraceContext(), headers)
        out_headers = _id_headers(ids, headers, dialect.portkey_ids or _wants_portkey(headers))
        http = HttpServerCall(request.scope, headers, request.scope["path"]) if tracing.recording() else None
        call = self.pipeline.open(f"http/{dialect.name}", ids, "", http=http)
        try:
            await self.authorize(headers)
            caller = auth.current_caller()  # set by the authorizer for this request
            call.caller = caller.name if caller is not None else ""
            _check_json(headers.get("content-type", ""))
            body = dialect.parse(await self._body(request))
            query = dialect.to_query(body, ids, tracing.header_metadata(headers))
            call.model, call.documents = query.model, len(query.documents)
            await dialect.check(body, self.pipeline)
            ranked = await _unless_disconnected(request, self.pipeline.rerank(call, query))
            payload = dialect.render(ranked, body, ids)
            out_headers["x-provider"] = ranked.provider
            out_headers["x-model"] = ranked.model  # the model that answered (drop-in names, aliases)
            out_headers["x-attempts"] = str(len(ranked.attempts))
            if ranked.cache:  # "hit"/"miss" where the route caches answers
                out_headers["x-cache"] = ranked.cache
            out_headers.update(dialect.headers(ranked, body, call.started))
            call.http_status = 200
            call.finish(OK)
            return _json(200, payload, out_headers)
        except errors.RerankError as exc:
            failure: errors.RerankError = exc
            call.failed(exc)
            status_name = exc.code.name
        except (_ClientGone, ClientDisconnect):  # gone while we worked, or during its upload
            call.finish("CANCELLED")
            return Response(status_code=499, headers=out_headers)  # nobody is left to read it
        except asyncio.CancelledError:  # the server stopped serving this request (drain)
            call.finish("CANCELLED")
            raise
        except Exception:
            _LOG.exception("unexpected error in %s (request id %s)", call.method, ids.request_id)
            failure, status_name = errors.internal_for(ids.request_id), "INTERNAL"
        status, payload = dialect.error(dialect.presented(failure))
        call.http_status = status
        call.finish(status_name)
        if call.provider:
            out_headers["x-provider"] = call.provider
        if failure.retry_after is not None:
            out_headers["retry-after"] = str(max(math.ceil(failure.retry_after), 0))
        return _json(status, payload, out_headers)

    async def _body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        timeout = self.settings.http_body_timeout_s
        try:
            async with asyncio.timeout(timeout):  # a caller that uploads slowly or stops mid-body
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
        except TimeoutError:
            raise errors.SlowUpload(
                f"body: not received within {timeout:g} s (http_body_timeout_s); {size} bytes came",
                field_violations=[("body", f"not received within {timeout:g} s")],
            ) from None
        return b"".join(chunks)


def _check_json(content_type: str) -> None:
    """Refuse a body declared as anything but JSON (absent is fine: read as JSON)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        description = f"is {media[:64]!r}; the body must be JSON (application/json)"
        raise errors.NotJson(f"content-type: {description}", field_violations=[("content-type", description)])


def _too_large(limit: int) -> errors.BodyTooLarge:
    description = f"is larger than {limit} bytes"
    return errors.BodyTooLarge(f"body: {description}", field_violations=[("body", description)])


def _id_headers(ids: CallIds, headers: Mapping[str, str], portkey: bool) -> dict[str, str]:
    out = {"x-request-id": ids.request_id, "x-trace-id": ids.trace.trace_id, "x-span-id": ids.trace.span_id}
    if portkey:
        theirs = headers.get("x-portkey-trace-id", "").strip()
        out["x-portkey-trace-id"] = theirs if _PORTKEY_TRACE_ID.match(theirs) else ids.trace.trace_id
    return out


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, _T]) -> _T:
    """Await `work`, cancelling it (and raising _ClientGone) if the caller disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise _ClientGone
    finally:
        watcher.cancel()
        task.cancel()


async def _disconnect(request: Request) -> None:
    """Return once the ASGI server reports the client gone (the body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json(status: int, payload: Any, headers: Mapping[str, str]) -> Response:
    return Response(_dumps(payload), status_code=status, headers=dict(headers), media_type="application/json")


async def _http_exception(request: Request, exc: Exception) -> Response:
    """404 and 405 (with `Allow`), carrying the ids every answer of this front door carries."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    headers = lower_headers(request.scope)
    out = _id_headers(identify("", TraceContext(), headers), headers, _wants_portkey(headers))
    if isinstance(exc, HTTPException) and exc.headers:
        out.update(exc.headers)
    return _json(status, {"message": f"{detail}: {request.method} {request.url.path}"}, out)


def create_app(
    pipeline: Pipeline,
    settings: Settings,
    *,
    authorize: Authorizer = admit_everyone,
    ready: Callable[[], bool] = _always_ready,
    layout: Layout = SHARED_PORT,
) -> Starlette:
    """The ASGI app of one listener of the HTTP front door: `layout`'s dialects (dialects.py),
    `ready` telling TEI's /health whether the server is ready."""
    return RerankHttpApi(pipeline, settings, authorize=authorize, ready=ready, layout=layout).app()
