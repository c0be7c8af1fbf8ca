"""Settings precedence: CLI overrides > env vars > YAML file > defaults; secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from rerankd.config import ProviderConfig, Settings, load_settings


def test_defaults_need_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RERANKD_CONFIG", raising=False)
    settings = load_settings()
    assert (settings.host, settings.port, settings.local_enabled) == ("127.0.0.1", 50051, True)


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rerankd.yaml"
    config.write_text(
        "port: 6000\ngrace_period_s: 3\nproviders:\n  co: {kind: cohere, api_key_env: MY_KEY}\n"
    )
    monkeypatch.setenv("RERANKD_CONFIG", str(config))
    monkeypatch.setenv("RERANKD_GRACE_PERIOD_S", "7")
    monkeypatch.setenv("RERANKD_BIND", "unix:///tmp/a.sock, 127.0.0.1:7000")
    settings = load_settings(port=6001)
    assert settings.port == 6001 and settings.grace_period_s == 7
    assert settings.bind == ["unix:///tmp/a.sock", "127.0.0.1:7000"]
    assert settings.providers["co"].kind == "cohere"


def test_keys_resolve_from_env_or_file_and_never_print(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "canary-key-123456")
    from_env = ProviderConfig(kind="cohere", api_key_env="MY_KEY")
    assert from_env.resolve_api_key().get_secret_value() == "canary-key-123456"
    key_file = tmp_path / "key"
    key_file.write_text("file-key-987654\n")
    from_file = ProviderConfig(kind="cohere", api_key_file=key_file, api_key="inline-canary-0000")
    assert "inline-canary-0000" not in repr(from_file) and "inline-canary-0000" not in str(
        from_file.model_dump()
    )
    assert (
        ProviderConfig(kind="cohere", api_key_file=key_file).resolve_api_key().get_secret_value()
        == "file-key-987654"
    )


def test_unknown_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("prot: 1\n")
    monkeypatch.setenv("RERANKD_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        load_settings()


@pytest.mark.parametrize(
    "settings",
    [
        {"routes": {"my route": {"targets": [{"provider": "local"}]}}},
        {"providers": {"co here": {"kind": "cohere"}}},
        {"providers": {"co": {"kind": "cohere", "models": ["rerank v3.5"]}}},
        {"routes": {"r": {"targets": [{"provider": "local", "model": "a\tb"}]}}},
        {"local_model_name": "mini lm"},
    ],
)
def test_names_that_become_metric_labels_hold_no_whitespace(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="whitespace or a control character"):
        Settings(**settings)
