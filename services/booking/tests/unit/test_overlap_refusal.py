"""Which database refusals mean "that slot is taken" (answered 409, never 5xx)."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from booking.adapters.repository import is_overlap_refusal


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _refusal(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT INTO appointment ...", {}, _DriverError(sqlstate))


def test_an_exclusion_violation_and_a_deadlock_both_mean_taken():
    assert is_overlap_refusal(_refusal("23P01"))
    assert is_overlap_refusal(_refusal("40P01"))


def test_other_database_errors_are_not_taken_slots():
    assert not is_overlap_refusal(_refusal("23505"))  # unique violation: a real bug, not a race
    assert not is_overlap_refusal(_refusal("08006"))  # connection failure
