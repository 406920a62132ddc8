"""The waitlist API's request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from clinic_shared.http import DateText, LocalTime

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowIn(_Body):
    start_time: LocalTime = Field(description="Clinic-local time the patient can arrive from")
    end_time: LocalTime = Field(description="Clinic-local time the patient must leave by")

    @model_validator(mode="after")
    def _ordered(self) -> WindowIn:
        if self.start_time >= self.end_time:
            raise ValueError("start_time must be before end_time")
        return self


class PreferencesIn(_Body):
    weekdays: list[Weekday] = Field(default_factory=list, max_length=7)
    """Days the patient can come; empty: any day."""
    windows: list[WindowIn] = Field(default_factory=list, max_length=14)
    """Time windows each visit must fit inside; empty: any time the clinic is open."""


class EntryIn(_Body):
    patient_id: UUID
    protocol: str = Field(min_length=1, max_length=32)
    earliest_start: DateText
    preferences: PreferencesIn = Field(default_factory=PreferencesIn)
    priority: Literal["routine", "urgent"] = "routine"
    """`urgent` may be set only by a clinician or scheduler."""


class EntryPatch(_Body):
    position: StrictInt | None = Field(default=None, ge=1)
    """Move to this 1-based place among the waiting entries of the same priority."""
    paused: StrictBool | None = None
    priority: Literal["routine", "urgent"] | None = None
    earliest_start: DateText | None = None
    preferences: PreferencesIn | None = None


class WindowOut(BaseModel):
    start_time: str
    end_time: str


class PreferencesOut(BaseModel):
    weekdays: list[str]
    windows: list[WindowOut]


class EntryOut(BaseModel):
    id: UUID
    patient_id: UUID
    protocol: str
    family: str
    earliest_start: date
    preferences: PreferencesOut
    priority: str
    status: str
    """`active`, `paused`, `fulfilled` or `removed`."""
    created_at: datetime
    fulfilled_at: datetime | None
    first_infusion_at: datetime | None
    position: int | None = None
    """Place in the queue (1 = offered first) when listed as the queue."""


class EntryList(BaseModel):
    entries: list[EntryOut]


class SlotOut(BaseModel):
    appointment_id: UUID
    chair_id: str
    start: datetime
    end: datetime


class OfferOut(BaseModel):
    id: UUID
    entry_id: UUID
    patient_id: UUID
    block_id: UUID
    hold_id: UUID
    protocol: str
    status: str
    """`open`, `accepting` (accepted, booking not yet confirmed), `accepted`, `declined`,
    `expired`, `failed` (booking refused; see `failure_reason`) or `withdrawn`."""
    slots: list[SlotOut]
    made_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    manual: bool
    failure_reason: str | None
    course_id: UUID | None


class OfferList(BaseModel):
    offers: list[OfferOut]


class ManualOfferIn(_Body):
    block_id: UUID
    entry_id: UUID


class BlockOut(BaseModel):
    id: UUID
    hold_id: UUID
    parent_id: UUID | None
    kind: str
    protocol: str
    family: str
    status: str
    """`offered`, `booked`, `split` (into single-slot blocks) or `unclaimed`."""
    slots: list[SlotOut]
    released_at: datetime
    decided_at: datetime | None


class BlockList(BaseModel):
    blocks: list[BlockOut]
