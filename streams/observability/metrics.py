"""Prometheus metrics of one worker, on a registry of its own.

A private ``CollectorRegistry`` (not the process-global default) lets tests and
several workers in one process each count for themselves. Metric names carry
their unit (``_seconds``, ``_total``); ``deploy/prometheus/alerts.yml`` and
``deploy/grafana/invoice-sync.json`` use these names, so rename them together.

Ledger counts, parked invoices and ages come from the shared database, so every
worker exports the same numbers: aggregate them with ``max``, not ``sum``. Lag and
in-flight counts are per worker and do sum. CONFIRMED and FAILED counts take a full
scan of the ledger, so they are refreshed rarely (see ``Runtime._ledger_gauges``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from streams.ledger.records import StateSummary
from streams.observability.histogram import HistogramSeries, LoopHistogram

__all__ = ["CIRCUIT_STATES", "LATENCY_BUCKETS", "REASON_CODES", "Metrics"]

#: 1 ms to 5 min. 300 s is a bucket bound so the default SLO reads straight off
#: the histogram (``le="300.0"``).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

CIRCUIT_STATES = ("closed", "open", "half_open")

#: Every reason code the contracts name (events.md, and the 422 codes of
#: tax-platform-api.md), plus an answer outside the contract. Their failure and
#: dead-letter series start at 0, so an ``increase()`` alert sees the first dead letter
#: of each rather than a series that appears already at 1.
REASON_CODES = (
    "MALFORMED", "SCHEMA_VIOLATION", "VALIDATION", "RETRIES_EXHAUSTED",
    "ORIGINAL_NOT_CONFIRMED", "DUPLICATE_CONFLICT", "INVALID_FIELD", "INVALID_TAX_ID",
    "AMOUNT_MISMATCH", "ORIGINAL_NOT_FOUND", "RED_EXCEEDS_ORIGINAL", "PLATFORM_PROTOCOL",
)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._consumed = Counter(
            "invoice_sync_events_consumed", "Events taken from invoices.issued.", registry=r
        )
        self._confirmed = Counter(
            "invoice_sync_invoices_confirmed", "Invoices the platform confirmed.", registry=r
        )
        # Observed per invoice: LoopHistogram, not the client's locked Histogram.
        self._issued_to_confirmed = LoopHistogram(
            "invoice_sync_issued_to_confirmed_seconds",
            "From the event's issued time to the platform's confirmation.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._failed = Counter(
            "invoice_sync_invoices_failed",
            "Invoices that ended failed, by reason code.",
            ["reason_code"],
            registry=r,
        )
        self._dead_lettered = Counter(
            "invoice_sync_dead_letters",
            "Records written to the dead-letter topic, by reason code.",
            ["reason_code"],
            registry=r,
        )
        self._retried = Counter(
            "invoice_sync_retries",
            "Platform requests retried, by why (timeout, 5xx, 429, ...).",
            ["reason"],
            registry=r,
        )
        self._platform_requests = Counter(
            "invoice_sync_platform_requests",
            "Platform HTTP requests, by endpoint and status (HTTP code or 'timeout'/'error').",
            ["endpoint", "status"],
            registry=r,
        )
        self._platform_seconds = LoopHistogram(
            "invoice_sync_platform_request_seconds",
            "Platform HTTP request latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._circuit = Gauge(
            "invoice_sync_circuit_state",
            "1 for the platform circuit breaker's current state, 0 for the others.",
            ["state"],
            registry=r,
        )
        self._inflight = Gauge(
            "invoice_sync_inflight_invoices", "Invoices being delivered now.", registry=r
        )
        self._slots_in_use = Gauge(
            "invoice_sync_platform_slots_in_use",
            "Platform request slots held now; a request holds one until the worker has "
            "taken its answer. Staying at invoice_sync_platform_slots: the setting binds.",
            registry=r,
        )
        self._slots = Gauge(
            "invoice_sync_platform_slots",
            "Platform request slots (INVOICE_SYNC_PLATFORM_CONCURRENCY).",
            registry=r,
        )
        self._parked = Gauge(
            "invoice_sync_parked_invoices",
            "Invoices parked in the ledger: red-letter ones awaiting their original, and "
            "ones in backoff until a later attempt (whole ledger; aggregate with max).",
            registry=r,
        )
        self._lag = Gauge(
            "invoice_sync_consumer_lag_messages",
            "End offset minus committed offset of invoices.issued, per assigned partition.",
            ["partition"],
            registry=r,
        )
        self._assigned = Gauge(
            "invoice_sync_assigned_partitions",
            "Partitions of invoices.issued this worker consumes.",
            registry=r,
        )
        self._ledger = Gauge(
            "invoice_sync_ledger_invoices",
            "Invoices in the ledger by state (whole ledger; aggregate with max). Unfinished "
            "states are exact; CONFIRMED and FAILED are refreshed every few minutes.",
            ["state"],
            registry=r,
        )
        self._oldest_unfinished = Gauge(
            "invoice_sync_ledger_oldest_unfinished_seconds",
            "Longest time an invoice has been SUBMITTING or PENDING, since it entered "
            "that state (0 when none).",
            registry=r,
        )
        self._oldest_waiting = Gauge(
            "invoice_sync_ledger_oldest_waiting_for_original_seconds",
            "Longest time a red-letter invoice has waited for its original (RECEIVED; "
            "0 when none).",
            registry=r,
        )
        self._credentials_ok = Gauge(
            "invoice_sync_platform_credentials_ok",
            "0 after the platform answered 401, 1 otherwise.",
            registry=r,
        )
        self._swept = Counter(
            "invoice_sync_swept_invoices",
            "Stuck invoices the leader worker's sweeper found and re-drove.",
            registry=r,
        )
        self._lag_partitions: set[int] = set()
        self._platform_children: dict[tuple[str, str], tuple[Counter, HistogramSeries]] = {}
        # Series exist from the start: an alert on "== 0" or "open == 1" needs a
        # value before the first event rather than an absent series.
        self.circuit_state("closed")
        self.credentials_ok(True)
        for code in REASON_CODES:
            self._failed.labels(code)
            self._dead_lettered.labels(code)

    # --- events -------------------------------------------------------------------------
    def consumed(self, n: int = 1) -> None:
        self._consumed.inc(n)

    def confirmed(self, issued_to_confirmed_seconds: float) -> None:
        self._confirmed.inc()
        # Clocks of billing systems drift; a negative age is theirs, not ours.
        self._issued_to_confirmed.observe(max(0.0, issued_to_confirmed_seconds))

    def failed(self, reason_code: str) -> None:
        self._failed.labels(reason_code).inc()

    def dead_lettered(self, reason_code: str) -> None:
        self._dead_lettered.labels(reason_code).inc()

    def swept(self, n: int) -> None:
        self._swept.inc(n)

    def retried(self, reason: str) -> None:
        self._retried.labels(reason).inc()

    def platform_request(self, endpoint: str, status: str, seconds: float) -> None:
        """``endpoint`` must be a route template (``/api/v1/invoices``), never a URL with ids."""
        children = self._platform_children.get((endpoint, status))
        if children is None:
            # labels() validates and locks on every call (~5 µs); the series are few.
            children = (
                self._platform_requests.labels(endpoint, status),
                self._platform_seconds.labels(endpoint),
            )
            self._platform_children[(endpoint, status)] = children
        requests, seconds_taken = children
        requests.inc()
        seconds_taken.observe(seconds)

    # --- state ----------------------------------------------------------------------------
    def circuit_state(self, state: str) -> None:
        if state not in CIRCUIT_STATES:
            raise ValueError(f"unknown circuit state {state!r}; expected one of {CIRCUIT_STATES}")
        for name in CIRCUIT_STATES:
            self._circuit.labels(name).set(1 if name == state else 0)

    def track_inflight(self, count: Callable[[], int]) -> None:
        """The in-flight gauge reads ``count()`` when scraped: set per invoice, it cost
        two locked writes for every one delivered."""
        self._inflight.set_function(count)

    def track_platform_slots(self, in_use: Callable[[], int], limit: int) -> None:
        """Slots held, read when scraped (as the in-flight gauge), beside their limit."""
        self._slots_in_use.set_function(in_use)
        self._slots.set(limit)

    def consumer_lag(self, partition: int, lag: int) -> None:
        self._lag.labels(str(partition)).set(max(0, lag))
        self._lag_partitions.add(partition)

    def assigned_partitions(self, partitions: Collection[int]) -> None:
        """After a rebalance: drop lag of partitions now consumed by another worker.

        Otherwise the stale series would be summed with the new owner's.
        """
        self._assigned.set(len(partitions))
        for gone in self._lag_partitions - set(partitions):
            self._lag.remove(str(gone))
        self._lag_partitions &= set(partitions)

    def ledger_summary(self, summary: StateSummary) -> None:
        """Every field is set each time, so a gauge never keeps a stale value; the final
        states only when the summary counted them."""
        for state, n in {**summary.unfinished, **(summary.final or {})}.items():
            self._ledger.labels(state).set(n)
        self._parked.set(summary.parked)
        self._oldest_unfinished.set(max(0.0, summary.oldest_unfinished_seconds))
        self._oldest_waiting.set(max(0.0, summary.oldest_waiting_seconds))

    def credentials_ok(self, ok: bool) -> None:
        self._credentials_ok.set(1 if ok else 0)

    # --- exposition -------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """The text exposition format: body and its Content-Type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
