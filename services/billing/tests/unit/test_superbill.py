"""Superbills: CPT units from infusion time, and the PDF a patient sends to their insurer."""

import io
import re
from datetime import date
from uuid import UUID

import pytest
from pypdf import PdfReader

from billing.adapters.superbill_pdf import format_usd, latin1_text, render_superbill
from billing.domain.superbill import (
    CptLine,
    PaymentLine,
    ServiceLine,
    SuperbillDocument,
    SuperbillPatient,
    cpt_units,
)
from clinic_shared.policy import ClinicPolicy, Provider

CLINIC = ClinicPolicy(
    name="Cascade Ketamine Clinic",
    zone="America/Los_Angeles",
    address="100 Example Street, Suite 200, Portland, OR 97201",
    phone="+1-503-555-0100",
    tax_id="12-3456789",
    npi="1234567893",
    providers=[Provider(name="Dana Whitfield", npi="1245319599", credentials="MD")],
)
PATIENT_ID = UUID("6f1c2a7e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")


def document(
    *,
    first_name: str = "Maria",
    last_name: str = "Alvarez",
    payments: tuple[PaymentLine, ...] = (),
) -> SuperbillDocument:
    return SuperbillDocument(
        clinic=CLINIC,
        patient=SuperbillPatient(PATIENT_ID, first_name, last_name, date(1984, 7, 9)),
        diagnosis_codes=["F33.2", "G90.50"],
        period_from=date(2026, 3, 1),
        period_to=date(2026, 3, 31),
        service_lines=[
            ServiceLine(
                date_of_service=date(2026, 3, 2),
                description="IV infusion, 60 min",
                cpt_lines=cpt_units(60),
                charged_cents=60_000,
                paid_cents=60_000,
            ),
            ServiceLine(
                date_of_service=date(2026, 3, 5),
                description="IV infusion, 240 min",
                cpt_lines=cpt_units(240),
                charged_cents=145_000,
                paid_cents=24_000,
                note="financed",
            ),
        ],
        payments=payments,
        issued_on=date(2026, 4, 1),
    )


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, []),
        (10, []),
        (15, []),
        (16, [CptLine("96365", 1)]),
        (60, [CptLine("96365", 1)]),
        (61, [CptLine("96365", 1)]),
        (90, [CptLine("96365", 1)]),
        (91, [CptLine("96365", 1), CptLine("96366", 1)]),
        (120, [CptLine("96365", 1), CptLine("96366", 1)]),
        (150, [CptLine("96365", 1), CptLine("96366", 1)]),
        (151, [CptLine("96365", 1), CptLine("96366", 2)]),
        (240, [CptLine("96365", 1), CptLine("96366", 3)]),
        (270, [CptLine("96365", 1), CptLine("96366", 3)]),
        (271, [CptLine("96365", 1), CptLine("96366", 4)]),
    ],
)
def test_infusion_minutes_give_the_initial_hour_then_an_hour_per_half_hour_passed(
    minutes: int, expected: list[CptLine]
) -> None:
    assert cpt_units(minutes) == expected


def test_negative_infusion_minutes_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        cpt_units(-1)


def test_document_totals_add_up_the_service_lines_and_the_payments() -> None:
    doc = document(
        payments=(
            PaymentLine(date(2026, 3, 2), "Card payment", 60_000),
            PaymentLine(date(2026, 3, 5), "Installment 1 of 6", 24_000),
        )
    )

    assert doc.total_charged_cents == 205_000
    assert doc.total_paid_cents == 84_000
    assert doc.balance_cents == 121_000
    assert doc.total_received_cents == 84_000


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        SuperbillDocument(
            clinic=CLINIC,
            patient=SuperbillPatient(PATIENT_ID, "Maria", "Alvarez", None),
            diagnosis_codes=[],
            period_from=date(2026, 3, 31),
            period_to=date(2026, 3, 1),
            service_lines=[],
            issued_on=date(2026, 4, 1),
        )


@pytest.mark.parametrize(
    ("cents", "shown"),
    [(0, "$0.00"), (5, "$0.05"), (60_000, "$600.00"), (123_456, "$1,234.56"), (-250, "-$2.50")],
)
def test_amounts_render_as_dollars_with_thousands_separators(cents: int, shown: str) -> None:
    assert format_usd(cents) == shown


