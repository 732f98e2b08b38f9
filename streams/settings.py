"""All configuration, read once from ``INVOICE_SYNC_*`` environment variables.

Nothing else in the code base reads the environment. Defaults run locally
against the embedded stack; production sets the connection fields.
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.observability.logs import password_of

DEFAULT_TAX_RATES = ("0.13", "0.09", "0.06", "0.05", "0.03", "0.01", "0")
DEFAULT_PROVINCE_CODES = (
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
    "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
    "63", "64", "65",
)  # fmt: skip


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """One frozen settings object; every field maps to ``INVOICE_SYNC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="INVOICE_SYNC_", frozen=True, extra="ignore")

    # --- connections -----------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="host:port[,host:port...]")
    database_url: SecretStr = Field(
        SecretStr("postgresql://postgres@127.0.0.1:5432/invoice_sync"),
        description="postgresql:// URL of the ledger database",
    )
    platform_url: str = Field("http://127.0.0.1:8080", description="tax platform base URL")
    platform_app_id: str = Field("sandbox-app", description="X-App-Id issued to us")
    platform_app_secret: SecretStr = Field(
        SecretStr("sandbox-secret"), description="HMAC secret for X-Signature"
    )

    # --- topics ----------------------------------------------------------------------
    topic_prefix: str = Field("", description="prepended as-is to every topic name")
    topic_partitions: int = Field(4, ge=1, description="partitions of topics we create")
    topic_replication: int = Field(1, ge=1, description="replication of topics we create")
    topic_issued: str = "invoices.issued"
    topic_confirmed: str = "invoices.confirmed"
    topic_failed: str = "invoices.failed"
    topic_dlq: str = "invoices.dlq"

    # --- kafka client --------------------------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signed the brokers")
    kafka_ssl_certfile: str | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: str | None = Field(None, description="client key (mutual TLS)")
    kafka_idempotent: bool = Field(False, description="idempotent producer (not on Tansu)")
    consumer_group: str = Field("invoice-sync", description="consumer group / faust app id")
    kafka_session_timeout: float = Field(10.0, gt=0, description="seconds; group join ~half")
    kafka_fetch_max_wait_ms: int = Field(
        50, ge=1, le=10_000, description="longest a fetch waits for data (latency when idle)"
    )
    max_message_bytes: int = Field(1_048_576, ge=1024, description="larger events are DLQ'd")
    kafka_max_batch_bytes: int = Field(
        524_288, ge=1024, description="output record batch limit; under max.message.bytes"
    )

    # --- worker ----------------------------------------------------------------------
    http_port: int = Field(8000, ge=0, le=65535, description="worker HTTP port; 0 = any free")
    http_host: str = Field("127.0.0.1", description="worker HTTP bind address")
    worker_id: str = Field(default_factory=_default_worker_id)
    batch_size: int = Field(500, ge=1, description="events taken per processing batch")
    batch_window: float = Field(
        0.05, gt=0, description="seconds between fetches; a batch is what one fetch brings"
    )
    shutdown_grace_seconds: float = Field(
        25.0, gt=0, description="longest a stopping worker may take before it exits anyway"
    )
    pipeline_depth: int = Field(
        4, ge=1, description="batches in flight at once (overlaps platform waits)"
    )
    read_ahead_batches: int = Field(
        8, ge=2, description="fetches (of at most a batch each) held ahead of processing"
    )
    # A request keeps its slot until the worker has taken the answer, and a worker
    # draining a backlog takes it 100-250 ms after the platform sent it (the answer
    # waits its turn on the event loop). 128 slots then capped a worker at ~830
    # invoices/s with the platform at 50 ms, and 512 at ~3,400 once a worker could do
    # ~4,400. Each slot costs memory too: 1,024 raised a backlog's peak RSS by ~30 MB,
    # 768 by ~13 (docs/performance.md, items 18 and 38).
    platform_concurrency: int = Field(
        768, ge=1, description="concurrent platform requests (hides platform latency)"
    )
    platform_timeout: float = Field(10.0, gt=0, description="seconds per platform request")
    retry_max_attempts: int = Field(8, ge=1, description="POSTs before RETRIES_EXHAUSTED")
    retry_base_delay: float = Field(0.2, gt=0, description="first backoff, seconds")
    retry_max_delay: float = Field(30.0, gt=0, description="backoff ceiling, seconds")
    receipt_poll_interval: float = Field(1.0, gt=0, description="seconds between receipt polls")
    receipt_stuck_seconds: float = Field(900.0, gt=0, description="pending this long: flag ops")
    original_wait_seconds: float = Field(600.0, ge=0, description="red waits for its blue")
    resume_interval: float = Field(1.0, gt=0, description="seconds between unfinished sweeps")
    resume_stale_seconds: float = Field(
        300.0, gt=0, description="an attempt untouched this long was abandoned: finish it"
    )
    platform_rate_limit: float = Field(
        0.0, ge=0, description="max platform requests per second per worker; 0 = no limit"
    )
    park_after_seconds: float = Field(
        5.0, gt=0, description="backoff a batch may spend on one invoice before parking it"
    )
    platform_auth_retry_seconds: float = Field(
        30.0, gt=0, description="after a 401, seconds before trying the credentials again"
    )
    credentials_probe_seconds: float = Field(
        60.0, gt=0, description="seconds between signed probes of the platform credentials"
    )
    sweep_interval_seconds: float = Field(
        60.0, gt=0, description="seconds between the leader worker's stuck-invoice sweeps"
    )
    sweep_stuck_seconds: float = Field(
        900.0, gt=0, description="non-final and unchanged this long: the sweeper re-drives it"
    )
    breaker_threshold: int = Field(
        5, ge=1, description="transient failures in a row: open (at most retry_max_attempts)"
    )
    breaker_probe_interval: float = Field(2.0, gt=0, description="seconds between probes")
    fault_crash_at: (
        Literal["before_post", "during_post", "after_post", "after_ledger", "before_commit"] | None
    ) = Field(None, description="TESTS ONLY: SIGKILL the worker at this point")
    fault_crash_after: int = Field(1, ge=1, description="TESTS ONLY: ...the Nth time it is reached")
    payload_key: SecretStr | None = Field(
        None, description="keyid:base64key[,...]: encrypt ledger payloads (first key seals)"
    )
    payload_retention_days: int | None = Field(
        None, ge=1, description="drop payloads of invoices confirmed longer ago; unset = keep"
    )
    log_level: str = Field("INFO")
    log_json: bool | None = Field(None, description="JSON logs; default: when not a terminal")

    # --- invoice-domain rules (configurable by the authority) -------------------------
    january_grace_days: int = Field(7, ge=0, description="last year's numbers allowed through")
    max_issue_age_days: int = Field(366, ge=0, description="oldest issue_date accepted")
    max_lines: int = Field(2000, ge=1)
    tax_rates: tuple[Decimal, ...] = tuple(Decimal(r) for r in DEFAULT_TAX_RATES)
    province_codes: tuple[str, ...] = DEFAULT_PROVINCE_CODES

    # --- local (embedded) stack --------------------------------------------------------
    data_dir: Path = Field(Path(".invoice-sync"), description="embedded PostgreSQL data, logs")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _check_breaker_within_budget(self) -> Settings:
        # A breaker slower than the budget lets an outage exhaust invoices before it opens.
        if self.breaker_threshold > self.retry_max_attempts:
            raise ValueError(
                f"breaker_threshold ({self.breaker_threshold}) must not exceed "
                f"retry_max_attempts ({self.retry_max_attempts}): an outage would dead-letter "
                "invoices before the circuit opens"
            )
        return self

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redactor to replace with ``***``."""
        secrets = [self.platform_app_secret.get_secret_value()]
        password = password_of(self.database_url.get_secret_value())
        if password:
            secrets.append(password)
        for secret in (self.payload_key, self.kafka_sasl_password):
            if secret is not None:
                secrets.append(secret.get_secret_value())
        return secrets

    def topic(self, name: str) -> str:
        """Full topic name: the prefix joined as-is to ``name``."""
        return f"{self.topic_prefix}{name}"

    @cached_property
    def issued_topic(self) -> str:
        return self.topic(self.topic_issued)

    @cached_property
    def confirmed_topic(self) -> str:
        return self.topic(self.topic_confirmed)

    @cached_property
    def failed_topic(self) -> str:
        return self.topic(self.topic_failed)

    @cached_property
    def dlq_topic(self) -> str:
        return self.topic(self.topic_dlq)

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (self.issued_topic, self.confirmed_topic, self.failed_topic, self.dlq_topic)

    @property
    def platform_connections(self) -> int:
        """The platform client's pool size: room for receipt polls and lookups beside
        the submissions ``platform_concurrency`` caps."""
        return max(64, 2 * self.platform_concurrency)
