"""deploy/kubernetes/: every manifest is valid Kubernetes 1.30, and the pieces point at each other.

No cluster runs here: each document is checked offline against the Kubernetes JSON schemas of
`kubernetes-validate` (strict: unknown fields are errors), then the cross references a schema cannot
see are checked by hand: the kustomization lists every file, probes and the Service hit the port the
container exposes, env and volumes name the ConfigMap and Secret (and keys) that exist, and the
ConfigMap's chains.yaml is a configuration the indexer accepts with the pod's environment.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from indexer.cli import build_parser
from indexer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = K8S / "kustomization.yaml"
KUBERNETES_VERSION = "1.30"
CONFIG_PATH = "/etc/indexer/chains.yaml"
PORT = 9108
IMAGE = "multistaking-indexer:latest"

Doc = dict[str, Any]


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.iterdir() if p.suffix in (".yaml", ".yml") and p != KUSTOMIZATION)


def documents() -> list[tuple[Path, Doc]]:
    """Every non-empty YAML document of every manifest file, with its file."""
    return [(path, doc) for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def the(kind: str, name: str | None = None) -> Doc:
    found = [d for _, d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def container(workload: Doc) -> Doc:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container expected"
    return containers[0]


def workloads() -> list[Doc]:
    return [d for _, d in documents() if d["kind"] in ("Deployment", "Job")]


def resolve_port(c: Doc, port: int | str) -> int:
    """A probe's or Service's port (a number or the name of a container port) as a container port number."""
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
    numbers = {p["containerPort"] for p in c.get("ports", [])}
    if isinstance(port, str):
        assert port in ports, f"port name {port!r} is not one of the container's ports {sorted(ports)}"
        return ports[port]
    assert port in numbers, f"port {port} is not exposed by the container ({sorted(numbers)})"
    return port


def validate(doc: Doc) -> None:
    """Schema validation that also fails on a kind it has no schema for (the library only warns)."""
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def secret_keys(name: str) -> set[str]:
    secret = the("Secret", name)
    return set(secret.get("stringData", {})) | set(secret.get("data", {}))


def configmap_keys(name: str) -> set[str]:
    cm = the("ConfigMap", name)
    return set(cm.get("data", {})) | set(cm.get("binaryData", {}))


def chains_yaml() -> str:
    return the("ConfigMap", "indexer-config")["data"]["chains.yaml"]


def strings_in(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings_in(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings_in(value)]
    return []


def pod_environment(c: Doc) -> dict[str, str]:
    """The container's environment as the pod would see it, secrets filled from the Secret manifest."""
    env: dict[str, str] = {}
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif ref := var.get("valueFrom", {}).get("secretKeyRef"):
            secret = the("Secret", ref["name"])
            env[var["name"]] = secret.get("stringData", {}).get(ref["key"], "")
    return env


# -- the schemas ----------------------------------------------------------------------------------------


def test_manifests_exist() -> None:
    kinds = {d["kind"] for _, d in documents()}
    expected = {"ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget", "Job"}
    assert expected <= kinds, f"missing {sorted(expected - kinds)}"


@pytest.mark.parametrize(
    "path,doc",
    documents(),
    ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in documents()],
)
def test_manifest_is_valid_kubernetes(path: Path, doc: Doc) -> None:
    try:
        validate(doc)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{path.name}: {exc.message}")


def _unknown_field(d: Doc) -> None:
    container(d)["livenessprobe"] = container(d).pop("livenessProbe")  # a typo in a field name


def _port_as_text(d: Doc) -> None:
    container(d)["ports"][0]["containerPort"] = "9108"


def _no_selector(d: Doc) -> None:
    del d["spec"]["selector"]


def _memory_as_object(d: Doc) -> None:
    container(d)["resources"]["limits"]["memory"] = {"value": "512Mi"}


