"""The outbound transport (providers/aiohttp_transport.py) under HttpClient, against a loopback server.

What the contract suite does not already check for every provider (timeouts, resets): URLs go out
exactly as built (a SigV4 signature covers the path), Content-Encoding is decoded once, no cookie
is carried from one call to the next, a refused connection is UNAVAILABLE, and any httpx
transport can stand in.
"""

from __future__ import annotations

import gzip
import socket
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from rerankd import errors
from rerankd.providers.http import HttpClient, HttpRequest


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        if request.path_qs.endswith("/gzip"):
            body = gzip.compress(b'{"ok": true}')
            return web.Response(
                body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        response = web.json_response({"path": request.raw_path, "cookie": request.headers.get("cookie")})
        response.set_cookie("session", "secret-of-the-first-caller")
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_path_goes_out_as_built_and_no_cookie_comes_back(server: tuple[str, list[web.Request]]) -> None:
    url, seen = server
    url = url.replace("127.0.0.1", "localhost")  # a cookie jar would keep cookies of a named host
    client = HttpClient()
    try:
        path = "/model/cohere.rerank-v3-5%3A0/invoke"
        request = HttpRequest("POST", url + path, {"content-type": "application/json"}, b"{}")
        first = await client.send("p", request, 5.0)
        second = await client.send("p", request, 5.0)
    finally:
        await client.aclose()
    assert first.status == 200 and first.json() == {"path": path, "cookie": None}
    assert second.json()["cookie"] is None  # the first answer's Set-Cookie was not kept
    assert seen[0].headers["user-agent"].startswith("rerankd/") and seen[0].headers["content-type"] == (
        "application/json"
    )


async def test_compressed_answers_are_decoded_once(server: tuple[str, list[web.Request]]) -> None:
    url, _ = server
    client = HttpClient()
    try:
        reply = await client.send("p", HttpRequest("GET", url + "/gzip", {}), 5.0)
    finally:
        await client.aclose()
    assert reply.json() == {"ok": True}


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        client = HttpClient()
        try:
            with pytest.raises(errors.Unavailable) as caught:
                await client.send("p", HttpRequest("POST", f"http://127.0.0.1:{port}/x", {}, b"{}"), 5.0)
        finally:
            await client.aclose()
    assert caught.value.retryable and caught.value.provider == "p"


async def test_any_httpx_transport_can_stand_in() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, json={"url": str(request.url)}, headers={"X-Thing": "1"})

    client = HttpClient(httpx.MockTransport(answer))
    reply = await client.send("p", HttpRequest("GET", "http://provider.invalid/a?b=c", {}), None)
    assert reply.status == 418 and reply.headers["x-thing"] == "1"
    assert reply.json() == {"url": "http://provider.invalid/a?b=c"}


async def test_every_transport_is_decoded_and_mapped_by_the_client_once() -> None:
    payload = b'{"ok": true}'
    bodies = {
        "/gzip": (gzip.compress(payload), "gzip"),
        "/twice": (gzip.compress(zlib.compress(payload)), "deflate, gzip"),
        "/raw-deflate": (zlib.compress(payload)[2:-4], "deflate"),
        "/plain": (payload, "identity"),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/slow":
            raise httpx.ConnectTimeout("slow", request=request)
        if request.url.path == "/down":
            raise httpx.ConnectError("down", request=request)
        if request.url.path == "/odd":
            return httpx.Response(200, content=payload, headers={"content-encoding": "compress"})
        body, coding = bodies[request.url.path]
        return httpx.Response(200, content=body, headers={"content-encoding": coding})

    client = HttpClient(httpx.MockTransport(answer))
    for path in bodies:
        reply = await client.send("p", HttpRequest("GET", f"http://provider.invalid{path}", {}), 5.0)
        assert reply.json() == {"ok": True}, path
    for path, expected in (
        ("/slow", errors.DeadlineExceeded),
        ("/down", errors.Unavailable),
        ("/odd", errors.Unavailable),
    ):
        with pytest.raises(expected) as caught:
            await client.send("p", HttpRequest("GET", f"http://provider.invalid{path}", {}), 5.0)
        assert caught.value.provider == "p" and caught.value.retryable
