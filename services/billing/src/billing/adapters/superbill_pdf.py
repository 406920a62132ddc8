"""A superbill as a PDF, drawn with fpdf2.

Only the PDF core fonts (Helvetica) are used, so nothing has to ship or be found on disk; they
cover Latin-1 alone, so every piece of text goes through `latin1_text` first. Dates print as
MM/DD/YYYY, the form US insurers' claim forms use. The same document and fpdf2 version give
the same bytes: the creation date comes from the issue date, not the clock.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace

from billing.domain.superbill import PaymentLine, ServiceLine, SuperbillDocument

FONT = "Helvetica"
LINE_MM = 5.0
MARGIN_MM = 15.0

# Letters Latin-1 lacks and Unicode does not decompose into a base letter plus an accent,
# and the typography word processors put into names and addresses.
_TRANSLITERATIONS = str.maketrans(
    {
        "\N{LATIN CAPITAL LETTER L WITH STROKE}": "L",
        "\N{LATIN SMALL LETTER L WITH STROKE}": "l",
        "\N{LATIN CAPITAL LETTER D WITH STROKE}": "D",
        "\N{LATIN SMALL LETTER D WITH STROKE}": "d",
        "\N{LATIN CAPITAL LETTER H WITH STROKE}": "H",
        "\N{LATIN SMALL LETTER H WITH STROKE}": "h",
        "\N{LATIN SMALL LETTER DOTLESS I}": "i",
        "\N{LATIN CAPITAL LIGATURE OE}": "OE",
        "\N{LATIN SMALL LIGATURE OE}": "oe",
        "\N{HYPHEN}": "-",
        "\N{NON-BREAKING HYPHEN}": "-",
        "\N{FIGURE DASH}": "-",
        "\N{EN DASH}": "-",
        "\N{EM DASH}": "-",
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{SINGLE LOW-9 QUOTATION MARK}": ",",
        "\N{LEFT DOUBLE QUOTATION MARK}": '"',
        "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
        "\N{DOUBLE LOW-9 QUOTATION MARK}": '"',
        "\N{HORIZONTAL ELLIPSIS}": "...",
        "\N{BULLET}": "-",
        "\N{EURO SIGN}": "EUR",
        "\N{TRADE MARK SIGN}": "(TM)",
    }
)


def latin1_text(text: str) -> str:
    """`text` in characters Helvetica can draw: accents dropped where Latin-1 lacks the
    accented letter (Ś -> S), "?" for what has no Latin form (王)."""
    text = unicodedata.normalize("NFC", text.translate(_TRANSLITERATIONS))
    out: list[str] = []
    for char in text:
        if ord(char) < 256:
            out.append(char)
            continue
        base = "".join(
            c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
        )
        out.append(base if base and all(ord(c) < 256 for c in base) else "?")
    return "".join(out)


def format_usd(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    dollars, rest = divmod(abs(cents), 100)
    return f"{sign}${dollars:,}.{rest:02d}"


def format_date(day: date) -> str:
    return f"{day:%m/%d/%Y}"


class _SuperbillPdf(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="letter")
        self._footer_text = latin1_text(footer_text)

    def footer(self) -> None:
        # Pages of a claim get separated at the insurer: each says whose and which it is.
        self.set_y(-12)
        self.set_font(FONT, size=8)
        self.set_text_color(90)
        self.cell(0, 4, f"{self._footer_text} - page {self.page_no()} of {{nb}}", align=Align.C)
        self.set_text_color(0)


def render_superbill(doc: SuperbillDocument) -> bytes:
    patient_name = doc.patient.full_name
    period = f"{format_date(doc.period_from)} - {format_date(doc.period_to)}"
    pdf = _SuperbillPdf(f"Superbill for {patient_name}, {period}")
    pdf.set_creation_date(datetime.combine(doc.issued_on, time(), tzinfo=UTC))
    # Metadata is stored as UTF-16, so it keeps the name as written.
    pdf.set_title(f"Superbill - {patient_name} - {period}")
    pdf.set_author(doc.clinic.name)
    pdf.set_subject("Statement of services for insurance reimbursement")
    pdf.set_creator("billing")
    pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()

    _title(pdf, doc, period)
    _parties(pdf, doc)
    _providers(pdf, doc)
    _diagnoses(pdf, doc.diagnosis_codes)
    _services(pdf, doc.service_lines)
    _payments(pdf, doc.payments, doc.total_received_cents)
    _totals(pdf, doc)
    _statement(pdf, doc)
    return bytes(pdf.output())


def _text(pdf: FPDF, text: str, *, size: float = 10, style: str = "", width: float = 0) -> None:
    """A paragraph that wraps, leaving the cursor at the left edge it started from."""
    pdf.set_font(FONT, style=style, size=size)
    pdf.multi_cell(
        width, LINE_MM, latin1_text(text), align=Align.L, new_x=XPos.LEFT, new_y=YPos.NEXT
    )


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font(FONT, style="B", size=11)
    pdf.cell(0, 6, latin1_text(text), border="B", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.5)


def _title(pdf: FPDF, doc: SuperbillDocument, period: str) -> None:
    pdf.set_font(FONT, style="B", size=20)
    pdf.cell(0, 10, "Superbill", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _text(pdf, f"Statement period: {period}    Issued: {format_date(doc.issued_on)}")


def _parties(pdf: FPDF, doc: SuperbillDocument) -> None:
    """The clinic on the left, the patient on the right, as on a claim form."""
    clinic = doc.clinic
    patient = doc.patient
    column = (pdf.epw - 6) / 2
    pdf.ln(2)
    top = pdf.get_y()

    pdf.set_x(pdf.l_margin)
    _text(pdf, "Billing provider", size=9, style="B", width=column)
    _text(pdf, clinic.name, style="B", width=column)
    _text(pdf, clinic.address, width=column)
    _text(pdf, f"Phone: {clinic.phone}", width=column)
    if clinic.tax_id:
        _text(pdf, f"Tax ID (EIN): {clinic.tax_id}", width=column)
    if clinic.npi:
        _text(pdf, f"NPI: {clinic.npi}", width=column)
    left_bottom = pdf.get_y()

    pdf.set_xy(pdf.l_margin + column + 6, top)
    _text(pdf, "Patient", size=9, style="B", width=column)
    _text(pdf, patient.full_name, style="B", width=column)
    dob = format_date(patient.date_of_birth) if patient.date_of_birth else "not on file"
    _text(pdf, f"Date of birth: {dob}", width=column)
    _text(pdf, f"Patient ID: {patient.patient_id}", width=column)

    pdf.set_xy(pdf.l_margin, max(left_bottom, pdf.get_y()))


def _providers(pdf: FPDF, doc: SuperbillDocument) -> None:
    providers = doc.clinic.providers
    _heading(pdf, "Rendering provider" if len(providers) == 1 else "Rendering providers")
    if not providers:
        _text(pdf, "The billing provider above.")
    for provider in providers:
        name = provider.name
        # Names are often written with their credentials already ("Jane Roe, MD").
        if provider.credentials and not name.endswith(provider.credentials):
            name = f"{name}, {provider.credentials}"
        _text(pdf, f"{name}    NPI: {provider.npi}")


def _diagnoses(pdf: FPDF, codes: Sequence[str]) -> None:
    _heading(pdf, "Diagnosis codes (ICD-10-CM)")
    if codes:
        _text(pdf, "    ".join(f"{n}. {code}" for n, code in enumerate(codes, start=1)))
    else:
        _text(pdf, "None on file.")


_HEADINGS_STYLE = FontFace(emphasis="BOLD", fill_color=(230, 230, 230))


def _services(pdf: FPDF, lines: Sequence[ServiceLine]) -> None:
    _heading(pdf, "Services")
    if not lines:
        _text(pdf, "No services in this period.")
        return
    pdf.set_font(FONT, size=9)
    with pdf.table(
        width=pdf.epw,
        col_widths=(24, 64, 16, 12, 24, 24),
        text_align=("LEFT", "LEFT", "CENTER", "CENTER", "RIGHT", "RIGHT"),
        headings_style=_HEADINGS_STYLE,
        line_height=LINE_MM,
        first_row_as_headings=True,
    ) as table:
        table.row(["Date of service", "Description", "CPT", "Units", "Charged", "Paid"])
        for line in lines:
            description = line.description + (f" ({line.note})" if line.note else "")
            # One row per code, so each code sits beside its own units, as insurers key them.
            span = max(len(line.cpt_lines), 1)
            codes = list(line.cpt_lines) or [None]
            for index, cpt in enumerate(codes):
                row = table.row()
                if index == 0:
                    row.cell(format_date(line.date_of_service), rowspan=span)
                    row.cell(latin1_text(description), rowspan=span)
                row.cell(cpt.code if cpt else "-")
                row.cell(str(cpt.units) if cpt else "-")
                if index == 0:
                    row.cell(format_usd(line.charged_cents), rowspan=span)
                    row.cell(format_usd(line.paid_cents), rowspan=span)


def _payments(pdf: FPDF, payments: Sequence[PaymentLine], total_cents: int) -> None:
    _heading(pdf, "Payments received in this period")
    if not payments:
        _text(pdf, "None.")
        return
    pdf.set_font(FONT, size=9)
    with pdf.table(
        width=pdf.epw,
        col_widths=(24, 116, 24),
        text_align=("LEFT", "LEFT", "RIGHT"),
        headings_style=_HEADINGS_STYLE,
        line_height=LINE_MM,
    ) as table:
        table.row(["Date", "Description", "Amount"])
        for payment in payments:
            table.row(
                [
                    format_date(payment.paid_on),
                    latin1_text(payment.description),
                    format_usd(payment.amount_cents),
                ]
            )
        total = table.row()
        total.cell("Total received", colspan=2, style=FontFace(emphasis="BOLD"))
        total.cell(format_usd(total_cents), style=FontFace(emphasis="BOLD"))


def _totals(pdf: FPDF, doc: SuperbillDocument) -> None:
    _heading(pdf, "Totals for the services listed")
    rows = [
        ("Total charged", doc.total_charged_cents),
        ("Total paid", doc.total_paid_cents),
        ("Balance due", doc.balance_cents),
    ]
    label_width = pdf.epw - 40
    for label, cents in rows:
        pdf.set_font(FONT, style="B" if label == "Total paid" else "", size=10)
        pdf.cell(label_width, LINE_MM + 1, label, align=Align.R)
        pdf.cell(40, LINE_MM + 1, format_usd(cents), align=Align.R)
        pdf.ln()


def _statement(pdf: FPDF, doc: SuperbillDocument) -> None:
    pdf.ln(4)
    if doc.balance_cents > 0:
        paid = (
            "The amounts shown as paid were paid by the patient. Services marked financed are "
            "being paid in installments; the balance above is still owed to the clinic."
        )
    else:
        paid = "Paid in full by the patient."
    _text(
        pdf,
        f"{paid} The clinic does not bill insurance companies and accepts no assignment of "
        "benefits. To seek reimbursement, submit this superbill to your insurance company "
        "as an out-of-network claim. Whether and how much your plan reimburses depends on "
        "your coverage.",
        size=9,
    )
