"""Notify's HTTP request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinic_shared.http import LocalTime

ChannelName = Literal["email", "sms", "push"]


class NotificationOut(BaseModel):
    id: UUID
    kind: str
    """`welcome`, `confirmation`, `change`, `cancellation`, `fasting`, `ride_home`,
    `medication_hold`, `waitlist_offer`, `receipt`, `payment_failed`, `plan_delinquent`,
    `aftercare`."""
    step: str
    """Which one of its kind, e.g. `evening_before` or `window_opens` for `fasting`."""
    channel: ChannelName
    due_at: datetime
    status: str
    """`scheduled`, `claimed`, `sending`, `sent`, `failed`, `unknown`, `cancelled`, `expired`."""
    subject_id: UUID | None
    """The appointment, course, offer, charge or plan it is about."""
    sent_at: datetime | None
    attempts: int


class NotificationList(BaseModel):
    patient_id: UUID
    notifications: list[NotificationOut]


class QuietHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: LocalTime
    end: LocalTime

    @model_validator(mode="after")
    def _whole_minutes_not_empty(self) -> Self:
        # Kept as HH:MM: 10:00:01 to 10:00 would be stored as an empty 10:00 to 10:00.
        if self.start.second or self.end.second:
            raise ValueError("quiet hours are whole minutes (HH:MM)")
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")
        return self


class PreferencesIn(BaseModel):
    """The patient's channels and their own quiet hours (on top of the clinic's)."""

    model_config = ConfigDict(extra="forbid")

    channels: list[ChannelName] = Field(min_length=1, max_length=3)
    quiet_hours: QuietHoursIn | None = None
    push_device: str | None = Field(default=None, min_length=8, max_length=512)
    """The patient app's device token; needed for `push`."""

    @model_validator(mode="after")
    def _push_needs_a_device(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("a channel is listed twice")
        if "push" in self.channels and self.push_device is None:
            raise ValueError("push needs the app's device token (push_device)")
        return self


class PreferencesOut(BaseModel):
    patient_id: UUID
    channels: list[ChannelName]
    quiet_hours: QuietHoursIn | None
    clinic_quiet_hours: QuietHoursIn
    push_device_registered: bool
