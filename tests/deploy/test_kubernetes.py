"""deploy/k8s: every manifest against the Kubernetes JSON schemas, and what they must say.

Schemas: the ``kubernetes-validate`` package (a dev dependency) ships them, so this runs
offline. Strict mode: an unknown field is an error, not ignored. Validated for Kubernetes
1.30 (the oldest release these manifests support: HPA autoscaling/v2 and PDB policy/v1 are GA
long before it) and 1.34. Beyond the schemas: the web probes, the worker's grace period
against the configured job timeout, one sweeper, the restricted security context, commands
the CLI accepts (and the ports they listen on), the config file present in the mounted
ConfigMap, the web probes sent to the app itself (built here from the ConfigMap's config,
with Redis unreachable), a Secret example with placeholders only, and an Ingress that exposes
only the callback receiver and the accountants' API. What this cannot show: that a cluster admits and
runs them (that needs a cluster and the built image).
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import load_settings, parse_config
from tests.deploy.tools import (
    DEPLOY,
    cli_args,
    cli_command,
    expand_k8s,
    job_timeout_s,
    load_yaml,
    load_yaml_documents,
    synthetic_env,
    toml_env_refs,
)
from tests.support import upgrade_schema

K8S = DEPLOY / "k8s"
VERSIONS = ("1.30.0", "1.34.0")
NAMESPACE = "hookledger"
DEPLOYMENTS = {"web": "web", "worker": "worker", "sweeper": "sweeper"}
PUBLIC_PATHS = {"/hooks/", "/account/v1/"}


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, document)
        for path in sorted(K8S.glob("*.yaml"))
        for document in load_yaml_documents(path)
        if document.get("kind") != "Kustomization"
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _deployment(component: str) -> dict[str, Any]:
    return _one("Deployment", f"hookledger-{component}")


def _container(component: str) -> dict[str, Any]:
    """The pod's main container, named after its component (a worker pod also runs a
    ``metrics`` container; nothing else may run beside it)."""
    containers = _deployment(component)["spec"]["template"]["spec"]["containers"]
    assert {c["name"] for c in containers} - {component} <= {"metrics"}
    (main,) = (c for c in containers if c["name"] == component)
    return main


def test_the_worker_pod_exports_its_metrics_from_the_shared_directory() -> None:
    pod = _deployment("worker")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    exporter = containers["metrics"]
    served = cli_args(exporter["args"])
    assert served.command == "metrics"
    # Listening on the declared port, on every address of the pod: a scraper reaches it.
    assert [p["containerPort"] for p in exporter["ports"]] == [served.port]
    assert not ipaddress.ip_address(served.host).is_loopback
    assert exporter["securityContext"] == containers["worker"]["securityContext"]
    # Both containers see one directory: the same emptyDir volume, mounted where it lies.
    volumes = {v["name"]: v for v in pod["volumes"]}

    def directory_volume(container: dict[str, Any]) -> tuple[str, str]:
        (directory,) = (
            e["value"] for e in container["env"] if e["name"] == "PROMETHEUS_MULTIPROC_DIR"
        )
        (mount,) = (
            m
            for m in container["volumeMounts"]
            if f"{directory}/".startswith(m["mountPath"].rstrip("/") + "/")
        )
        assert "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly")
        return str(directory), str(mount["name"])

    assert directory_volume(exporter) == directory_volume(containers["worker"])


def _config_text() -> str:
    return str(_one("ConfigMap", "hookledger-config")["data"]["hookledger.toml"])


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    ("path", "manifest"),
    _manifests(),
    ids=lambda value: value.name if isinstance(value, Path) else value["kind"],
)
def test_manifest_is_valid_for_kubernetes(
    path: Path, manifest: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.name} on Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["namespace"] == NAMESPACE
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the example would overwrite the real Secret with empty values.
    assert listed == present - {"secret.example.yaml"}
    images = {i["name"] for i in kustomization["images"]}
    assert images == {_container(c)["image"].rsplit(":", 1)[0] for c in DEPLOYMENTS}


def test_everything_is_in_the_namespace() -> None:
    for path, manifest in _manifests():
        if manifest["kind"] == "Namespace":
            assert manifest["metadata"]["name"] == NAMESPACE
            labels = manifest["metadata"]["labels"]
            assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        else:
            assert manifest["metadata"]["namespace"] == NAMESPACE, path.name


def test_the_config_map_holds_a_valid_config_matching_deploy_hookledger_toml() -> None:
    text = _config_text()
    config = parse_config(text, synthetic_env(text), origin="k8s/configmap.yaml")
    shipped_text = (DEPLOY / "hookledger.toml").read_text(encoding="utf-8")
    shipped = parse_config(shipped_text, synthetic_env(shipped_text))
    # The same sources, keys and processing; only the trusted proxies are the cluster's.
    assert config.sources == shipped.sources
    assert config.api_keys == shipped.api_keys
    assert config.processing == shipped.processing
    assert config.server.max_body_bytes == shipped.server.max_body_bytes


def test_the_secret_example_has_every_variable_and_no_value() -> None:
    secret = load_yaml(K8S / "secret.example.yaml")
    data = secret["stringData"]
    assert set(data.values()) == {""}, "placeholders only"
    needed = toml_env_refs(_config_text()) | {
        "HOOKLEDGER_DATABASE_URL",
        "HOOKLEDGER_REDIS_URL",
        "HOOKLEDGER_ADMIN_TOKEN",
    }
    assert set(data) == needed
    assert "data" not in secret


@pytest.mark.parametrize(("component", "command"), DEPLOYMENTS.items())
def test_pods_run_hookledger_locked_down(component: str, command: str) -> None:
    pod = _deployment(component)["spec"]["template"]["spec"]
    container = _container(component)
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert "command" not in container, "the image's entrypoint (tini -- hookledger) runs"
    assert cli_command(expand_k8s(container["args"], env)) == command
    assert container["image"] == _container("web")["image"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "hookledger"
    pod_security = pod["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # A read-only root with a writable /tmp; the config from the ConfigMap; secrets from env.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The file the process reads is the ConfigMap's key of that name, in its mounted directory.
    config_dir, _, config_file = env["HOOKLEDGER_CONFIG"].rpartition("/")
    config_map = volumes[mounts[config_dir]]["configMap"]
    assert config_map["name"] == "hookledger-config" and "items" not in config_map
    assert config_file in _one("ConfigMap", config_map["name"])["data"]
    assert container["envFrom"] == [{"secretRef": {"name": "hookledger"}}]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_web_probes_drain_and_port() -> None:
    deployment = _deployment("web")
    pod = deployment["spec"]["template"]["spec"]
    container = _container("web")
    env = {e["name"]: e["value"] for e in container["env"]}
    web = cli_args(expand_k8s(container["args"], env))
    assert web.command == "web" and web.host == "0.0.0.0"
    assert web.port == int(env["PORT"])
    moved = cli_args(expand_k8s(container["args"], {**env, "PORT": "9123"}))
    assert moved.port == 9123, "the port comes from PORT"
    assert container["ports"] == [{"name": "http", "containerPort": web.port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http", probe
    sleep = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) > 0
    # The drain and then uvicorn's graceful stop fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 30
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def test_web_probes_ask_what_the_app_answers(tmp_path: Path) -> None:
    """The probes' requests, sent to the app built from the ConfigMap's config while Redis
    does not answer: startup and liveness pass (an outage must not restart every web pod),
    readiness fails (the pod leaves the Service's endpoints until Redis is back)."""
    container = _container("web")
    text = _config_text()
    config = tmp_path / "hookledger.toml"
    config.write_text(text, encoding="utf-8")
    env = {
        **synthetic_env(text),
        "HOOKLEDGER_CONFIG": str(config),
        "HOOKLEDGER_DATABASE_URL": upgrade_schema(f"sqlite:///{tmp_path}/ledger.db"),
        "HOOKLEDGER_REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",
    }
    with TestClient(create_app(load_settings(env))) as client:
        answers = {
            probe: client.get(container[probe]["httpGet"]["path"]).status_code
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        }
    assert answers == {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}


@pytest.mark.parametrize("component", ["web", "worker", "sweeper"])
def test_every_pod_upgrades_the_schema_before_its_process_starts(component: str) -> None:
    spec = _deployment(component)["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    main = next(c for c in spec["containers"] if c["name"] == component)
    assert cli_args(init["args"]).command == "db"
    assert cli_args(init["args"]).db_command == "upgrade"
    assert init["image"] == main["image"]
    assert init["envFrom"] == main["envFrom"]  # the same database
    config = {e["name"]: e.get("value") for e in init["env"]}["HOOKLEDGER_CONFIG"]
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    assert mounts[str(Path(config).parent)]["readOnly"] is True
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_workers_have_no_http_probes_and_outlast_a_job() -> None:
    deployment = _deployment("worker")
    container = _container("worker")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert "httpGet" not in container.get(probe, {}), "a worker serves no HTTP"
    assert "ports" not in container
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > job_timeout_s(_config_text())
    assert deployment["spec"]["replicas"] >= 1


def test_one_sweeper() -> None:
    assert _deployment("sweeper")["spec"]["replicas"] == 1
    assert "ports" not in _container("sweeper")


def test_service_hpa_and_pdb_point_at_the_web_pods() -> None:
    labels = _deployment("web")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service", "hookledger-web")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    hpa = _one("HorizontalPodAutoscaler", "hookledger-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "hookledger-web",
    }
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["resource"]["name"] == "cpu"]
    assert cpu and "cpu" in _container("web")["resources"]["requests"]
    pdb = _one("PodDisruptionBudget", "hookledger-web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]


def test_the_ingress_exposes_only_receipts_and_the_accountants_api() -> None:
    ingress = _one("Ingress", "hookledger-public")
    paths = [
        path
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["backend"]["service"]["name"] == "hookledger-web"
    ]
    assert {p["path"] for p in paths} == PUBLIC_PATHS
    assert all(p["pathType"] == "Prefix" for p in paths)
    assert all(p["backend"]["service"]["port"] == {"name": "http"} for p in paths)
    assert "defaultBackend" not in ingress["spec"]
    assert ingress["spec"]["tls"], "TLS terminates at the ingress"
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size.endswith("k") and int(size[:-1]) * 1024 >= _max_body_bytes()


def _max_body_bytes() -> int:
    text = _config_text()
    return parse_config(text, synthetic_env(text)).server.max_body_bytes
