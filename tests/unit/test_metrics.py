from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.ledger.records import StateSummary
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


def _summary(final: dict[str, int] | None = None, **kw: Any) -> StateSummary:
    fields: dict[str, Any] = {
        "unfinished": {"RECEIVED": 0, "SUBMITTING": 0, "PENDING": 0}, "final": final,
        "parked": 0, "oldest_unfinished_seconds": 0.0, "oldest_waiting_seconds": 0.0,
    }  # fmt: skip
    return StateSummary(**(fields | kw))


def test_ledger_gauges_fall_to_zero_when_the_ledger_empties() -> None:
    m = Metrics()
    m.ledger_summary(_summary(
        {"CONFIRMED": 7, "FAILED": 1}, unfinished={"RECEIVED": 1, "SUBMITTING": 3, "PENDING": 2},
        parked=2, oldest_unfinished_seconds=400.0, oldest_waiting_seconds=90.0,
    ))  # fmt: skip
    assert value(m, "invoice_sync_ledger_invoices", state="PENDING") == 2
    assert value(m, "invoice_sync_parked_invoices") == 2
    assert value(m, "invoice_sync_ledger_oldest_unfinished_seconds") == 400
    assert value(m, "invoice_sync_ledger_oldest_waiting_for_original_seconds") == 90
    m.ledger_summary(_summary())  # all finished; final states not counted this round
    assert value(m, "invoice_sync_ledger_invoices", state="PENDING") == 0
    assert value(m, "invoice_sync_parked_invoices") == 0
    # the SLO alert must stop firing once nothing is unfinished
    assert value(m, "invoice_sync_ledger_oldest_unfinished_seconds") == 0
    assert value(m, "invoice_sync_ledger_oldest_waiting_for_original_seconds") == 0
    # kept from the last full count rather than dropped to 0
    assert value(m, "invoice_sync_ledger_invoices", state="CONFIRMED") == 7


def test_inflight_gauge_reads_the_count_when_scraped() -> None:
    m, inflight = Metrics(), [4]
    m.track_inflight(lambda: inflight[0])
    assert value(m, "invoice_sync_inflight_invoices") == 4
    inflight[0] = 0
    assert value(m, "invoice_sync_inflight_invoices") == 0


def test_known_reason_codes_exist_at_zero_before_the_first_dead_letter() -> None:
    m = Metrics()
    for code in ("MALFORMED", "RETRIES_EXHAUSTED", "INVALID_TAX_ID", "DUPLICATE_CONFLICT"):
        assert value(m, "invoice_sync_dead_letters_total", reason_code=code) == 0
        assert value(m, "invoice_sync_invoices_failed_total", reason_code=code) == 0
    m.dead_lettered("INVALID_TAX_ID")
    assert value(m, "invoice_sync_dead_letters_total", reason_code="INVALID_TAX_ID") == 1
