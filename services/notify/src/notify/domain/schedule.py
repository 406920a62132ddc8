"""When each message falls due, in the clinic's zone.

Pure rules, from the policy's `notify` section (defaults in parentheses):
- fasting: the evening before (18:00), and when the fasting window opens (4 hours before the
  start; clear water until 2 hours before). When the window opens in quiet hours, the evening
  message has said it already, so the second one is left out;
- ride home: 24 hours before on the clinic's clock (the same local time the day before),
  asking the patient to confirm the ride;
- medication holds, per class on the intake: benzodiazepines and lamotrigine the day before,
  cannabis 3 days before; each at the evening-reminder time of that day;
- a waitlist offer at once, and again before it expires (30 minutes before, at most half-way
  through the offer's time);
- aftercare, when the clinic enables it: a check-in each day for 14 days after a course, and
  for mood courses a questionnaire link every 14 days;
- quiet hours (21:00-08:00, and the patient's own): a message due inside them is moved
  earlier, to just before they begin, never into them. A message that cannot move earlier
  (it is due now, or its earlier time has passed) waits for the quiet hours to end.

Calendar arithmetic ("the evening before", "3 days before", "24 hours before") is done on
clinic-local dates and times, so a daylight-saving change between the reminder and the
appointment moves none of them on the clinic's clock. The fasting window is counted in elapsed
hours: it is about the patient's last meal, not the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from clinic_shared.policy import AftercarePolicy, NotifyPolicy, QuietHours

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
    """`fasting`, `ride_home`, `medication_hold`, `waitlist_offer` or `aftercare`."""
    step: str
    """Which one of its kind: `evening_before`, `window_opens`, `24h_before`, the class, ..."""
    planned_at: datetime
    """When the rule puts it, in UTC, before quiet hours are applied."""
    due_at: datetime
    """When it goes out, in UTC: `planned_at` moved out of quiet hours."""


def in_quiet_hours(local: time, quiet: QuietHours) -> bool:
    if quiet.start <= quiet.end:
        return quiet.start <= local < quiet.end
    return local >= quiet.start or local < quiet.end  # the hours span midnight


def _quiet_at(
    instant: datetime, windows: Sequence[QuietHours], zone: ZoneInfo
) -> QuietHours | None:
    local = instant.astimezone(zone).time()
    return next((w for w in windows if in_quiet_hours(local, w)), None)


def _quiet_began(local: datetime, quiet: QuietHours, zone: ZoneInfo) -> datetime:
    day = local.date()
    if quiet.start > quiet.end and local.time() < quiet.end:
        day -= timedelta(days=1)  # early morning: the quiet hours began the evening before
    return datetime.combine(day, quiet.start, tzinfo=zone)


def before_quiet_hours(
    due: datetime, quiet: QuietHours | Sequence[QuietHours], zone: ZoneInfo
) -> datetime:
    """`due`, or the last moment before the quiet hours it falls in began (in UTC)."""
    windows = [quiet] if isinstance(quiet, QuietHours) else list(quiet)
    moved = due.astimezone(UTC)
    for _ in range(2 * len(windows) + 1):  # each move leaves one window; overlaps chain
        window = _quiet_at(moved, windows, zone)
        if window is None:
            return moved
        began = _quiet_began(moved.astimezone(zone), window, zone)
        moved = (began - BEFORE_QUIET).astimezone(UTC)
    return moved


def after_quiet_hours(now: datetime, windows: Sequence[QuietHours], zone: ZoneInfo) -> datetime:
    """`now`, or when the quiet hours it falls in end (in UTC)."""
    moved = now.astimezone(UTC)
    for _ in range(2 * len(windows) + 1):
        window = _quiet_at(moved, windows, zone)
        if window is None:
            return moved
        local = moved.astimezone(zone)
        day = local.date()
        if window.start > window.end and local.time() >= window.start:
            day += timedelta(days=1)  # evening: the quiet hours end tomorrow morning
        moved = datetime.combine(day, window.end, tzinfo=zone).astimezone(UTC)
    return moved


def place(
    planned_at: datetime, now: datetime, windows: Sequence[QuietHours], zone: ZoneInfo
) -> datetime:
    """When a message planned for `planned_at` goes out, seen from `now`: earlier out of quiet
    hours when it can, otherwise as soon as they allow."""
    due = before_quiet_hours(planned_at, windows, zone)
    return due if due >= now else after_quiet_hours(now, windows, zone)


def quiet_windows(policy: NotifyPolicy, own: QuietHours | None) -> list[QuietHours]:
    """The clinic's quiet hours, and the patient's own where they set them."""
    return [policy.quiet_hours] if own is None else [policy.quiet_hours, own]


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _wall_clock_before(start: datetime, hours: int, zone: ZoneInfo) -> datetime:
    wall = start.astimezone(zone).replace(tzinfo=None) - timedelta(hours=hours)
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _placed(
    planned: list[tuple[str, str, datetime]],
    now: datetime,
    windows: Sequence[QuietHours],
    zone: ZoneInfo,
) -> list[Reminder]:
    placed = [Reminder(k, s, at, place(at, now, windows, zone)) for k, s, at in planned]
    return sorted(placed, key=lambda r: (r.due_at, r.kind, r.step))


def reminders(
    appointment: Appointment,
    policy: NotifyPolicy,
    zone: ZoneInfo,
    *,
    now: datetime | None = None,
    windows: Sequence[QuietHours] | None = None,
) -> list[Reminder]:
    """Every reminder for the appointment, with quiet hours applied, earliest first.

    `now` is when they are planned (a reminder whose time has passed goes out at once);
    `windows` the quiet hours (the clinic's by default)."""
    if not appointment.infusion:
        return []
    quiet = [policy.quiet_hours] if windows is None else list(windows)
    start = appointment.start.astimezone(UTC)
    day = start.astimezone(zone).date()
    evening = policy.fasting.evening_before_at
    planned: list[tuple[str, str, datetime]] = [
        ("fasting", "evening_before", _local(day - timedelta(days=1), evening, zone)),
        ("ride_home", "24h_before", _wall_clock_before(start, policy.ride_home_hours_before, zone)),
    ]
    window_opens = start - timedelta(hours=policy.fasting.no_food_hours)
    if _quiet_at(window_opens, quiet, zone) is None:
        planned.append(("fasting", "window_opens", window_opens))
    for medication, hold in sorted(policy.medication_holds.items()):
        if medication in appointment.medication_classes:
            due = _local(day - timedelta(days=hold.days_before), evening, zone)
            planned.append(("medication_hold", medication, due))
    return _placed(planned, now or datetime.min.replace(tzinfo=UTC), quiet, zone)


def offer_reminders(
    made_at: datetime,
    expires_at: datetime,
    policy: NotifyPolicy,
    zone: ZoneInfo,
    windows: Sequence[QuietHours],
) -> list[Reminder]:
    """The offer at once, and a reminder before it expires (none for a very short offer)."""
    planned = [("waitlist_offer", "offered", made_at)]
    recall = max(
        made_at + (expires_at - made_at) / 2,
        expires_at - timedelta(minutes=policy.offer_reminder_minutes_before),
    )
    if timedelta(minutes=5) <= expires_at - recall and recall > made_at:
        planned.append(("waitlist_offer", "expiring", recall))
    return _placed(planned, made_at, windows, zone)


def aftercare(
    course_finished_at: datetime,
    mood: bool,
    policy: AftercarePolicy,
    zone: ZoneInfo,
    windows: Sequence[QuietHours],
) -> list[Reminder]:
    """Check-ins each day after the course, and questionnaire links for mood courses."""
    if not policy.enabled:
        return []
    day = course_finished_at.astimezone(zone).date()
    planned = [
        ("aftercare", f"check_in_{n}", _local(day + timedelta(days=n), policy.send_at, zone))
        for n in range(1, policy.daily_check_in_days + 1)
    ]
    if mood:
        every = policy.questionnaire_every_days
        planned += [
            (
                "aftercare",
                f"questionnaire_{n}",
                _local(day + timedelta(days=every * n), policy.send_at, zone),
            )
            for n in range(1, policy.questionnaires + 1)
        ]
    return _placed(planned, course_finished_at, windows, zone)
