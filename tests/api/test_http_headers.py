"""Header floods on the HTTP front door (issue 17, finding 1), over a real loopback server: a head
over the field or byte cap is answered 431 in the app's neutral JSON shape before anything reads
it; heads under the caps are served as before, a repeated name's first value winning."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import running_app

BODY = b'{"model":"nope","query":"q","documents":["a"]}'


async def _exchange(
    port: int, fields: list[tuple[str, str]], body: bytes = BODY, segment: int = 0
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 POST /v2/rerank with `fields`, written at once or `segment` bytes at a
    time (as a network delivers it); (status, response headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["POST /v2/rerank HTTP/1.1", "host: rerankd", "content-type: application/json"]
    lines += [f"{name}: {value}" for name, value in fields]
    lines += [f"content-length: {len(body)}", "connection: close"]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    step = segment or len(raw)
    for start in range(0, len(raw), step):
        writer.write(raw[start : start + step])
        await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


async def test_a_flood_of_headers_is_refused_431_before_anything_reads_them() -> None:
    flood = [(f"x-h{i}", "v") for i in range(10_000)]  # ~119 KB, the campaign's request
    async with running_app(local_enabled=False) as app:
        status, headers, payload = await _exchange(app.http_port, [("x-request-id", "flood-1"), *flood])
        assert status == 431 and headers["content-type"] == "application/json"
        assert headers["x-request-id"] == "flood-1" and headers["connection"] == "close"
        assert json.loads(payload)["message"].startswith("request headers: ")
        # Arriving a packet at a time, the flood is refused once the cap is passed; the rest is
        # read and dropped, so the client still gets the answer (no reset).
        status, headers, _ = await _exchange(app.http_port, flood, segment=1400)
        assert status == 431 and headers["connection"] == "close"
        # Under both caps the request is served as ever (an unknown model: 404 in Cohere's shape),
        # and a repeated name's first value is the one read.
        fields = [(f"x-h{i}", "v") for i in range(30)] + [
            ("x-request-id", "first"),
            ("x-request-id", "second"),
        ]
        status, headers, _ = await _exchange(app.http_port, fields)
        assert status == 404 and headers["x-request-id"] == "first"


async def test_the_field_cap_comes_from_the_settings() -> None:
    async with running_app(local_enabled=False, http_max_header_count=40) as app:
        status, _, payload = await _exchange(app.http_port, [(f"x-h{i}", "v") for i in range(41)])
        assert status == 431 and "at most 40 allowed" in json.loads(payload)["message"]
        status, _, _ = await _exchange(app.http_port, [(f"x-h{i}", "v") for i in range(30)])
        assert status == 404
        # A few bytes at a time (the head is scanned as it arrives, a blank line may straddle two
        # arrivals): the same answers.
        for segment in (1, 3):
            status, _, _ = await _exchange(
                app.http_port, [(f"x-h{i}", "v") for i in range(41)], segment=segment
            )
            assert status == 431
            status, _, _ = await _exchange(
                app.http_port, [(f"x-h{i}", "v") for i in range(30)], segment=segment
            )
            assert status == 404


def test_lower_headers_reads_each_field_once_and_keeps_the_first_value() -> None:
    from rerankd.api.http.headers import lower_headers

    scope = {"headers": [(b"x-a", b"1"), (b"X-B", b"2"), (b"x-a", b"3")]}
    assert lower_headers(scope) == {"x-a": "1", "x-b": "2"}
