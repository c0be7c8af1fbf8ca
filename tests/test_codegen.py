"""The committed generated code in service/rerankd/v1 is what protos/ generates today."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ["rerank_pb2.py", "rerank_pb2.pyi", "rerank_pb2_grpc.py"]


def test_generated_code_is_current(tmp_path: Path) -> None:
    args = [
        "protoc",
        f"-I{ROOT / 'protos'}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        str(ROOT / "protos/rerankd/v1/rerank.proto"),
    ]
    assert protoc.main(args) == 0
    for name in GENERATED:
        fresh = (tmp_path / "rerankd/v1" / name).read_text()
        committed = (ROOT / "service/rerankd/v1" / name).read_text()
        assert fresh == committed, f"service/rerankd/v1/{name} is stale: run `make proto` and commit"


def test_the_shipped_proto_is_the_contract() -> None:
    """`make proto` copies the .proto next to the stubs (it ships in the wheel); an edit to one copy
    alone would ship a contract the stubs were not generated from."""
    contract = (ROOT / "protos/rerankd/v1/rerank.proto").read_bytes()
    shipped = (ROOT / "service/rerankd/v1/rerank.proto").read_bytes()
    assert shipped == contract, "service/rerankd/v1/rerank.proto differs from protos/: run `make proto`"
