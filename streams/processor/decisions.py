"""What to do with an issued event, given what the ledger already knows. Pure."""

from __future__ import annotations

from enum import StrEnum

from streams.ledger.records import InvoiceRecord
from streams.ledger.states import State


class Action(StrEnum):
    #: send it to the platform (new, a replay of a failure, or resuming a crashed attempt)
    SUBMIT = "SUBMIT"
    #: already confirmed with this content: answer with the same confirmation, no POST
    REEMIT = "REEMIT"
    #: already confirmed (or waiting on a receipt) with other content: never overwrite
    CONFLICT = "CONFLICT"
    #: waiting on a receipt with this content: the receipt poller finishes it
    LEAVE = "LEAVE"


def decide(existing: InvoiceRecord | None, content_hash: str) -> Action:
    if existing is None or existing.state == State.FAILED:
        return Action.SUBMIT
    same = existing.content_hash == content_hash
    if existing.state == State.CONFIRMED:
        return Action.REEMIT if same else Action.CONFLICT
    if existing.state == State.PENDING:
        return Action.LEAVE if same else Action.CONFLICT
    # RECEIVED or SUBMITTING: an earlier attempt died mid-flight. Posting again is safe
    # because the platform answers a stored invoice with a 409 echo we check.
    return Action.SUBMIT
