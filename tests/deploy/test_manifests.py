"""deploy/ checks without a cluster: yamllint, strict kubernetes-validate, kustomize rendering, and the
properties the manifests promise (probes, pod security, drain arithmetic, selectors) plus the
Dockerfile's contract with them (numeric user, exec-form entrypoint, port)."""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError
from rerankd.config import LOCAL_PROVIDER, Settings
from rerankd.providers.registry import REGISTRY
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy import deployfiles as df

# Native sidecars are on by default from 1.29, the preStop `sleep` action from 1.30: the oldest
# version the manifests are for. Also checked against the newest schemas the package ships.
MIN_K8S = "1.30"
K8S_VERSIONS = (MIN_K8S, kubernetes_validate.utils.latest_version())
GRPC_PORT = 50051
HTTP_PORT = 8080
# deploy/README.md: peak RSS of one 8 MiB request (1,000 documents x 8 KB), 2 scoring threads.
MEASURED_PEAK_8MIB_REQUEST_MIB = 600
# Seconds between SIGTERM's drain deadline and SIGKILL, for the process to exit (README arithmetic).
EXIT_MARGIN_S = 5
# The sidecar example's budget for the application's own drain, between its preStop and rerankd's.
APP_DRAIN_BUDGET_S = 10

YAML_FILES = sorted([*df.DEPLOY.rglob("*.yaml"), *df.DEPLOY.rglob("*.yml")])
# deploy/ folders whose YAML is not Kubernetes objects, with who checks them instead.
NOT_KUBERNETES = {
    df.DEPLOY / "config": "rerankd configuration files (tests/api/test_drop_in.py loads them)",
    df.DEPLOY / "prometheus": "Prometheus rule files (promtool check rules)",
}


def _rel(path: Path) -> str:
    return path.relative_to(df.ROOT).as_posix()


def _kustomize_dirs() -> list[Path]:
    return sorted(p.parent for p in df.K8S.rglob("kustomization.yaml"))


def _generated_files() -> set[Path]:
    """Files that feed a configMapGenerator: rerankd config, not Kubernetes objects."""
    out: set[Path] = set()
    for directory in _kustomize_dirs():
        for gen in df.kustomization(directory).get("configMapGenerator", []):
            out |= {(directory / f.partition("=")[2 if "=" in f else 0]).resolve() for f in gen["files"]}
    return out


def _k8s_object_files() -> list[Path]:
    generated = _generated_files()
    return [
        p
        for p in YAML_FILES
        if p.name != "kustomization.yaml"
        and p.resolve() not in generated
        and not any(p.is_relative_to(folder) for folder in NOT_KUBERNETES)
    ]


# The PodMonitor fields deploy/k8s/monitoring may use (monitoring.coreos.com/v1, Prometheus Operator
# API reference): kubernetes-validate has no schema for the Operator's CRDs, so unknown or misspelt
# fields are caught here instead.
_PODMONITOR_SPEC = {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels"}
_PODMONITOR_ENDPOINT = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings"}


def _validate_operator_object(doc: dict[str, Any]) -> None:
    assert doc["kind"] == "PodMonitor", f"{doc['kind']}: no check for this Prometheus Operator kind"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["metadata"]) <= {"name", "labels", "annotations"} and doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= _PODMONITOR_SPEC, f"unknown PodMonitor fields {set(spec) - _PODMONITOR_SPEC}"
    assert set(spec["selector"]) <= {"matchLabels", "matchExpressions"} and spec["selector"]
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= _PODMONITOR_ENDPOINT, (
            f"unknown endpoint fields {set(endpoint) - _PODMONITOR_ENDPOINT}"
        )
        assert isinstance(endpoint["port"], str) and endpoint.get("scheme", "http") in {"http", "https"}
        for duration in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"[0-9]+(ms|s|m|h)", endpoint.get(duration, "1s")), duration


def _validate(doc: dict[str, Any], version: str) -> None:
    if doc.get("apiVersion") == df.OPERATOR_API:
        _validate_operator_object(doc)
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except SchemaNotFoundError as exc:  # the CLI only warns; here it is a failure
        pytest.fail(exc.message)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[df.Doc]]:
    return {name: df.render_builtin(df.K8S / name) for name in df.OVERLAYS}


