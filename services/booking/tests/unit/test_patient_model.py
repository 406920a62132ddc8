"""The patient aggregate on its own: normalisation, its domain event, the birth-date rule."""

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from booking.domain.model import InvalidPatient, Patient, PatientRegistered, RegisteredBy

NOW = datetime(2026, 11, 20, 17, 5, tzinfo=UTC)


def register(**overrides: object) -> Patient:
    fields: dict[str, object] = {
        "patient_id": uuid4(),
        "first_name": "Ada",
        "last_name": "Lovelace",
        "date_of_birth": date(1984, 3, 14),
        "email": "ada@example.org",
        "phone": "+15035550100",
        "registered_by": RegisteredBy.STAFF,
        "now": NOW,
    }
    fields.update(overrides)
    return Patient.register(**fields)  # type: ignore[arg-type]


def test_registration_trims_names_and_lowercases_the_email():
    patient = register(
        first_name="  Ada ",
        last_name="\tLovelace  ",
        email="  Ada.Lovelace@Example.ORG ",
        phone=" +15035550100 ",
    )
    assert patient.first_name == "Ada"
    assert patient.last_name == "Lovelace"
    assert patient.email == "ada.lovelace@example.org"
    assert patient.phone == "+15035550100"


def test_registration_records_exactly_one_patient_registered_event_at_the_injected_time():
    patient_id = uuid4()
    patient = register(patient_id=patient_id, registered_by=RegisteredBy.PATIENT)
    assert patient.id == patient_id
    assert patient.registered_at == NOW
    assert patient.registered_by is RegisteredBy.PATIENT
    assert patient.events == [PatientRegistered(patient_id, NOW, RegisteredBy.PATIENT)]


@pytest.mark.parametrize(
    "date_of_birth",
    [NOW.date(), NOW.date() + timedelta(days=1), date(2030, 1, 1)],
    ids=["today", "tomorrow", "years-ahead"],
)
def test_a_birth_date_that_is_not_in_the_past_is_rejected(date_of_birth):
    with pytest.raises(InvalidPatient):
        register(date_of_birth=date_of_birth)


def test_the_birth_date_rule_uses_the_injected_now_not_the_wall_clock():
    long_ago = datetime(2001, 6, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(InvalidPatient):
        register(date_of_birth=date(2001, 6, 2), now=long_ago)
    patient = register(date_of_birth=date(2001, 5, 31), now=long_ago)
    assert patient.registered_at == long_ago


def test_a_birth_date_yesterday_is_accepted():
    patient = register(date_of_birth=NOW.date() - timedelta(days=1))
    assert patient.date_of_birth == date(2026, 11, 19)
