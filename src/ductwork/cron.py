"""Cron expressions and cron jobs: when the scheduler runs a registered pipeline.

Expressions are read by cronsim, the cron library aiocron uses, so what validates here runs
under the scheduler.

Example:
    >>> from datetime import datetime, UTC
    >>> job = CronJob("nightly", "nightly", validate_schedule("@daily"), timezone="Europe/Paris")
    >>> job.schedule, job.next_fire_time(datetime(2024, 7, 1, 12, 0, tzinfo=UTC)).isoformat()
    ('0 0 * * *', '2024-07-02T00:00:00+02:00')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from cronsim import CronSim, CronSimError

from ._exceptions import ScheduleError
from .timescope import resolve_timezone

__all__ = ["CronJob", "check_timezone", "validate_schedule"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def validate_schedule(schedule: str) -> str:
    """Check a cron expression and return it normalised (single spaces, aliases expanded).

    Expressions are read by cronsim, the cron library aiocron uses: five fields (minute, hour,
    day of month, month, day of week), or six with the **second first**
    (``"*/10 * * * * *"``: every ten seconds). ``@hourly``, ``@daily``, ``@weekly``,
    ``@monthly`` and ``@yearly`` are accepted too.

    Raises:
        ScheduleError: the expression is not valid, with the reason (``Bad minute``, ...).

    Example:
        >>> validate_schedule("  */15   *  * * *")
        '*/15 * * * *'
        >>> validate_schedule("61 * * * *")
        Traceback (most recent call last):
        ...
        ductwork._exceptions.ScheduleError: invalid cron expression '61 * * * *': Bad minute
    """
    if not isinstance(schedule, str):
        raise ScheduleError(
            f"invalid cron expression {schedule!r}: expected a string, "
            f"got {type(schedule).__name__}"
        )
    text = " ".join(schedule.split())
    text = _ALIASES.get(text.lower(), text)
    try:
        next(CronSim(text, datetime(2000, 1, 1, tzinfo=UTC)))
    except (CronSimError, ValueError, IndexError) as exc:
        raise ScheduleError(f"invalid cron expression {schedule!r}: {exc}") from None
    return text


def check_timezone(timezone: str) -> str:
    """Return ``timezone`` if it is a known IANA time zone name, else raise ScheduleError."""
    if not isinstance(timezone, str):
        raise ScheduleError(f"invalid time zone {timezone!r}")
    resolve_timezone(timezone)
    return timezone


@dataclass(frozen=True, slots=True)
class CronJob:
    """A schedule on which the scheduler runs a registered pipeline.

    Attributes:
        name: the job's name (a pipeline registered with a schedule has a job of the same name).
        pipeline: the name of the registered pipeline it runs.
        schedule: the normalised cron expression (see :func:`validate_schedule`).
        timezone: the IANA time zone the expression is read in.
        params: parameters for every run the job starts.
        enabled: whether the scheduler runs the job.
        description: free text.
    """

    name: str
    pipeline: str
    schedule: str
    timezone: str = "UTC"
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, hash=False)
    enabled: bool = True
    description: str = ""

    def fire_times(self, after: datetime | None = None, count: int = 1) -> list[datetime]:
        """The next ``count`` times the job fires after ``after`` (default: now), in its zone."""
        tz = resolve_timezone(self.timezone)
        start = (after or datetime.now(UTC)).astimezone(tz)
        times = CronSim(self.schedule, start)
        return [next(times) for _ in range(count)]

    def next_fire_time(self, after: datetime | None = None) -> datetime:
        """The next time the job fires after ``after`` (default: now), in its time zone."""
        return self.fire_times(after, 1)[0]
