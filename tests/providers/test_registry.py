"""The registry and typed options: every kind's options checked when the settings are read, and
providers built complete (nothing set on them afterwards)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rerankd import errors
from rerankd.config import ProviderConfig, ProviderOptions, Settings
from rerankd.providers.http import HttpClient
from rerankd.providers.registry import REGISTRY, ProviderContext, create_provider, options_model


def test_every_kind_declares_a_forbidding_options_model() -> None:
    for kind in REGISTRY:
        model = options_model(kind)
        assert issubclass(model, ProviderOptions) and model.model_config.get("extra") == "forbid", kind


def test_options_are_typed_by_kind_and_unknown_ones_refused() -> None:
    tei = ProviderConfig(kind="tei", base_url="http://t", options={"max_client_batch_size": 8})
    assert tei.options.max_client_batch_size == 8 and tei.options.max_input_length is None
    assert ProviderConfig(kind="jina").options == options_model("jina")()
    with pytest.raises(ValidationError, match=r"unknown options \['api_verison'\] for kind cohere"):
        ProviderConfig(kind="cohere", options={"api_verison": "v1"})
    with pytest.raises(ValidationError, match="max_client_batch_size"):
        ProviderConfig(kind="infinity", options={"max_client_batch_size": 0})
    with pytest.raises(ValidationError, match=r"providers\.gpu\.options"):
        Settings(providers={"gpu": {"kind": "nim", "base_url": "http://n", "options": {"raw_score": True}}})
    with pytest.raises(errors.InvalidArgument, match="provider 'p': unknown kind 'cohre'"):
        create_provider("p", ProviderConfig(kind="cohre"), ProviderContext(Settings(), HttpClient()))


@pytest.mark.parametrize("kind", ["cohere", "tei", "vllm", "local"])
def test_providers_are_built_complete(kind: str) -> None:
    config = ProviderConfig(
        kind=kind,
        base_url="http://engine.test",
        api_key="k-0123456789",
        timeout_s=7.5,
        forward_metadata=["team"],
    )
    provider = create_provider("p", config, ProviderContext(Settings(), HttpClient()))
    assert provider.timeout_s == 7.5 and provider.forward_metadata == ("team",)
