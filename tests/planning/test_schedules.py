"""Cron schedules: the next due time, against hand-checked calendars."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from redkube.model.schedules import Schedule, ScheduleError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "due"),
    [
        ("0 3 * * *", "2026-12-01T03:00:00", "2026-12-02T03:00:00"),
        ("0 3 * * *", "2026-12-01T02:59:59", "2026-12-01T03:00:00"),
        ("*/15 * * * *", "2026-12-01T10:07:00", "2026-12-01T10:15:00"),
        ("*/20 * * * * *", "2026-12-01T10:07:41", "2026-12-01T10:08:00"),
        ("30 */2 * * * *", "2026-12-01T10:07:41", "2026-12-01T10:08:30"),
        ("0 0 1 1 *", "2026-06-01T00:00:00", "2027-01-01T00:00:00"),
        ("@daily", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),
        ("@hourly", "2026-12-01T10:00:00", "2026-12-01T11:00:00"),
        ("0 12 * * 0", "2026-12-01T00:00:00", "2026-12-06T12:00:00"),  # a Sunday
        ("0 12 * * 7", "2026-12-01T00:00:00", "2026-12-06T12:00:00"),  # 7 is Sunday too
        ("0 12 * * 1-5", "2026-12-05T00:00:00", "2026-12-07T12:00:00"),  # Sat -> Mon
        ("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        # day of month and day of week both restricted: either one
        ("0 0 15 * 1", "2026-12-01T00:00:00", "2026-12-07T00:00:00"),
        ("5,10,50 * * * *", "2026-12-01T10:11:00", "2026-12-01T10:50:00"),
        ("0 22-23/1 * * *", "2026-12-01T22:30:00", "2026-12-01T23:00:00"),
    ],
)
def test_next_due_time(schedule: str, after: str, due: str) -> None:
    assert Schedule.parse(schedule).next_after(at(after)) == at(due)


def test_due_times_step_forward() -> None:
    schedule = Schedule.parse("*/20 * * * * *")
    moment = at("2026-12-01T10:00:05")
    seen = []
    for _ in range(4):
        moment = schedule.next_after(moment)
        seen.append(moment.isoformat())
    assert seen == [
        "2026-12-01T10:00:20+00:00",
        "2026-12-01T10:00:40+00:00",
        "2026-12-01T10:01:00+00:00",
        "2026-12-01T10:01:20+00:00",
    ]


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        ("0 3 * *", "give 5 fields"),
        ("60 * * * *", "minute '60' is outside 0-59"),
        ("0 24 * * *", "hour '24' is outside 0-23"),
        ("0 0 0 * *", "day of month '0' is outside 1-31"),
        ("0 0 * 13 *", "month '13' is outside 1-12"),
        ("0 0 * * 8", "day of week '8' is outside 0-7"),
        ("*/0 * * * *", "minute '*/0' is outside 0-59"),
        ("a * * * *", "minute 'a' is not a number"),
        ("0 0 30 2 *", "is never due"),
    ],
)
def test_bad_schedules_say_which_field(schedule: str, said: str) -> None:
    with pytest.raises(ScheduleError, match=said.replace("*", r"\*")):
        Schedule.parse(schedule)
