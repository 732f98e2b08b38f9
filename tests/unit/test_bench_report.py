"""The bench's table says when the machine, not the pipeline, moved between its phases."""

from __future__ import annotations

from bench.report import Results, drift_note, render


def _results(before: float, after: float) -> Results:
    results = Results(scale=1.0, stack="embedded")
    results.http_sides = [before, after]
    return results


def test_a_run_whose_ceiling_loops_differ_threefold_carries_the_note() -> None:
    table = render(_results(13_466, 3_923))
    assert "NOTE: this machine changed speed during the run" in table
    assert "13,466 req/s before the backlog runs and 3,923 after" in table


def test_a_run_that_slowed_or_sped_up_by_half_is_flagged_either_way() -> None:
    assert drift_note(_results(6_000, 9_000)) is not None
    assert drift_note(_results(9_000, 6_000)) is not None


def test_ordinary_drift_and_runs_without_both_sides_carry_no_note() -> None:
    assert drift_note(_results(9_120, 9_936)) is None
    assert "NOTE" not in render(Results(scale=1.0, stack="embedded"))
