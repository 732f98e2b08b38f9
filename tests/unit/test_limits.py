"""The worker raises its open-file limit to what its platform concurrency needs."""

from __future__ import annotations

import logging

import pytest

from streams.settings import Settings
from streams.worker.limits import UNLIMITED, open_files_needed, raise_open_file_limit


class FakeLimits:
    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)
        self.calls: list[tuple[int, int]] = []

    def get(self) -> tuple[int, int]:
        return self.limits

    def set(self, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        self.limits = limits


def raise_to(need: int, fake: FakeLimits) -> int:
    return raise_open_file_limit(need, get=fake.get, set_=fake.set)


def test_the_default_concurrency_needs_more_than_a_common_soft_limit() -> None:
    # Why the module exists: 1,024 open files is a common default soft limit.
    assert open_files_needed(Settings()) > 1024
    assert open_files_needed(Settings(platform_concurrency=1)) < 1024


def test_a_low_soft_limit_is_raised_to_what_is_needed_not_to_the_hard_limit() -> None:
    fake = FakeLimits(1024, 1_048_576)
    assert raise_to(2304, fake) == 2304
    assert fake.limits == (2304, 1_048_576)


def test_an_unlimited_hard_limit_still_raises_only_as_far_as_needed() -> None:
    fake = FakeLimits(1024, UNLIMITED)
    assert raise_to(2304, fake) == 2304
    assert fake.limits == (2304, UNLIMITED)


@pytest.mark.parametrize("soft", [4096, UNLIMITED])
def test_a_soft_limit_already_high_enough_is_left_alone(soft: int) -> None:
    fake = FakeLimits(soft, UNLIMITED)
    assert raise_to(2304, fake) == soft
    assert fake.calls == []


def test_a_hard_limit_below_the_need_is_used_and_the_log_says_what_to_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeLimits(1024, 2000)
    with caplog.at_level(logging.WARNING, logger="streams.worker.limits"):
        assert raise_to(2304, fake) == 2000
    assert fake.limits == (2000, 2000)
    (record,) = caplog.records
    message = record.getMessage()
    assert "2000" in message and "2304" in message
    assert "INVOICE_SYNC_PLATFORM_CONCURRENCY" in message and "ulimit -Hn" in message


def test_the_real_limit_is_raised_in_this_process() -> None:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        want = soft + 1 if hard == UNLIMITED or soft < hard else soft
        assert raise_open_file_limit(want) == want
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