def test_the_deploy_tree_is_complete() -> None:
    names = {_rel(p) for p in YAML_FILES}
    for overlay in df.OVERLAYS:
        assert f"deploy/k8s/{overlay}/kustomization.yaml" in names
    assert df.DOCKERFILE.is_file() and df.DOCKERIGNORE.is_file()
    assert (df.DEPLOY / "README.md").is_file()


# ------------------------------------------------------------------------------------------ yamllint
@pytest.mark.parametrize("path", [*YAML_FILES, df.ROOT / ".yamllint"], ids=_rel)
def test_yamllint(path: Path) -> None:
    conf = YamlLintConfig(file=str(df.ROOT / ".yamllint"))
    problems = list(linter.run(path.read_text(), conf, str(path)))
    assert not problems, "\n".join(f"{_rel(path)}:{p.line}:{p.column} {p.desc} ({p.rule})" for p in problems)


def test_yamllint_config_rejects_implicit_octal() -> None:
    # `defaultMode: 0440` means 288 to YAML 1.1 readers and 440 to YAML 1.2 ones: forbidden.
    conf = YamlLintConfig(file=str(df.ROOT / ".yamllint"))
    problems = list(linter.run("---\nmode: 0440\n", conf))
    assert any(p.rule == "octal-values" for p in problems)


# ------------------------------------------------------------------------------ kubernetes-validate
@pytest.mark.parametrize("path", _k8s_object_files(), ids=_rel)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_file_validates(path: Path, version: str) -> None:
    docs = df.load_docs(path)
    assert docs, f"{_rel(path)} holds no document"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{_rel(path)}: not a Kubernetes object"
        _validate(doc, version)


