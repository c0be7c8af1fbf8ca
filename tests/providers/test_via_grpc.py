"""Every provider adapter end to end: the seed example through the live gRPC server to its fake."""

from __future__ import annotations

import pytest
from rerankd.v1 import rerank_pb2 as pb

from tests.conftest import running_app, stub_for
from tests.examples import APPLE_DOCS, APPLE_QUERY
from tests.fakes.base import FakeSpec, fake_score
from tests.providers.test_contract import SPECS


@pytest.mark.parametrize("spec", SPECS)
async def test_seed_example_through_the_server(spec: FakeSpec) -> None:
    with spec.fake() as fake:
        async with (
            running_app(providers={"upstream": spec.config(fake.url)}, local_enabled=False) as app,
            stub_for(app) as stub,
        ):
            request = pb.RerankRequest(
                model=f"upstream/{spec.model}",
                query=APPLE_QUERY,
                documents=[pb.Document(id=f"d{i}", text=t) for i, t in enumerate(APPLE_DOCS)],
                top_n=3,
                return_documents=True,
            )
            call = stub.Rerank(request, timeout=10)
            reply = await call
            trailing = dict(await call.trailing_metadata())
    expected = sorted(range(len(APPLE_DOCS)), key=lambda i: -fake_score(APPLE_QUERY, APPLE_DOCS[i]))[:3]
    assert [r.index for r in reply.results] == expected
    assert [r.document.id for r in reply.results] == [f"d{i}" for i in expected]
    assert reply.provider == "upstream" and reply.model
    assert reply.usage.documents == len(APPLE_DOCS)
    assert [a.outcome for a in reply.attempts] == ["OK"] and trailing["x-provider"] == "upstream"
    sent = fake.requests[-1]
    assert sent.headers["x-request-id"] == reply.id
    assert sent.headers["traceparent"].split("-")[1] == reply.trace.trace_id
