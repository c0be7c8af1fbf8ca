"""Cohere rerank deployed on Azure AI Foundry: the deployment's target URL, a bearer key, v1/v2 paths.

The wire format is Cohere's (providers/cohere.py does all the mapping): `POST {target}/v2/rerank`
(Rerank v3.5, v3 English/Multilingual, v4.0) or `/v1/rerank` (v3 English/Multilingual only), with
`Authorization: Bearer <endpoint key>`. There is no default host: `base_url` must be the
deployment's target URL (a pasted `.../v1/rerank` or `.../v2/rerank` endpoint also selects the
version). The deployment, not the `model` field, picks the model; we still send the model name.
"""

from __future__ import annotations

from rerankd import errors
from rerankd.config import ProviderConfig
from rerankd.providers.cohere import CohereProvider
from rerankd.providers.http import HttpClient


class AzureProvider(CohereProvider):
    """One Cohere rerank deployment on Azure AI (serverless / models-as-a-service)."""

    kind = "azure"

    def __init__(self, name: str, config: ProviderConfig, http: HttpClient) -> None:
        if not config.base_url:
            raise errors.ProviderMisconfigured(
                f"{name}: base_url is required for kind azure (the deployment's target URL)", provider=name
            )
        super().__init__(name, config, http)
