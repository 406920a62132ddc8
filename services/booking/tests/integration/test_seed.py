"""The demo clinic's seed: patients and intakes, written once however often it runs."""

from __future__ import annotations

from booking.entrypoints.seed import DEMO_PATIENTS, seed


async def test_seeding_twice_leaves_one_demo_clinic_ready_to_book(clinic):
    infra = clinic.app.state.infra
    await seed(infra)
    await seed(infra)

    one, two = (str(p.patient_id) for p in DEMO_PATIENTS)
    first = await clinic.client.get(f"/v1/patients/{one}/intake", headers=clinic.clinician)
    second = await clinic.client.get(f"/v1/patients/{two}/intake", headers=clinic.clinician)
    assert first.json()["status"] == "cleared"
    assert second.json()["status"] == "pending"
    assert len(await clinic.events("booking.patient.registered.v1")) == 2
    assert len(await clinic.events("booking.intake.cleared.v1")) == 1
    booked = await clinic.book(one, "mood_induction", clinic.MOOD_COURSE)
    assert booked.status_code == 201, booked.text
