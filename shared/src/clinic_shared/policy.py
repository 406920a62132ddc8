"""The clinic policy: every rule default of the product, from one YAML file, validated at start-up.

The defaults ship as `default_policy.yaml` beside this module. A clinic's own file (named by
`CLINIC_POLICY_FILE`) is merged over them: mappings key by key, lists and values replaced. The
merged document is validated here; a bad file stops the service at start-up with every problem
listed by its path in the file. Services read their own section (`policy.booking`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import cache, cached_property
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Minutes = Annotated[int, Field(gt=0, le=24 * 60)]
Cents = Annotated[int, Field(ge=0)]


class PolicyError(ValueError):
    """The policy file cannot be read or does not validate; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Provider(_Strict):
    name: str
    npi: str = Field(pattern=r"^\d{10}$")
    credentials: str = ""


class ClinicPolicy(_Strict):
    name: str
    zone: str
    address: str
    phone: str
    tax_id: str = ""
    npi: str = Field(default="", pattern=r"^(\d{10})?$")
    providers: list[Provider] = Field(default_factory=list)

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


class OpeningInterval(_Strict):
    open: time
    close: time

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.close <= self.open:
            raise ValueError(f"closes ({self.close}) before it opens ({self.open})")
        return self


class Family(StrEnum):
    MOOD = "mood"
    PAIN = "pain"
    CONSULT = "consult"
    BY_CONDITION = "by_condition"


class Resource(StrEnum):
    CHAIR = "chair"
    CLINICIAN = "clinician"
    OFFICE = "office"


class CourseRule(_Strict):
    """How the appointments of one course may be spread over calendar days (clinic zone)."""

    count: int = Field(ge=1, le=20)
    window_days: int | None = Field(default=None, ge=1)
    """All dates fall within this many calendar days, counting the first day as day 1."""
    min_gap_days: int = Field(default=1, ge=0)
    """Calendar days from one appointment to the next, at least."""
    max_gap_days: int | None = Field(default=None, ge=0)
    max_per_calendar_week: int | None = Field(default=None, ge=1)
    """Monday-to-Sunday weeks in the clinic zone."""
    same_start_time: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_gap_days is not None and self.max_gap_days < self.min_gap_days:
            raise ValueError("max_gap_days is below min_gap_days")
        if self.count > 1 and self.window_days is not None:
            if (self.count - 1) * self.min_gap_days + 1 > self.window_days:
                raise ValueError("count appointments cannot fit window_days with min_gap_days")
        return self


class ProtocolPolicy(_Strict):
    family: Family
    resource: Resource
    course: CourseRule
    induction: bool = False
    infusion_minutes: Minutes | None = None
    recovery_minutes: int = Field(default=0, ge=0, le=24 * 60)
    duration_minutes: Minutes | None = None
    """Consults only: the length of the slot."""

    @model_validator(mode="after")
    def _shape(self) -> Self:
        chair = self.resource is Resource.CHAIR
        if chair and self.family is Family.CONSULT:
            raise ValueError("a consult does not take a chair")
        if not chair and self.duration_minutes is None:
            raise ValueError("a protocol without a chair needs duration_minutes")
        if chair and self.family is not Family.BY_CONDITION and self.infusion_minutes is None:
            raise ValueError("an infusion protocol needs infusion_minutes")
        if self.induction and not chair:
            raise ValueError("an induction course is given in a chair")
        return self

    @property
    def is_infusion(self) -> bool:
        return self.resource is Resource.CHAIR

    def family_for(self, condition: str | None) -> Family | None:
        """The family a course of this protocol counts in: its own, or for a by-condition
        protocol (maintenance) the patient's condition, when that is mood or pain; else None."""
        if self.family is not Family.BY_CONDITION:
            return self.family
        return Family(condition) if condition in (Family.MOOD, Family.PAIN) else None


class CancellationPolicy(_Strict):
    window_hours: int = Field(ge=0, le=24 * 14)
    no_show_grace_minutes: int = Field(ge=0, le=24 * 60)
    series_release: Literal["auto", "scheduler_review"]

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_hours)


