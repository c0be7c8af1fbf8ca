"""A model hub on loopback: the endpoints huggingface_hub calls to fetch a repo, serving local files.

    GET  /api/models/{repo}/revision/{rev}   ModelInfo with siblings (sizes, LFS sha256, blob ids)
    HEAD /{repo}/resolve/{rev}/{path}        X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{path}        the bytes

Point `HF_ENDPOINT` at `FakeHub.url`. Errors carry `X-Error-Code` the way the hub's do, which is how
huggingface_hub tells a missing repo from a missing revision.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LFS_SUFFIXES = (".onnx", ".onnx_data", ".bin", ".safetensors")


@dataclass
class Repo:
    """One repo at one commit: relative path -> file on disk."""

    files: Mapping[str, Path]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    revisions: tuple[str, ...] = ("main",)
    lies: Mapping[str, dict[str, object]] = field(default_factory=dict)  # metadata that is not true

    def sibling(self, name: str) -> dict[str, object]:
        data = self.files[name].read_bytes()
        entry: dict[str, object] = {
            "rfilename": name,
            "size": len(data),
            "blobId": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest(),
        }
        if name.endswith(_LFS_SUFFIXES):
            entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
        return entry | self.lies.get(name, {})


@dataclass
class FakeHub:
    repos: dict[str, Repo]
    url: str = ""
    requests: list[str] = field(default_factory=list)  # "METHOD path", in order


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            if match := _INFO.match(path):
                repo = self._repo(match["repo"], match["rev"])
                if repo is not None:
                    info = {
                        "id": match["repo"],
                        "modelId": match["repo"],
                        "sha": repo.commit,
                        "siblings": [repo.sibling(name) for name in sorted(repo.files)],
                    }
                    self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
                return
            if match := _RESOLVE.match(path):
                repo = self._repo(match["repo"], match["rev"])
                if repo is None:
                    return
                if match["path"] not in repo.files:
                    self._error(404, "EntryNotFound", body)
                    return
                entry = repo.sibling(match["path"])
                lfs = entry.get("lfs")
                etag = lfs["sha256"] if isinstance(lfs, dict) else entry["blobId"]
                headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{etag}"'}
                self._send(200, repo.files[match["path"]].read_bytes(), headers, body)
                return
            self._error(404, "", body)

        def _repo(self, name: str, revision: str) -> Repo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(401, "RepoNotFound", body=self.command == "GET")
                return None
            if revision not in (*repo.revisions, repo.commit):
                self._error(404, "RevisionNotFound", body=self.command == "GET")
                return None
            return repo

        def _error(self, status: int, code: str, body: bool) -> None:
            message = json.dumps({"error": f"{code or 'NotFound'}"}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Message": code or "Not Found"}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, message, headers, body)

        def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")  # once stopped, the hub is gone: no kept-alive socket
            self.close_connection = True
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler


@contextmanager
def fake_hub(repos: dict[str, Repo]) -> Iterator[FakeHub]:
    """A running FakeHub on 127.0.0.1 (a free port); stopped on exit (then unreachable)."""
    hub = FakeHub(repos)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
