"""What to do with an issued event, given what the ledger already knows. Pure."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from streams.ledger.records import InvoiceRecord
from streams.ledger.states import State


class Action(StrEnum):
    #: send it to the platform (new, a replay of a failure, or resuming a crashed attempt)
    SUBMIT = "SUBMIT"
    #: already confirmed with this content: answer with the same confirmation, no POST
    REEMIT = "REEMIT"
    #: confirmed or on its way with other content: never overwrite
    CONFLICT = "CONFLICT"
    #: on its way with this content and owned by someone else: the receipt poller
    #: (PENDING) or the resume loop (parked until ``next_attempt_at``) finishes it
    LEAVE = "LEAVE"


def decide(existing: InvoiceRecord | None, content_hash: str, now: datetime) -> Action:
    if existing is None or existing.state == State.FAILED:
        return Action.SUBMIT
    if existing.content_hash != content_hash:
        # Whatever is stored or on its way under this number is another invoice's content.
        return Action.CONFLICT
    if existing.state == State.CONFIRMED:
        return Action.REEMIT
    if existing.state == State.PENDING:
        return Action.LEAVE
    if existing.next_attempt_at is not None and existing.next_attempt_at > now:
        return Action.LEAVE
    # RECEIVED, or SUBMITTING left mid-flight by an earlier attempt. Posting again is
    # safe because the platform answers a stored invoice with a 409 echo we check.
    return Action.SUBMIT