class BookingPolicy(_Strict):
    chairs: int = Field(ge=1, le=200)
    consult_resources: dict[str, Annotated[int, Field(ge=0, le=50)]]
    opening_hours: dict[str, list[OpeningInterval]]
    first_visit_minutes: Minutes
    slot_step_minutes: Minutes
    search_horizon_days: int = Field(ge=1, le=366)
    search_default_limit: int = Field(ge=1)
    search_max_limit: int = Field(ge=1, le=500)
    protocols: dict[str, ProtocolPolicy]
    cancellation: CancellationPolicy
    screening_blocking_flags: list[str]

    @field_validator("consult_resources")
    @classmethod
    def _resource_kinds(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(value) - {Resource.CLINICIAN.value, Resource.OFFICE.value})
        if unknown:
            raise ValueError(f"unknown consult resources {unknown}; use clinician, office")
        return value

    @field_validator("opening_hours")
    @classmethod
    def _weekdays(cls, value: dict[str, list[OpeningInterval]]) -> dict[str, list[OpeningInterval]]:
        unknown = sorted(set(value) - set(WEEKDAYS))
        if unknown:
            raise ValueError(f"unknown weekdays {unknown}; use {list(WEEKDAYS)}")
        for day, intervals in value.items():
            ordered = sorted(intervals, key=lambda i: i.open)
            for before, after in pairwise(ordered):
                if after.open < before.close:
                    raise ValueError(f"{day}: opening intervals overlap")
        return value

    @model_validator(mode="after")
    def _references(self) -> Self:
        if self.search_default_limit > self.search_max_limit:
            raise ValueError("search_default_limit is above search_max_limit")
        for name, protocol in self.protocols.items():
            if protocol.resource is not Resource.CHAIR:
                if self.consult_resources.get(protocol.resource.value, 0) < 1:
                    raise ValueError(f"protocol {name} needs a {protocol.resource.value} resource")
        for name, protocol in self.protocols.items():
            if protocol.family is Family.BY_CONDITION:
                for family in (Family.MOOD, Family.PAIN):
                    if self.family_protocol(family) is None:
                        raise ValueError(
                            f"protocol {name} takes its chair time from a {family.value} "
                            "protocol, and there is none"
                        )
        return self

    def family_protocol(self, family: Family) -> ProtocolPolicy | None:
        """The protocol whose chair time a by-condition protocol (maintenance) borrows."""
        for protocol in self.protocols.values():
            if protocol.family is family and protocol.infusion_minutes is not None:
                return protocol
        return None

    def opening_intervals(self, day: date) -> list[OpeningInterval]:
        return sorted(self.opening_hours.get(WEEKDAYS[day.weekday()], []), key=lambda i: i.open)

    def chair_ids(self) -> list[str]:
        return [f"chair-{n}" for n in range(1, self.chairs + 1)]

    def resource_ids(self, resource: Resource) -> list[str]:
        if resource is Resource.CHAIR:
            return self.chair_ids()
        count = self.consult_resources.get(resource.value, 0)
        return [f"{resource.value}-{n}" for n in range(1, count + 1)]

    def all_resource_ids(self) -> list[str]:
        return [rid for resource in Resource for rid in self.resource_ids(resource)]


class FeePolicy(_Strict):
    late_cancellation_cents: Cents
    no_show_cents: Cents


class WaitlistPolicy(_Strict):
    offer_expiry_minutes: Minutes
    short_offer_expiry_minutes: Minutes
    short_offer_threshold_hours: int = Field(ge=0)

    def offer_expiry(self, now: datetime, first_slot_start: datetime) -> timedelta:
        """How long an offer stays open: shorter when its first slot is soon."""
        soon = first_slot_start - now < timedelta(hours=self.short_offer_threshold_hours)
        minutes = self.short_offer_expiry_minutes if soon else self.offer_expiry_minutes
        return timedelta(minutes=minutes)


class InstallmentRetry(_Strict):
    attempts: int = Field(ge=0, le=20)
    over_days: int = Field(ge=0, le=60)


class PriceTier(_Strict):
    from_ordinal: int = Field(ge=1)
    cents: Cents


