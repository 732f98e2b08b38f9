"""The end-of-demo report: what was confirmed, failed, dead-lettered, and how fast."""

from __future__ import annotations

import statistics
from datetime import datetime

import click
import orjson

from streams.demo.feed import EXPECTED_CODES, FeedItem
from streams.demo.tracker import Outcomes
from streams.sandbox.server import SandboxServer
from streams.settings import Settings


def latencies_ms(items: list[FeedItem], outcomes: Outcomes) -> list[float]:
    issued: dict[bytes, datetime] = {}
    for item in items:
        if item.defect is None and item.key not in issued:
            issued[item.key] = datetime.fromisoformat(orjson.loads(item.value)["occurred_at"])
    return sorted(
        (outcomes.confirmed_at[key] - at).total_seconds() * 1000
        for key, at in issued.items()
        if key in outcomes.confirmed_at
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(q) - 1]


_UNREADABLE = ("MALFORMED", "SCHEMA_VIOLATION")


def _last_code(outcomes: Outcomes, key: bytes) -> object:
    return outcomes.failed.get(key, [{}])[-1].get("reason_code")


def print_summary(
    items: list[FeedItem],
    outcomes: Outcomes,
    sandbox: SandboxServer,
    settings: Settings,
    *,
    elapsed: float,
) -> None:
    keys = {item.key for item in items}
    confirmed = sum(1 for key in keys if key in outcomes.confirmed)
    failed_codes = outcomes.failure_codes(keys)
    stored = sandbox.store.stored_count()
    posts = sum(sandbox.store.post_counts().values())
    resends = sum(1 for item in items if item.resend)
    wrong = [
        item
        for item in items
        if item.defect is not None and _last_code(outcomes, item.key) != EXPECTED_CODES[item.defect]
    ]
    echo = click.echo
    echo(f"\nSummary: {len(items)} messages, {len(keys)} distinct invoices, {elapsed:.1f} s")
    match = "matches" if stored == confirmed else "DOES NOT MATCH"
    echo(f"  confirmed        {confirmed:>6}   sandbox stored {stored} ({match}); "
         f"{posts} POSTs, {posts / max(stored, 1):.2f} per stored invoice")  # fmt: skip
    echo(f"  failed           {sum(failed_codes.values()):>6}")
    for code, n in failed_codes.most_common():
        echo(f"    {code:<22}{n:>4}")
    echo(f"  dead-lettered    {outcomes.dead_lettered(keys):>6}")
    echo(f"  re-sends         {resends:>6}   answered from the ledger, never uploaded twice")
    if wrong:
        echo(f"  !! {len(wrong)} bad invoices ended with an unexpected reason", err=True)
    lat = latencies_ms(items, outcomes)
    if lat:
        echo(
            f"  issued→confirmed p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms"
        )
    sample_ok = next((k for k in keys if k in outcomes.confirmed), None)
    # A failure the ledger knows (it had an identity); unreadable ones live only in the DLQ.
    sample_bad = next(
        (
            k
            for k in sorted(keys & outcomes.failed.keys())
            if _last_code(outcomes, k) not in _UNREADABLE
        ),
        None,
    )
    echo("\nLook further (the ledger stays in "
         f"{settings.data_dir / 'postgres'} after the demo):")  # fmt: skip
    if sample_ok is not None:
        seller, number = sample_ok.decode().split(":", 1)
        echo(f"  .venv/bin/invoice-sync status {number} --seller {seller}")
    if sample_bad is not None:
        # The failure's own fields: a bad seller id means the key and the invoice disagree.
        failed = outcomes.failed[sample_bad][-1]
        echo(f"  .venv/bin/invoice-sync status {failed['invoice_number']} "
             f"--seller {failed['seller_tax_id']}")  # fmt: skip
    echo("  .venv/bin/invoice-sync --help")
