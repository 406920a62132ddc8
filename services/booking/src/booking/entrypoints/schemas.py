"""Booking's HTTP request and response bodies."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

E164 = r"^\+[1-9]\d{7,14}$"


class PatientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: date
    email: EmailStr
    phone: str = Field(pattern=E164, description="E.164, e.g. +15035550100")


class PatientOut(BaseModel):
    id: UUID
    first_name: str
    last_name: str
    date_of_birth: date
    email: str
    phone: str
    registered_at: datetime
    registered_by: Literal["patient", "staff"]
