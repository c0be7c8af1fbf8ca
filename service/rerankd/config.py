"""Settings: every value from CLI flags, `RERANKD_*` env vars, an optional YAML file, or defaults.

Precedence, highest first: CLI flags, environment variables, the YAML file named by
`--config` / `RERANKD_CONFIG`, built-in defaults. With no file at all the server runs the embedded
local model as provider `local`, reachable by its model name and by the alias `default`.

YAML shape (every key optional):

    providers:
      cohere:                      # instance name; used in routes and in responses
        kind: cohere               # provider kind (rerankd.providers.registry.REGISTRY)
        api_key_env: RERANKD_COHERE_API_KEY
        base_url: https://api.cohere.com
        models: [rerank-v3.5]
        options: {api_version: v2}   # typed per kind: an unknown option fails start-up
    routes:
      default:                     # alias a request names in RerankRequest.model
        targets:
          - {provider: cohere, model: rerank-v3.5}
          - {provider: local, priority: 1}   # fallback
        retry: {max_attempts: 3}   # RetryConfig; cache: CacheConfig (off by default)

Retries, circuit breaking, backpressure and the response cache are described in docs/routing.md.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from rerankd import errors
from rerankd.auth import CALLER_NAME

LOCAL_PROVIDER = "local"
DEFAULT_ALIAS = "default"


_LABEL_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


def label_safe(what: str, name: str) -> str:
    """`name` if it may be a metric label value (rerankd.metrics): no whitespace or control characters."""
    if _LABEL_UNSAFE.search(name):
        raise ValueError(
            f"{what} {name[:64]!r} holds whitespace or a control character (names are metric labels)"
        )
    return name


class BreakerConfig(BaseModel):
    """Circuit breaker of each target (provider + model) of a provider: skip it while it fails."""

    enabled: bool = Field(True, description="Trip the breaker on failures; off = always try the target.")
    consecutive_failures: int = Field(5, ge=1, description="Open after this many failures in a row.")
    failure_rate: float = Field(
        0.5, gt=0, le=1, description="Open when this share of the last `window` calls failed."
    )
    window: int = Field(20, ge=1, description="Calls the failure rate is measured over.")
    min_calls: int = Field(10, ge=1, description="Calls in the window before the failure rate counts.")
    open_s: float = Field(10.0, gt=0, description="Time the target is skipped before a half-open probe.")
    half_open_probes: int = Field(1, ge=1, description="Probe calls let through at once when half-open.")

    model_config = {"extra": "forbid"}


class RetryConfig(BaseModel):
    """Retries of one target on retryable failures (429, 5xx, connection errors, attempt timeouts)."""

    max_attempts: int = Field(
        2, ge=1, le=10, description="Tries per target, the first included (1 = no retry)."
    )
    initial_backoff_s: float = Field(0.1, ge=0, description="Cap of the first back-off (full jitter).")
    max_backoff_s: float = Field(2.0, ge=0, description="Largest back-off cap.")
    multiplier: float = Field(2.0, ge=1, description="Growth of the back-off cap per retry.")
    max_retry_after_s: float = Field(
        10.0, ge=0, description="Longest Retry-After honoured; a longer one goes to the next target."
    )
    attempt_timeout_s: float | None = Field(
        None, gt=0, description="Most time one attempt may take (default: the provider's timeout_s)."
    )

    model_config = {"extra": "forbid"}


class CacheConfig(BaseModel):
    """In-memory response cache of one route (off by default)."""

    enabled: bool = Field(False, description="Answer repeated identical requests from memory.")
    ttl_s: float = Field(300.0, gt=0, description="How long an answer stays valid.")
    max_entries: int = Field(1024, ge=1, description="Most answers kept (least recently used go first).")
    max_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Most memory the kept answers take.")

    model_config = {"extra": "forbid"}


class ProviderOptions(BaseModel):
    """Base of every kind's `options` model: typed fields, and an unknown option is refused.

    Each provider class names its model as `Options` (rerankd.providers.base.Provider); a kind
    without options of its own keeps this one, which holds what every kind takes.
    """

    model_config = {"extra": "forbid", "frozen": True}

    passages: Any = Field(
        None, description="Long documents as passages (rerankd.passages.Passages: a mapping, true or false)."
    )


class ProviderConfig(BaseModel):
    """One provider instance. Keys come from an env var or a file, never from a request.

    `options` is typed by `kind`: the kind's provider class declares its `Options` model
    (rerankd.providers.registry finds it, importing only the kinds a configuration uses), so a
    misspelt or unknown option, or one of the wrong type, fails start-up naming the provider and
    the option. An unknown kind is refused by `rerankd serve` before anything starts (and by
    registry.create_provider); its options stay as given.
    """

    kind: str
    base_url: str | None = Field(None, description="Override the provider's API base URL.")
    api_key: SecretStr | None = Field(None, description="Inline key (prefer api_key_env/api_key_file).")
    api_key_env: str | None = Field(None, description="Environment variable holding the key.")
    api_key_file: Path | None = Field(None, description="File holding the key (e.g. a mounted Secret).")
    timeout_s: float = Field(30.0, gt=0, description="Most time one provider call may take.")
    max_concurrency: int = Field(
        64, ge=1, description="Most calls in flight to each target of this provider (then a bounded wait)."
    )
    breaker: BreakerConfig = Field(default_factory=BreakerConfig, description="Circuit breaker per target.")
    models: list[str] = Field(default_factory=list, description="Models served under their own names.")
    forward_metadata: list[str] = Field(
        default_factory=list, description="Caller metadata keys forwarded to this provider ('*' = all)."
    )
    options: Any = Field(
        default_factory=dict,
        validate_default=True,
        description="Kind-specific options (the kind's Options model; see the kind's module).",
    )

    model_config = {"extra": "forbid"}

    @field_validator("options", mode="before")
    @classmethod
    def _typed_options(cls, value: Any, info: ValidationInfo) -> Any:
        from rerankd.providers.registry import REGISTRY, options_model  # the registry imports this module

        kind = info.data.get("kind")
        if kind not in REGISTRY:  # refused with its kind when providers are built (and by `serve` first)
            return value
        model = options_model(kind)
        if isinstance(value, model):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"options of kind {kind} must be a mapping")
        unknown = sorted(set(value) - set(model.model_fields))
        if unknown:
            known = ", ".join(model.model_fields) or "none"
            raise ValueError(f"unknown options {unknown} for kind {kind} (known: {known})")
        return model.model_validate(value)

    @field_validator("models")
    @classmethod
    def _label_safe_models(cls, value: list[str]) -> list[str]:
        return [label_safe("model", name) for name in value]

    def resolve_api_key(self) -> SecretStr | None:
        """The key from api_key, api_key_env or api_key_file, in that order; None if none is set.

        The value is registered with errors.register_secret, so no log line or error carries it.
        """
        key = self.api_key
        if key is None and self.api_key_env and os.environ.get(self.api_key_env):
            key = SecretStr(os.environ[self.api_key_env].strip())
        if key is None and self.api_key_file is not None and self.api_key_file.is_file():
            key = SecretStr(self.api_key_file.read_text().strip())
        if key is not None:
            errors.register_secret(key.get_secret_value())
        return key


class TargetConfig(BaseModel):
    """One provider model behind a route alias."""

    provider: str
    model: str = Field("", description="Provider model; empty = the provider's first model.")
    weight: int = Field(1, ge=0, description="Share of traffic among targets of equal priority.")
    priority: int = Field(0, ge=0, description="Lower is tried first; higher ones are fallbacks.")

    model_config = {"extra": "forbid"}

    @field_validator("provider", "model")
    @classmethod
    def _label_safe_names(cls, value: str) -> str:
        return label_safe("target", value)


class FallbackStrategy(BaseModel):
    """Targets in priority order (weighted within a priority); the next one after a failure."""

    kind: Literal["fallback"] = "fallback"

    model_config = {"extra": "forbid"}


class HedgeStrategy(BaseModel):
    """Fallback order, plus a hedge: when an attempt has not answered after a delay, the same request
    goes to the next target too (to the same one again when the route has one); the first good
    answer wins and the others are cancelled (docs/routing.md)."""

    kind: Literal["hedge"]
    delay_ms: float = Field(
        50.0, gt=0, description="Wait before a hedge (with delay_quantile: until enough latencies are seen)."
    )
    delay_quantile: float | None = Field(
        None, gt=0, lt=1, description="Wait this quantile of the target's recent latency instead (e.g. 0.95)."
    )
    max_extra: int = Field(1, ge=1, le=2, description="Hedges per request at most.")
    budget_percent: float = Field(
        10.0, gt=0, le=100, description="At most this share of the route's requests are hedged."
    )

    model_config = {"extra": "forbid"}


class CascadeStrategy(BaseModel):
    """Two stages: the route's first target scores every document, the second reranks the best
    `keep_top` (or those scoring at least `min_score`) of them (docs/routing.md)."""

    kind: Literal["cascade"]
    keep_top: int | None = Field(50, ge=1, description="Documents the first stage passes on.")
    min_score: float | None = Field(
        None, description="Pass on only documents whose first-stage score is at least this."
    )
    fallback_to_first_stage: bool = Field(
        False, description="When the second stage fails, answer with the first stage's ranking."
    )

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _a_cut(self) -> CascadeStrategy:
        if self.keep_top is None and self.min_score is None:
            raise ValueError("a cascade needs keep_top, min_score or both")
        return self


Strategy = Annotated[FallbackStrategy | HedgeStrategy | CascadeStrategy, Field(discriminator="kind")]


class RouteConfig(BaseModel):
    """A model alias: targets tried in priority order, weighted within a priority."""

    targets: list[TargetConfig] = Field(min_length=1)
    match: list[str] = Field(
        default_factory=list,
        description="Glob patterns of other model names this route answers (e.g. 'rerank-*'), tried after"
        " aliases, served model names and provider/model; the answer names the model that served it.",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retries of each target.")
    cache: CacheConfig = Field(default_factory=CacheConfig, description="Response cache (off by default).")
    chunk_concurrency: int = Field(
        8, ge=1, description="Chunks of one over-long request scored at once on a target."
    )
    strategy: Strategy = Field(
        default_factory=FallbackStrategy,
        description="How the targets are used: fallback (default), hedge or cascade (`kind`).",
    )

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _cascade_stages(self) -> RouteConfig:
        if isinstance(self.strategy, CascadeStrategy) and len(self.targets) != 2:
            raise ValueError("a cascade route has two targets: the first stage, then the second")
        return self

    @field_validator("match")
    @classmethod
    def _match_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or len(pattern) > 256 or not pattern.isprintable() or " " in pattern:
                raise ValueError("a model name pattern is 1-256 printable characters without spaces")
        return value


class CallerConfig(BaseModel):
    """What one caller may do (SECURITY.md, "Authorization"); a caller's name is its key in `callers`."""

    models: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Glob patterns of the names this caller may put in RerankRequest.model: route aliases,"
        " model names, provider/model ('*' = any, [] = none).",
    )
    max_documents: int | None = Field(
        None, ge=1, description="Most documents in one of this caller's requests (default: max_documents)."
    )
    rate_limit_rps: float | None = Field(
        None, ge=0, description="This caller's requests per second (0 = unlimited; default: rate_limit_rps)."
    )

    model_config = {"extra": "forbid"}

    @field_validator("models")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern or len(pattern) > 256 or not pattern.isprintable():
                raise ValueError("a model pattern is 1-256 printable characters")
        return value


