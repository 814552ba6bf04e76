"""RunContext and TimeWindow."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ductwork import RunContext, TimeWindow


def test_window_across_a_dst_change_has_its_real_length() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 2024-03-31: clocks go from 02:00 to 03:00, so this day lasts 23 hours.
    window = TimeWindow(datetime(2024, 3, 31, tzinfo=paris), datetime(2024, 4, 1, tzinfo=paris))
    assert window.duration_seconds == 23 * 3600


def test_window_end_must_be_after_start_as_instants() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 2024-10-27: 02:30 happens twice; fold=1 (the second, +01:00) is after fold=0 (+02:00).
    first = datetime(2024, 10, 27, 2, 30, tzinfo=paris)
    second = datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=paris)
    assert TimeWindow(first, second).duration_seconds == 3600
    with pytest.raises(ValueError, match="not after its start"):
        TimeWindow(second, first)


def test_window_formats_in_templates() -> None:
    window = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    assert "{window.start:%Y-%m-%d}".format(window=window) == "2026-01-01"  # noqa: UP032
    assert str(window) == "[2026-01-01T00:00:00+00:00, 2026-01-02T00:00:00+00:00)"


def test_child_context_has_a_new_run_id_and_the_same_window_and_params() -> None:
    window = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    parent = RunContext(pipeline="parent", window=window, params={"k": 1})
    child = parent.child("kid")
    assert child.run_id != parent.run_id
    assert child.parent_run_id == parent.run_id
    assert child.pipeline == "kid"
    assert child.window is window
    assert child.params == {"k": 1}
