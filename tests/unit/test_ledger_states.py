from datetime import UTC, datetime, timedelta

import pytest

from streams.errors import InvalidTransitionError
from streams.ledger.records import InvoiceKey, InvoiceRecord
from streams.ledger.states import State, can_transition, check_transition
from streams.processor.decisions import Action, decide


def test_confirmed_is_final() -> None:
    for target in State:
        assert not can_transition(State.CONFIRMED, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (None, State.SUBMITTING),
        (None, State.FAILED),
        (State.SUBMITTING, State.CONFIRMED),
        (State.SUBMITTING, State.PENDING),
        (State.SUBMITTING, State.SUBMITTING),
        (State.PENDING, State.CONFIRMED),
        (State.PENDING, State.FAILED),
        (State.FAILED, State.SUBMITTING),
    ],
)
def test_allowed_transitions(current: State | None, target: State) -> None:
    check_transition(current, target, invoice_key="S:N")


@pytest.mark.parametrize(
    ("current", "target"),
    [(None, State.CONFIRMED), (None, State.PENDING), (State.FAILED, State.CONFIRMED)],
)
def test_forbidden_transitions_name_the_invoice(current: State | None, target: State) -> None:
    with pytest.raises(InvalidTransitionError, match="S:N"):
        check_transition(current, target, invoice_key="S:N")


NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _record(
    state: State, content_hash: str = "h1", next_attempt_at: datetime | None = None
) -> InvoiceRecord:
    return InvoiceRecord(key=InvoiceKey("S", "N"), state=state, content_hash=content_hash,
                         next_attempt_at=next_attempt_at)  # fmt: skip


@pytest.mark.parametrize(
    ("existing", "content_hash", "action"),
    [
        (None, "h1", Action.SUBMIT),
        (_record(State.CONFIRMED), "h1", Action.REEMIT),
        (_record(State.CONFIRMED), "h2", Action.CONFLICT),
        (_record(State.FAILED), "h2", Action.SUBMIT),
        (_record(State.PENDING), "h1", Action.LEAVE),
        (_record(State.PENDING), "h2", Action.CONFLICT),
        (_record(State.SUBMITTING), "h1", Action.SUBMIT),
        (_record(State.RECEIVED), "h1", Action.SUBMIT),
        (_record(State.SUBMITTING), "h2", Action.CONFLICT),
        (_record(State.RECEIVED), "h2", Action.CONFLICT),
        (_record(State.SUBMITTING, next_attempt_at=NOW + timedelta(seconds=5)), "h1", Action.LEAVE),
        (
            _record(State.SUBMITTING, next_attempt_at=NOW - timedelta(seconds=5)),
            "h1",
            Action.SUBMIT,
        ),
        (_record(State.SUBMITTING, "h1", NOW + timedelta(seconds=5)), "h2", Action.CONFLICT),
    ],
)
def test_decisions_for_resent_invoices(
    existing: InvoiceRecord | None, content_hash: str, action: Action
) -> None:
    assert decide(existing, content_hash, NOW) is action
