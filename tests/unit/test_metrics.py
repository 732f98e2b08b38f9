from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.observability.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


def test_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.consumed(3)
    assert value(a, "invoice_sync_events_consumed_total") == 3
    assert value(b, "invoice_sync_events_consumed_total") == 0


def test_render_is_the_text_exposition_format() -> None:
    body, content_type = Metrics().render()
    assert content_type.startswith("text/plain")
    assert b"# TYPE invoice_sync_issued_to_confirmed_seconds histogram" in body


def test_every_name_is_prefixed() -> None:
    names = {name for name, _ in samples(Metrics())}
    assert names
    assert all(name.startswith("invoice_sync_") for name in names)


def test_confirmed_counts_and_observes_latency_with_an_slo_bucket() -> None:
    m = Metrics()
    m.confirmed(0.004)
    m.confirmed(400.0)
    m.confirmed(-2.0)  # a billing system's clock ahead of ours
    assert value(m, "invoice_sync_invoices_confirmed_total") == 3
    assert value(m, "invoice_sync_issued_to_confirmed_seconds_bucket", le="0.001") == 1
    assert value(m, "invoice_sync_issued_to_confirmed_seconds_bucket", le="0.005") == 2
    # alerts.yml reads the 5-minute SLO from this exact bucket
    assert value(m, "invoice_sync_issued_to_confirmed_seconds_bucket", le="300.0") == 2
    assert value(m, "invoice_sync_issued_to_confirmed_seconds_count") == 3


def test_failures_dead_letters_and_retries_by_reason() -> None:
    m = Metrics()
    m.failed("TAX_MISMATCH")
    m.failed("TAX_MISMATCH")
    m.dead_lettered("MALFORMED_JSON")
    m.retried("timeout")
    assert value(m, "invoice_sync_invoices_failed_total", reason_code="TAX_MISMATCH") == 2
    assert value(m, "invoice_sync_dead_letters_total", reason_code="MALFORMED_JSON") == 1
    assert value(m, "invoice_sync_retries_total", reason="timeout") == 1


def test_platform_requests_by_endpoint_and_status() -> None:
    m = Metrics()
    m.platform_request("/api/v1/invoices", "201", 0.05)
    m.platform_request("/api/v1/invoices", "503", 0.2)
    assert value(m, "invoice_sync_platform_requests_total", endpoint="/api/v1/invoices",
                 status="503") == 1  # fmt: skip
    assert value(m, "invoice_sync_platform_request_seconds_count", endpoint="/api/v1/invoices") == 2


def test_circuit_state_is_one_hot() -> None:
    m = Metrics()
    assert value(m, "invoice_sync_circuit_state", state="closed") == 1
    m.circuit_state("open")
    assert value(m, "invoice_sync_circuit_state", state="open") == 1
    assert value(m, "invoice_sync_circuit_state", state="closed") == 0
    assert value(m, "invoice_sync_circuit_state", state="half_open") == 0
    with pytest.raises(ValueError, match="unknown circuit state"):
        m.circuit_state("ajar")


def test_credentials_gauge_exists_before_any_401() -> None:
    m = Metrics()
    assert value(m, "invoice_sync_platform_credentials_ok") == 1
    m.credentials_ok(False)
    assert value(m, "invoice_sync_platform_credentials_ok") == 0


def test_lag_of_revoked_partitions_is_dropped() -> None:
    m = Metrics()
    m.consumer_lag(0, 10)
    m.consumer_lag(1, 5)
    m.assigned_partitions({1, 2})
    s = samples(m)
    assert ("invoice_sync_consumer_lag_messages", (("partition", "0"),)) not in s
    assert value(m, "invoice_sync_consumer_lag_messages", partition="1") == 5
    assert value(m, "invoice_sync_assigned_partitions") == 2


def test_ledger_state_that_empties_reads_zero() -> None:
    m = Metrics()
    m.ledger_counts({"CONFIRMED": 7, "PENDING": 2}, oldest_unfinished_seconds=12.5)
    m.ledger_counts({"CONFIRMED": 9})
    assert value(m, "invoice_sync_ledger_invoices", state="PENDING") == 0
    assert value(m, "invoice_sync_ledger_invoices", state="CONFIRMED") == 9
    assert value(m, "invoice_sync_ledger_oldest_unfinished_seconds") == 12.5


def test_inflight_and_parked_gauges() -> None:
    m = Metrics()
    m.inflight(4)
    m.parked(2)
    assert value(m, "invoice_sync_inflight_invoices") == 4
    assert value(m, "invoice_sync_parked_invoices") == 2
