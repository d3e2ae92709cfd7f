"""Repeating tasks (DESIGN §11): the rules `repeat` accepts and where completing moves `due`."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from task_mcp.errors import InvalidArgumentError
from task_mcp.service.recurrence import check_repeat, has_occurrence_within, next_due, normalize_repeat
from tests.helpers import REPEAT_PHRASES

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A Berlin wall time (the first, when it happens twice) as the UTC instant a due is stored as."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(("text", "rule"), REPEAT_PHRASES)
def test_each_phrase_and_rrule_normalizes_to_its_canonical_rrule(text: str, rule: str) -> None:
    assert normalize_repeat(text) == rule
    assert normalize_repeat(rule) == rule


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("FREQ=HOURLY", "FREQ must be DAILY"),
        ("FREQ=SECONDLY;INTERVAL=5", "FREQ must be DAILY"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be 1 to 999"),
        ("FREQ=DAILY;INTERVAL=1000", "INTERVAL must be 1 to 999"),
        ("every 1000 days", "N must be 1 to 999"),
        ("every 0 weeks", "N must be 1 to 999"),
        ("FREQ=DAILY;COUNT=1001", "COUNT must be 1 to 1000"),
        ("FREQ=DAILY;COUNT=0", "COUNT must be 1 to 1000"),
        ("DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY", "without DTSTART"),
        ("FREQ=DAILY;DTSTART=20260101", "without DTSTART"),
        ("garbage", "neither a known phrase"),
        ("every blursday", "neither a known phrase"),
        ("", "neither a known phrase"),
        ("INTERVAL=2", "FREQ must be DAILY"),
        ("FREQ=DAILY;FREQ=WEEKLY", "or is repeated"),
        ("FREQ=DAILY;BYHOUR=9", "'BYHOUR'"),
        ("FREQ=YEARLY;BYEASTER=0", "'BYEASTER'"),
        ("FREQ=WEEKLY;BYDAY=XX", "not a valid RRULE"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20301231", "COUNT or UNTIL, not both"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL must be a date"),
        ("FREQ=DAILY;" + "BYMONTH=1;" * 60, "longer than 500"),
    ],
)
def test_invalid_rules_and_phrases_say_what_is_accepted(text: str, names: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        normalize_repeat(text)
    assert caught.value.code == "invalid_argument"
    assert names in caught.value.message
    assert caught.value.message.startswith("repeat: ")
    assert "FREQ=WEEKLY;BYDAY=MO" in caught.value.message
    assert "'every monday', 'weekdays', 'every 2 weeks'" in caught.value.message


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=WEEKLY;BYMONTH=4;BYMONTHDAY=31",
        "FREQ=MONTHLY;BYMONTH=2;BYMONTHDAY=31",
        "FREQ=DAILY;UNTIL=20200101",
    ],
)
def test_a_rule_without_an_occurrence_in_ten_years_is_invalid_and_found_out_quickly(rule: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidArgumentError, match="no occurrence in the 10 years") as caught:
        check_repeat(rule, due=dt.date(2026, 11, 27))
    assert "FREQ=WEEKLY;BYDAY=MO" in caught.value.message
    assert time.monotonic() - started < 2


def test_an_occurrence_only_after_ten_years_is_not_within_them() -> None:
    # February 29th on a Monday: 2044, then 2072.
    rule = "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO"
    assert not has_occurrence_within(rule, dt.date(2045, 1, 1))
    assert has_occurrence_within(rule, dt.date(2045, 1, 1), years=30)
    assert has_occurrence_within(rule, dt.date(2040, 1, 1))


def test_check_repeat_returns_the_rule_to_store() -> None:
    assert check_repeat("every monday", due=utc(2026, 11, 30, 8), zone="Europe/Berlin") == "FREQ=WEEKLY;BYDAY=MO"


def test_every_monday_at_nine_in_berlin_stays_at_nine_local_across_both_daylight_saving_changes() -> None:
    rule = normalize_repeat("every monday")
    start = due = berlin(2026, 3, 16, 9)
    seen = []
    while due < berlin(2026, 11, 1):
        completed_at = due + dt.timedelta(hours=1)
        new = next_due(rule, series_start=start, current_due=due, now=completed_at, zone="Europe/Berlin")
        assert new is not None
        assert new - due in (dt.timedelta(days=7), dt.timedelta(days=7, hours=-1), dt.timedelta(days=7, hours=1))
        due = new
        seen.append(due.astimezone(BERLIN))
    assert {(d.weekday(), d.hour, d.minute) for d in seen} == {(0, 9, 0)}
    assert berlin(2026, 3, 30, 9) == utc(2026, 3, 30, 7)  # summer time from March 29th
    assert berlin(2026, 3, 30, 9) in seen and berlin(2026, 10, 26, 9) in seen
    assert berlin(2026, 10, 26, 9) == utc(2026, 10, 26, 8)  # winter time from October 25th


def test_a_local_time_that_does_not_exist_moves_forward_by_the_gap() -> None:
    # 02:30 on 2026-03-29 does not exist in Berlin: clocks jump from 02:00 to 03:00.
    start = berlin(2026, 3, 22, 2, 30)
    due = next_due("FREQ=WEEKLY", series_start=start, current_due=start, now=start, zone="Europe/Berlin")
    assert due == utc(2026, 3, 29, 1, 30)
    assert due.astimezone(BERLIN).time() == dt.time(3, 30)
    after = next_due("FREQ=WEEKLY", series_start=start, current_due=due, now=due, zone="Europe/Berlin")
    assert after is not None and after.astimezone(BERLIN).time() == dt.time(2, 30)


def test_an_ambiguous_local_time_takes_the_first() -> None:
    # 02:30 on 2026-10-25 happens twice in Berlin; the first is still summer time (UTC+2).
    start = berlin(2026, 10, 18, 2, 30)
    due = next_due("FREQ=WEEKLY", series_start=start, current_due=start, now=start, zone="Europe/Berlin")
    assert due == utc(2026, 10, 25, 0, 30)


def test_monthly_on_the_31st_skips_the_months_without_one() -> None:
    rule = "FREQ=MONTHLY;BYMONTHDAY=31"
    start = due = dt.date(2026, 1, 31)
    dues = []
    for _ in range(6):
        new = next_due(rule, series_start=start, current_due=due, now=utc(due.year, due.month, due.day, 12))
        assert new is not None
        dues.append(due := new)
    assert [d.isoformat() for d in dues] == [
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
        "2026-08-31",
        "2026-10-31",
        "2026-12-31",
    ]


def test_count_three_completes_for_good_on_the_third_completion() -> None:
    rule, start = "FREQ=DAILY;COUNT=3", dt.date(2026, 11, 1)
    second = next_due(rule, series_start=start, current_due=start, now=utc(2026, 11, 1, 12))
    assert second == dt.date(2026, 11, 2)
    third = next_due(rule, series_start=start, current_due=second, now=utc(2026, 11, 2, 12))
    assert third == dt.date(2026, 11, 3)
    assert next_due(rule, series_start=start, current_due=third, now=utc(2026, 11, 3, 12)) is None


def test_skipped_occurrences_count_towards_count() -> None:
    start = dt.date(2026, 11, 20)
    assert next_due("FREQ=DAILY;COUNT=3", series_start=start, current_due=start, now=utc(2026, 11, 27)) is None
    assert next_due("FREQ=DAILY;COUNT=8", series_start=start, current_due=start, now=utc(2026, 11, 27)) == dt.date(
        2026, 11, 27
    )


def test_a_date_only_daily_task_five_days_overdue_becomes_due_today() -> None:
    due = dt.date(2026, 11, 22)
    assert next_due("FREQ=DAILY", series_start=due, current_due=due, now=utc(2026, 11, 27, 15)) == dt.date(2026, 11, 27)


def test_a_daily_nine_oclock_task_completed_at_ten_becomes_due_tomorrow() -> None:
    due = utc(2026, 11, 27, 9)
    new = next_due("FREQ=DAILY", series_start=due, current_due=due, now=utc(2026, 11, 27, 10), zone="UTC")
    assert new == utc(2026, 11, 28, 9)


def test_a_task_completed_a_day_early_moves_to_its_next_occurrence() -> None:
    start, due = utc(2026, 11, 20, 9), utc(2026, 11, 28, 9)
    new = next_due("FREQ=DAILY", series_start=start, current_due=due, now=utc(2026, 11, 27, 10), zone="UTC")
    assert new == utc(2026, 11, 29, 9)
    day = dt.date(2026, 11, 28)
    assert next_due("FREQ=DAILY", series_start=day, current_due=day, now=utc(2026, 11, 27)) == dt.date(2026, 11, 29)


def test_until_a_date_includes_that_day() -> None:
    rule, start = "FREQ=WEEKLY;UNTIL=20261207", berlin(2026, 11, 23, 18)
    due = next_due(rule, series_start=start, current_due=start, now=start, zone="Europe/Berlin")
    assert due == berlin(2026, 11, 30, 18)
    assert next_due(rule, series_start=start, current_due=due, now=due, zone="Europe/Berlin") == berlin(2026, 12, 7, 18)
    last = berlin(2026, 12, 7, 18)
    assert next_due(rule, series_start=start, current_due=last, now=last, zone="Europe/Berlin") is None


def test_a_due_changed_from_a_date_to_a_time_repeats_at_that_time() -> None:
    due = berlin(2026, 11, 24, 8)
    new = next_due("FREQ=DAILY", series_start=dt.date(2026, 11, 1), current_due=due, now=due, zone="Europe/Berlin")
    assert new == berlin(2026, 11, 25, 8)


def test_a_series_that_started_centuries_ago_is_computed_quickly() -> None:
    started = time.monotonic()
    start = dt.date(1, 1, 2)
    assert next_due("FREQ=DAILY", series_start=start, current_due=start, now=utc(2026, 11, 27)) == dt.date(2026, 11, 27)
    assert time.monotonic() - started < 2


def test_the_last_day_the_server_stores_ends_the_series() -> None:
    due = dt.date(9999, 12, 30)
    assert next_due("FREQ=DAILY", series_start=due, current_due=due, now=utc(2026, 11, 27)) is None


RULES = st.one_of(
    st.sampled_from(["daily", "weekdays", "weekly", "monthly", "yearly", "every mon, wed and fri"]),
    st.builds(
        lambda n, unit: f"every {n} {unit}",
        st.integers(1, 40),
        st.sampled_from(["days", "weeks", "months", "years"]),
    ),
    st.builds(
        lambda day, count: f"FREQ=MONTHLY;BYMONTHDAY={day}" + (f";COUNT={count}" if count else ""),
        st.sampled_from([1, 15, 29, 30, 31, -1]),
        st.none() | st.integers(1, 12),
    ),
    st.builds(
        lambda pos, day: f"FREQ=MONTHLY;BYDAY={pos}{day}",
        st.sampled_from(["1", "2", "-1"]),
        st.sampled_from(["MO", "FR", "SU"]),
    ),
    st.just("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
)
ZONES = st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu"])
STARTS = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 1, 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=RULES,
    zone=ZONES,
    start=STARTS,
    date_only=st.booleans(),
    lateness=st.lists(st.integers(-3 * 24 * 60, 40 * 24 * 60), min_size=1, max_size=5),
)
def test_completing_repeatedly_gives_strictly_increasing_dues_that_are_not_overdue(
    text: str, zone: str, start: dt.datetime, date_only: bool, lateness: list[int]
) -> None:
    series_start: dt.date | dt.datetime = (
        start.date() if date_only else start.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    )
    try:
        rule = check_repeat(text, due=series_start, zone=zone)
    except InvalidArgumentError:
        assume(False)
        return
    due: dt.date | dt.datetime | None = series_start
    for minutes in lateness:
        assert due is not None
        if isinstance(due, dt.datetime):
            now = due + dt.timedelta(minutes=minutes)
        else:
            now = dt.datetime.combine(due, dt.time(12), tzinfo=UTC) + dt.timedelta(minutes=minutes)
        started = time.monotonic()
        new = next_due(rule, series_start=series_start, current_due=due, now=now, zone=zone)
        assert time.monotonic() - started < 2
        if new is None:
            return
        assert type(new) is type(due)
        assert new > due
        if isinstance(new, dt.datetime):
            assert new >= now
        else:
            assert new >= now.date()
        due = new
