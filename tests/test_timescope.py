"""Timescopes: windows around month ends, in UTC and in zones with daylight saving time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ductwork import (
    ConfigError,
    RunContext,
    ScheduleError,
    Timescope,
    TimeWindow,
    daily,
    every,
    get_table_name,
    hourly,
    monthly,
    validate_schedule,
    validate_timescope,
    weekly,
)
from ductwork import timescope as timescope_module


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def window(start: datetime, end: datetime) -> TimeWindow:
    return TimeWindow(start, end)


def test_timewindow_is_the_core_one() -> None:
    assert timescope_module.TimeWindow is TimeWindow


@pytest.mark.parametrize(
    ("scope", "moment", "expected"),
    [
        (daily(), utc(2024, 1, 31, 23, 59, 59), window(utc(2024, 1, 31), utc(2024, 2, 1))),
        (daily(), utc(2024, 2, 29, 12), window(utc(2024, 2, 29), utc(2024, 3, 1))),
        (daily(), utc(2023, 12, 31, 23), window(utc(2023, 12, 31), utc(2024, 1, 1))),
        (hourly(), utc(2024, 2, 29, 23, 30), window(utc(2024, 2, 29, 23), utc(2024, 3, 1))),
        (monthly(), utc(2024, 2, 10), window(utc(2024, 2, 1), utc(2024, 3, 1))),
        (monthly(), utc(2023, 2, 28, 23), window(utc(2023, 2, 1), utc(2023, 3, 1))),
        (monthly(), utc(2024, 12, 31, 23), window(utc(2024, 12, 1), utc(2025, 1, 1))),
        (monthly(), utc(2024, 1, 31), window(utc(2024, 1, 1), utc(2024, 2, 1))),
        (weekly(), utc(2024, 2, 29), window(utc(2024, 2, 26), utc(2024, 3, 4))),  # Mon..Mon
        (weekly(week_start=6), utc(2024, 2, 29), window(utc(2024, 2, 25), utc(2024, 3, 3))),
        (weekly(), utc(2024, 12, 31), window(utc(2024, 12, 30), utc(2025, 1, 6))),
        (every("15m"), utc(2024, 1, 31, 23, 59), window(utc(2024, 1, 31, 23, 45), utc(2024, 2, 1))),
        (every("6h"), utc(2024, 1, 1, 13), window(utc(2024, 1, 1, 12), utc(2024, 1, 1, 18))),
        (
            every("2d", origin=datetime(2024, 1, 1)),
            utc(2024, 1, 4, 5),
            window(utc(2024, 1, 3), utc(2024, 1, 5)),
        ),
    ],
    ids=lambda v: str(v),
)
def test_window_at_around_month_ends(
    scope: Timescope, moment: datetime, expected: TimeWindow
) -> None:
    assert scope.window_at(moment) == expected


def test_last_complete_window_is_the_one_before_the_trigger() -> None:
    scope = daily()
    assert scope.last_complete_window(utc(2024, 3, 1, 0, 5)) == window(
        utc(2024, 2, 29), utc(2024, 3, 1)
    )
    # exactly at a boundary, the window that just ended is complete
    assert scope.last_complete_window(utc(2024, 3, 1)) == window(utc(2024, 2, 29), utc(2024, 3, 1))
    assert monthly().last_complete_window(utc(2024, 1, 15)) == window(
        utc(2023, 12, 1), utc(2024, 1, 1)
    )
    assert hourly().last_complete_window(utc(2024, 1, 1, 0, 0, 1)) == window(
        utc(2023, 12, 31, 23), utc(2024, 1, 1)
    )
    before = datetime.now(UTC)
    latest = scope.last_complete_window()
    assert latest.end <= before + timedelta(seconds=1)
    assert latest.end > before - timedelta(days=1)


def test_next_and_previous_windows() -> None:
    scope = monthly()
    jan = window(utc(2024, 1, 1), utc(2024, 2, 1))
    feb = scope.next_window(jan)
    assert feb == window(utc(2024, 2, 1), utc(2024, 3, 1))
    assert scope.previous_window(feb) == jan
    assert scope.previous_window(jan) == window(utc(2023, 12, 1), utc(2024, 1, 1))


def test_windows_over_a_range() -> None:
    days = list(daily().windows(date(2024, 2, 27), date(2024, 3, 2)))
    assert [w.start.day for w in days] == [27, 28, 29, 1]
    # partial windows at both ends are included
    months = list(monthly().windows(utc(2024, 1, 15), utc(2024, 3, 1, 0, 0, 1)))
    assert [w.start.month for w in months] == [1, 2, 3]
    with pytest.raises(ScheduleError, match="not after"):
        list(daily().windows(date(2024, 3, 2), date(2024, 3, 2)))


@pytest.mark.parametrize("month", range(1, 13))
def test_utc_days_are_always_24_hours(month: int) -> None:
    scope = daily()
    for day in scope.windows(date(2024, month, 1), date(2024, month, 28)):
        assert day.duration_seconds == 86400
        assert day.start.utcoffset() == timedelta(0)


def test_configured_zone_follows_the_wall_clock_through_dst() -> None:
    berlin = daily("Europe/Berlin")
    spring = berlin.window_at(utc(2024, 3, 31, 12))
    assert spring.start.isoformat() == "2024-03-31T00:00:00+01:00"
    assert spring.end.isoformat() == "2024-04-01T00:00:00+02:00"
    assert spring.duration_seconds == 23 * 3600
    autumn = berlin.window_at(utc(2024, 10, 27, 12))
    assert autumn.duration_seconds == 25 * 3600
    # a moment late on the 30th in UTC is already the 31st in Berlin
    assert berlin.window_at(utc(2024, 3, 30, 23, 30)).start.day == 31
    assert f"{spring.start:%Y-%m-%d}" == "2024-03-31"

    new_york = monthly("America/New_York")
    march = new_york.window_at(utc(2024, 3, 15))
    assert march.start.isoformat() == "2024-03-01T00:00:00-05:00"
    assert march.end.isoformat() == "2024-04-01T00:00:00-04:00"


def test_hourly_windows_in_a_zone_stay_one_hour_when_clocks_go_back() -> None:
    scope = hourly("Europe/Berlin")
    first = scope.window_at(utc(2024, 10, 27, 0, 30))  # 02:30 summer time
    second = scope.next_window(first)  # 02:00 again, winter time
    third = scope.next_window(second)
    assert [w.duration_seconds for w in (first, second, third)] == [3600] * 3
    assert first.start.isoformat() == "2024-10-27T02:00:00+02:00"
    assert second.start.isoformat() == "2024-10-27T02:00:00+01:00"
    assert third.start.isoformat() == "2024-10-27T03:00:00+01:00"
    assert first != second


def test_half_hour_zone_and_a_day_that_starts_after_midnight() -> None:
    kolkata = hourly("Asia/Kolkata").window_at(utc(2024, 1, 1, 5, 15))
    assert kolkata.start.isoformat() == "2024-01-01T10:00:00+05:30"
    # in Santiago the clocks jumped from 00:00 to 01:00 on 2024-09-08
    santiago = daily("America/Santiago").window_at(utc(2024, 9, 8, 12))
    assert santiago.start.isoformat() == "2024-09-08T01:00:00-03:00"
    assert santiago.duration_seconds == 23 * 3600


def test_naive_datetimes_and_dates_are_read_in_the_zone() -> None:
    tokyo = daily("Asia/Tokyo")
    assert tokyo.window_at(datetime(2024, 1, 1, 8)) == tokyo.window_at(date(2024, 1, 1))
    assert tokyo.window_at(date(2024, 1, 1)).start == datetime(
        2024, 1, 1, tzinfo=dt_timezone(timedelta(hours=9))
    )


SCOPES = [
    daily(),
    hourly(),
    weekly(),
    monthly(),
    every("15m"),
    every("90s"),
    daily("Europe/Berlin"),
    hourly("America/New_York"),
    monthly("Australia/Lord_Howe"),
    weekly("Pacific/Chatham", week_start=3),
]

instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


@pytest.mark.parametrize("scope", SCOPES, ids=str)
@given(moment=instants)
def test_windows_tile_time(scope: Timescope, moment: datetime) -> None:
    current = scope.window_at(moment)
    assert current.start <= moment < current.end
    following = scope.next_window(current)
    assert following.start == current.end
    assert scope.previous_window(following) == current
    assert scope.window_at(current.start) == current
    assert scope.window_at(current.end - timedelta(microseconds=1)) == current
    assert scope.last_complete_window(moment).end == current.start


def test_template_values_use_the_window() -> None:
    win = daily().window_at(utc(2024, 2, 29, 10))
    ctx = RunContext(pipeline="events", window=win)
    values = ctx.template_values()
    assert "s3://bucket/{window.start:%Y/%m/%d}/part.jsonl".format(**values) == (
        "s3://bucket/2024/02/29/part.jsonl"
    )
    assert values["date"] == "2024-02-29"


@pytest.mark.parametrize(
    ("scope", "schedule"),
    [
        (hourly(), "0 * * * *"),
        (daily(), "0 0 * * *"),
        (weekly(), "0 0 * * 1"),
        (weekly(week_start=6), "0 0 * * 0"),
        (monthly(), "0 0 1 * *"),
        (every("15m"), "*/15 * * * *"),
        (every("6h"), "0 */6 * * *"),
        (every("1d"), "0 0 * * *"),
        (every("30s"), "*/30 * * * * *"),
        (every("7m"), None),
        (every("90s"), None),
        (every("5h"), None),
        (every("15m", origin=datetime(2024, 1, 1, 0, 5)), None),
        (every("15m", origin=datetime(2024, 1, 1, 0, 30)), "*/15 * * * *"),
    ],
    ids=str,
)
def test_default_schedules(scope: Timescope, schedule: str | None) -> None:
    assert scope.default_schedule == schedule
    if schedule is not None:
        assert validate_schedule(schedule) == schedule


def test_default_schedule_fires_at_window_ends() -> None:
    from cronsim import CronSim

    for scope in (hourly(), daily(), weekly(week_start=2), monthly(), every("20m")):
        assert scope.default_schedule is not None
        fires = CronSim(scope.default_schedule, utc(2024, 2, 27, 13, 7))
        for _ in range(3):
            fire = next(fires)
            assert scope.window_at(fire).start == fire


@pytest.mark.parametrize(
    ("scope", "at", "table"),
    [
        ("hourly", utc(2024, 1, 31, 23, 10), "events_hourly_20240131_23"),
        ("daily", utc(2024, 1, 31, 23, 10), "events_daily_20240131"),
        ("weekly", utc(2024, 1, 31), "events_weekly_2024w05"),
        ("weekly", utc(2021, 1, 2), "events_weekly_2020w53"),
        ("monthly", utc(2024, 1, 31), "events_monthly_202401"),
        ("15m", utc(2024, 1, 31, 23, 50), "events_15m_20240131_2345"),
        ("90s", utc(2024, 1, 31, 23, 50, 10), "events_90s_20240131_234930"),
    ],
)
def test_table_names(scope: str, at: datetime, table: str) -> None:
    resolved = validate_timescope(scope)
    assert get_table_name("events", scope) == f"events_{resolved.name}"
    assert get_table_name("events", scope, resolved.window_at(at)) == table


def test_table_names_follow_the_zone_and_qualified_bases() -> None:
    berlin = daily("Europe/Berlin")
    late = berlin.window_at(utc(2024, 1, 31, 23, 30))  # already February 1st in Berlin
    assert get_table_name("analytics.events", berlin, late) == "analytics.events_daily_20240201"
    for bad in ("", "events-raw", "1events", "a.b.c", "drop table x"):
        with pytest.raises(ConfigError, match="base"):
            get_table_name(bad, "daily")
    with pytest.raises(ScheduleError):
        get_table_name("events", "fortnightly")


def test_validate_timescope_accepts_names_intervals_and_timescopes() -> None:
    assert validate_timescope("Daily") == daily()
    assert validate_timescope(" 15m ") == every(timedelta(minutes=15))
    assert validate_timescope(timedelta(hours=2)).name == "2h"
    assert validate_timescope("1w").name == "1w"
    assert validate_timescope("120s").name == "2m"
    assert validate_timescope("daily", "Europe/Paris").timezone == "Europe/Paris"
    scope = weekly("UTC", week_start=4)
    assert validate_timescope(scope) is scope
    moved = validate_timescope(scope, "Asia/Tokyo")
    assert (moved.timezone, moved.week_start) == ("Asia/Tokyo", 4)
    assert str(moved) == "weekly (Asia/Tokyo)"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fortnightly", "expected one of hourly, daily, weekly, monthly"),
        ("0m", "at least one second"),
        (timedelta(milliseconds=1500), "whole number of seconds"),
        (42, "got int"),
    ],
)
def test_invalid_timescopes(value: object, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate_timescope(value)  # type: ignore[arg-type]


def test_invalid_fields_are_named() -> None:
    with pytest.raises(ScheduleError, match="timezone: unknown time zone 'Mars/Olympus'"):
        daily("Mars/Olympus")
    with pytest.raises(ScheduleError, match="week_start"):
        weekly(week_start=7)
    with pytest.raises(ScheduleError, match="needs an interval"):
        Timescope(unit="interval")
    with pytest.raises(ScheduleError, match="takes no interval"):
        Timescope(unit="daily", interval=timedelta(hours=1))
    with pytest.raises(ScheduleError, match="unit"):
        Timescope(unit="yearly")


def test_resolve_window() -> None:
    scope = daily("Europe/Berlin")
    assert scope.resolve_window("2024-03-31") == scope.window_at(date(2024, 3, 31))
    assert scope.resolve_window("2024-03-31T13:00") == scope.window_at(date(2024, 3, 31))
    explicit = scope.resolve_window("2024-03-01/2024-03-03T12:00")
    assert explicit.start.isoformat() == "2024-03-01T00:00:00+01:00"
    assert explicit.end.isoformat() == "2024-03-03T12:00:00+01:00"
    given_window = window(utc(2024, 1, 1), utc(2024, 1, 2))
    assert scope.resolve_window(given_window) is given_window
    with pytest.raises(ScheduleError, match="expected an ISO date"):
        scope.resolve_window("yesterday")
    with pytest.raises(ScheduleError, match="end is not after"):
        scope.resolve_window("2024-03-03/2024-03-01")
