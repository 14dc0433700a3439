"""Cron schedules (pure): when the next scheduled backup is due.

Five fields as cron reads them (minute hour day-of-month month day-of-week), or six with seconds
first (as CloudNativePG's ScheduledBackup takes them), or one of @yearly @monthly @weekly @daily
@hourly. Each field: `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a list of those.
Day of week: 0-7, Sunday is 0 and 7. As in cron, when both day of month and day of week are
restricted, a day matching either is due. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# second, minute, hour, day of month, month, day of week
BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
NAMES = ("second", "minute", "hour", "day of month", "month", "day of week")
SEARCH_YEARS = 5  # a schedule with no time in this many years (Feb 30) is refused at parse


class ScheduleError(ValueError):
    """The schedule does not parse; the message says which field and why."""


def _field(text: str, index: int) -> frozenset[int]:
    low, high = BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, end = low, high
            elif "-" in span:
                first, _, last = span.partition("-")
                start, end = int(first), int(last)
            else:
                start = int(span)
                end = high if step_text else start
        except ValueError:
            raise ScheduleError(f"{NAMES[index]} {text!r} is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise ScheduleError(f"{NAMES[index]} {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is `*`
    any_weekday: bool  # day of week is `*`

    @classmethod
    def parse(cls, text: str) -> Schedule:
        fields = MACROS.get(text.strip(), text).split()
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) != 6:
            raise ScheduleError(
                f"schedule {text!r}: give 5 fields (minute hour day month weekday), "
                "6 with seconds first, or @daily, @hourly, ..."
            )
        parsed = [_field(f, i) for i, f in enumerate(fields)]
        weekdays = frozenset(d % 7 for d in parsed[5])
        seconds, minutes, hours, days, months, _ = parsed
        schedule = cls(
            text, seconds, minutes, hours, days, months, weekdays,
            any_day=fields[3] == "*", any_weekday=fields[5] == "*",
        )  # fmt: skip
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # refuses what never comes
        return schedule

    def _day_due(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        in_week = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, after: datetime) -> datetime:
        """The first due time strictly after ``after`` (aware, UTC)."""
        moment = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + timedelta(days=366 * SEARCH_YEARS)
        while moment < limit:
            if moment.month not in self.months:
                year, month = divmod(moment.month, 12)
                moment = moment.replace(year=moment.year + year, month=month + 1, day=1,
                                        hour=0, minute=0, second=0)  # fmt: skip
            elif not self._day_due(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0, second=0)
            elif moment.minute not in self.minutes:
                moment = (moment + timedelta(minutes=1)).replace(second=0)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        raise ScheduleError(f"schedule {self.text!r} is never due")
