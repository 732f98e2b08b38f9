"""The deploy files agree with the code: valid rules, runbooks, real metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams.ledger.records import StateSummary
from streams.observability.metrics import Metrics
from streams.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
OPERATIONS = DEPLOY.parent / "docs" / "operations.md"
_METRIC = re.compile(r"\binvoice_sync_[a-z_]+")


def exported_names() -> set[str]:
    m = Metrics()
    m.failed("X")  # labelled families render no samples until first used
    m.dead_lettered("X")
    m.retried("X")
    m.platform_request("/p", "200", 0.1)
    m.consumer_lag(0, 1)
    m.ledger_summary(StateSummary({"PENDING": 1}, {"CONFIRMED": 1}, 0, 0.0, 0.0))
    body, _ = m.render()
    return set(re.findall(r"^(invoice_sync_[a-z_]+)", body.decode(), re.MULTILINE))


def alert_rules() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_rules_and_config_and_rule_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    for args in (["check", "rules", str(ALERTS)],
                 ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 # worker down with none left to discover, first dead letter of a code, the
                 # SLO alert resolving: alerts.test.yml
                 ["test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml")]):  # fmt: skip
        done = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_summary_and_a_runbook_section_that_exists() -> None:
    rules = alert_rules()
    assert rules
    headings = {
        "#" + re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), rule["alert"]
        runbook = annotations.get("runbook_url", "")
        assert runbook.startswith("docs/operations.md#"), rule["alert"]
        assert runbook.removeprefix("docs/operations.md") in headings, rule["alert"]


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    exported = exported_names()
    used = set(_METRIC.findall(ALERTS.read_text()))
    used |= set(_METRIC.findall((DEPLOY / "grafana" / "invoice-sync.json").read_text()))
    assert used
    assert used <= exported, sorted(used - exported)


def test_dashboard_is_grafana_json() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "invoice-sync.json").read_text())
    assert dashboard["uid"] == "invoice-sync"
    assert all(panel["targets"] for panel in dashboard["panels"] if panel["type"] != "row")


def test_k8s_manifests_parse_and_kustomization_lists_them() -> None:
    yaml = pytest.importorskip("yaml")
    k8s = DEPLOY / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((k8s / name).read_text()):
            assert doc["apiVersion"]
            assert doc["kind"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "kind: Deployment" in done.stdout


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:  # fmt: skip
        return [docker, "compose"]
    return None


def test_compose_file_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    compose_file = str(DEPLOY.parent / "docker-compose.yml")
    result = subprocess.run([*command, "-f", compose_file, "config", "-q"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → host source, for the short volume syntax."""
    return {parts[1]: parts[0] for parts in (volume.split(":") for volume in service["volumes"])}


def test_compose_kafka_writes_to_its_volume_with_a_fixed_cluster_id() -> None:
    yaml = pytest.importorskip("yaml")
    kafka = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]["kafka"]
    assert _mounts(kafka)[kafka["environment"]["KAFKA_LOG_DIRS"]] == "kafka-data"
    assert len(kafka["environment"]["CLUSTER_ID"]) == 22  # a base64 UUID


def test_compose_grafana_provisions_prometheus_and_the_dashboard() -> None:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    mounts = _mounts(services["grafana"])
    provisioning = DEPLOY.parent / mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["url"] == f"http://prometheus:{services['prometheus']['ports'][0].split(':')[1]}"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "invoice-sync.yaml").read_text())[
        "providers"
    ]
    dashboard = mounts[f"{provider['options']['path']}/invoice-sync.json"]
    assert (DEPLOY.parent / dashboard).resolve() == DEPLOY / "grafana" / "invoice-sync.json"


def test_k8s_config_and_secret_name_only_real_settings() -> None:
    yaml = pytest.importorskip("yaml")
    k8s = DEPLOY / "k8s"
    names: set[str] = set()
    for name in ("configmap.yaml", "secret.example.yaml"):
        for doc in yaml.safe_load_all((k8s / name).read_text()):
            names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    settings = {f"INVOICE_SYNC_{field.upper()}" for field in Settings.model_fields}
    assert {n for n in names if n.startswith("INVOICE_SYNC_")} <= settings
    # Kafka security: non-secret parts in the ConfigMap, the password in the Secret
    kafka = {"SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_PASSWORD", "SSL_CAFILE"}
    assert {f"INVOICE_SYNC_KAFKA_{name}" for name in kafka} <= names
