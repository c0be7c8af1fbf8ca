"""The embedded model at full speed: rerankd against a sentence-transformers CrossEncoder, the naive
ONNX path and the machine's matrix-multiply rate, in one run (`make bench-local`).

Systems, all on the same cores and the same weights:
  rerankd    the real server (in-process grpc.aio on 127.0.0.1, its own event-loop thread), called
             through its gRPC API by client threads: fair scheduler, batch-of-one int8 ONNX pairs on
             one worker per core (rerankd.local).
  naive-onnx the loading code of shared/local-model.md as a simple service: one request at a time,
             its pairs in batches of 32 in request order padded to the longest, one session with
             one intra-op thread per core.
  st-torch   sentence_transformers.CrossEncoder (torch CPU, fp32) on the same weights, dequantised
             into a BertForSequenceClassification checkpoint by bench/convert_to_torch.py, as a
             simple service: one `predict` at a time (it sorts a request by length, batches of 32).
The two baselines are served in-process behind a lock, with no RPC cost: a generous comparison.

Workloads (seeded, the same requests for every system):
  (a) one request of 32 documents of ~100 words (95-105), sent again and again by one caller;
  (b) 16 closed-loop callers: 12 send 1-128 documents of 10-400 words, 4 send 20 such documents
      (their latencies are the "20-document request under mixed load"). Each system gets a fixed
      window; pairs/s counts pairs scored in the window (rerankd: its scheduler's counter; the
      one-at-a-time baselines: each request's pairs spread over its service time).

Also measured: numpy fp32 GEMM and ORT int8 MatMulInteger rates on both cores (the CPU's limit), the
model's FLOPs per pair (2 x MACs of its matmuls, attention included, padding excluded), and CPU ms
per pair of batch sizes 1/4/16 (why rerankd scores pairs alone). Other work on the machine makes
wall-clock numbers noisy: compare the ratios within one run; CPU ms per pair is the steadier measure.

    .venv/bin/python bench/local_model.py [--window 45] [--quick]
writes bench/results/local_model.md, local_model.png and local_model.raw.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "service"))
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from rerankd.local.files import bundled_model_dir  # noqa: E402
from rerankd.v1 import rerank_pb2 as pb  # noqa: E402
from rerankd.v1 import rerank_pb2_grpc  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TORCH_MODEL = ROOT / "build" / "bench" / "torch-model"
CALLERS, PROBE_CALLERS, PROBE_DOCS = 16, 6, 20
MAX_LENGTH = 512
COOL_DOWN_S = 0.3  # after a turn, the last system's spinning threads (OpenMP, ORT) go to sleep
# cross-encoder/ms-marco-MiniLM-L-12-v2: 12 layers, hidden 384, 12 heads, FFN 1536.
LAYERS, HIDDEN, FFN = 12, 384, 1536

# Common English words: documents read like text to the tokenizer (about 1.2 tokens a word).
_VOCABULARY = """
time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night point
home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community
name president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy process music market sense nation plan college interest
death experience effect use class control care field development role effort rate heart drug show
leader light voice wife police mind price report decision son view relationship town road arm
difference value building action model season society tax director position player record paper
space ground form event official matter center couple site project activity star table need court
oil situation cost industry figure street image phone data picture practice piece land product
doctor wall patient worker news test movie north love support technology step baby computer type
attention film tree source organization hair window evidence population site river bridge capital
museum train station is are was were be have has had do does said make go know take see come think
look want give use find tell ask work seem feel try leave call new good first last long great little
own other old right big high different small large next early young important few public bad same
able the of and to in for on with at by from up about into over after beneath under above through
during before between among
"""
VOCABULARY = _VOCABULARY.split()
QUERIES = [
    "what is the population of the largest city in the region",
    "how do public schools pay teachers and staff",
    "history of the old bridge over the river",
    "which company makes the best phone for students",
    "effects of tax policy on small business owners",
    "how to plan a family trip by train",
]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


@dataclass(frozen=True)
class Request:
    query: str
    docs: tuple[str, ...]


def workload_a(count: int) -> list[Request]:
    rng = random.Random(1)
    return [
        Request(rng.choice(QUERIES), tuple(_text(rng, rng.randint(95, 105)) for _ in range(32)))
        for _ in range(count)
    ]


def mixed_requests(caller: int) -> Iterator[Request]:
    """Caller `caller`'s endless request sequence (the same for every system)."""
    rng = random.Random(1000 + caller)
    while True:
        count = PROBE_DOCS if caller < PROBE_CALLERS else rng.randint(1, 128)
        yield Request(rng.choice(QUERIES), tuple(_text(rng, rng.randint(10, 400)) for _ in range(count)))


# -- model FLOPs ------------------------------------------------------------------------------
def flops_per_pair(tokens: int) -> float:
    """2 x multiply-adds of the model's matmuls for one pair of `tokens` tokens (no padding)."""
    linear = 2 * tokens * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN) * LAYERS
    attention = 2 * 2 * tokens * tokens * HIDDEN * LAYERS  # Q.K^T and P.V
    head = 2 * (HIDDEN * HIDDEN + HIDDEN)  # pooler and classifier, on [CLS] only
    return float(linear + attention + head)


class PairTokens:
    """Tokens of a (query, document) pair as every system sees it (longest-first cut at 512)."""

    def __init__(self, model_dir: Path) -> None:
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=MAX_LENGTH, strategy="longest_first")

    def tokens(self, requests: Sequence[Request]) -> list[int]:
        return [len(e.ids) for r in requests for e in self.tok.encode_batch([(r.query, d) for d in r.docs])]


