"""Settings precedence: CLI overrides > env vars > YAML file > defaults; secrets stay secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from rerankd.config import ProviderConfig, Settings, load_settings, unknown_variables


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


def test_unknown_variables_know_the_providers_key_variables_and_the_nested_settings() -> None:
    settings = Settings(providers={"co": {"kind": "cohere", "api_key_env": "RERANKD_COHERE_EU_KEY"}})
    environ = {
        "RERANKD_COHERE_EU_KEY": "k",  # a configured provider's key variable
        "RERANKD_PROVIDERS__CO__TIMEOUT_S": "3",
        "RERANKD_TARGET": "unix:///sock/rerankd.sock",  # the sidecar's, for the app beside it
        "rerankd_http_prot": "1",  # read case-insensitively, so warned about too
        "OTHER_PORT": "1",
    }
    assert unknown_variables(settings, environ) == [
        "environment variable rerankd_http_prot is not a rerankd setting and is ignored;"
        " did you mean RERANKD_HTTP_PORT?"
    ]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"tei_port": 8081, "http_enabled": False}, "it needs http_enabled"),
        ({"tei_port": 8080, "http_port": 8080}, "TEI needs a port of its own"),
    ],
)
def test_tei_port_needs_the_http_api_and_a_port_of_its_own(values: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(**values)


def test_every_variable_the_docs_and_manifests_name_is_known() -> None:
    """The RERANKD_* names the deployment files and docs tell people to set draw no warning (the
    `api_key_env` examples are known once configured, so they are configured here; the README's
    example of a misspelling is left out)."""
    from tests.support import ROOT

    files = [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "deploy").rglob("*"),
        *(ROOT / ".ci").rglob("*"),
    ]
    texts = [path.read_text(encoding="utf-8", errors="replace") for path in files if path.is_file()]
    lines = [line for text in texts for line in text.splitlines() if "did you mean" not in line]  # examples
    named = {name for line in lines for name in re.findall(r"\bRERANKD_[A-Z0-9_]*[A-Z0-9]", line)}
    keys = {name for text in texts for name in re.findall(r"api_key_env:\s*(RERANKD_[A-Z0-9_]+)", text)}
    providers = {f"p{i}": {"kind": "cohere", "api_key_env": key} for i, key in enumerate(sorted(keys))}
    assert len(named) > 20
    assert unknown_variables(Settings(providers=providers), dict.fromkeys(named, "1")) == []


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
