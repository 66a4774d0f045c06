"""deploy/prometheus/alerts.yml is checked and unit-tested by promtool, and every alert has its tests.

`promtool test rules deploy/prometheus/alerts_test.yml` replays series through the rules: each alert
must fire on the series that should fire it (exact labels and annotations) and stay silent on healthy
ones. promtool comes with Debian's `prometheus` package (`.ci/run` installs it); without it these
tests skip, except under CI (`CI` set), where a missing promtool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS = PROMETHEUS_DIR / "prometheus.yml"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"

Rule = dict[str, Any]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not on PATH under CI: install Debian's `prometheus` package (see .ci/run)")
        pytest.skip("promtool is not installed (apt-get install prometheus); the alert rules are not run here")
    return path


def run(command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False, timeout=120)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_names(rules_file: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rules_file["groups"] for rule in group["rules"] if "alert" in rule]


def cases(tests_file: dict[str, Any]) -> list[dict[str, Any]]:
    """Every `alert_rule_test` case of a promtool test file."""
    return [case for test in tests_file["tests"] for case in test.get("alert_rule_test", [])]


def untested(rules_file: dict[str, Any], tests_file: dict[str, Any]) -> dict[str, list[str]]:
    """Alerts without a case where they fire, and without a case where they stay silent."""
    all_cases = cases(tests_file)
    fires = {c["alertname"] for c in all_cases if c.get("exp_alerts")}
    silent = {c["alertname"] for c in all_cases if not c.get("exp_alerts")}
    names = alert_names(rules_file)
    return {
        "never fires": [n for n in names if n not in fires],
        "never shown silent": [n for n in names if n not in silent],
    }


# -- promtool -------------------------------------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_names(load(ALERTS)))} rules found" in result.stdout


def test_promtool_test_rules(promtool: str) -> None:
    result = run([promtool, "test", "rules", str(ALERTS_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr


def _set(name: str, key: str, value: str) -> Callable[[Rule], None]:
    def change(rule: Rule) -> None:
        if rule.get("alert") == name:
            rule[key] = value

    return change


def _replace_in_expr(name: str, old: str, new: str) -> Callable[[Rule], None]:
    def change(rule: Rule) -> None:
        if rule.get("alert") == name:
            assert old in rule["expr"], f"{name}: {old!r} not in its expr"
            rule["expr"] = rule["expr"].replace(old, new)

    return change


def _summary(name: str) -> Callable[[Rule], None]:
    def change(rule: Rule) -> None:
        if rule.get("alert") == name:
            rule["annotations"]["summary"] += "!"

    return change


@pytest.mark.parametrize(
    "change",
    [
        _replace_in_expr("IndexerDown", 'up{job="indexer"}', "up"),
        _set("IndexerDatabaseDown", "for", "1m"),
        _replace_in_expr("IndexerLagHigh", "> 500", "> 700"),
        _replace_in_expr("DeepReorg", 'le="12.0"', 'le="16.0"'),
        _replace_in_expr("RpcErrorRatioHigh", '{kind!="error_object"}', ""),
        _summary("IndexerLagHigh"),
    ],
    ids=[
        "IndexerDown-any-job",
        "IndexerDatabaseDown-for",
        "IndexerLagHigh-threshold",
        "DeepReorg-bucket",
        "RpcErrorRatioHigh-kinds",
        "IndexerLagHigh-summary",
    ],
)
def test_promtool_tests_catch_a_changed_rule(promtool: str, tmp_path: Path, change: Callable[[Rule], None]) -> None:
    """The unit tests are sharp: a rule changed in any way that matters makes them fail."""
    rules = load(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            change(rule)
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)
    result = run([promtool, "test", "rules", ALERTS_TEST.name], cwd=tmp_path)
    assert result.returncode != 0, "the changed rule still passes every test:\n" + result.stdout
    assert "FAILED" in result.stdout + result.stderr


# -- coverage and wiring --------------------------------------------------------------------------------


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rules_file, tests_file = load(ALERTS), load(ALERTS_TEST)
    assert alert_names(rules_file), "no alerts in alerts.yml"
    assert untested(rules_file, tests_file) == {"never fires": [], "never shown silent": []}
    unknown = {c["alertname"] for c in cases(tests_file)} - set(alert_names(rules_file))
    assert not unknown, f"alerts_test.yml tests alerts that alerts.yml does not have: {sorted(unknown)}"


def test_coverage_check_catches_an_untested_alert() -> None:
    rules_file = load(ALERTS)
    rules_file["groups"][0]["rules"].append({"alert": "IndexerNew", "expr": "vector(1)"})
    assert untested(rules_file, load(ALERTS_TEST)) == {
        "never fires": ["IndexerNew"],
        "never shown silent": ["IndexerNew"],
    }


def test_the_tests_load_the_shipped_rules_file() -> None:
    rule_files = load(ALERTS_TEST)["rule_files"]
    assert [(ALERTS_TEST.parent / f).resolve() for f in rule_files] == [ALERTS]


def test_prometheus_loads_the_tested_rules_file() -> None:
    """prometheus.yml's rule_files, through the compose file's mounts, are exactly the tested alerts.yml."""
    rule_files = load(PROMETHEUS)["rule_files"]
    volumes = load(COMPOSE)["services"]["prometheus"]["volumes"]
    mounts = {}  # path in the container -> file in the repository
    for volume in volumes:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[PurePosixPath(target)] = (COMPOSE.parent / source).resolve()

    def host_path(path: str) -> Path | None:
        p = PurePosixPath(path)
        for target, source in mounts.items():
            if p == target or target in p.parents:
                return source / p.relative_to(target)
        return None

    assert [host_path(f) for f in rule_files] == [ALERTS], f"{rule_files} through {mounts}"