# -- the CPU's limit --------------------------------------------------------------------------
def matmul_rates(seconds: float) -> dict[str, float]:
    """numpy fp32 GEMM (OpenBLAS, all cores) and ORT int8 MatMulInteger (one session per core).

    Per wall second on all cores (the best run), and per CPU second (what one core does in the
    time it is given: this one other load on the machine hardly moves).
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    size = 2048
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best, runs = 0.0, 0
    cpu, end = time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        a @ b
        runs += 1
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    rates = {
        "numpy_fp32_gflops": best / 1e9,
        "numpy_fp32_gflops_per_cpu_s": runs * 2 * size**3 / (time.process_time() - cpu) / 1e9,
    }

    m, k, n = 2048, HIDDEN, FFN  # an FFN matmul of a 2048-token batch
    weight = numpy_helper.from_array(rng.integers(-127, 127, (k, n), dtype=np.int8), "w")
    node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
    graph = helper.make_graph(
        [node],
        "mm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 255, (m, k), dtype=np.uint8)}
    session.run(None, feed)
    cores = _cores()
    best_rate, total_runs, cpu_used = 0.0, 0, 0.0
    for _ in range(3):  # the best of three short rounds, every core busy
        counts = [0] * cores

        def spin(slot: int, until: float, counts: list[int] = counts) -> None:
            while time.perf_counter() < until:
                session.run(None, feed)
                counts[slot] += 1

        started, cpu = time.perf_counter(), time.process_time()
        threads = [threading.Thread(target=spin, args=(i, started + seconds / 3)) for i in range(cores)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        cpu_used += time.process_time() - cpu
        total_runs += sum(counts)
        best_rate = max(best_rate, sum(counts) * 2 * m * k * n / elapsed)
    rates["ort_int8_gops"] = best_rate / 1e9
    rates["ort_int8_gops_per_cpu_s"] = total_runs * 2 * m * k * n / cpu_used / 1e9
    return rates


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# -- why batch of one -------------------------------------------------------------------------
def batching_check(model_dir: Path, words: Sequence[int]) -> list[dict[str, float]]:
    """CPU ms per pair (one thread, same-length pairs, no padding) at batch sizes 1, 4 and 16."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LENGTH)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    rng = random.Random(7)
    rows = []
    for count in words:
        query = QUERIES[0]
        encs = [tok.encode(query, _text(rng, count)) for _ in range(64)]
        length = min(len(e.ids) for e in encs)
        ids = np.array([e.ids[:length] for e in encs], dtype=np.int64)
        types = np.array([e.type_ids[:length] for e in encs], dtype=np.int64)
        row: dict[str, float] = {"tokens": float(length)}
        pairs = 16
        for size in (1, 4, 16):
            feeds = [
                {
                    "input_ids": ids[i : i + size],
                    "attention_mask": np.ones_like(ids[i : i + size]),
                    "token_type_ids": types[i : i + size],
                }
                for i in range(0, pairs, size)
            ]
            session.run(None, feeds[0])
            best = math.inf
            for _ in range(2):
                started = time.thread_time()
                for feed in feeds:
                    session.run(None, feed)
                best = min(best, (time.thread_time() - started) / pairs * 1000)
            row[f"batch{size}_ms"] = best
        rows.append(row)
    return rows


# -- taking turns on the machine --------------------------------------------------------------
class Gate:
    """Time-division of the cores between systems, so slow drifts of other load hit all alike.

    Every unit of model work (a pair, a batch) passes `enter`/`exit`; while a system's gate is shut
    its units wait, its requests stay queued, and its clock (`now`) stands still. So each system
    runs in slices but sees one continuous run: throughput and latency are measured on its clock.
    `shut` waits for the units in progress, and their time counts as the system's.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self._busy = 0
        self._since: float | None = None
        self._elapsed = 0.0
        self.cpu = 0.0  # process CPU seconds while this gate was open
        self._cpu_since = 0.0

    def now(self) -> float:
        with self._cond:
            running = time.perf_counter() - self._since if self._since is not None else 0.0
            return self._elapsed + running

    def enter(self) -> None:
        with self._cond:
            while not self._open:
                self._cond.wait()
            self._busy += 1

    def exit(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._since = time.perf_counter()
            self._cpu_since = time.process_time()
            self._cond.notify_all()

    def shut(self) -> None:
        with self._cond:
            self._open = False
            while self._busy:
                self._cond.wait()
            if self._since is not None:
                self._elapsed += time.perf_counter() - self._since
                self.cpu += time.process_time() - self._cpu_since
            self._since = None

    def release(self) -> None:
        """Open for good, outside any measurement (shutting down)."""
        with self._cond:
            self._open = True
            self._since = None
            self._cond.notify_all()


class Meter:
    """Model work done: (start, end, tokens of each pair) of every unit, on the system's clock."""

    def __init__(self) -> None:
        self.units: list[tuple[float, float, tuple[int, ...]]] = []
        self._lock = threading.Lock()

    def record(self, start: float, end: float, tokens: Sequence[int]) -> None:
        with self._lock:
            self.units.append((start, end, tuple(tokens)))

    def flops_between(self, start: float, end: float) -> float:
        """FLOPs of the work done in [start, end], each unit's spread evenly over its duration."""
        total = 0.0
        with self._lock:
            units = list(self.units)
        for s, e, tokens in units:
            overlap = min(e, end) - max(s, start)
            if overlap > 0:
                total += sum(map(flops_per_pair, tokens)) * overlap / max(e - s, 1e-9)
        return total


