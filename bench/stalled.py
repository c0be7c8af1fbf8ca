"""Callers that stop reading: 20 raw HTTP/2 clients, each on a RerankStream with a ~10 MB request,
that never acknowledge the data they receive (no WINDOW_UPDATE), against a real `rerankd serve`.

    python -m bench.stalled [--callers 20] [--documents 10000] [--write-timeout 30]

Measures rerankd's RSS before, at its peak and after, and when the server ended each stalled
stream (its access lines, status RESOURCE_EXHAUSTED after stream_write_timeout_s). Results go to
bench/results/stalled.md. Every address is 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from rerankd.v1 import rerank_pb2 as pb

from bench import fastfake
from bench.gateway import CONFIG, MODEL, RESULTS, free_port, load_average, serving_child
from tests.api.stalled import StalledCaller

STREAM = "/rerankd.v1.RerankService/RerankStream"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ended_lines(log: Path) -> list[dict[str, object]]:
    lines = []
    for raw in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(raw)
            if (
                isinstance(record, dict)
                and record.get("msg") == "call"
                and record.get("method") == STREAM[1:]
            ):
                lines.append(record)
    return lines


def _wave(
    args: argparse.Namespace, port: int, pid: int, log: Path, message: bytes, number: int
) -> dict[str, object]:
    """`args.callers` stalled callers at once; RSS peak and when the server had ended them all."""
    already = len(ended_lines(log))
    callers = [StalledCaller(f"127.0.0.1:{port}") for _ in range(args.callers)]
    started = time.monotonic()
    for caller in callers:
        caller.call(STREAM, message)
    peak, ended_at = rss_mb(pid), None
    limit = started + args.write_timeout + 60
    while time.monotonic() < limit:
        for caller in callers:
            caller.pump(0.01)
        peak = max(peak, rss_mb(pid))
        if ended_at is None and len(ended_lines(log)) - already >= args.callers:
            ended_at = time.monotonic() - started
        if ended_at is not None and time.monotonic() - started > ended_at + 3:
            break
        time.sleep(0.5)
    for caller in callers:
        caller.close()
    return {"wave": number, "peak": peak, "ended_at": ended_at, "rss_after": rss_mb(pid)}


def run(args: argparse.Namespace) -> str:
    documents = [
        pb.Document(text=f"Passage {i}: " + "rivers, bridges and the old town " * 30)
        for i in range(args.documents)
    ]
    inner = pb.RerankRequest(query="bridges", documents=documents, return_documents=True)
    message = pb.RerankStreamRequest(request=inner).SerializeToString()
    with tempfile.TemporaryDirectory(prefix="bench-stalled-") as tmp, fastfake.spawn(max_seconds=600) as url:
        config = Path(tmp) / "rerankd.yaml"
        config.write_text(CONFIG.format(url=url, model=MODEL))
        port = free_port()
        log = Path(tmp) / "rerankd.log"
        serve = ["-m", "rerankd.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-http"]
        serve += ["--config", str(config)]
        env = {"RERANKD_LOCAL_ENABLED": "false", "RERANKD_STREAM_WRITE_TIMEOUT_S": str(args.write_timeout)}
        with serving_child(serve, port, None, log, env) as pid:
            before = rss_mb(pid)
            waves = [_wave(args, port, pid, log, message, number) for number in range(1, args.waves + 1)]
            after = rss_mb(pid)
            lines = ended_lines(log)
    statuses = sorted({str(line["status"]) for line in lines})
    rows = [
        f"| wave {w['wave']} | {w['peak']:.0f} MB (+{w['peak'] - before:.0f}) | "  # type: ignore[operator]
        + (f"{w['ended_at']:.1f} s" if w["ended_at"] is not None else "not within the run")
        + f" | {w['rss_after']:.0f} MB |"
        for w in waves
    ]
    return "\n".join(
        [
            "# Callers that stop reading",
            "",
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python -m bench.stalled --callers"
            f" {args.callers} --waves {args.waves} --documents {args.documents} --write-timeout"
            f" {args.write_timeout:g}`; load average {load_average()} after.",
            f"{args.callers} raw HTTP/2 callers (h2) at once, each sending one RerankStream of"
            f" {len(message) / 1e6:.1f} MB ({args.documents} documents, return_documents) and never"
            " acknowledging what they receive; then the same again (a second wave) once the server has"
            f" ended the first. rerankd RSS before: {before:.0f} MB; at the end: {after:.0f} MB."
            f" Streams ended by the server: {len(lines)} of {args.callers * args.waves}, status"
            f" {', '.join(statuses) or 'none'} (stream_write_timeout_s = {args.write_timeout:g}).",
            "",
            "| wave | RSS at its peak | all its streams ended after | RSS 3 s later |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--write-timeout", type=float, default=30.0)
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "stalled.md"))
    args = parser.parse_args()
    text = run(args)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