def test_strict_validation_rejects_unknown_and_mistyped_fields(rendered: dict[str, list[df.Doc]]) -> None:
    deployment = df.find(rendered["standalone"], "Deployment")
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["servcie"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, MIN_K8S, strict=True)
    named_port = copy.deepcopy(deployment)
    named_port["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(named_port, MIN_K8S, strict=True)


# ---------------------------------------------------------------------------------------- kustomize
@pytest.mark.parametrize("directory", _kustomize_dirs(), ids=_rel)
def test_kustomization_references_exist(directory: Path) -> None:
    spec = df.kustomization(directory)
    assert spec.get("kind") == "Kustomization"
    assert spec.get("apiVersion") == "kustomize.config.k8s.io/v1beta1"
    assert not set(spec) - df.KUSTOMIZATION_FIELDS, "a field the fallback renderer does not know"
    for entry in spec.get("resources", []):
        target = directory / entry
        assert target.is_file() or (target / "kustomization.yaml").is_file(), f"missing resource {entry}"
    for gen in spec.get("configMapGenerator", []):
        for entry in gen["files"]:
            assert (directory / entry.split("=")[-1]).is_file(), f"missing generator file {entry}"


def test_every_manifest_is_rendered_or_a_template(rendered: dict[str, list[df.Doc]]) -> None:
    referenced: set[Path] = set()

    def walk(directory: Path) -> None:
        for entry in df.kustomization(directory).get("resources", []):
            target = (directory / entry).resolve()
            if target.is_dir():
                walk(target)
            else:
                referenced.add(target)

    for overlay in (*df.OVERLAYS, *df.COMPONENTS):
        walk(df.K8S / overlay)
    for path in _k8s_object_files():
        assert (path.resolve() in referenced) != (path in df.TEMPLATES), f"{_rel(path)}: unused or both"


@pytest.mark.parametrize("overlay", df.OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_overlay_validates(rendered: dict[str, list[df.Doc]], overlay: str, version: str) -> None:
    docs = rendered[overlay]
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"
    for doc in docs:
        _validate(doc, version)


@pytest.mark.skipif(df.kubectl() is None, reason="kubectl is not installed; the built-in renderer is used")
@pytest.mark.parametrize("overlay", df.OVERLAYS)
def test_kubectl_kustomize_renders_the_same(rendered: dict[str, list[df.Doc]], overlay: str) -> None:
    def key(doc: df.Doc) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(df.render_kubectl(df.K8S / overlay), key=key) == sorted(rendered[overlay], key=key)


# ---------------------------------------------------------------------------- what the pods promise
@pytest.mark.parametrize("overlay", df.OVERLAYS)
def test_pod_security_is_restricted(rendered: dict[str, list[df.Doc]], overlay: str) -> None:
    for workload, pod in df.pod_templates(rendered[overlay]):
        where = f"{overlay}/{workload['metadata']['name']}"
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["enableServiceLinks"] is False, where
        sa = df.find(rendered[overlay], "ServiceAccount", pod["serviceAccountName"])
        assert sa["automountServiceAccountToken"] is False, where
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in df.all_containers(pod):
            csc = container["securityContext"]
            at = f"{where}/{container['name']}"
            assert csc["allowPrivilegeEscalation"] is False, at
            assert csc["readOnlyRootFilesystem"] is True, at
            assert csc["capabilities"]["drop"] == ["ALL"] and "add" not in csc["capabilities"], at
            assert csc["seccompProfile"]["type"] == "RuntimeDefault", at
            assert csc.get("runAsUser", psc["runAsUser"]) > 0, at
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{at}: /tmp must be a writable emptyDir"
            assert set(mounts.values()) <= set(volumes), at


@pytest.mark.parametrize("overlay", df.OVERLAYS)
def test_rerankd_probes_use_the_grpc_health_service(rendered: dict[str, list[df.Doc]], overlay: str) -> None:
    _, container = df.rerankd_container(rendered[overlay])
    env = df.env_of(container)
    assert env["RERANKD_HOST"] == "0.0.0.0", "kubelet probes connect to the pod IP"
    assert int(env["RERANKD_PORT"]) == GRPC_PORT
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == GRPC_PORT and int(env["RERANKD_HTTP_PORT"]) == HTTP_PORT
    # The HTTP API is published (and reachable off the pod) only where it is not loopback-only.
    assert ("http" in ports) == (env.get("RERANKD_HTTP_HOST", env["RERANKD_HOST"]) != "127.0.0.1")
    assert ports.get("http", HTTP_PORT) == HTTP_PORT
    expected = {"startupProbe": "readiness", "readinessProbe": "readiness", "livenessProbe": "liveness"}
    for probe, service in expected.items():
        assert container[probe]["grpc"] == {"port": GRPC_PORT, "service": service}, probe
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30, "room for a slow model load"


@pytest.mark.parametrize("overlay", df.OVERLAYS)
def test_rerankd_resources_and_threads(rendered: dict[str, list[df.Doc]], overlay: str) -> None:
    _, container = df.rerankd_container(rendered[overlay])
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert df.quantity_bytes(requests["memory"]) <= df.quantity_bytes(limits["memory"])
    # Measured (deploy/README.md): ~120 MiB idle; the request must cover a scoring batch's peak.
    assert df.quantity_bytes(requests["memory"]) >= 256 * 2**20
    # The process sees the node's cores, so the scoring threads are pinned to the CPU limit.
    env = df.env_of(container)
    assert int(env["RERANKD_LOCAL_THREADS"]) == int(limits["cpu"])
    # The limit was sized for the largest request allowed: an 8 MiB one peaked at ~600 MiB.
    assert int(env["RERANKD_MAX_RECEIVE_MESSAGE_BYTES"]) <= 8 * 2**20
    assert df.quantity_bytes(limits["memory"]) >= 1.25 * MEASURED_PEAK_8MIB_REQUEST_MIB * 2**20


def test_drain_fits_the_termination_grace_period_standalone(rendered: dict[str, list[df.Doc]]) -> None:
    pod, container = df.rerankd_container(rendered["standalone"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(df.env_of(container)["RERANKD_GRACE_PERIOD_S"])
    assert pre_stop >= 3, "endpoint removal needs a few seconds to reach clients"
    assert pre_stop + grace + EXIT_MARGIN_S <= pod["terminationGracePeriodSeconds"]


def test_rerankd_is_a_native_sidecar_that_outlives_the_app(rendered: dict[str, list[df.Doc]]) -> None:
    pod, container = df.rerankd_container(rendered["sidecar"])
    assert container in pod["initContainers"] and container["restartPolicy"] == "Always"
    assert "startupProbe" in container, "the app must start only once the model is loaded"
    env = df.env_of(container)
    socket_uri = env["RERANKD_BIND"]
    assert socket_uri.startswith("unix:///")
    socket_dir = str(Path(socket_uri.removeprefix("unix://")).parent)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (app,) = pod["containers"]
    for c in (container, app):
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts[socket_dir]], f"{c['name']}: socket dir must be a shared emptyDir"
    assert df.env_of(app)["RERANKD_TARGET"] == socket_uri
    # rerankd gets SIGTERM only after the app has exited, so it needs no preStop of its own.
    assert "lifecycle" not in container
    app_pre_stop = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(env["RERANKD_GRACE_PERIOD_S"])
    total = app_pre_stop + APP_DRAIN_BUDGET_S + grace + EXIT_MARGIN_S
    assert total <= pod["terminationGracePeriodSeconds"]
    # Only rerankd gets the provider keys.
    assert not any(m["name"] == "provider-keys" for m in app["volumeMounts"])


def test_sidecar_and_standalone_run_rerankd_alike(rendered: dict[str, list[df.Doc]]) -> None:
    (_, standalone), (_, sidecar) = (df.rerankd_container(rendered[o]) for o in ("standalone", "sidecar"))
    assert standalone["ports"][0] == sidecar["ports"][0], "grpc"
    for key in (
        "image",
        "resources",
        "startupProbe",
        "readinessProbe",
        "livenessProbe",
        "securityContext",
    ):
        assert standalone[key] == sidecar[key], key
    same_env = {
        "RERANKD_HOST",
        "RERANKD_PORT",
        "RERANKD_HTTP_PORT",
        "RERANKD_CONFIG",
        "RERANKD_LOCAL_THREADS",
        "RERANKD_MAX_RECEIVE_MESSAGE_BYTES",
    }
    assert {k: v for k, v in df.env_of(standalone).items() if k in same_env} == {
        k: v for k, v in df.env_of(sidecar).items() if k in same_env
    }


def test_standalone_service_hpa_pdb_and_policy_select_the_pods(rendered: dict[str, list[df.Doc]]) -> None:
    docs = rendered["standalone"]
    deployment = df.find(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns replicas; apply would reset them"

    service = df.find(docs, "Service")
    assert service["metadata"]["name"] == "rerankd-headless" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (GRPC_PORT, "grpc"), "http": (HTTP_PORT, "http")}

    hpa = df.find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"

    pdb = df.find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["maxUnavailable"], "a drain must leave a pod serving"

    policy = df.find(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    clients, scrapers = policy["spec"]["ingress"]
    assert [p["port"] for p in clients["ports"]] == [GRPC_PORT, HTTP_PORT]
    assert [p["port"] for p in scrapers["ports"]] == [9464]  # /metrics only, for labelled scrapers
    assert scrapers["from"][0]["podSelector"]["matchLabels"] == {"rerankd-metrics-scraper": "true"}


@pytest.mark.parametrize("overlay", df.OVERLAYS)
def test_config_and_keys_are_wired(
    rendered: dict[str, list[df.Doc]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = rendered[overlay]
    pod, container = df.rerankd_container(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config_map = df.find(docs, "ConfigMap", volumes["config"]["configMap"]["name"])
    (filename,) = config_map["data"]
    assert df.env_of(container)["RERANKD_CONFIG"] == f"{mounts['config']}/{filename}"

    template = df.find(df.load_docs(next(iter(df.TEMPLATES))), "Secret")
    keys = volumes["provider-keys"]["secret"]
    assert keys["secretName"] == template["metadata"]["name"]
    assert keys["optional"] is True, "pods must start (local model only) before keys exist"
    assert keys["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"], "keys readable"

    for name in list(os.environ):
        if name.startswith("RERANKD_"):
            monkeypatch.delenv(name)
    settings = Settings(**yaml.safe_load(config_map["data"][filename]))
    for name, provider in settings.providers.items():
        assert provider.kind in REGISTRY, name
        assert provider.api_key_file is not None, f"{name}: keys come from the mounted Secret"
        assert str(provider.api_key_file.parent) == mounts["provider-keys"]
        assert provider.api_key_file.name in template["stringData"], f"{name}: no key in the template"
    for alias, route in settings.routes.items():
        for target in route.targets:
            assert target.provider in {*settings.providers, LOCAL_PROVIDER}, alias
    assert all(v.startswith("REPLACE-WITH-") for v in template["stringData"].values()), "no real keys"


# ---------------------------------------------------------------------------------------- Dockerfile
def test_dockerfile_contract(rendered: dict[str, list[df.Doc]]) -> None:
    stages = df.dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build in one, run in another"
    builder, final = stages[0], stages[-1]
    assert any("install.sh" in run for run in builder.args("RUN")), "the shared install recipe"
    assert not final.args("RUN") or all("install.sh" not in r for r in final.args("RUN"))
    assert any(c.startswith("--from=") and " /opt/rerankd " in f" {c} " for c in final.args("COPY"))

    (user,) = final.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit()), "numeric non-root USER"
    for overlay in df.OVERLAYS:
        pod, _ = df.rerankd_container(rendered[overlay])
        assert pod["securityContext"]["runAsUser"] == int(uid)
        assert pod["securityContext"]["runAsGroup"] == int(gid or uid)

    env = df.parse_env(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["RERANKD_HOST"] == "0.0.0.0"
    assert env["HOME"] == "/tmp" and final.args("WORKDIR")[-1] == "/tmp", "only /tmp is writable"
    (entrypoint,) = final.args("ENTRYPOINT")
    assert yaml.safe_load(entrypoint) == ["rerankd", "serve"], "exec form, so SIGTERM reaches Python"
    assert final.args("EXPOSE") == [f"{GRPC_PORT} {HTTP_PORT}"]
    (healthcheck,) = final.args("HEALTHCHECK")
    command = yaml.safe_load(healthcheck.split(" CMD ", 1)[1])
    # No fixed target: `rerankd health` dials 127.0.0.1 on $RERANKD_PORT (tests/test_cli.py).
    assert command[:2] == ["rerankd", "health"] and "--target" not in command
    assert env["RERANKD_PORT"] == str(GRPC_PORT)


def test_dockerignore_keeps_exactly_what_the_image_copies() -> None:
    rules = df.dockerignore_rules()
    copied = [shlex.split(c)[:-1] for c in df.dockerfile_stages()[0].args("COPY")]
    sources = [s for srcs in copied for s in srcs]
    assert sources, "the builder copies something"
    for source in sources:
        files = list(df.context_files(source, rules))
        assert files, f"{source} is excluded from the build context"
        assert not any("__pycache__" in f.parts or f.suffix == ".pyc" for f in files)
    assert df.in_build_context("service/rerankd/server.py", rules)
    outside = (".venv/bin/python", ".git/HEAD", "tests/support.py", "service/rerankd/__pycache__/x.pyc")
    for excluded in outside:
        assert not df.in_build_context(excluded, rules), excluded


# ------------------------------------------------------------------------------------ Prometheus
def test_pods_are_scraped_by_annotations_and_by_the_podmonitor(rendered: dict[str, list[df.Doc]]) -> None:
    """Both overlays' pods carry prometheus.io annotations naming the metrics port, and the label the
    PodMonitor selects; the port it names is rerankd's metrics container port; the scrape timeout
    fits in the interval."""
    (monitor,) = df.render_builtin(df.K8S / "monitoring")
    assert monitor["kind"] == "PodMonitor" and monitor["apiVersion"] == df.OPERATOR_API
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert int(endpoint["scrapeTimeout"].rstrip("s")) < int(endpoint["interval"].rstrip("s"))
    for overlay in df.OVERLAYS:
        (_, pod), *_ = df.pod_templates(rendered[overlay])
        (template,) = [d["spec"]["template"] for d in rendered[overlay] if d.get("kind") == "Deployment"]
        assert selector.items() <= template["metadata"]["labels"].items(), overlay
        annotations = template["metadata"]["annotations"]
        rerankd = next(
            c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == "rerankd"
        )
        ports = {p["name"]: p["containerPort"] for p in rerankd["ports"]}
        env = {e["name"]: e.get("value") for e in rerankd["env"]}
        assert (
            ports[endpoint["port"]]
            == int(env["RERANKD_METRICS_PORT"])
            == int(annotations["prometheus.io/port"])
        )
        assert (
            annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        )
        assert env["RERANKD_METRICS_HOST"] == "0.0.0.0"  # reachable on the pod IP


def test_operator_objects_are_checked_for_unknown_fields() -> None:
    (monitor,) = df.render_builtin(df.K8S / "monitoring")
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    with pytest.raises(AssertionError):
        _validate_operator_object(misspelt)
    _validate_operator_object(monitor)
