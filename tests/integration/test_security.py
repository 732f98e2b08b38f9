"""Tokens, the audit trail, payload encryption and retention, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import getpass
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from click.testing import CliRunner, Result

from streams.cli.main import cli
from streams.errors import LedgerError
from streams.ledger.records import Change, InvoiceKey, InvoiceRecord
from streams.ledger.states import State
from streams.ledger.store import Ledger
from streams.security.audit import AuditLog
from streams.security.crypto import PayloadCipher, new_key
from streams.security.tokens import TokenStore, allows

from .chaos import fresh_database
from .conftest import PAYLOAD_KEY, Services
from .conftest import fresh_invoice_key as _key

pytestmark = pytest.mark.integration


async def test_token_lifecycle(ledger: Ledger) -> None:
    store = TokenStore(ledger)
    name = f"ops-{uuid.uuid4().hex[:6]}"
    token = await store.create(name, "operator")
    found = await store.verify(token)
    assert found is not None and found.role == "operator" and found.name == name
    assert await store.verify(token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    assert await store.verify("isk_nope_nope") is None and await store.verify("garbage") is None
    assert all(token not in repr(t) for t in await store.list())
    assert await store.revoke(name)
    assert await store.verify(token) is None
    assert not await store.revoke(name)


def test_roles_nest() -> None:
    assert allows("admin", "operator") and allows("operator", "viewer")
    assert not allows("viewer", "operator") and not allows("nonsense", "viewer")


async def test_cli_token_commands_leave_an_audit_trail_without_the_secret(
    services: Services,
) -> None:
    env = {"INVOICE_SYNC_DATABASE_URL": services.database_url}
    name = f"bot-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    created = await asyncio.to_thread(
        runner.invoke, cli, ["tokens", "create", "--role", "viewer", "--name", name], env=env
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("isk_")
    revoked = await asyncio.to_thread(runner.invoke, cli, ["tokens", "revoke", name], env=env)
    assert revoked.exit_code == 0, revoked.output
    missing = await asyncio.to_thread(runner.invoke, cli, ["tokens", "revoke", name], env=env)
    assert missing.exit_code == 1 and "no active token" in missing.output
    trail = await asyncio.to_thread(runner.invoke, cli, ["audit", "--json"], env=env)
    assert trail.exit_code == 0
    mine = [line for line in trail.output.splitlines() if name in line]
    assert len(mine) == 3 and all("cli:" in line for line in mine)
    assert token not in trail.output


async def test_audit_log_is_append_only(ledger: Ledger, services: Services) -> None:
    await AuditLog(ledger).record("test", "probe")
    conn = await asyncpg.connect(services.database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM audit_log")
    finally:
        await conn.close()


async def _store(ledger: Ledger, key: InvoiceKey, payload: bytes) -> None:
    record = InvoiceRecord(key=key, state=State.SUBMITTING, content_hash="h")
    await ledger.apply([Change(record, None, "e", payload=payload)])


async def test_payloads_are_encrypted_at_rest_and_keys_rotate(services: Services) -> None:
    old, new = f"k{uuid.uuid4().hex[:4]}", f"k{uuid.uuid4().hex[:4]}"
    old_key, new_key_ = new_key(), new_key()
    key = _key()
    secret_payload = b'{"buyer": {"name": "\xe5\xbc\xa0\xe4\xb8\x89"}}'
    async with Ledger(services.database_url, worker_id="t",
                      cipher=PayloadCipher.from_setting(f"{old}:{old_key}")) as first:  # fmt: skip
        await _store(first, key, secret_payload)
        assert await first.payload(key) == secret_payload
    conn = await asyncpg.connect(services.database_url)
    try:
        raw = await conn.fetchval(
            "SELECT payload FROM invoices WHERE invoice_number = $1", key.invoice_number
        )
        assert secret_payload not in raw
    finally:
        await conn.close()
    async with Ledger(services.database_url, worker_id="t") as plain:
        with pytest.raises(LedgerError, match="INVOICE_SYNC_PAYLOAD_KEY"):
            await plain.payload(key)
    # The session database also holds payloads the e2e worker sealed with its own key:
    # a real rotation keeps every key still in use in the ring until rekey has run.
    ring = PayloadCipher.from_setting(f"{new}:{new_key_},{old}:{old_key},{PAYLOAD_KEY}")
    async with Ledger(services.database_url, worker_id="t", cipher=ring) as rotating:
        assert await rotating.payload(key) == secret_payload
        while await rotating.rekey():
            pass
    only_new = PayloadCipher.from_setting(f"{new}:{new_key_}")
    async with Ledger(services.database_url, worker_id="t", cipher=only_new) as after:
        assert await after.payload(key) == secret_payload


async def test_retention_drops_old_payloads_but_keeps_the_rows(ledger: Ledger) -> None:
    key = _key()
    await _store(ledger, key, b"{}")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    record = InvoiceRecord(key=key, state=State.CONFIRMED, content_hash="h", platform_ref="R",
                           accepted_at=long_ago, confirmed_at=long_ago)  # fmt: skip
    await ledger.apply([Change(record, State.SUBMITTING, "e")])
    assert await ledger.drop_old_payloads(30) >= 1
    assert await ledger.payload(key) is None
    kept = await ledger.get(key)
    assert kept is not None and kept.state == State.CONFIRMED


def test_bad_payload_key_is_a_clear_configuration_error() -> None:
    from streams.errors import ConfigurationError

    for bad in ("nokey", "k1:not-base64!!", "k1:" + "QUJD"):
        with pytest.raises(ConfigurationError, match="INVOICE_SYNC_PAYLOAD_KEY"):
            PayloadCipher.from_setting(bad)


@pytest.fixture
async def own_database(services: Services) -> str:
    """A database of this test's own: rekey re-seals every payload of the database, and
    the session's holds payloads under other tests' keys."""
    url = await fresh_database(services.database_url, f"sec_{uuid.uuid4().hex[:8]}")
    async with Ledger(url, worker_id="t") as ledger:
        await ledger.migrate()
    return url


async def _cli(env: dict[str, str], *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


def _audit_rows(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


async def test_rekey_retention_and_tokens_list_through_the_cli(own_database: str) -> None:
    old, new = f"k1:{new_key()}", f"k2:{new_key()}"
    recent, aged = _key(), _key()
    async with Ledger(own_database, worker_id="t",
                      cipher=PayloadCipher.from_setting(old)) as ledger:  # fmt: skip
        await _store(ledger, recent, b'{"n": 1}')
        await _store(ledger, aged, b'{"n": 2}')
        long_ago = datetime.now(UTC) - timedelta(days=40)
        record = InvoiceRecord(key=aged, state=State.CONFIRMED, content_hash="h",
                               platform_ref="R", accepted_at=long_ago,
                               confirmed_at=long_ago)  # fmt: skip
        await ledger.apply([Change(record, State.SUBMITTING, "e")])
    env = {"INVOICE_SYNC_DATABASE_URL": own_database, "INVOICE_SYNC_PAYLOAD_KEY": f"{new},{old}"}

    rekeyed = await _cli(env, "rekey")
    assert rekeyed.exit_code == 0, rekeyed.output
    assert "done: 2 payloads now under the current key" in rekeyed.stdout
    async with Ledger(own_database, worker_id="t",
                      cipher=PayloadCipher.from_setting(new)) as only_new:  # fmt: skip
        assert await only_new.payload(recent) == b'{"n": 1}'

    kept = await _cli(env, "retention", "--days", "30")
    assert kept.exit_code == 0, kept.output
    assert "dropped 1 payloads of invoices confirmed over 30 days ago" in kept.stdout
    unset = await _cli(env, "retention")
    assert unset.exit_code == 2 and "INVOICE_SYNC_PAYLOAD_RETENTION_DAYS" in unset.output

    created = await _cli(env, "tokens", "create", "--role", "operator", "--name", "ops-bot")
    token = created.stdout.strip()
    again = await _cli(env, "tokens", "create", "--role", "admin", "--name", "ops-bot")
    assert again.exit_code == 1 and "Traceback" not in again.output
    assert "Error: a token called 'ops-bot' exists already" in again.stderr
    listed = await _cli(env, "tokens", "list")
    assert listed.exit_code == 0, listed.output
    assert "ops-bot" in listed.stdout and "operator" in listed.stdout and "active" in listed.stdout
    assert token not in listed.output

    rekey_rows = _audit_rows(await _cli(env, "audit", "--action", "payload.rekey", "--json"))
    assert [(r["actor"], r["outcome"], r["detail"]) for r in rekey_rows] == [
        (f"cli:{getpass.getuser()}", "ok", {"payloads": 2})
    ]
    retention_rows = _audit_rows(
        await _cli(env, "audit", "--action", "payload.retention", "--json")
    )
    assert [(r["actor"], r["outcome"], r["detail"]) for r in retention_rows] == [
        (f"cli:{getpass.getuser()}", "ok", {"days": 30, "dropped": 1})
    ]


async def test_commands_on_an_unmigrated_ledger_say_to_migrate(services: Services) -> None:
    url = await fresh_database(services.database_url, f"bare_{uuid.uuid4().hex[:8]}")
    env = {"INVOICE_SYNC_DATABASE_URL": url}
    before = await _cli(env, "tokens", "list")
    assert before.exit_code == 1
    assert "run `invoice-sync migrate`" in before.output
    migrated = await _cli(env, "migrate")
    assert migrated.exit_code == 0 and "applied 0001" in migrated.output
    after = await _cli(env, "tokens", "list")
    assert after.exit_code == 0, after.output
