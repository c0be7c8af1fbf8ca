"""The `rerankd` command: serve, rerank, models, health."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc

from rerankd import eventloop, logs
from rerankd.client import RerankClient, RerankOptions
from rerankd.config import load_settings
from rerankd.v1 import rerank_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerankd", description="gRPC rerank service and its client.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (settings also from RERANKD_* env vars)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1; RERANKD_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default 50051; RERANKD_PORT)")
    serve.add_argument(
        "--bind", action="append", help="extra address, e.g. unix:///tmp/rerankd.sock (repeatable)"
    )
    serve.add_argument("--http-host", help="HTTP API listen address (default: --host; RERANKD_HTTP_HOST)")
    serve.add_argument("--http-port", type=int, help="HTTP API port (default 8080; RERANKD_HTTP_PORT)")
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
    rerank.add_argument("--top-n", type=int, default=0, help="return only the best N")
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


def _documents(args: argparse.Namespace) -> list[pb.Document]:
    docs = [pb.Document(text=text) for text in args.doc]
    if args.file:
        path = Path(args.file)
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                item = json.loads(line)
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
    options: RerankOptions = {"model": args.model, "top_n": max(args.top_n, 0)}
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
    for model in reply.models:
        targets = ", ".join(f"{t.provider}/{t.model}" for t in model.targets)
        print(f"{model.name:<32} {'alias' if model.alias else 'model':<6} {targets}")
    return 0


def _health(args: argparse.Namespace) -> int:
    try:
        with _client(args) as client:
            status = client.health(args.service)
    except grpc.RpcError as exc:
        print(f"unhealthy: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    print(status)
    return 0 if status == "SERVING" else 1


def _serve(args: argparse.Namespace) -> int:
    from rerankd.local.files import ModelFilesError
    from rerankd.server import serve

    settings = load_settings(
        host=args.host,
        port=args.port,
        bind=args.bind,
        http_host=args.http_host,
        http_port=args.http_port,
        http_enabled=args.http_enabled,
        config=args.config,
        grace_period_s=args.grace_period,
        model_dir=args.model_dir,
        log_level=args.log_level,
    )
    logs.configure(settings.log_level)
    try:
        eventloop.run(serve(settings))
    except ModelFilesError as exc:  # a local model missing, unreachable or not verified
        print(f"rerankd: {exc}", file=sys.stderr)
        return 2
    # Drained: every call finished or was cancelled at the end of the grace period. Work still on
    # a thread (a tokenizer chewing a huge document) must not hold the exit past that promise.
    logging.shutdown()
    os._exit(0)


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
