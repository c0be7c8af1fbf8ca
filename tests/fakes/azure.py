"""Fake Azure AI Foundry Cohere rerank deployment: Cohere's wire format at the deployment's target URL.

On top of the Cohere fake's checks: the deployment, not the `model` field, picks the model (any
name is accepted); `/v1/rerank` exists only on Rerank v3 English/Multilingual deployments (other
deployments answer 404, status unverified); answers carry the `azureml-model-group` header
LiteLLM reads. Error bodies are assumed to be Cohere's {"message": ...} (unverified for Azure).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.base import FakeSpec, Recorded, Reply
from tests.fakes.cohere import CohereFake, error_reply

_V1_DEPLOYMENTS = ("Cohere-rerank-v3-english", "Cohere-rerank-v3-multilingual")
_MODEL_GROUP = {"Cohere-rerank-v3-english": "offer-cohere-rerank-eng-paygo"}


class AzureFake(CohereFake):
    """One serverless deployment (default: Cohere-rerank-v3.5)."""

    name = "azure"

    def __init__(self, deployment: str = "Cohere-rerank-v3.5") -> None:
        super().__init__()
        self.deployment = deployment

    def handle(self, request: Recorded) -> Reply:
        if request.path.startswith("/v1/") and self.deployment not in _V1_DEPLOYMENTS:
            return error_reply(404, f"{request.path} is not served by deployment {self.deployment}")
        return super().handle(request)

    def answer_headers(self) -> dict[str, str]:
        return {"azureml-model-group": _MODEL_GROUP.get(self.deployment, "offer-cohere-rerank-mul-paygo")}


def _config(url: str, **options: Any) -> dict[str, Any]:
    return {"kind": "azure", "base_url": url, "api_key": "az-contract-0123456789abcdef", "options": options}


CONTRACT = FakeSpec(
    kind="azure",
    fake=AzureFake,
    model="rerank-v3.5",
    config=_config,
    error_reply=error_reply,
    max_documents=10_000,
)
