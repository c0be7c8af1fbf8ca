"""Readers for deploy/: Dockerfile instructions, .dockerignore matching, and a small kustomize renderer.

The renderer understands exactly the kustomization fields deploy/k8s uses (resources, a
configMapGenerator from files, images) and refuses any other field, so it cannot silently render
something different from `kubectl kustomize`; where kubectl is installed the tests compare both.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OVERLAYS = ("standalone", "sidecar")
# Applied next to an overlay where the Prometheus Operator runs: objects of its CRDs, which
# kubernetes-validate has no schema for (tests/deploy/test_manifests.py checks them itself).
COMPONENTS = ("monitoring",)
OPERATOR_API = "monitoring.coreos.com/v1"
# Files that are YAML but deliberately not part of any kustomization (see base/kustomization.yaml).
TEMPLATES = frozenset({K8S / "base" / "secret-template.yaml"})
KUSTOMIZATION_FIELDS = frozenset({"apiVersion", "kind", "resources", "configMapGenerator", "images"})

Doc = dict[str, Any]


# ---------------------------------------------------------------------------------------- Dockerfile
@dataclass
class Stage:
    """One FROM ... section of a Dockerfile: its name and its instructions in order."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The stages of a Dockerfile, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def parse_env(stage: Stage) -> dict[str, str]:
    """KEY=value pairs of every ENV instruction of `stage` (no variable expansion)."""
    env: dict[str, str] = {}
    for rest in stage.args("ENV"):
        for word in shlex.split(rest):
            key, sep, value = word.partition("=")
            assert sep, f"ENV {rest!r}: only the KEY=value form is supported"
            env[key] = value
    return env


# ------------------------------------------------------------------------------------- .dockerignore
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path = DOCKERIGNORE) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per pattern line, in file order."""
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        rules.append((negate, _glob_regex(pattern.strip("/"))))
    return rules


def in_build_context(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relpath.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negate, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            included = negate
    return included


def context_files(source: str, rules: list[tuple[bool, re.Pattern[str]]]) -> Iterator[Path]:
    """Files under `source` (relative to the repo root) that reach the build context."""
    base = ROOT / source
    paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        if in_build_context(rel, rules):
            yield path


# ------------------------------------------------------------------------------------------ kustomize
def load_docs(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> Doc:
    doc = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(doc, dict), f"{directory}: kustomization.yaml is not a mapping"
    return doc


def pod_templates(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod spec) for every Deployment, StatefulSet or DaemonSet."""
    for doc in docs:
        if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet"}:
            yield doc, doc["spec"]["template"]["spec"]


def all_containers(pod_spec: Doc) -> list[Doc]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def _generated_config_map(directory: Path, generator: Doc) -> Doc:
    unsupported = set(generator) - {"name", "files", "options"}
    assert not unsupported, f"{directory}: configMapGenerator fields not supported here: {unsupported}"
    data: dict[str, str] = {}
    for entry in generator["files"]:
        key, sep, rel = entry.partition("=")
        source = directory / (rel if sep else key)
        data[key if sep else Path(key).name] = source.read_text()
    metadata: Doc = {"name": generator["name"]}
    labels = generator.get("options", {}).get("labels")
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _apply_images(docs: list[Doc], images: list[Doc]) -> None:
    for _, pod_spec in pod_templates(docs):
        for container in all_containers(pod_spec):
            name = container["image"].split("@")[0].rsplit(":", 1)[0]
            for image in images:
                if image["name"] == name:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def render_builtin(directory: Path) -> list[Doc]:
    """Render a kustomization the way kustomize does for the fields deploy/k8s uses (no name hashes)."""
    spec = kustomization(directory)
    unsupported = set(spec) - KUSTOMIZATION_FIELDS
    assert not unsupported, f"{directory}: kustomization fields not supported by this renderer: {unsupported}"
    docs: list[Doc] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        docs += render_builtin(target) if target.is_dir() else load_docs(target)
    docs += [_generated_config_map(directory, gen) for gen in spec.get("configMapGenerator", [])]
    _apply_images(docs, spec.get("images", []))
    return docs


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_kubectl(directory: Path) -> list[Doc]:
    """`kubectl kustomize` output, with generated names' content hashes removed."""
    exe = kubectl()
    assert exe is not None
    out = subprocess.run(
        [exe, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(out) if doc is not None]
    hashed = {
        doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] in {"ConfigMap", "Secret"} and re.search(r"-[a-z0-9]{10}$", doc["metadata"]["name"])
    }
    for name in hashed:
        out = out.replace(name, name[:-11])
    return [doc for doc in yaml.safe_load_all(out) if doc is not None]


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def rerankd_container(docs: list[Doc]) -> tuple[Doc, Doc]:
    """(pod spec, container) of the one container named rerankd, as app or as sidecar."""
    found = [
        (pod_spec, c)
        for _, pod_spec in pod_templates(docs)
        for c in all_containers(pod_spec)
        if c["name"] == "rerankd"
    ]
    assert len(found) == 1, f"expected one rerankd container, found {len(found)}"
    return found[0]


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (e.g. 768Mi) in bytes."""
    text = str(quantity)
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)