class Abort(Exception):
    """The benchmark is over: stop the request in progress."""


# -- systems ----------------------------------------------------------------------------------
class System:
    name = ""

    def __init__(self) -> None:
        self.gate = Gate()
        self.meter = Meter()
        self.closing = False

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, request: Request) -> Any:
        """A future of the request's scores (in the request's order)."""
        raise NotImplementedError

    def unit(self, tokens: Sequence[int], work: Callable[[], Any]) -> Any:
        """Run one unit of model work through the gate and the meter."""
        self.gate.enter()
        try:
            if self.closing:
                raise Abort
            started = self.gate.now()
            result = work()
            self.meter.record(started, self.gate.now(), tokens)
            return result
        finally:
            self.gate.exit()


class QueuedService(System):
    """A simple service around a model: one request at a time, first come first served."""

    def start(self) -> None:
        self.load()
        self.queue: queue.Queue[tuple[Request, Future[list[float]]] | None] = queue.Queue()
        self.server = threading.Thread(target=self._serve, name=f"{self.name}-server", daemon=True)
        self.server.start()

    def load(self) -> None:
        raise NotImplementedError

    def score(self, request: Request) -> list[float]:
        raise NotImplementedError

    def submit(self, request: Request) -> Future[list[float]]:
        future: Future[list[float]] = Future()
        self.queue.put((request, future))
        return future

    def _serve(self) -> None:
        while (item := self.queue.get()) is not None:
            request, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.score(request))
            except BaseException as exc:
                future.set_exception(exc)

    def stop(self) -> None:
        self.closing = True
        self.gate.release()
        self.queue.put(None)
        self.server.join(60)


