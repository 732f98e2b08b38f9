from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from streams.settings import Settings


def test_topic_names_join_the_prefix_as_is() -> None:
    s = Settings(topic_prefix="acme.")
    assert s.issued_topic == "acme.invoices.issued"
    assert s.all_topics == ("acme.invoices.issued", "acme.invoices.confirmed",
                            "acme.invoices.failed", "acme.invoices.dlq")  # fmt: skip


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOICE_SYNC_KAFKA_BOOTSTRAP", "k1:9092,k2:9093")
    monkeypatch.setenv("INVOICE_SYNC_TOPIC_PARTITIONS", "12")
    monkeypatch.setenv("INVOICE_SYNC_KAFKA_IDEMPOTENT", "true")
    s = Settings()
    assert (s.kafka_bootstrap, s.topic_partitions, s.kafka_idempotent) == (
        "k1:9092,k2:9093",
        12,
        True,
    )


def test_secrets_never_show_in_repr() -> None:
    s = Settings(platform_app_secret="s3cr3t-value",  # type: ignore[arg-type]
                 database_url="postgresql://u:pa55word@db/x")  # type: ignore[arg-type]  # fmt: skip
    text = repr(s) + str(s)
    assert "s3cr3t-value" not in text and "pa55word" not in text


@pytest.mark.parametrize("bootstrap", ["localhost", "host:port", ":9092", ""])
def test_bad_bootstrap_is_refused(bootstrap: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        Settings(kafka_bootstrap=bootstrap)


def test_database_url_must_be_postgresql() -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(database_url="mysql://x")  # type: ignore[arg-type]


def test_cli_reports_bad_settings_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.cli.main import cli

    monkeypatch.setenv("INVOICE_SYNC_KAFKA_BOOTSTRAP", "nonsense")
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 2
    assert "INVOICE_SYNC_KAFKA_BOOTSTRAP" in result.output


@pytest.mark.parametrize(
    "command", [[], ["worker"], ["migrate"], ["status"], ["sandbox"], ["demo"], ["up"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    from streams.cli.main import cli

    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output) > 150


def test_the_worker_reads_ahead_the_configured_batches(tmp_path: Path) -> None:
    from streams.worker.app import build_app

    settings = Settings(batch_size=200, read_ahead_batches=3, data_dir=tmp_path)
    app = build_app(settings, cast(Any, SimpleNamespace()))
    # Fetches of at most a batch each, and at most three of them waiting for the agent.
    assert app.conf.broker_max_poll_records == 200
    assert app.fetched._queue.maxsize == 3


def test_a_read_ahead_under_two_batches_is_refused() -> None:
    # One fetch ahead would leave nothing fetched while that batch is being taken.
    with pytest.raises(ValidationError, match="read_ahead_batches"):
        Settings(read_ahead_batches=1)
