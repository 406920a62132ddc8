"""Appointments as an iCalendar (RFC 5545) attachment, so a patient's calendar app can add them.

A `REQUEST` adds or updates events; a `CANCEL` removes them. Calendar apps match an update to
the event they hold by UID, and take it only when its SEQUENCE is higher than the one they
have, so a reschedule keeps the UID and raises the sequence. Times go out in UTC: no VTIMEZONE
to get wrong, and every calendar app shows them in the reader's own zone.

The summary and location land in the patient's calendar, which others may see: callers keep
them neutral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress

from notify.domain.ports import Attachment

PRODID = "-//Clinic back office//notify//EN"
DEFAULT_ORGANIZER_EMAIL = "noreply@notify.clinic.invalid"


@dataclass(frozen=True)
class CalendarEvent:
    uid: str
    sequence: int
    start: datetime
    """Timezone-aware, as is `end`."""
    end: datetime
    summary: str
    location: str
    cancelled: bool = False


def calendar_attachment(
    events: Sequence[CalendarEvent],
    *,
    method: Literal["REQUEST", "CANCEL"],
    organizer_name: str,
    stamp: datetime,
    filename: str = "appointment.ics",
    organizer_email: str = DEFAULT_ORGANIZER_EMAIL,
) -> Attachment:
    """A VCALENDAR with one VEVENT per event; a CANCEL carries only cancelled events."""
    if not events:
        raise ValueError("a calendar attachment needs at least one event")
    if method == "CANCEL" and not all(event.cancelled for event in events):
        raise ValueError("a CANCEL carries cancelled events only")
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", method)
    organizer = vCalAddress(f"mailto:{organizer_email}")
    organizer.params["cn"] = organizer_name
    for event in events:
        if not event.end > event.start:
            raise ValueError(f"event {event.uid} ends before it starts")
        component = Event()
        component.add("uid", event.uid)
        component.add("sequence", event.sequence)
        component.add("dtstamp", _utc(stamp))
        component.add("dtstart", _utc(event.start))
        component.add("dtend", _utc(event.end))
        component.add("summary", event.summary)
        component.add("location", event.location)
        component.add("organizer", organizer)
        component.add("status", "CANCELLED" if event.cancelled else "CONFIRMED")
        calendar.add_component(component)
    return Attachment(
        filename=filename,
        content_type=f"text/calendar; method={method}; charset=utf-8",
        data=calendar.to_ical(),
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a naive datetime in a calendar event: {moment!r}")
    return moment.astimezone(UTC)