def test_the_pdf_shows_what_an_insurer_needs_to_reimburse_the_patient() -> None:
    doc = document(
        payments=(
            PaymentLine(date(2026, 3, 2), "Card payment", 60_000),
            PaymentLine(date(2026, 3, 5), "Installment 1 of 6", 24_000),
        )
    )

    text = pdf_text(render_superbill(doc))
    flat = re.sub(r"\s+", " ", text)

    assert "Superbill" in text
    assert "Cascade Ketamine Clinic" in text
    assert "NPI: 1234567893" in text
    assert "12-3456789" in text
    assert "Dana Whitfield, MD" in text
    assert "1245319599" in text
    assert "Maria Alvarez" in text
    assert "07/09/1984" in text
    assert str(PATIENT_ID) in text
    assert "03/01/2026 - 03/31/2026" in text
    assert "F33.2" in text
    assert "G90.50" in text
    assert "03/02/2026" in text
    assert "03/05/2026" in text
    assert "IV infusion, 240 min (financed)" in flat
    # Each code beside its own units: one hour on 03/02, one plus three more on 03/05.
    assert re.search(r"96365 1 \$600\.00 \$600\.00", flat)
    assert re.search(r"96365 1 \$1,450\.00 \$240\.00", flat)
    assert re.search(r"96366 3", flat)
    assert "Installment 1 of 6" in text
    assert "Card payment" in text
    assert re.search(r"Total received \$840\.00", flat)
    assert re.search(r"Total charged \$2,050\.00", flat)
    assert re.search(r"Total paid \$840\.00", flat)
    assert re.search(r"Balance due \$1,210\.00", flat)
    assert "out-of-network" in flat


def test_a_period_paid_in_full_says_so() -> None:
    doc = document()
    paid_in_full = SuperbillDocument(
        clinic=doc.clinic,
        patient=doc.patient,
        diagnosis_codes=doc.diagnosis_codes,
        period_from=doc.period_from,
        period_to=doc.period_to,
        service_lines=doc.service_lines[:1],
        issued_on=doc.issued_on,
    )

    text = re.sub(r"\s+", " ", pdf_text(render_superbill(paid_in_full)))

    assert "Paid in full by the patient" in text
    assert re.search(r"Balance due \$0\.00", text)


def test_a_name_outside_latin1_renders_with_the_letters_helvetica_has() -> None:
    pdf = render_superbill(document(first_name="Zoë Łukasz", last_name="王"))

    text = pdf_text(pdf)

    assert "Zoë Lukasz ?" in text
    assert (
        PdfReader(io.BytesIO(pdf)).metadata.title
        == "Superbill - Zoë Łukasz 王 - 03/01/2026 - 03/31/2026"
    )


def test_text_is_reduced_to_latin1_by_dropping_accents_and_replacing_the_rest() -> None:
    quoted = "\N{LEFT DOUBLE QUOTATION MARK}Ånne\N{RIGHT DOUBLE QUOTATION MARK}"

    assert latin1_text(f"Ścisło \N{EN DASH} {quoted} 王") == 'Scislo - "Ånne" ?'


def test_the_same_document_renders_to_the_same_bytes() -> None:
    assert render_superbill(document()) == render_superbill(document())


def test_many_visits_flow_onto_further_pages_with_their_headings() -> None:
    doc = document()
    many = SuperbillDocument(
        clinic=doc.clinic,
        patient=doc.patient,
        diagnosis_codes=doc.diagnosis_codes,
        period_from=date(2026, 1, 1),
        period_to=date(2026, 12, 31),
        service_lines=[
            ServiceLine(date(2026, 1, 1 + n % 28), "IV infusion, 91 min", cpt_units(91), 60_000, 0)
            for n in range(60)
        ],
        issued_on=doc.issued_on,
    )

    reader = PdfReader(io.BytesIO(render_superbill(many)))

    assert len(reader.pages) > 1
    assert "Date of service" in reader.pages[1].extract_text()
    assert "page 2 of" in reader.pages[1].extract_text()