class NaiveOnnx(QueuedService):
    name = "naive-onnx"

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        self.model_dir = model_dir

    def load(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = _cores()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tok.enable_truncation(max_length=MAX_LENGTH, strategy="longest_first")
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.gate.release()
        self.score(Request("warm up", ("the first call pays for lazy initialisation",)))
        self.gate = Gate()

    def score(self, request: Request) -> list[float]:
        scores: list[float] = []
        for i in range(0, len(request.docs), 32):
            enc = self.tok.encode_batch([(request.query, d) for d in request.docs[i : i + 32]])
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {
                "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": mask,
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
            }
            logits = self.unit(mask.sum(axis=1).tolist(), lambda f=feed: self.session.run(None, f)[0][:, 0])
            scores.extend((1.0 / (1.0 + np.exp(-logits))).tolist())
        return scores


class SentenceTransformersTorch(QueuedService):
    name = "st-torch"

    def load(self) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(_cores())
        self.torch = torch
        self.model = CrossEncoder(str(TORCH_MODEL), device="cpu", max_length=MAX_LENGTH)
        self.gate.release()
        self.score(Request("warm up", ("the first call pays for lazy initialisation",)))
        self.gate = Gate()
        # Module 0 (the transformer) is called once a batch; ST calls the HF model's forward itself.
        self.model[0].register_forward_pre_hook(self._before, with_kwargs=True)
        self.model[0].register_forward_hook(self._after, with_kwargs=True)
        self._started = 0.0

    def _before(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.gate.enter()
        if self.closing:
            self.gate.exit()
            raise Abort
        self._started = self.gate.now()

    def _after(self, module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        features = args[0] if args else kwargs["features"]
        tokens = features["attention_mask"].sum(dim=1).tolist()
        self.meter.record(self._started, self.gate.now(), tokens)
        self.gate.exit()

    def score(self, request: Request) -> list[float]:
        with self.torch.inference_mode():
            out = self.model.predict(
                [(request.query, d) for d in request.docs], batch_size=32, show_progress_bar=False
            )
        return [float(x) for x in out]


class Rerankd(System):
    """The real server, in-process on its own event-loop thread, on a free loopback port.

    The only instrument: the local provider's scoring function is wrapped to pass the gate and
    the meter (one pair a unit).
    """

    name = "rerankd"

    def start(self) -> None:
        from rerankd.config import Settings
        from rerankd.server import build

        # The default local provider, with a per-call timeout longer than the queue can ever be:
        # under this load a big request waits minutes (and the baselines have no timeout at all).
        overrides: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "log_level": "WARNING",
            "providers": {"local": {"kind": "local", "timeout_s": 3600}},
        }
        if "http_enabled" in Settings.model_fields:
            overrides["http_enabled"] = False
        settings = Settings(**overrides)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="rerankd-loop", daemon=True)
        self.thread.start()

        async def serve() -> Any:  # grpc.aio binds a server to the loop it is built on
            app = build(settings)
            await app.start()
            return app

        self.app = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(120)
        scheduler = self.app.providers["local"].scheduler
        score = scheduler._score
        scheduler._score = lambda pair: self.unit((pair.tokens,), lambda: score(pair))
        self.channel = grpc.insecure_channel(self.app.addresses[0])
        self.stub = rerank_pb2_grpc.RerankServiceStub(self.channel)

    def submit(self, request: Request) -> Any:
        message = pb.RerankRequest(query=request.query, documents=[pb.Document(text=d) for d in request.docs])
        call = self.stub.Rerank.future(message, timeout=900)
        return _RerankdFuture(call)

    def stop(self) -> None:
        self.closing = True
        self.gate.release()
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.app.drain(0.5), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class _RerankdFuture:
    """A gRPC call future whose result is the scores in the request's order."""

    def __init__(self, call: Any) -> None:
        self.call = call

    def result(self, timeout: float | None = None) -> list[float]:
        reply = self.call.result(timeout=timeout)
        scores = [0.0] * len(reply.results)
        for r in reply.results:
            scores[r.index] = r.relevance_score
        return scores

    def cancel(self) -> bool:
        return bool(self.call.cancel())


# -- measurements -----------------------------------------------------------------------------
@dataclass
class SingleResult:
    pairs_per_s: float
    p50_ms: float
    cpu_ms_per_pair: float
    requests: int


@dataclass
class MixedResult:
    pairs_per_s: float
    gflops: float
    cpu_ms_per_pair: float
    measured_s: float
    slices: int
    probe_p50_ms: float
    probe_p99_ms: float
    probe_n: int
    probe_censored: int  # 20-doc requests still unanswered at the end (their age is a lower bound)
    requests_done: int
    latencies_ms: list[float] = field(default_factory=list)
    censored_ms: list[float] = field(default_factory=list)


def run_single(systems: Sequence[System], requests: Sequence[Request]) -> dict[str, SingleResult]:
    """Workload (a): each request to each system in turn, one at a time (the first is a warm-up)."""
    latencies: dict[str, list[float]] = {s.name: [] for s in systems}
    cpu: dict[str, float] = {s.name: 0.0 for s in systems}
    for number, request in enumerate(requests):
        for system in systems:
            system.gate.open()
            t0, c0 = time.perf_counter(), time.process_time()
            system.submit(request).result()
            elapsed, used = time.perf_counter() - t0, time.process_time() - c0
            system.gate.shut()
            time.sleep(COOL_DOWN_S)
            if number:
                latencies[system.name].append(elapsed)
                cpu[system.name] += used
    pairs = sum(len(r.docs) for r in requests[1:])
    return {
        s.name: SingleResult(
            pairs / sum(latencies[s.name]),
            statistics.median(latencies[s.name]) * 1000,
            cpu[s.name] / pairs * 1000,
            len(latencies[s.name]),
        )
        for s in systems
    }


def run_mixed(
    systems: Sequence[System], seconds: float, slices: int, settle: float, mean_flops: float
) -> dict[str, MixedResult]:
    """Workload (b): 16 closed-loop callers per system, the systems taking turns in `slices`."""
    stop = threading.Event()
    lock = threading.Lock()
    # (caller, its request number, sent, answered) on the system's clock
    finished: dict[str, list[tuple[int, int, float, float]]] = {s.name: [] for s in systems}
    pending: dict[str, dict[int, tuple[float, Any]]] = {s.name: {} for s in systems}

    def caller(system: System, number: int) -> None:
        for sequence, request in enumerate(mixed_requests(number)):
            if stop.is_set():
                return
            sent = system.gate.now()
            future = system.submit(request)
            with lock:
                pending[system.name][number] = (sent, future)
            try:
                future.result()
            except Exception:
                if stop.is_set():
                    return
                raise
            with lock:
                del pending[system.name][number]
                finished[system.name].append((number, sequence, sent, system.gate.now()))

    threads = [
        threading.Thread(target=caller, args=(system, n), daemon=True)
        for system in systems
        for n in range(CALLERS)
    ]
    for t in threads:
        t.start()
    turn = (settle + seconds) / slices
    for number in range(slices):
        for system in systems:
            system.gate.open()
            time.sleep(max(turn * (number + 1) - system.gate.now(), 0.0))
            system.gate.shut()
            time.sleep(COOL_DOWN_S)
            log(f"  {system.name}: {system.gate.now():.1f} s of its clock")
    stop.set()
    results = {}
    for system in systems:
        with lock:
            waiting = dict(pending[system.name])
        for _, future in waiting.values():
            future.cancel()
        end = system.gate.now()
        work = system.meter.flops_between(settle, end)
        # A caller's first request meets a system still filling up (in a first-come-first-served
        # queue it finds fewer requests ahead than later ones do): only later ones count, and
        # every request still unanswered counts with its age, a lower bound of its latency.
        probes = [(e - s) * 1000 for n, q, s, e in finished[system.name] if n < PROBE_CALLERS and q > 0]
        censored = [(end - s) * 1000 for n, (s, _) in waiting.items() if n < PROBE_CALLERS]
        everything = sorted(probes + censored)
        log(f"  {system.name}: {len(system.meter.units)} units, {work / 1e9:.0f} GFLOP in {end:.1f} s")
        pairs_per_s = work / mean_flops / (end - settle)
        results[system.name] = MixedResult(
            pairs_per_s=pairs_per_s,
            gflops=work / (end - settle) / 1e9,
            cpu_ms_per_pair=system.gate.cpu / (work / mean_flops) * 1000,
            measured_s=end - settle,
            slices=slices,
            probe_p50_ms=_percentile(everything, 50),
            probe_p99_ms=_percentile(everything, 99),
            probe_n=len(probes),
            probe_censored=len(censored),
            requests_done=len(finished[system.name]),
            latencies_ms=probes,
            censored_ms=censored,
        )
    return results


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    rank = max(math.ceil(q / 100 * len(values)) - 1, 0)
    return float(sorted(values)[rank])


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- report -----------------------------------------------------------------------------------
def write_report(data: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "local_model.raw.json").write_text(json.dumps(data, indent=2, default=float))
    plot(data, out / "local_model.png")
    (out / "local_model.md").write_text(markdown(data))


def markdown(data: dict[str, Any]) -> str:
    systems = data["systems"]
    a = {s: data["a"][s] for s in systems}
    b = {s: data["b"][s] for s in systems}
    rates = data["matmul"]
    flops_a, flops_b = data["flops_per_pair"]["a"], data["flops_per_pair"]["b"]

    def share(pairs_per_s: float, flops: float) -> str:
        achieved = pairs_per_s * flops / 1e9
        return (
            f"{achieved:.0f} GFLOP/s = {achieved / rates['ort_int8_gops']:.0%} of int8"
            f" / {achieved / rates['numpy_fp32_gflops']:.0%} of fp32"
        )

    def per_cpu(flops: float, cpu_ms: float) -> str:
        achieved = flops / (cpu_ms / 1000) / 1e9
        return f"{achieved:.0f} GFLOP/s = {achieved / rates['ort_int8_gops_per_cpu_s']:.0%}"

    def latency(result: dict[str, Any]) -> str:
        answered = result["latencies_ms"]
        if not answered:
            return "none answered"
        p50, p99 = _percentile(answered, 50), _percentile(answered, 99)
        return f"{p50 / 1000:.1f} s / {p99 / 1000:.1f} s (n={len(answered)})"

    def oldest(result: dict[str, Any]) -> str:
        ages = result["censored_ms"]
        return f"{max(ages) / 1000:.1f} s" if ages else "-"

    lines = [
        "# The embedded model at full speed",
        "",
        f"One run of `make bench-local` ({data['when']}, {data['duration_s'] / 60:.1f} min) on"
        f" {data['machine']}. Other engineers' tests share these cores, so wall-clock numbers are"
        f" noisy (load average {data['loadavg_before'][0]:.1f} before the run,"
        f" {data['loadavg_after'][0]:.1f} after): compare the **ratios**, which come from one run in"
        " which the systems took turns on the cores, and the CPU ms per pair, which other load"
        " disturbs least.",
        "",
        "Model: cross-encoder/ms-marco-MiniLM-L-12-v2 (12 layers, hidden 384, 12 heads, FFN 1536), the"
        " bundled int8 ONNX file; the torch baseline runs the same weights dequantised to fp32 by"
        f" `bench/convert_to_torch.py` (max |logit difference| to rerankd on workload (a): "
        f"{data['logit_gap']:.3f}).",
        "",
        "## Results",
        "",
        "| | rerankd | naive ONNX | sentence-transformers |",
        "|---|---|---|---|",
        "| (a) 32 docs x ~100 words: pairs/s | "
        + " | ".join(f"{a[s]['pairs_per_s']:.1f}" for s in systems)
        + " |",
        "| (a) latency p50 | " + " | ".join(f"{a[s]['p50_ms']:.0f} ms" for s in systems) + " |",
        "| (a) CPU ms per pair | " + " | ".join(f"{a[s]['cpu_ms_per_pair']:.1f}" for s in systems) + " |",
        "| (b) mixed load, 16 callers: pairs/s | "
        + " | ".join(f"{b[s]['pairs_per_s']:.1f}" for s in systems)
        + " |",
        "| (b) CPU ms per pair | " + " | ".join(f"{b[s]['cpu_ms_per_pair']:.1f}" for s in systems) + " |",
        "| (b) 20-doc request latency p50 / p99 (answered) | "
        + " | ".join(latency(b[s]) for s in systems)
        + " |",
        "| (b) oldest 20-doc request unanswered at the end | "
        + " | ".join(oldest(b[s]) for s in systems)
        + " |",
        "| (a) model FLOP rate | " + " | ".join(share(a[s]["pairs_per_s"], flops_a) for s in systems) + " |",
        "| (b) model FLOP rate | " + " | ".join(share(b[s]["gflops"] * 1e9, 1.0) for s in systems) + " |",
        "| (a) model FLOPs per CPU-second, share of int8 matmul's | "
        + " | ".join(per_cpu(flops_a, a[s]["cpu_ms_per_pair"]) for s in systems)
        + " |",
        "| (b) model FLOPs per CPU-second, share of int8 matmul's | "
        + " | ".join(per_cpu(flops_b, b[s]["cpu_ms_per_pair"]) for s in systems)
        + " |",
        "",
        "**rerankd / sentence-transformers:"
        f" {a['rerankd']['pairs_per_s'] / a['st-torch']['pairs_per_s']:.2f}x"
        f" on (a)** (target 1.5x), **{b['rerankd']['pairs_per_s'] / b['st-torch']['pairs_per_s']:.2f}x on"
        " the mixed load** (target 2x). rerankd / naive ONNX:"
        f" {a['rerankd']['pairs_per_s'] / a['naive-onnx']['pairs_per_s']:.2f}x on (a),"
        f" {b['rerankd']['pairs_per_s'] / b['naive-onnx']['pairs_per_s']:.2f}x on (b).",
        "",
        "![pairs per second and 20-document latency](local_model.png)",
        "",
        "## The CPU's limit",
        "",
        f"Measured on the same {data['cores']} cores, at the start and at the end of the run (the"
        f" better of the two): numpy fp32 GEMM (2048^3, OpenBLAS) **{rates['numpy_fp32_gflops']:.0f}"
        f" GFLOP/s** ({rates['numpy_fp32_gflops_per_cpu_s']:.0f} per CPU-second); ONNX Runtime int8"
        " MatMulInteger (2048x384 by 384x1536, the model's FFN shape, one session per core)"
        f" **{rates['ort_int8_gops']:.0f} GOP/s** ({rates['ort_int8_gops_per_cpu_s']:.0f} per"
        " CPU-second). Per wall second these depend on what else runs on the machine; per CPU-second"
        ' (what a core does in the time it gets) they hardly do, so the rows "per CPU-second" are'
        " the steadier measure of how close each system comes to the CPU's limit."
        f" Model FLOPs per pair (2 x multiply-adds, attention included, padding excluded): mean"
        f" {flops_a / 1e9:.2f} GFLOP on (a) ({data['tokens_mean']['a']:.0f} tokens a pair),"
        f" {flops_b / 1e9:.2f} GFLOP on (b) ({data['tokens_mean']['b']:.0f} tokens). The int8 model"
        " runs its big matmuls as int8, so the int8 rate is its ceiling; the attention products"
        " (about 9% of the FLOPs at these lengths) run in fp32, and LayerNorm, GELU, softmax and the"
        " quantisation of activations are work that counts no FLOPs (profiled at 400 tokens, the"
        " unfused attention alone takes about 40% of the time).",
        "",
        "## Why rerankd scores every pair alone",
        "",
        "CPU ms per pair, one thread, same-length pairs (no padding), this run:",
        "",
        "| tokens | batch of 1 | batch of 4 | batch of 16 |",
        "|---|---|---|---|",
    ]
    for row in data["batching"]:
        lines.append(
            f"| {row['tokens']:.0f} | {row['batch1_ms']:.1f} | {row['batch4_ms']:.1f}"
            f" | {row['batch16_ms']:.1f} |"
        )
    lines += [
        "",
        "Batching pays only for short pairs, where it amortises a fixed ~2 ms of kernel dispatch per"
        " run; from ~200 tokens a batch of one is as fast or faster. And the int8 model's scores move"
        " with their batch-mates (activations are quantised per batch tensor), while a pair scored"
        " alone has one score whatever else is in flight. So rerankd's scheduler coalesces the work"
        " of concurrent requests at the level of pairs: one worker per core, no padding, no waiting"
        " for a batch to fill, and the next pair from the request that would finish first under fair"
        " sharing (a variant of the fair sojourn protocol; see rerankd/local/model.py and"
        " scheduler.py).",
        "",
        "## How it was measured",
        "",
        f"- (a): one caller sends the 32-document request; the systems take turns request by request"
        f" ({data['a']['rerankd']['requests']} requests each after a warm-up); pairs/s = pairs / wall"
        " time.",
        f"- (b): for each system, 16 closed-loop callers ({CALLERS - PROBE_CALLERS} send 1-128"
        f" documents of 10-400 words, {PROBE_CALLERS} send {PROBE_DOCS} documents of 10-400 words)."
        f" The systems take turns on the cores ({data['slices']} turns each); a system's clock and its"
        " requests stand still while it waits, so each sees one continuous run of"
        f" {data['settle'] + data['seconds']:.0f} s, of which the first {data['settle']:.0f} s are"
        " not measured. Every unit of model work (rerankd: a pair; the baselines: a batch) is timed"
        " with the tokens of its pairs; pairs/s = model FLOPs done in the measured time / mean FLOPs"
        " of a pair of this workload (so the order in which a system scores long and short pairs"
        " does not bias it). 20-document latencies are from send to answer on the system's clock,"
        " leaving out each caller's first request (it meets a system still filling up: in a"
        " first-come-first-served queue it finds fewer requests ahead than later ones do). Each"
        " closed-loop caller always has one request in flight, so some are unanswered at the end;"
        " the oldest one's age is a lower bound of the worst latency. A one-request-at-a-time"
        " service answers a 20-document request only after the ~15 requests queued before it, which"
        " can take longer than this run: then none is answered.",
        "- rerankd is the real server (grpc.aio, in-process on its own event-loop thread, default"
        " settings but for the local provider's per-call timeout, raised from 30 s to an hour: in"
        " this closed loop a big request waits longer, and the baselines have no timeout at all)"
        " called through gRPC over loopback; its scoring function is wrapped to time each pair. The"
        " baselines are called in-process with no RPC cost, one request at a time, first come first"
        " served. CPU ms per pair is the whole process's CPU time while the system had its turn"
        " (server, clients, tokenising) over the pairs scored.",
        "- CPU: " + data["cpu"] + f"; onnxruntime {ort.__version__}; torch {data['torch']}.",
        "",
    ]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = data["systems"]
    labels = {"rerankd": "rerankd", "naive-onnx": "naive ONNX", "st-torch": "sentence-transformers"}
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title in ((axes[0], "a", "(a) 32 docs x ~100 words"), (axes[1], "b", "(b) mixed load")):
        values = [data[key][s]["pairs_per_s"] for s in systems]
        ax.bar([labels[s] for s in systems], values, color=colours)
        ax.set_title(f"{title}: pairs/s")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.1f}", ha="center", va="bottom")
    ax = axes[2]
    for i, s in enumerate(systems):
        values = sorted(data["b"][s]["latencies_ms"])
        if values:
            ax.step(
                [v / 1000 for v in values],
                [(j + 1) / len(values) for j in range(len(values))],
                where="post",
                label=labels[s],
                color=colours[i],
            )
    ax.set_xscale("log")
    ax.set_xlabel("seconds")
    ax.set_title("(b) 20-doc request latency (CDF, answered)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PASSAGE_LENGTHS = (400, 1000, 2000, 4000)  # document tokens
PASSAGES = {"tokens": 256, "stride": 64, "pool": "max"}


def _document(rng: random.Random, tokenizer: Tokenizer, tokens: int) -> str:
    """A text of exactly about `tokens` tokens (words added until the tokenizer says so)."""
    words: list[str] = []
    while len(tokenizer.encode(" ".join(words), add_special_tokens=False).ids) < tokens:
        words += [rng.choice(VOCABULARY) for _ in range(max((tokens - len(words)) // 2, 1))]
    return " ".join(words)


def passages_cost(model_dir: Path, quick: bool) -> dict[str, Any]:
    """What passages cost: windows per document length, CPU ms of one thread per document and per
    window (windows scored one after another), and the server's pairs/s on windows vs on documents
    of one window's length (both cores, the real provider and scheduler)."""
    from rerankd.domain import Document
    from rerankd.local.model import CrossEncoder, Passages
    from rerankd.local.provider import LocalProvider
    from rerankd.providers.base import ProviderCall

    loadavg = os.getloadavg()[0]
    rng = random.Random(21)
    encoder = CrossEncoder(model_dir, max_length=MAX_LENGTH)
    encoder.warm_up()
    query = QUERIES[2]
    window = Passages(**PASSAGES, limit=64)  # type: ignore[arg-type]
    rows = []
    for length in PASSAGE_LENGTHS:
        document = _document(rng, encoder.tokenizer, length)
        row: dict[str, Any] = {"document_tokens": length}
        for mode, passages in (("truncated", None), ("passages", window)):
            pairs = encoder.encode(query, [document], passages=passages)
            runs = []
            for _ in range(2 if quick else 3):
                started = time.thread_time()
                for pair in pairs:
                    encoder.score_pair(pair)
                runs.append((time.thread_time() - started) * 1000)
            row[mode] = {
                "pairs": len(pairs),
                "tokens": sum(p.tokens for p in pairs),
                "cpu_ms": min(runs),
                "cpu_ms_per_pair": min(runs) / len(pairs),
            }
        rows.append(row)
        log(row)

    provider = LocalProvider("local", model_name="bench", max_length=MAX_LENGTH, threads=0)
    long_docs = [_document(rng, encoder.tokenizer, 4000) for _ in range(2 if quick else 6)]
    windows = encoder.encode(query, long_docs, passages=window)
    # Documents of one window each, the same token counts: the same pairs, but one per document.
    short_docs = [long_docs[p.document][p.start : p.end] for p in windows]

    async def served() -> dict[str, dict[str, float]]:
        await provider.start()
        out: dict[str, dict[str, float]] = {}
        modes = (
            ("one-window documents", short_docs, {}),
            ("4,000-token documents as passages", long_docs, {"passages": PASSAGES}),
        )
        try:
            for _ in range(2 if quick else 3):  # alternating, best of each: other load on the machine
                for mode, docs, parameters in modes:
                    call = ProviderCall("", query, [Document(text=d) for d in docs], parameters=parameters)
                    before, started, cpu = provider.scheduler.scored, time.perf_counter(), time.process_time()
                    await provider.rerank(call)
                    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
                    pairs = provider.scheduler.scored - before
                    best = out.get(mode, {})
                    out[mode] = {
                        "documents": len(docs),
                        "pairs": pairs,
                        "wall_s": min(wall, best.get("wall_s", math.inf)),
                        "pairs_per_s": max(pairs / wall, best.get("pairs_per_s", 0.0)),
                        "cpu_ms_per_pair": min(cpu * 1000 / pairs, best.get("cpu_ms_per_pair", math.inf)),
                    }
            log(out)
        finally:
            await provider.aclose()
        return out

    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_name(),
        "cores": _cores(),
        "passages": PASSAGES,
        "query_tokens": len(encoder.tokenizer.encode(query, add_special_tokens=False).ids),
        "rows": rows,
        "served": asyncio.run(served()),
        "loadavg": loadavg,
    }


def passages_markdown(data: dict[str, Any]) -> str:
    p = data["passages"]
    lines = [
        "# Long documents as passages: what they cost",
        "",
        f"Measured {data['when']} on {data['cpu']} ({data['cores']} cores) by"
        " `bench/local_model.py --passages`. The bundled int8 MiniLM-L-12 (512 positions);"
        f" passages of {p['tokens']} document tokens, {p['stride']} shared by neighbours, pool"
        f" {p['pool']}; a query of {data['query_tokens']} tokens. Truncated = today's default (the"
        " first 512 tokens decide). CPU ms of one thread, windows scored one after another, best of 3.",
        "",
        "| document tokens | truncated: pairs | CPU ms | passages: windows | tokens scored | CPU ms |"
        " CPU ms a window | cost vs truncated |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        t, w = row["truncated"], row["passages"]
        lines.append(
            f"| {row['document_tokens']:,} | {t['pairs']} | {t['cpu_ms']:.1f} | {w['pairs']} |"
            f" {w['tokens']:,} | {w['cpu_ms']:.1f} | {w['cpu_ms_per_pair']:.1f} |"
            f" {w['cpu_ms'] / t['cpu_ms']:.1f}x |"
        )
    lines += [
        "",
        "A document of N tokens is 1 + ceil((N - tokens) / (tokens - stride)) windows: a 4,000-token"
        " document is 21 windows of 256, each a pair of ~270 tokens, so it costs what 21 documents of"
        " one window's length do (the scheduler counts windows as pairs, for fairness and for the queue"
        " bound). Per pair nothing changes. The server's provider and scheduler on all cores, one"
        " request each, alternating, best of 3 (CPU ms: the whole process's, tokenising included):",
        "",
        "| request | documents | pairs scored | wall s | pairs/s | CPU ms a pair |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode, r in data["served"].items():
        lines.append(
            f"| {mode} | {r['documents']} | {r['pairs']} | {r['wall_s']:.2f} | {r['pairs_per_s']:.1f} |"
            f" {r['cpu_ms_per_pair']:.1f} |"
        )
    lines += ["", f"Load average (1 min) before the run: {data['loadavg']:.1f}: other work shares the cores."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=44.0, help="measured mixed load per system")
    parser.add_argument("--slices", type=int, default=4, help="turns each system gets in the mixed load")
    parser.add_argument("--quick", action="store_true", help="a short run (a smoke test of the bench)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the raw JSON")
    parser.add_argument(
        "--passages",
        action="store_true",
        help="only the cost of long documents as passages (local_passages.md)",
    )
    args = parser.parse_args()
    if args.passages:
        data = passages_cost(bundled_model_dir(), args.quick)
        (args.out / "local_passages.raw.json").write_text(json.dumps(data, indent=1))
        (args.out / "local_passages.md").write_text(passages_markdown(data))
        print((args.out / "local_passages.md").read_text())
        return
    if args.report_only:
        raw = json.loads((args.out / "local_model.raw.json").read_text())
        plot(raw, args.out / "local_model.png")
        (args.out / "local_model.md").write_text(markdown(raw))
        return
    seconds, slices, settle = (8.0, 2, 2.0) if args.quick else (args.seconds, args.slices, 4.0)
    model_dir = bundled_model_dir()
    loadavg_before = os.getloadavg()
    started = time.perf_counter()
    if not (TORCH_MODEL / "model.safetensors").is_file():
        from bench.convert_to_torch import convert

        log("converting the ONNX weights for torch ...")
        convert(None, TORCH_MODEL)
    log("matmul rates ...")
    rates = matmul_rates(2.0 if args.quick else 3.0)
    log(rates)
    log("batch sizes ...")
    batching = batching_check(model_dir, (15, 90, 200, 380))
    log(batching)
    requests_a = workload_a(3 if args.quick else 5)
    counter = PairTokens(model_dir)
    tokens_a = counter.tokens(requests_a)
    sample_b = [r for c in range(CALLERS) for r, _ in zip(mixed_requests(c), range(8), strict=False)]
    tokens_b = counter.tokens(sample_b)
    mean_flops_b = statistics.fmean(flops_per_pair(t) for t in tokens_b)

    systems: list[System] = [Rerankd(), NaiveOnnx(model_dir), SentenceTransformersTorch()]
    for system in systems:
        log(f"{system.name}: loading")
        system.start()
    try:
        first: dict[str, list[float]] = {}
        for system in systems:
            system.gate.open()
            first[system.name] = system.submit(requests_a[0]).result()
            system.gate.shut()
        log("workload (a) ...")
        results_a = {name: asdict(r) for name, r in run_single(systems, requests_a).items()}
        log(results_a)
        log("workload (b) ...")
        mixed = run_mixed(systems, seconds, slices, settle, mean_flops_b)
        results_b = {name: asdict(r) for name, r in mixed.items()}
        log({name: {k: v for k, v in r.items() if k != "latencies_ms"} for name, r in results_b.items()})
    finally:
        for system in systems:
            system.stop()

    def logit(p: float) -> float:
        p = min(max(p, 1e-12), 1 - 1e-12)
        return math.log(p / (1 - p))

    gap = max(abs(logit(x) - logit(y)) for x, y in zip(first["rerankd"], first["st-torch"], strict=True))
    import torch

    data = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration_s": time.perf_counter() - started,
        "machine": f"{_cores()} cores, {platform.machine()}",
        "cpu": _cpu_name(),
        "cores": _cores(),
        "torch": torch.__version__,
        "seconds": seconds,
        "settle": settle,
        "slices": slices,
        "systems": [s.name for s in systems],
        "a": results_a,
        "b": results_b,
        "matmul": rates,
        "batching": batching,
        "tokens_mean": {"a": statistics.fmean(tokens_a), "b": statistics.fmean(tokens_b)},
        "flops_per_pair": {"a": statistics.fmean(flops_per_pair(t) for t in tokens_a), "b": mean_flops_b},
        "logit_gap": gap,
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
    }
    log("matmul rates again ...")
    again = matmul_rates(2.0 if args.quick else 3.0)
    data["matmul"] = {key: max(value, again[key]) for key, value in rates.items()}
    data["matmul_runs"] = [rates, again]
    write_report(data, args.out)
    print((args.out / "local_model.md").read_text())


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                vnni = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2"
                return f"{line.split(':', 1)[1].strip()} ({vnni})"
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