class Settings(BaseSettings):
    """Server settings. Every field is also an env var: RERANKD_<FIELD NAME IN CAPITALS>."""

    model_config = SettingsConfigDict(env_prefix="RERANKD_", extra="forbid", env_nested_delimiter="__")

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in a pod).")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    bind: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra listen addresses, e.g. unix:///sock/rerankd.sock (comma-separated in env).",
    )
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics at /metrics on metrics_port.")
    metrics_host: str | None = Field(None, description="Metrics listen address; default: the same as host.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus /metrics port (0 picks a free one)."
    )
    http_enabled: bool = Field(True, description="Serve the HTTP/JSON API (Cohere/Pinecone/Portkey/TEI).")
    http_host: str | None = Field(None, description="HTTP listen address; default: the same as host.")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    tei_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="A second HTTP port serving the TEI dialect on TEI's own paths (POST /rerank, GET /info,"
        " GET /health), so TEI clients only change the host; unset = off, 0 picks a free one. Needs"
        " http_enabled; listens on http_host.",
    )
    grace_period_s: float = Field(10.0, ge=0, description="Time in-flight calls get to finish on SIGTERM.")
    max_connection_age_s: float = Field(
        0.0,
        ge=0,
        description="Close client connections after this long (GOAWAY, +-10% jitter) so clients re-resolve"
        " and spread over new pods; 0 = never. In-flight calls get grace_period_s to finish.",
    )
    unix_socket_mode: str = Field(
        "660", pattern=r"^[0-7]{3}$", description="Permissions of unix:// sockets (octal; 660 = owner+group)."
    )
    max_receive_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="gRPC receive limit.")
    max_send_message_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="gRPC send limit.")
    default_deadline_s: float = Field(
        60.0, gt=0, description="Budget for a call whose caller set no gRPC deadline."
    )
    max_concurrent_rpcs: int = Field(1024, ge=1, description="Calls in flight before RESOURCE_EXHAUSTED.")
    stream_write_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A stream message the caller has not taken in this long (it stopped reading) ends"
        " the stream with RESOURCE_EXHAUSTED, freeing what the call held.",
    )
    batch_idle_timeout_s: float = Field(
        300.0,
        gt=0,
        description="A RerankBatch stream with no request and no answer in flight for this long is ended"
        " with UNAVAILABLE (open a new one).",
    )
    http_body_timeout_s: float = Field(
        30.0, gt=0, description="Time an HTTP caller gets to upload its request body; then 408."
    )
    max_concurrent_requests: int = Field(
        512, ge=1, description="Rerank requests served at once (all front doors); then a bounded wait."
    )
    queue_timeout_s: float = Field(
        0.25, ge=0, description="Bounded wait for a free slot (server or target) before RESOURCE_EXHAUSTED."
    )
    log_level: str = Field("INFO", description="Python log level.")
    access_log_enabled: bool = Field(
        True,
        description="One JSON access line per call (at INFO). Off: no per-call lines (about 0.1 ms of CPU"
        " per call less); call metrics and refusal lines stay.",
    )
    model_dir: Path | None = Field(
        None, description="Embedded model directory (model.onnx + tokenizer.json); default: bundled."
    )
    local_model_name: str = Field(
        "ms-marco-MiniLM-L-12-v2", description="Name the embedded model answers to."
    )
    local_model: str | None = Field(
        None,
        description="Hub repo id of the embedded model (a repo with ONNX files, e.g. your export of"
        " BAAI/bge-reranker-v2-m3), fetched once into local_cache_dir and verified; default: the bundled"
        " model. Excludes model_dir.",
    )
    local_model_revision: str = Field("main", description="Branch, tag or commit of local_model.")
    local_cache_dir: Path | None = Field(
        None, description="Where hub models are cached; default: huggingface_hub's (HF_HUB_CACHE)."
    )
    local_enabled: bool = Field(True, description="Load the embedded model as provider 'local'.")
    local_max_length: int = Field(512, ge=16, le=8192, description="Max tokens of a query + document pair.")
    local_threads: int = Field(0, ge=0, description="Scoring threads; 0 = one per CPU core.")
    config: Path | None = Field(None, description="YAML file of providers and routes.")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    # Security (SECURITY.md): caller authentication, TLS, request limits, per-caller rate limits.
    auth_tokens_file: Path | None = Field(
        None, description="Bearer tokens, one 'caller-name: token' per line; set = callers must authenticate."
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM server certificate chain; set = TLS on TCP ports."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA of client certificates; set = mTLS: required, and names the caller."
    )
    max_documents: int = Field(10_000, ge=1, description="Most documents in one request.")
    max_document_bytes: int = Field(
        64 * 1024, ge=1, description="Most UTF-8 bytes of one document (id, text, field names and values)."
    )
    max_query_bytes: int = Field(16 * 1024, ge=1, description="Most UTF-8 bytes of the query.")
    max_document_fields: int = Field(64, ge=0, description="Most fields of one document (and rank_fields).")
    max_metadata_entries: int = Field(64, ge=0, description="Most entries of a request's metadata.")
    max_metadata_bytes: int = Field(
        16 * 1024, ge=0, description="Most UTF-8 bytes of metadata keys and values."
    )
    max_parameters_depth: int = Field(8, ge=1, description="Deepest nesting of a request's parameters.")
    max_parameters_bytes: int = Field(
        64 * 1024, ge=2, description="Most bytes of parameters as compact JSON."
    )
    http_max_header_count: int = Field(
        100, ge=8, description="Most header fields of one HTTP request; more: 431, before anything else."
    )
    http_max_header_bytes: int = Field(
        32 * 1024,
        ge=1024,
        description="Most bytes of one HTTP request's request line and header fields; more: 431.",
    )
    rate_limit_rps: float = Field(0.0, ge=0, description="Requests per second per caller; 0 = no limit.")
    rate_limit_burst: int = Field(0, ge=0, description="Requests a caller may send at once; 0 = max(1, rps).")
    rate_limit_callers: dict[str, float] = Field(
        default_factory=dict, description="Requests per second of named callers, overriding rate_limit_rps."
    )
    callers: dict[str, CallerConfig] = Field(
        default_factory=dict,
        description="Per-caller authorization by caller name ('*' = every caller not listed); set = a caller"
        " not listed (and no '*') may use nothing.",
    )

    @field_validator("callers")
    @classmethod
    def _caller_names(cls, value: dict[str, CallerConfig]) -> dict[str, CallerConfig]:
        for name in value:
            if name != "*" and not CALLER_NAME.match(name):
                raise ValueError(
                    f"callers: {name[:64]!r} is neither a caller name ({CALLER_NAME.pattern}) nor '*'"
                )
        return value

    @field_validator("providers", "routes")
    @classmethod
    def _label_safe_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            label_safe("name", name)
        return value

    @field_validator("local_model_name")
    @classmethod
    def _label_safe_local_name(cls, value: str) -> str:
        return label_safe("local_model_name", value)

    @model_validator(mode="after")
    def _check_tei_port(self) -> Settings:
        if self.tei_port is not None and not self.http_enabled:
            raise ValueError("tei_port serves the TEI dialect of the HTTP API: it needs http_enabled")
        if self.tei_port and self.tei_port == self.http_port:
            raise ValueError(f"tei_port and http_port are both {self.http_port}: TEI needs a port of its own")
        return self

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs tls_cert_file and tls_key_file")
        return self

    @field_validator("bind", mode="before")
    @classmethod
    def _split_bind(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path(init_settings)
        if path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    def listen_addresses(self) -> list[str]:
        """Every address to bind: host:port (unless port is -1 style disabled) plus `bind`."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return [f"{host}:{self.port}", *self.bind]


def _config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    explicit = init_settings().get("config")
    raw = explicit if explicit is not None else os.environ.get("RERANKD_CONFIG")
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    return path


ENV_PREFIX = "RERANKD_"
# RERANKD_* variables read outside Settings: the client commands' token (cli.py) and the address the
# sidecar manifests hand the application container (deploy/k8s/sidecar).
OTHER_VARIABLES = ("RERANKD_TOKEN", "RERANKD_TARGET")
# Settings that nest (RERANKD_ROUTES__ENGLISH__RETRY__MAX_ATTEMPTS=3): any name below them is theirs.
_NESTED = ("providers", "routes", "callers", "rate_limit_callers")


def unknown_variables(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """One line for each RERANKD_* variable in `environ` that nothing reads (a misspelt setting is
    otherwise silently ignored), naming the closest known variable. Values are never shown."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    known.update(OTHER_VARIABLES)
    known.update(c.api_key_env.upper() for c in settings.providers.values() if c.api_key_env)
    nested = tuple(f"{ENV_PREFIX}{name.upper()}__" for name in _NESTED)
    lines = []
    for variable in sorted(environ):
        name = variable.upper()  # pydantic-settings reads them case-insensitively
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(nested):
            continue
        suffixes = {k.removeprefix(ENV_PREFIX): k for k in sorted(known)}  # the prefix is no likeness
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.6)
        hint = f"did you mean {suffixes[close[0]]}?" if close else "no setting has a similar name"
        lines.append(f"environment variable {variable} is not a rerankd setting and is ignored; {hint}")
    return lines


def load_settings(**overrides: Any) -> Settings:
    """Settings from overrides (CLI flags; None values ignored), env vars and the YAML file."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
