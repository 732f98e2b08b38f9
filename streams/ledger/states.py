"""The ledger's state machine: which state changes an invoice may go through.

RECEIVED ◀▶ SUBMITTING ─▶ CONFIRMED
   │            │  ▲ ▲
   │            ▼  │ └── FAILED (a replay starts afresh)
   │         PENDING (a 202 receipt, polled until it settles)
   └────────────┴──────▶ FAILED

CONFIRMED is final: a later event for the same invoice can add history, never
move it (an identical re-send is answered from the ledger, a different one is a
conflict).
"""

from __future__ import annotations

from enum import StrEnum

from streams.errors import InvalidTransitionError


class State(StrEnum):
    RECEIVED = "RECEIVED"
    SUBMITTING = "SUBMITTING"
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (State.CONFIRMED, State.FAILED)


_ALLOWED: dict[State | None, frozenset[State]] = {
    None: frozenset({State.RECEIVED, State.SUBMITTING, State.FAILED}),
    State.RECEIVED: frozenset({State.SUBMITTING, State.FAILED}),
    # SUBMITTING → SUBMITTING: a resumed attempt after a crash or a retry.
    # SUBMITTING → RECEIVED: a red-letter invoice parked because its original did not settle.
    State.SUBMITTING: frozenset(
        {State.SUBMITTING, State.RECEIVED, State.PENDING, State.CONFIRMED, State.FAILED}
    ),
    # PENDING → SUBMITTING: a receipt stuck for too long is re-posted (409 tells the truth).
    State.PENDING: frozenset({State.PENDING, State.SUBMITTING, State.CONFIRMED, State.FAILED}),
    State.CONFIRMED: frozenset(),
    State.FAILED: frozenset({State.SUBMITTING, State.FAILED}),
}


def can_transition(current: State | None, target: State) -> bool:
    return target in _ALLOWED[current]


def check_transition(current: State | None, target: State, *, invoice_key: str) -> None:
    if not can_transition(current, target):
        raise InvalidTransitionError(
            f"invoice {invoice_key} cannot go from {current or 'nothing'} to {target}",
            invoice_key=invoice_key,
        )