class InitialPriceBook(_Strict):
    infusions: dict[Literal["mood", "pain"], list[PriceTier]]
    consults: dict[str, Cents]

    @model_validator(mode="after")
    def _tiers_start_at_one_and_rise(self) -> Self:
        for family, tiers in self.infusions.items():
            ordinals = [t.from_ordinal for t in tiers]
            if not ordinals or ordinals[0] != 1:
                raise ValueError(f"{family}: the first tier must start at ordinal 1")
            if any(b <= a for a, b in pairwise(ordinals)):
                raise ValueError(f"{family}: tiers must start at rising ordinals")
        return self


class BillingPolicy(_Strict):
    currency: Literal["usd"]
    installment_counts: list[Annotated[int, Field(ge=2, le=60)]]
    installment_retry: InstallmentRetry
    price_book: InitialPriceBook

    def retry_offsets_days(self) -> list[int]:
        """Days after the due date on which a failed installment is tried again, spread evenly."""
        attempts, days = self.installment_retry.attempts, self.installment_retry.over_days
        return [(days * k + attempts // 2) // attempts for k in range(1, attempts + 1)]


class QuietHours(_Strict):
    start: time
    end: time


class FastingPolicy(_Strict):
    no_food_hours: int = Field(ge=0, le=24)
    clear_water_until_hours: int = Field(ge=0, le=24)
    evening_before_at: time


class MedicationHold(_Strict):
    days_before: int = Field(ge=0, le=30)


class AftercarePolicy(_Strict):
    enabled: bool
    daily_check_in_days: int = Field(ge=0, le=90)
    questionnaire_every_days: int = Field(ge=1, le=90)
    questionnaires: int = Field(ge=0, le=26)
    """How many questionnaire links follow a course."""
    questionnaire_url: str = Field(pattern=r"^https://\S+$")
    send_at: time
    """Clinic-local time of day for aftercare messages."""


class DeliveryPolicy(_Strict):
    max_attempts: int = Field(ge=1, le=20)
    """Provider calls per message that the provider refused for now, before it is failed."""
    retry_base_seconds: int = Field(ge=1, le=3600)
    retry_max_seconds: int = Field(ge=1, le=86400)
    claim_timeout_seconds: int = Field(ge=5, le=3600)
    """A claim older than this is stale: released when nothing was sent, else `unknown`."""


class NotifyPolicy(_Strict):
    sender_name: str = Field(min_length=1, max_length=40)
    """How texts and push messages sign: a neutral name that says nothing about treatment."""
    quiet_hours: QuietHours
    fasting: FastingPolicy
    ride_home_hours_before: int = Field(ge=0, le=24 * 7)
    medication_holds: dict[Literal["benzodiazepine", "lamotrigine", "cannabis"], MedicationHold]
    offer_reminder_minutes_before: int = Field(ge=0, le=24 * 60)
    """An open waitlist offer is recalled this long before it expires (at most half-way in)."""
    aftercare: AftercarePolicy
    delivery: DeliveryPolicy


class Policy(_Strict):
    clinic: ClinicPolicy
    booking: BookingPolicy
    fees: FeePolicy
    waitlist: WaitlistPolicy
    billing: BillingPolicy
    notify: NotifyPolicy


def default_policy_text() -> str:
    return resources.files("clinic_shared").joinpath("default_policy.yaml").read_text("utf-8")


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merged key by key; anything else in `override` replaces the base value."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise PolicyError(f"{source}: the policy must be a mapping at the top level")
    return document


def parse_policy(override_text: str | None = None, source: str = "policy") -> Policy:
    document = _read_yaml(default_policy_text(), "default policy")
    if override_text is not None:
        document = merge(document, _read_yaml(override_text, source))
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise PolicyError(f"{source}: the clinic policy is invalid:\n{problems}") from exc


@cache
def default_policy() -> Policy:
    """The shipped defaults, parsed once."""
    return parse_policy()


def load_policy(path: str | Path | None) -> Policy:
    """The default policy, with the clinic's file (if any) merged over it."""
    if path is None or str(path) == "":
        return default_policy()
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise PolicyError(f"CLINIC_POLICY_FILE={file}: cannot be read: {exc}") from exc
    return parse_policy(text, source=str(file))
