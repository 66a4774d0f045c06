"""deploy/: the files parse, and the names in them match the code (metrics, views, roles, ports).

No Docker engine exists on the development machine, so the image and the compose stack are
checked by content only; promtool checks and unit-tests the alert rules in test_alert_rules.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from indexer.metrics import Metrics
from indexer.store.health import Reading

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "indexer.json"
DOCKERFILE = DEPLOY / "Dockerfile"
POSTGRES_INIT = DEPLOY / "postgres-init"
PORT = 9108

# Series names the rules may use that the indexer does not export (Prometheus' own).
PROMETHEUS_BUILTINS = {"up"}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    def walk(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for panel in panels:
            out.append(panel)
            out.extend(walk(panel.get("panels", [])))  # rows hold their panels
        return out

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def dashboard_targets() -> list[dict[str, Any]]:
    return [target for panel in dashboard_panels() for target in panel.get("targets", [])]


def promql_expressions() -> list[tuple[str, str]]:
    """(where, expression) of every alert rule and every Prometheus query of the dashboard."""
    exprs = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    exprs += [(f"dashboard target {t.get('refId')}", t["expr"]) for t in dashboard_targets() if "expr" in t]
    return exprs


def exported_series() -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """Sample names a fresh `Metrics` registry can export, their label names, and histogram `le` values.

    Series names follow from each family's type (labelled families have no samples until used);
    labels and bucket bounds come from samples after every helper has been called once.
    """
    metrics = Metrics(CollectorRegistry())
    metrics.rpc_observer("c")("eth_getLogs", "https://rpc.example/<redacted>", 0.1, "timeout")
    metrics.batch_indexed("c", 10, 12, 8, {"stake": 1}, block_time=1, now=2)
    metrics.log_range_fetched("c", 100)
    metrics.reorg("c", 3)
    metrics.apply_reading(Reading(chains=(), frontier_time=None, foldable_time=None, epochs_closed=1))
    metrics.feed_rejected("f", "malformed")
    metrics.verified([("c", "k")], [("c", "k")], 5, now=2.0)

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
        "gauge": ("",),
    }
    names: set[str] = set()
    labels: dict[str, set[str]] = {}
    buckets: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            names.add(sample.name)
            labels.setdefault(sample.name, set()).update(k for k in sample.labels if k != "le")
            if "le" in sample.labels:
                buckets.setdefault(sample.name, set()).add(sample.labels["le"])
    return names, labels, buckets


def metric_names_in(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    return set(re.findall(r"\bindexer_[a-zA-Z0-9_]+\b", expr)) | (
        set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr)) & PROMETHEUS_BUILTINS
    )


def schema_views() -> set[str]:
    return set(re.findall(r"CREATE OR REPLACE VIEW\s+(\w+)", (ROOT / "schema.sql").read_text(), re.IGNORECASE))


# -- everything parses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_yaml_parses(path: Path) -> None:
    assert isinstance(load_yaml(path), dict), f"{path}: not a YAML mapping"


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: str(p.relative_to(ROOT)))
def test_json_parses(path: Path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)


def test_expected_files_exist() -> None:
    for path in (COMPOSE, PROMETHEUS, ALERTS, DATASOURCES, DASHBOARD_PROVIDERS, DASHBOARD, DOCKERFILE):
        assert path.is_file(), path
    assert (DEPLOY / "indexer.service").is_file()
    assert list(POSTGRES_INIT.iterdir()), "deploy/postgres-init/ is empty"


# -- compose --------------------------------------------------------------------------------------------


def test_compose_services() -> None:
    services = load_yaml(COMPOSE)["services"]
    assert {"postgres", "indexer", "prometheus", "grafana"} <= set(services)

    indexer = services["indexer"]
    assert indexer["build"]["context"] == ".."
    assert (COMPOSE.parent / indexer["build"]["context"] / indexer["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert indexer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert str(PORT) in [str(p).split(":")[-1] for p in indexer.get("expose", []) + indexer.get("ports", [])]
    env = indexer["environment"]
    assert "@postgres:5432/" in env["INDEXER_DSN"]
    assert env["INDEXER_HTTP"] == f"0.0.0.0:{PORT}"
    assert any(v.endswith(":/etc/indexer/chains.yaml:ro") for v in indexer["volumes"])

    assert "healthcheck" in services["postgres"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])


def test_compose_mounts_exist() -> None:
    """Every bind mount of a file or folder in deploy/ names something that is there."""
    for name, service in load_yaml(COMPOSE)["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"


def test_grafana_reader_role() -> None:
    """Grafana logs in as grafana_reader, which the init script creates as a member of indexer_reader."""
    schema = (ROOT / "schema.sql").read_text()
    assert re.search(r"CREATE ROLE indexer_reader NOLOGIN", schema)
    init = "\n".join(p.read_text() for p in sorted(POSTGRES_INIT.iterdir()) if p.suffix in (".sh", ".sql"))
    assert re.search(r"CREATE ROLE grafana_reader LOGIN", init)
    assert re.search(r"GRANT indexer_reader TO grafana_reader", init)

    sources = {d["type"]: d for d in load_yaml(DATASOURCES)["datasources"]}
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    postgres = sources["grafana-postgresql-datasource"]
    assert postgres["user"] == "grafana_reader"
    assert postgres["url"] == "postgres:5432"
    grafana_env = load_yaml(COMPOSE)["services"]["grafana"]["environment"]
    assert "GRAFANA_READER_PASSWORD" in grafana_env  # the provisioning file expands it


# -- Prometheus -----------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_indexer() -> None:
    config = load_yaml(PROMETHEUS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["indexer"]["static_configs"] for t in sc["targets"]]
    assert f"indexer:{PORT}" in targets
    assert jobs["indexer"].get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    mounted = {v.split(":")[1] for v in load_yaml(COMPOSE)["services"]["prometheus"]["volumes"] if v.startswith("./")}
    assert config["rule_files"] and set(config["rule_files"]) <= mounted


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert {"IndexerDown", "IndexerLagHigh", "DeepReorg", "RpcErrorRatioHigh"} <= set(names)
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["expr"].strip(), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_promql_uses_exported_metrics_labels_and_buckets() -> None:
    """A renamed metric, label or histogram bucket in indexer/metrics.py breaks an alert or a panel."""
    names, labels, buckets = exported_series()
    for where, expr in promql_expressions():
        used = metric_names_in(expr)
        assert used, f"{where}: no metric in {expr!r}"
        unknown = used - names - PROMETHEUS_BUILTINS
        assert not unknown, f"{where}: {sorted(unknown)} not exported by indexer.metrics.Metrics"

        known_labels = set().union(*(labels.get(n, set()) for n in used)) | {"job", "instance"}
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                assert label in known_labels, f"{where}: label {label!r} not on {sorted(used)}"

        for name, le in re.findall(r'\b(indexer_\w+_bucket)\{[^}]*\ble="([^"]+)"', expr):
            assert le in buckets.get(name, set()), f"{where}: {name} has no bucket le={le!r}"


def test_promql_checker_catches_a_renamed_metric() -> None:
    names, _, _ = exported_series()
    assert metric_names_in('rate(indexer_rpc_error_total{kind="x"}[5m]) / up') - names - PROMETHEUS_BUILTINS == {
        "indexer_rpc_error_total"
    }


# -- Grafana --------------------------------------------------------------------------------------------


def test_dashboard_panels() -> None:
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = " ".join(t.get("expr", "") for t in dashboard_targets())
    for metric in (
        "indexer_lag_blocks",
        "indexer_lag_seconds",
        "indexer_events_ingested_total",
        "indexer_rpc_errors_total",
        "indexer_reorgs_total",
        "indexer_verify_mismatches",
        "indexer_verify_last_success_timestamp_seconds",
    ):
        assert metric in exprs, f"no panel shows {metric}"
    sql = [t["rawSql"] for t in dashboard_targets() if "rawSql" in t]
    assert any("v_validator_leaderboard" in s for s in sql)

    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    grafana_volumes = load_yaml(COMPOSE)["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers[0]['options']['path']}:ro" in grafana_volumes


def test_dashboard_datasources_are_provisioned() -> None:
    uids = {d["uid"] for d in load_yaml(DATASOURCES)["datasources"]}
    for panel in dashboard_panels():
        for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
            if isinstance(ref, dict):
                assert ref["uid"] in uids, f"panel {panel['title']!r}: datasource {ref['uid']!r} not provisioned"


def test_dashboard_sql_reads_only_granted_views() -> None:
    """The read-only role may SELECT the views and nothing else: every relation the SQL names is a view."""
    views = schema_views()
    assert "v_validator_leaderboard" in views
    for target in dashboard_targets():
        if "rawSql" not in target:
            continue
        relations = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-zA-Z_][\w.]*)", target["rawSql"], re.IGNORECASE))
        assert relations, target["rawSql"]
        assert relations <= views, f"{sorted(relations - views)} are not views of schema.sql"


# -- the image ------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_dockerfile_runs_the_indexer() -> None:
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)

    assert by_name["FROM"][0].startswith("python:3.11")
    assert str(PORT) in " ".join(by_name["EXPOSE"]).split()
    command = json.loads(by_name["ENTRYPOINT"][-1]) + json.loads(by_name.get("CMD", ["[]"])[-1])
    assert command[0] == "indexer" and "run" in command
    assert command[command.index("--config") + 1] == "/etc/indexer/chains.yaml"
    assert "indexer" in (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n")[1]

    user = by_name["USER"][-1]
    assert user not in ("root", "0")
    assert [n for n, _ in instructions].index("USER") > max(
        i for i, (n, a) in enumerate(instructions) if n == "RUN" and "pip install" in a
    )
    assert any("/healthz" in h for h in by_name["HEALTHCHECK"])
    # The build checks that the installed package finds its schema.sql.
    assert any("SCHEMA_PATH" in a for a in by_name["RUN"])
