"""TLS and SASL settings reach aiokafka and faust, and the SASL password stays secret."""

from __future__ import annotations

import faust
import pytest

from streams.kafka.security import aiokafka_options, faust_credentials
from streams.settings import Settings


def test_plaintext_by_default() -> None:
    s = Settings()
    assert aiokafka_options(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_is_passed_to_both_clients(mechanism: str) -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
                 kafka_sasl_username="svc", kafka_sasl_password="hunter2")  # type: ignore[arg-type]  # fmt: skip
    options = aiokafka_options(s)
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("svc", "hunter2")
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.mechanism.value == mechanism and creds.username == "svc"
    assert "hunter2" not in repr(creds) and "hunter2" not in repr(s)


def test_tls_builds_a_context_for_both() -> None:
    s = Settings(kafka_security_protocol="SSL")  # system CAs when no cafile is given
    assert aiokafka_options(s)["ssl_context"] is not None
    assert isinstance(faust_credentials(s), faust.SSLCredentials)