@pytest.mark.parametrize("breaks", [_unknown_field, _port_as_text, _no_selector, _memory_as_object])
def test_validator_rejects_a_broken_deployment(breaks: Callable[[Doc], None]) -> None:
    broken = copy.deepcopy(the("Deployment", "indexer"))
    breaks(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_validator_rejects_an_unknown_kind() -> None:
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate({"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}})


# -- kustomization --------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert sorted(listed) == [p.name for p in manifest_files()]


def test_one_namespace_everywhere() -> None:
    namespace = yaml.safe_load(KUSTOMIZATION.read_text())["namespace"]
    assert the("Namespace")["metadata"]["name"] == namespace
    for path, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{path.name}: not in namespace {namespace}"


# -- the Deployment -------------------------------------------------------------------------------------


def test_deployment_runs_the_indexer() -> None:
    deployment = the("Deployment", "indexer")
    c = container(deployment)
    assert c["image"] == IMAGE
    assert c["command"] + c["args"] == ["indexer", "--config", CONFIG_PATH, "run"]
    assert deployment["spec"]["replicas"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_probes_hit_health_endpoints_on_the_exposed_port() -> None:
    c = container(the("Deployment", "indexer"))
    assert {p["containerPort"] for p in c["ports"]} == {PORT}
    readiness, liveness = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    probes = [readiness, liveness] + ([c["startupProbe"]["httpGet"]] if "startupProbe" in c else [])
    for probe in probes:
        assert resolve_port(c, probe["port"]) == PORT
    # The process must listen on every interface, on that port: http.listen comes from INDEXER_HTTP.
    env = {v["name"]: v.get("value") for v in c["env"]}
    assert env["INDEXER_HTTP"] == f"0.0.0.0:{PORT}"


def test_probe_check_catches_a_wrong_port() -> None:
    c = container(the("Deployment", "indexer"))
    with pytest.raises(AssertionError):
        resolve_port(c, 8080)
    with pytest.raises(AssertionError):
        resolve_port(c, "metrics")


def test_resources_and_security() -> None:
    deployment = the("Deployment", "indexer")
    c = container(deployment)
    assert c["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    for workload in workloads():
        spec, sc = pod_spec(workload), container(workload)["securityContext"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert spec["serviceAccountName"] == the("ServiceAccount")["metadata"]["name"]


def test_env_and_volumes_reference_what_exists() -> None:
    for workload in workloads():
        name, spec, c = workload["metadata"]["name"], pod_spec(workload), container(workload)
        for var in c.get("env", []):
            source = var.get("valueFrom", {})
            if ref := source.get("secretKeyRef"):
                assert ref["key"] in secret_keys(ref["name"]), f"{name}: {var['name']}: no key {ref['key']}"
            if ref := source.get("configMapKeyRef"):
                assert ref["key"] in configmap_keys(ref["name"]), f"{name}: {var['name']}: no key {ref['key']}"
        for source in c.get("envFrom", []):
            if ref := source.get("secretRef"):
                the("Secret", ref["name"])
            if ref := source.get("configMapRef"):
                the("ConfigMap", ref["name"])

        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in c["volumeMounts"]:
            assert mount["name"] in volumes, f"{name}: mount {mount['name']} has no volume"
        for volume in volumes.values():
            if cm := volume.get("configMap"):
                keys = configmap_keys(cm["name"])
                assert {item["key"] for item in cm.get("items", [])} <= keys, f"{name}: {volume['name']}"
            if secret := volume.get("secret"):
                the("Secret", secret["secretName"])

        # --config names the file the ConfigMap volume puts there.
        config_file = c["args"][c["args"].index("--config") + 1]
        provided = {
            f"{m['mountPath'].rstrip('/')}/{item['path']}"
            for m in c["volumeMounts"]
            if (cm := volumes[m["name"]].get("configMap"))
            for item in cm["items"]
        }
        assert config_file in provided, f"{name}: {config_file} is not mounted ({sorted(provided)})"


def test_chains_yaml_variables_come_from_the_pod_environment() -> None:
    """Every `${NAME}` without a default in the ConfigMap's chains.yaml is set in each workload's env."""
    used = {
        m.group(1)
        for s in strings_in(yaml.safe_load(chains_yaml()))
        for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}", s)
        if m.group(2) is None
    }
    assert {"INDEXER_DSN", "ETH_RPC_URL"} <= used
    for workload in workloads():
        names = {v["name"] for v in container(workload).get("env", [])}
        assert used <= names, f"{workload['metadata']['name']}: {sorted(used - names)} not in env"


def test_configmap_chains_yaml_is_a_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(chains_yaml())
    c = container(the("Deployment", "indexer"))
    config = load_config(path, pod_environment(c))
    assert (config.http.host, config.http.port) == ("0.0.0.0", PORT)
    assert config.database.dsn == the("Secret", "indexer-secrets")["stringData"]["INDEXER_DSN"]
    assert config.chains


# -- the migration Job ----------------------------------------------------------------------------------


def test_migration_job_runs_migrate_with_the_same_image_and_config() -> None:
    job, deployment = the("Job", "indexer-migrate"), the("Deployment", "indexer")
    c, d = container(job), container(deployment)
    assert c["command"] + c["args"] == ["indexer", "--config", CONFIG_PATH, "migrate"]
    assert c["image"] == d["image"] == IMAGE
    assert pod_spec(job)["restartPolicy"] in ("Never", "OnFailure")
    assert pod_spec(job)["volumes"] == pod_spec(deployment)["volumes"]
    secret_refs = [v for v in d["env"] if "valueFrom" in v]
    assert [v for v in c["env"] if "valueFrom" in v] == secret_refs


@pytest.mark.parametrize("name,command", [("indexer", "run"), ("indexer-migrate", "migrate")])
def test_workload_commands_are_indexer_commands(name: str, command: str) -> None:
    """The `indexer` CLI accepts each workload's arguments as the command it is meant to run."""
    workload = next(w for w in workloads() if w["metadata"]["name"] == name)
    c = container(workload)
    assert c["command"] == ["indexer"]
    args = build_parser().parse_args(c["args"])
    assert (args.command, args.config) == (command, CONFIG_PATH)


# -- Service and PodDisruptionBudget --------------------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_service_exposes_the_container_port_for_prometheus() -> None:
    service, deployment, job = the("Service", "indexer"), the("Deployment", "indexer"), the("Job", "indexer-migrate")
    c = container(deployment)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], pod_labels)
    assert not selects(service["spec"]["selector"], job_labels), "the Service would route to the migration pod"

    (port,) = service["spec"]["ports"]
    assert port["port"] == PORT
    assert resolve_port(c, port["targetPort"]) == PORT

    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_disruption_budget_keeps_one_replica() -> None:
    pdb, deployment = the("PodDisruptionBudget", "indexer"), the("Deployment", "indexer")
    assert pdb["spec"]["minAvailable"] == 1 < deployment["spec"]["replicas"]
    assert selects(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
    job_labels = the("Job", "indexer-migrate")["spec"]["template"]["metadata"]["labels"]
    assert not selects(pdb["spec"]["selector"]["matchLabels"], job_labels)
