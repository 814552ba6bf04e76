"""Timescopes: the time window each run of a pipeline covers, its default schedule and table name.

A timescope cuts time into consecutive windows — ``hourly``, ``daily``, ``weekly``, ``monthly`` or
a custom interval (``"15m"``, ``"6h"``, ``timedelta(days=2)``) — in UTC unless a time zone is
configured. A run gets a :class:`~ductwork.TimeWindow` ``[start, end)``: by default the last
*complete* window before the moment it was triggered, so a daily pipeline run at 00:05 processes
yesterday. Templates in paths, URLs and queries can use it: ``"{window.start:%Y-%m-%d}"``.

Calendar units (days, weeks, months) follow the wall clock of the time zone, so in a zone with
daylight saving time a day is 23 or 25 hours long on the days the clocks change. Hourly and custom
windows are fixed lengths of elapsed time (hourly ones aligned on the zone's hours, which assumes
the zone's clocks move by whole hours, as all but Lord Howe Island's do).

Example:
    >>> from datetime import datetime, UTC
    >>> daily = validate_timescope("daily")
    >>> window = daily.last_complete_window(datetime(2024, 3, 1, 0, 5, tzinfo=UTC))
    >>> print(window)
    [2024-02-29T00:00:00+00:00, 2024-03-01T00:00:00+00:00)
    >>> "{window.start:%Y-%m-%d}".format(window=window)
    '2024-02-29'
    >>> daily.default_schedule
    '0 0 * * *'
    >>> get_table_name("events", daily), get_table_name("events", daily, window)
    ('events_daily', 'events_daily_20240229')
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from datetime import timezone as dt_timezone
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ._exceptions import ConfigError, ScheduleError
from .core.config import check_value, checked_keywords
from .core.context import TimeWindow

__all__ = [
    "TIMESCOPES",
    "TimeWindow",
    "Timescope",
    "TimescopeUnit",
    "daily",
    "every",
    "get_table_name",
    "hourly",
    "monthly",
    "resolve_timezone",
    "validate_timescope",
    "weekly",
]

TimescopeUnit = Literal["hourly", "daily", "weekly", "monthly", "interval"]

#: The names accepted for the calendar timescopes.
TIMESCOPES: tuple[str, ...] = ("hourly", "daily", "weekly", "monthly")

_HOUR = timedelta(hours=1)
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def resolve_timezone(name: str) -> tzinfo:
    """The ``tzinfo`` for an IANA time zone name (``"UTC"`` gives :data:`datetime.UTC`).

    Raises:
        ScheduleError: the name is not a known time zone.
    """
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name!r}") from exc


class Timescope(BaseModel):
    """How time is cut into windows for a pipeline.

    Build one with :func:`hourly`, :func:`daily`, :func:`weekly`, :func:`monthly`, :func:`every`
    or :func:`validate_timescope`; an invalid one raises :class:`~ductwork.ScheduleError` naming
    the field.

    Attributes:
        unit: ``hourly``, ``daily``, ``weekly``, ``monthly`` or ``interval``.
        interval: the window length of an ``interval`` timescope (whole seconds, at least 1 s).
        timezone: IANA name of the time zone whose wall clock sets the window boundaries.
        week_start: first day of a ``weekly`` window, 0 = Monday ... 6 = Sunday.
        origin: a boundary of ``interval`` windows (default: 1970-01-01 00:00 in ``timezone``);
            naive values are read in ``timezone``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: TimescopeUnit
    interval: timedelta | None = None
    timezone: Annotated[str, Field(min_length=1)] = "UTC"
    week_start: Annotated[int, Field(ge=0, le=6, strict=True)] = 0
    origin: datetime | None = None

    _tz: tzinfo = PrivateAttr(default=UTC)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            fields = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: "
                + err["msg"].removeprefix("Value error, ")
                for err in exc.errors(include_url=False)
            )
            raise ScheduleError(f"invalid timescope: {fields}") from None

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return check_value(resolve_timezone, value, ScheduleError)

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: timedelta | None) -> timedelta | None:
        if value is not None:
            if value < timedelta(seconds=1):
                raise ValueError("must be at least one second")
            if value.microseconds:
                raise ValueError("must be a whole number of seconds")
        return value

    @model_validator(mode="after")
    def _check_unit(self) -> Timescope:
        if self.unit == "interval" and self.interval is None:
            raise ValueError("an 'interval' timescope needs an interval")
        if self.unit != "interval" and (self.interval is not None or self.origin is not None):
            raise ValueError(f"a {self.unit!r} timescope takes no interval or origin")
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Resolve the time zone once."""
        self._tz = resolve_timezone(self.timezone)

    # --- naming -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``hourly``, ``daily``, ``weekly``, ``monthly``, or the interval (``15m``, ``6h``...)."""
        if self.unit != "interval":
            return self.unit
        assert self.interval is not None
        seconds = int(self.interval.total_seconds())
        for suffix in ("w", "d", "h", "m"):
            size = _UNIT_SECONDS[suffix]
            if seconds % size == 0:
                return f"{seconds // size}{suffix}"
        return f"{seconds}s"

    @property
    def tzinfo(self) -> tzinfo:
        """The time zone windows are computed (and returned) in."""
        return self._tz

    def __str__(self) -> str:
        return self.name if self.timezone == "UTC" else f"{self.name} ({self.timezone})"

    def __repr__(self) -> str:
        return f"Timescope({self!s})"

    # --- windows ----------------------------------------------------------------------------

    def _aware(self, moment: datetime | date) -> datetime:
        """``moment`` as an aware datetime (naive values and dates are read in the time zone)."""
        if not isinstance(moment, datetime):
            return self._localize(datetime.combine(moment, time()))
        if moment.tzinfo is None or moment.utcoffset() is None:
            return self._localize(moment)
        return moment

    def _localize(self, wall: datetime) -> datetime:
        """A wall-clock time in the zone; a time skipped by a clock change moves past the gap."""
        aware = wall.replace(tzinfo=self._tz, fold=0)
        return aware.astimezone(UTC).astimezone(self._tz)

    def _at_midnight(self, day: date) -> datetime:
        return self._localize(datetime.combine(day, time()))

    def _fixed(self, moment: datetime) -> datetime:
        """``moment`` in the zone, with a fixed UTC offset (safe to compare and subtract)."""
        if self._tz is UTC:
            return moment.astimezone(UTC)
        local = moment.astimezone(self._tz)
        offset = local.utcoffset()
        assert offset is not None
        return local.replace(tzinfo=dt_timezone(offset))

    def _window(self, start: datetime, end: datetime) -> TimeWindow:
        return TimeWindow(self._fixed(start), self._fixed(end))

    def window_at(self, moment: datetime | date) -> TimeWindow:
        """The window that contains ``moment`` (naive values are read in the time zone).

        The window's ``start`` and ``end`` are in the time zone, each with the zone's UTC offset
        at that moment (so a window may start at +01:00 and end at +02:00).
        """
        at = self._aware(moment).astimezone(UTC)
        local = at.astimezone(self._tz)
        if self.unit == "hourly":
            into = timedelta(
                minutes=local.minute, seconds=local.second, microseconds=local.microsecond
            )
            return self._window(at - into, at - into + _HOUR)
        if self.unit == "daily":
            day = local.date()
        elif self.unit == "weekly":
            day = local.date() - timedelta(days=(local.weekday() - self.week_start) % 7)
        elif self.unit == "monthly":
            day = local.date().replace(day=1)
        else:
            assert self.interval is not None
            origin = self._aware(self.origin or datetime(1970, 1, 1)).astimezone(UTC)
            start = origin + ((at - origin) // self.interval) * self.interval
            return self._window(start, start + self.interval)
        if self.unit == "monthly":
            following = (day + timedelta(days=32)).replace(day=1)
        else:
            following = day + timedelta(days=7 if self.unit == "weekly" else 1)
        return self._window(self._at_midnight(day), self._at_midnight(following))

    def next_window(self, window: TimeWindow) -> TimeWindow:
        """The window right after ``window``."""
        return self.window_at(window.end)

    def previous_window(self, window: TimeWindow) -> TimeWindow:
        """The window right before ``window``."""
        return self.window_at(window.start.astimezone(UTC) - timedelta(microseconds=1))

    def last_complete_window(self, now: datetime | None = None) -> TimeWindow:
        """The latest window that ended at or before ``now`` (default: the current time).

        This is the window a run triggered at ``now`` covers by default.
        """
        return self.previous_window(self.window_at(now or datetime.now(UTC)))

    def resolve_window(self, value: TimeWindow | datetime | date | str) -> TimeWindow:
        """A window from what a caller or a command line gives.

        Args:
            value: a TimeWindow (returned as is); a datetime or date (the window containing
                it); an ISO date or datetime string (``"2024-01-31"``, ``"2024-01-31T13:00"``,
                the window containing it); or ``"START/END"`` with two ISO values, taken as the
                window itself. Naive values are read in the time zone.

        Raises:
            ScheduleError: the text is not an ISO date, datetime or ``START/END`` pair.

        Example:
            >>> print(daily().resolve_window("2024-01-31"))
            [2024-01-31T00:00:00+00:00, 2024-02-01T00:00:00+00:00)
        """
        if isinstance(value, TimeWindow):
            return value
        if isinstance(value, (datetime, date)):
            return self.window_at(value)
        if not isinstance(value, str):
            raise ScheduleError(
                f"invalid window {value!r}: expected a TimeWindow, datetime, date or ISO text"
            )
        if "/" in value:
            first, _, second = value.partition("/")
            start, end = self.parse_time(first), self.parse_time(second)
            if end <= start:
                raise ScheduleError(f"invalid window {value!r}: the end is not after the start")
            return TimeWindow(self._fixed(start), self._fixed(end))
        return self.window_at(self.parse_time(value))

    def parse_time(self, text: str) -> datetime:
        """An ISO date or datetime text as an aware datetime (naive values read in the zone).

        Raises:
            ScheduleError: the text is not an ISO date or datetime.
        """
        try:
            return self._aware(datetime.fromisoformat(text.strip()))
        except ValueError:
            raise ScheduleError(
                f"invalid window {text!r}: expected an ISO date or datetime such as "
                f"'2024-01-31' or '2024-01-31T13:00', or 'START/END'"
            ) from None

    def windows(self, start: datetime | date, end: datetime | date) -> Iterator[TimeWindow]:
        """Every window that overlaps ``[start, end)``, in order.

        Dates and naive datetimes are read in the time zone, so ``windows(date(2024, 1, 1),
        date(2024, 2, 1))`` of a daily timescope gives the 31 days of January.
        """
        begin, stop = self._aware(start), self._aware(end)
        if stop <= begin:
            raise ScheduleError(
                f"the end {stop.isoformat()} is not after the start {begin.isoformat()}"
            )
        window = self.window_at(begin)
        while window.start < stop:
            yield window
            window = self.next_window(window)

    # --- schedules and names ----------------------------------------------------------------

    @property
    def default_schedule(self) -> str | None:
        """A cron expression firing at the end of every window (in the time zone).

        ``None`` for an interval no cron expression can follow evenly (e.g. 7 minutes); give
        such a pipeline a schedule of its own. Sub-minute intervals use the six-field form whose
        first field is the second.
        """
        if self.unit == "hourly":
            return "0 * * * *"
        if self.unit == "daily":
            return "0 0 * * *"
        if self.unit == "weekly":
            return f"0 0 * * {(self.week_start + 1) % 7}"
        if self.unit == "monthly":
            return "0 0 1 * *"
        assert self.interval is not None
        seconds = int(self.interval.total_seconds())
        origin = self._aware(self.origin or datetime(1970, 1, 1)).astimezone(self._tz)
        if (origin.hour * 3600 + origin.minute * 60 + origin.second) % seconds:
            return None  # the windows are not aligned with the wall clock the cron follows
        if seconds < 60:
            return f"*/{seconds} * * * * *" if 60 % seconds == 0 else None
        if seconds % 60 == 0 and seconds < 3600:
            minutes = seconds // 60
            return f"*/{minutes} * * * *" if 60 % minutes == 0 else None
        if seconds % 3600 == 0 and seconds < 86400:
            hours = seconds // 3600
            return f"0 */{hours} * * *" if 24 % hours == 0 else None
        if seconds == 86400:
            return "0 0 * * *"
        return None

    def window_label(self, window: TimeWindow) -> str:
        """A compact label for ``window`` in the time zone, used in table names.

        ``hourly``: ``20240131_23``; ``daily``: ``20240131``; ``weekly``: ``2024w05`` (ISO
        week of its start); ``monthly``: ``202401``; intervals: ``20240131_2315`` (with seconds
        when the interval is not whole minutes).
        """
        start = window.start.astimezone(self._tz)
        if self.unit == "hourly":
            return start.strftime("%Y%m%d_%H")
        if self.unit == "daily":
            return start.strftime("%Y%m%d")
        if self.unit == "weekly":
            year, week, _ = start.isocalendar()
            return f"{year}w{week:02d}"
        if self.unit == "monthly":
            return start.strftime("%Y%m")
        assert self.interval is not None
        if self.interval.total_seconds() % 60:
            return start.strftime("%Y%m%d_%H%M%S")
        return start.strftime("%Y%m%d_%H%M")


@checked_keywords
def hourly(timezone: str = "UTC") -> Timescope:
    """Hourly windows."""
    return Timescope(unit="hourly", timezone=timezone)


@checked_keywords
def daily(timezone: str = "UTC") -> Timescope:
    """Daily windows, from midnight to midnight in ``timezone``."""
    return Timescope(unit="daily", timezone=timezone)


@checked_keywords
def weekly(timezone: str = "UTC", week_start: int = 0) -> Timescope:
    """Weekly windows starting at midnight on ``week_start`` (0 = Monday ... 6 = Sunday)."""
    return Timescope(unit="weekly", timezone=timezone, week_start=week_start)


@checked_keywords
def monthly(timezone: str = "UTC") -> Timescope:
    """Calendar-month windows."""
    return Timescope(unit="monthly", timezone=timezone)


@checked_keywords
def every(
    interval: timedelta | str, timezone: str = "UTC", origin: datetime | None = None
) -> Timescope:
    """Windows of a fixed length, such as ``every("15m")`` or ``every(timedelta(hours=6))``.

    Args:
        interval: a timedelta, or a number and a unit: ``s``, ``m``, ``h``, ``d`` or ``w``.
        timezone: the time zone windows are returned in (and the default origin's).
        origin: a window boundary (default: 1970-01-01 00:00 in ``timezone``).
    """
    if isinstance(interval, str):
        interval = _parse_interval(interval)
    return Timescope(unit="interval", interval=interval, timezone=timezone, origin=origin)


def _parse_interval(text: str) -> timedelta:
    match = _INTERVAL_RE.match(text)
    if match is None:
        raise ScheduleError(
            f"invalid timescope {text!r}: expected one of {', '.join(TIMESCOPES)} or an "
            f"interval such as '15m', '6h' or '2d'"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@checked_keywords
def validate_timescope(
    value: Timescope | str | timedelta, timezone: str | None = None
) -> Timescope:
    """Turn a timescope, its name, or an interval into a :class:`Timescope`.

    Args:
        value: a Timescope; ``"hourly"``, ``"daily"``, ``"weekly"``, ``"monthly"``; an interval
            such as ``"15m"``; or a ``timedelta``.
        timezone: the time zone of a timescope given by name or interval (default UTC).

    Raises:
        ScheduleError: the value is not a valid timescope.

    Example:
        >>> validate_timescope("6h").default_schedule
        '0 */6 * * *'
    """
    if isinstance(value, Timescope):
        if timezone is not None and timezone != value.timezone:
            return Timescope(**{**value.model_dump(), "timezone": timezone})
        return value
    tz = timezone or "UTC"
    if isinstance(value, timedelta):
        return every(value, tz)
    if isinstance(value, str):
        name = value.strip().lower()
        if name in TIMESCOPES:
            return Timescope(unit=name, timezone=tz)
        return every(_parse_interval(name), tz)
    raise ScheduleError(
        f"invalid timescope {value!r}: expected a Timescope, a name or an interval, "
        f"got {type(value).__name__}"
    )


@checked_keywords
def get_table_name(
    base: str, timescope: Timescope | str | timedelta, window: TimeWindow | None = None
) -> str:
    """The table name for ``base`` under ``timescope``: the one naming convention of ductwork.

    The name is ``{base}_{timescope name}`` (``events_daily``, ``events_15m``): the table that
    holds every window of that timescope. With a ``window``, the window's label is appended for
    a table per window: ``events_daily_20240131``, ``events_hourly_20240131_23``,
    ``events_weekly_2024w05``, ``events_monthly_202401`` (see :meth:`Timescope.window_label`).
    ``base`` may be qualified by a database (``analytics.events``); the suffixes go on the table.

    Raises:
        ConfigError: ``base`` is not an identifier (letters, digits and underscores).
        ScheduleError: ``timescope`` is not valid.
    """
    if not isinstance(base, str) or not _TABLE_RE.match(base):
        raise ConfigError.for_field(
            "base", f"{base!r} is not a table name (letters, digits and underscores)"
        )
    scope = validate_timescope(timescope)
    name = f"{base}_{scope.name}"
    if window is not None:
        name += f"_{scope.window_label(window)}"
    return name
