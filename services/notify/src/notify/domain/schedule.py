"""When each reminder for an appointment falls due, in the clinic's zone.

Pure rules, from the policy's `notify` section (defaults in parentheses):
- fasting: the evening before (18:00), and when the fasting window opens (4 hours before the
  start; clear water until 2 hours before). When the window opens in quiet hours, the evening
  message has said it already, so the second one is left out;
- ride home: 24 hours before on the clinic's clock (the same local time the day before),
  asking the patient to confirm the ride;
- medication holds, per class on the intake: benzodiazepines and lamotrigine the day before,
  cannabis 3 days before; each at the evening-reminder time of that day;
- quiet hours (21:00-08:00): a message due inside them is moved earlier, to just before they
  begin, never into them.

Calendar arithmetic ("the evening before", "3 days before", "24 hours before") is done on
clinic-local dates and times, so a daylight-saving change between the reminder and the
appointment moves none of them on the clinic's clock. The fasting window is counted in elapsed
hours: it is about the patient's last meal, not the clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from clinic_shared.policy import NotifyPolicy, QuietHours

BEFORE_QUIET = timedelta(minutes=1)
"""How long before quiet hours begin a moved message falls due."""


@dataclass(frozen=True)
class Appointment:
    start: datetime
    """An aware instant."""
    infusion: bool
    """Infusions get fasting, ride-home and medication reminders; consults do not."""
    medication_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reminder:
    kind: str
    """`fasting`, `ride_home` or `medication_hold`."""
    step: str
    """Which one of its kind: `evening_before`, `window_opens`, `24h_before`, or the class."""
    due_at: datetime
    """In UTC."""


def in_quiet_hours(local: time, quiet: QuietHours) -> bool:
    if quiet.start <= quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # the hours span midnight


def before_quiet_hours(due: datetime, quiet: QuietHours, zone: ZoneInfo) -> datetime:
    """`due`, or the last moment before the quiet hours it falls in began."""
    local = due.astimezone(zone)
    if not in_quiet_hours(local.timetz().replace(tzinfo=None), quiet):
        return due.astimezone(UTC)
    day = local.date()
    if quiet.start > quiet.end and local.time() < quiet.end:
        day -= timedelta(days=1)  # early morning: the quiet hours began the evening before
    began = datetime.combine(day, quiet.start, tzinfo=zone)
    return (began - BEFORE_QUIET).astimezone(UTC)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _wall_clock_before(start: datetime, hours: int, zone: ZoneInfo) -> datetime:
    wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=hours)
    return wall.replace(tzinfo=zone).astimezone(UTC)


def reminders(appointment: Appointment, policy: NotifyPolicy, zone: ZoneInfo) -> list[Reminder]:
    """Every reminder for the appointment, with quiet hours applied, earliest first."""
    if not appointment.infusion:
        return []
    start = appointment.start.astimezone(UTC)
    day = start.astimezone(zone).date()
    evening = policy.fasting.evening_before_at
    quiet = policy.quiet_hours
    planned: list[Reminder] = [
        Reminder("fasting", "evening_before", _local(day - timedelta(days=1), evening, zone)),
        Reminder(
            "ride_home",
            "24h_before",
            _wall_clock_before(start, policy.ride_home_hours_before, zone),
        ),
    ]
    window_opens = start - timedelta(hours=policy.fasting.no_food_hours)
    if not in_quiet_hours(window_opens.astimezone(zone).time(), quiet):
        planned.append(Reminder("fasting", "window_opens", window_opens))
    for medication, hold in sorted(policy.medication_holds.items()):
        if medication in appointment.medication_classes:
            due = _local(day - timedelta(days=hold.days_before), evening, zone)
            planned.append(Reminder("medication_hold", medication, due))
    moved = (Reminder(r.kind, r.step, before_quiet_hours(r.due_at, quiet, zone)) for r in planned)
    return sorted(moved, key=lambda r: (r.due_at, r.kind, r.step))
