"""A command whose database is away says so in one line, exit code 1, no traceback, and
never prints the database password."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from streams.cli.main import cli
from streams.local.processes import free_port

COMMANDS = [
    ["tokens", "list"],
    ["tokens", "create", "--role", "viewer", "--name", "bot"],
    ["tokens", "revoke", "bot"],
    ["audit"],
    ["rekey"],
    ["retention", "--days", "30"],
    ["status", "26112000000000000001"],
    ["invoices", "--seller", "S", "--from", "2026-01-01", "--to", "2026-01-31"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_unreachable_database_is_one_clear_line(args: list[str]) -> None:
    url = f"postgresql://ops:hunter2-secret@127.0.0.1:{free_port()}/ledger"
    result = CliRunner().invoke(cli, args, env={"INVOICE_SYNC_DATABASE_URL": url})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert "ledger database unavailable" in line
    assert "hunter2-secret" not in result.output
