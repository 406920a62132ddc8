"""A message's words: its facts, the clinic's details and the patient's contact, through the
templates, into an e-mail (with a calendar file for notices) or a text.

Texts (SMS, push) get a reduced context: the clinic's neutral sender name and phone, times and
amounts. The patient's name, the clinic's full name (which may name the treatment), the
medication class and the protocol are simply not there for a text template to show.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clinic_shared.policy import Policy
from notify.adapters.calendar import CalendarEvent, calendar_attachment
from notify.adapters.templates import Templates
from notify.domain.model import Channel, Kind, Message
from notify.domain.ports import Contact, Email, TextMessage

MEDICATION_LABELS = {
    "benzodiazepine": "benzodiazepines (such as alprazolam, clonazepam or lorazepam)",
    "lamotrigine": "lamotrigine",
    "cannabis": "cannabis",
}


def clock(local: datetime) -> str:
    return f"{local.hour % 12 or 12}:{local:%M} {'AM' if local.hour < 12 else 'PM'}"


def day(local: datetime) -> str:
    return f"{local:%A}, {local:%B} {local.day}"


def when(instant: datetime, zone: ZoneInfo) -> str:
    local = instant.astimezone(zone)
    return f"{day(local)} at {clock(local)}"


def money(cents: int, currency: str) -> str:
    amount = f"{cents / 100:,.2f}"
    return f"${amount}" if currency.lower() == "usd" else f"{amount} {currency.upper()}"


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def text_context(message: Message, policy: Policy) -> dict[str, Any]:
    """What a text template may show."""
    zone = policy.clinic.tz
    facts = message.facts
    context: dict[str, Any] = {
        "sender": policy.notify.sender_name,
        "clinic_phone": policy.clinic.phone,
        "step": message.step,
        "cancellation_hours": policy.booking.cancellation.window_hours,
    }
    if "start" in facts:
        start = _instant(facts["start"])
        fasting = policy.notify.fasting
        context |= {
            "when": when(start, zone),
            "time": clock(start.astimezone(zone)),
            "no_food_from": clock(
                (start - timedelta(hours=fasting.no_food_hours)).astimezone(zone)
            ),
            "clear_water_until": clock(
                (start - timedelta(hours=fasting.clear_water_until_hours)).astimezone(zone)
            ),
            "pickup_inside": bool(facts.get("pickup_inside")),
        }
        if message.kind is Kind.MEDICATION_HOLD:
            hold = policy.notify.medication_holds.get(message.step)
            days = hold.days_before if hold is not None else 1
            hold_day = start.astimezone(zone).date() - timedelta(days=days)
            context["hold_from"] = f"{hold_day:%A}, {hold_day:%B} {hold_day.day}"
    if "previous_start" in facts:
        context["previous_when"] = when(_instant(facts["previous_start"]), zone)
    if "appointments" in facts and isinstance(facts["appointments"], list):
        context["appointments"] = [when(_instant(a["start"]), zone) for a in facts["appointments"]]
    if "fee_cents" in facts:
        fee = int(facts["fee_cents"])
        context["fee"] = money(fee, policy.billing.currency) if fee else None
    if "expires_at" in facts:
        expires = _instant(facts["expires_at"]).astimezone(zone)
        context["expires"] = f"{clock(expires)} on {day(expires)}"
        context["first_slot"] = when(_instant(facts["first_slot_start"]), zone)
        context["offered_count"] = int(facts.get("appointments", 1))
    if "amount_cents" in facts:
        context["amount"] = money(int(facts["amount_cents"]), facts.get("currency", "usd"))
    if "paid_at" in facts:
        context["paid_on"] = day(_instant(facts["paid_at"]).astimezone(zone))
    if "next_attempt_at" in facts:
        upcoming = facts["next_attempt_at"]
        context["next_attempt"] = day(_instant(upcoming).astimezone(zone)) if upcoming else None
    if message.kind is Kind.AFTERCARE:
        context["day"] = facts.get("day")
        context["questionnaire"] = message.step.startswith("questionnaire")
        context["questionnaire_url"] = facts.get("questionnaire_url", "")
    return context


def email_context(message: Message, policy: Policy, contact: Contact) -> dict[str, Any]:
    context = text_context(message, policy)
    context |= {
        "first_name": contact.first_name,
        "clinic_name": policy.clinic.name,
        "clinic_address": policy.clinic.address,
    }
    if message.kind is Kind.MEDICATION_HOLD:
        context["medication"] = MEDICATION_LABELS.get(message.step, message.step)
    return context


def _calendar(message: Message, policy: Policy, now: datetime) -> tuple[Any, ...]:
    if message.kind not in (Kind.CONFIRMATION, Kind.CHANGE, Kind.CANCELLATION):
        return ()
    cancelled = message.kind is Kind.CANCELLATION
    events = [
        CalendarEvent(
            uid=f"{item['appointment_id']}@clinic-notify",
            sequence=int(item.get("sequence", 0)),
            start=_instant(item["start"]),
            end=_instant(item["end"]),
            summary=f"Appointment: {policy.notify.sender_name}",
            location=policy.clinic.address,
            cancelled=cancelled,
        )
        for item in message.facts.get("appointments", [])
    ]
    if not events:
        return ()
    attachment = calendar_attachment(
        events,
        method="CANCEL" if cancelled else "REQUEST",
        organizer_name=policy.notify.sender_name,
        stamp=now,
        filename="cancelled.ics" if cancelled else "appointment.ics",
    )
    return (attachment,)


def compose_email(
    message: Message,
    policy: Policy,
    contact: Contact,
    address: str,
    templates: Templates,
    now: datetime,
) -> Email:
    rendered = templates.email(message.kind.value, email_context(message, policy, contact))
    return Email(
        to=address,
        subject=rendered.subject,
        text=rendered.body,
        reference=str(message.id),
        attachments=_calendar(message, policy, now),
    )


def compose_text(
    message: Message, policy: Policy, address: str, templates: Templates
) -> TextMessage:
    return TextMessage(
        to=address,
        body=templates.text(message.kind.value, text_context(message, policy)),
        reference=str(message.id),
        title=policy.notify.sender_name if message.channel is Channel.PUSH else "",
    )
