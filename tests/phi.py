"""The PHI scan: personal data, health details, card data and credentials in Kafka records and
in process logs.

Two sources of truth, both needed:

- the values the tests themselves send (names, dates of birth, e-mail addresses, phone numbers,
  diagnoses, medications, screening questions, driver details, processor tokens, secrets),
  registered with a `PhiScanner` by the helpers that send them (`SENT` is the one the
  end-to-end helpers fill). Only a registered value says "this very patient's data leaked",
  and a date of birth or a name is only recognisable this way;
- patterns that need no test data, so that a value no helper registered (a test that posts
  its own body, a value a service builds) is found too. See `PATTERNS` for what each one
  deliberately leaves alone.

`scan_kafka` reads every record of every topic on a broker (prefixed topics and `*.DLT`
included) from the beginning: key, value and each header's name and value. `scan_logs` reads
log files line by line. Both answer `Findings`: where each leak is (topic, partition, offset
and part of the record, or file and line), of what kind, with the value masked, and how much
was read, so that a scan which read nothing cannot pass for a clean one.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clinic_shared.kafka import make_consumer


class Kind(StrEnum):
    NAME = "name"
    DATE_OF_BIRTH = "date of birth"
    PHONE = "phone number"
    EMAIL = "e-mail address"
    DIAGNOSIS = "diagnosis"
    MEDICATION = "medication"
    SCREENING = "screening answer"
    CARD = "card number"
    PROCESSOR_TOKEN = "processor token"
    JWT = "JWT"
    BEARER = "bearer token"
    SECRET = "secret"


# The fields of the request bodies the tests send, by what they hold. A medication counts by
# its name and by its class (a patient's medication classes are health details too); the
# screening answers count by their questions (each question names a condition).
FIELD_KINDS = {
    "first_name": Kind.NAME,
    "last_name": Kind.NAME,
    "driver_name": Kind.NAME,
    "treating_clinician": Kind.NAME,
    "date_of_birth": Kind.DATE_OF_BIRTH,
    "email": Kind.EMAIL,
    "phone": Kind.PHONE,
    "driver_phone": Kind.PHONE,
    "diagnosis_codes": Kind.DIAGNOSIS,
    "medications": Kind.MEDICATION,
    "screening": Kind.SCREENING,
    "processor_token": Kind.PROCESSOR_TOKEN,
}
UNSPECIFIC_MEDICATION_CLASS = "other"


def _luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


# Issuer prefixes of the card networks (Visa; Mastercard 51-55 and 2221-2720; Amex; Discover;
# JCB; Diners; UnionPay). A Luhn check alone flags one random digit run in ten, and logs are
# full of them (epoch milliseconds, offsets), none of which starts like a card.
_CARD_NETWORK = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9])|35|3[068]|62"
)


def _is_card_number(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    return 13 <= len(digits) <= 19 and bool(_CARD_NETWORK.match(digits)) and _luhn_valid(digits)


@dataclass(frozen=True)
class Pattern:
    kind: Kind
    regex: re.Pattern[str]
    confirms: Callable[[str], bool] | None = None
    """An extra check on the matched text (the card number's Luhn digit and issuer)."""

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        for match in self.regex.finditer(text):
            if self.confirms is None or self.confirms(match.group()):
                yield match


# Neighbours that make a match part of something bigger: digits inside hex or UUID ids (the
# card sandbox's `pi_sandbox_<hex>` holds Luhn-valid runs one time in ten), host names, paths.
_ALONE_BEFORE = r"(?<![\w.+-])"
_ALONE_AFTER = r"(?![\w-])"
PATTERNS = (
    # A domain that ends in letters: `postgres@127.0.0.1` in a database URL is a user at a host.
    Pattern(Kind.EMAIL, re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    # E.164 with its plus, or a North American number whose area code and exchange start with
    # 2-9, written with separators or as ten digits standing alone. Epoch seconds start with 1.
    Pattern(Kind.PHONE, re.compile(_ALONE_BEFORE + r"\+[1-9]\d{7,14}" + _ALONE_AFTER)),
    Pattern(
        Kind.PHONE,
        re.compile(
            _ALONE_BEFORE + r"(?:1[ .-]?)?\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[ .-]?\d{4}(?![\w.-])"
        ),
    ),
    # The ICD-10-CM grammar booking validates, with the decimal part: a bare three-character
    # category (`F33`) is too short to tell from other codes; the registered values catch it.
    Pattern(
        Kind.DIAGNOSIS,
        re.compile(r"(?<![\w.])[A-TV-Z][0-9][0-9AB]\.[0-9A-TV-Z]{1,4}(?![\w.])"),
    ),
    Pattern(
        Kind.CARD,
        re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])"),
        confirms=_is_card_number,
    ),
    # Stripe-style payment methods and card tokens: either one charges the patient's card. The
    # ids of payments, refunds and disputes (`pi_`, `re_`, `dp_`) name transactions, not cards,
    # and billing's events may carry them.
    Pattern(Kind.PROCESSOR_TOKEN, re.compile(r"(?<![\w])(?:pm|tok)_[A-Za-z0-9_]{4,}")),
    Pattern(Kind.JWT, re.compile(r"eyJ[\w-]{2,}\.eyJ[\w-]{2,}\.[\w-]*")),
    # A credential after "Bearer": at least 16 characters with a digit, so that prose ("bearer
    # token missing") and the guard's own "Bearer [redacted]" are not credentials.
    Pattern(Kind.BEARER, re.compile(r"(?i)\bbearer\s+(?=[\w.~+/-]*\d)[\w.~+/-]{16,}=*")),
    # Stripe secret and restricted keys and webhook signing secrets. Publishable keys (`pk_`)
    # are public by design.
    Pattern(Kind.SECRET, re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}")),
    Pattern(Kind.SECRET, re.compile(r"\bwhsec_[A-Za-z0-9_]{8,}")),
)


def _registered_pattern(kind: Kind, value: str) -> str:
    """How a registered value is looked for: as the services could write it, and as a whole
    word, so that a short value does not match inside a longer one."""
    if kind is Kind.DATE_OF_BIRTH:
        year, month, day = value.split("-")
        spellings = (f"{year}-{month}-{day}", f"{month}/{day}/{year}", f"{year}{month}{day}")
        return r"(?<!\d)(?:" + "|".join(spellings) + r")(?!\d)"
    if kind is Kind.PHONE:
        # the national number, with or without its country code, digits with or without
        # separators between them
        national = re.sub(r"\D", "", value)[-10:]
        return r"(?<!\d)(?:\+?\d{1,3}[\s.-]?)?" + r"[\s().-]{0,2}".join(national) + r"(?!\d)"
    if kind is Kind.NAME:
        # Case-sensitive: names are sent capitalised, while the services' own words (event
        # types, enum values, log keys) are lower case, so "Test" the surname is found and the
        # word "test" is not.
        return r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])"
    if kind in (Kind.MEDICATION, Kind.SCREENING, Kind.DIAGNOSIS):
        return r"(?i:(?<![A-Za-z0-9_])" + re.escape(value) + r"(?![A-Za-z0-9_]))"
    if kind is Kind.EMAIL:
        return r"(?i:(?<![\w.+-])" + re.escape(value) + r"(?![\w-]))"
    return re.escape(value)


_WORD = re.compile(r"[A-Za-z0-9]+")
_FOLDED_WORD = re.compile(r"[A-Za-z0-9_]+")
_CASE_INSENSITIVE = (Kind.MEDICATION, Kind.SCREENING, Kind.DIAGNOSIS, Kind.EMAIL)


class PhiScanner:
    """Finds registered values and `PATTERNS` in text.

    The registered values make one regex of a few hundred branches, slow on every character
    of a whole broker's records. So each value also leaves a clue that any text holding it
    must hold too, cheap to look for: its first word (at the boundaries its pattern
    requires), the digits of a date or a phone number once the separators are gone, or the
    value itself. Only a text with a clue is matched against the regex.
    """

    def __init__(self) -> None:
        self._values: dict[Kind, set[str]] = {}
        self._registered: re.Pattern[str] | None = None
        self._words: set[str] = set()
        self._folded_words: set[str] = set()
        self._digits: set[str] = set()
        self._literals: set[str] = set()

    def add(self, kind: Kind, *values: str) -> None:
        known = self._values.setdefault(kind, set())
        for value in {v for v in values if v} - known:
            known.add(value)
            self._registered = None
            self._leave_a_clue(kind, value)

    def _leave_a_clue(self, kind: Kind, value: str) -> None:
        if kind is Kind.DATE_OF_BIRTH:
            year, month, day = value.split("-")
            self._digits |= {year + month + day, month + day + year}
        elif kind is Kind.PHONE:
            self._digits.add(re.sub(r"\D", "", value)[-10:])
        elif kind is Kind.NAME and _WORD.match(value):
            self._words.add(_WORD.findall(value)[0])
        elif kind in _CASE_INSENSITIVE and _FOLDED_WORD.match(value):
            self._folded_words.add(_FOLDED_WORD.findall(value)[0].lower())
        elif kind in _CASE_INSENSITIVE:
            self._folded_words.add("")  # no word to start from: every text is a candidate
        else:
            self._literals.add(value)

    def add_fields(self, body: Mapping[str, Any]) -> None:
        """Every personal value in a request body a test sends, by its field names
        (`FIELD_KINDS`): a registration, an intake, a ride confirmation, a payment method."""
        for name, value in body.items():
            kind = FIELD_KINDS.get(name)
            if kind is None or value is None:
                continue
            if kind is Kind.MEDICATION:
                for medication in value:
                    self.add(kind, str(medication["name"]))
                    if medication["class"] != UNSPECIFIC_MEDICATION_CLASS:
                        self.add(kind, str(medication["class"]))
            elif kind is Kind.SCREENING:
                self.add(kind, *value)
            elif isinstance(value, list | tuple):
                self.add(kind, *map(str, value))
            else:
                self.add(kind, str(value))

    def _may_hold_a_registered_value(self, text: str) -> bool:
        if "" in self._folded_words or not self._words.isdisjoint(_WORD.findall(text)):
            return True
        if not self._folded_words.isdisjoint(w.lower() for w in _FOLDED_WORD.findall(text)):
            return True
        digits = re.sub(r"\D", "", text)
        return any(run in digits for run in self._digits) or any(
            literal in text for literal in self._literals
        )

    def _registered_regex(self) -> re.Pattern[str]:
        """One regex for every registered value, a named group per kind."""
        if self._registered is None:
            groups = [
                f"(?P<{kind.name}>"
                + "|".join(_registered_pattern(kind, v) for v in sorted(values, key=len)[::-1])
                + ")"
                for kind, values in self._values.items()
                if values
            ]
            self._registered = re.compile("|".join(groups) or r"(?!)")
        return self._registered

    def find(self, text: str) -> list[tuple[Kind, str]]:
        """(kind, value) of everything in `text` that should not be there; where a registered
        value and a pattern find the same thing, it is told once."""
        spans = []
        if self._may_hold_a_registered_value(text):
            spans = [
                (match.start(), match.end(), Kind[str(match.lastgroup)])
                for match in self._registered_regex().finditer(text)
            ]
        for pattern in PATTERNS:
            spans += [(m.start(), m.end(), pattern.kind) for m in pattern.finditer(text)]
        spans.sort(key=lambda span: (span[0], -span[1]))
        found: list[tuple[Kind, str]] = []
        covered: dict[Kind, int] = {}
        for start, end, kind in spans:
            if end > covered.get(kind, -1):
                found.append((kind, text[start:end]))
                covered[kind] = end
        return found


SENT = PhiScanner()
"""Every personal value the end-to-end tests send, registered by the helpers that send it."""


def mask(value: str) -> str:
    """Enough to find the value again in the test data, never the value itself."""
    return f"{value[:2]}… ({len(value)} characters)"


@dataclass(frozen=True)
class Leak:
    where: str
    kind: Kind
    value: str = field(repr=False)  # so that no assertion message prints it

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {mask(self.value)}"


@dataclass
class Findings:
    """The leaks, and how much was read: records per topic, log lines per file."""

    leaks: list[Leak] = field(default_factory=list)
    topics: Counter[str] = field(default_factory=Counter)
    headers: int = 0
    files: Counter[Path] = field(default_factory=Counter)

    @property
    def records(self) -> int:
        return self.topics.total()

    @property
    def lines(self) -> int:
        return self.files.total()

    def __add__(self, other: Findings) -> Findings:
        topics, files = self.topics.copy(), self.files.copy()
        topics.update(other.topics)  # unlike `+`, keeps what was read and found empty
        files.update(other.files)
        return Findings(self.leaks + other.leaks, topics, self.headers + other.headers, files)

    def report(self, limit: int = 40) -> str:
        kinds = Counter(leak.kind for leak in self.leaks)
        lines = [
            f"{len(self.leaks)} PHI finding(s) ({', '.join(f'{n} {k}' for k, n in kinds.items())}"
            f") in {self.records} records of {len(self.topics)} topics and {self.lines} lines "
            f"of {len(self.files)} log files:",
            *(f"  {leak}" for leak in self.leaks[:limit]),
        ]
        if len(self.leaks) > limit:
            lines.append(f"  ... and {len(self.leaks) - limit} more")
        return "\n".join(lines)


class KafkaRecord(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def scan_records(records: Iterable[KafkaRecord], scanner: PhiScanner = SENT) -> Findings:
    findings = Findings()
    for record in records:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        findings.topics[record.topic] += 1
        parts: list[tuple[str, bytes | None]] = [("key", record.key), ("value", record.value)]
        for name, value in record.headers:
            findings.headers += 1
            parts += [(f"header name {name!r}", name.encode()), (f"header {name!r}", value)]
        for part, raw in parts:
            if raw:
                text = raw.decode("utf-8", errors="replace")
                findings.leaks += [Leak(f"{where} {part}", *f) for f in scanner.find(text)]
    return findings


async def _partitions(bootstrap: str, topics: Iterable[str] | None) -> list[TopicPartition]:
    """Every partition of `topics`, or of every topic on the broker but Kafka's own bookkeeping
    (`__consumer_offsets`, ...): the broker writes those, and they hold group names and
    offsets, nothing a service sent."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="phi-scan")
    await admin.start()
    try:
        names = list(topics) if topics is not None else await admin.list_topics()
        wanted = sorted(name for name in names if not name.startswith("__"))
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def read_every_topic(
    bootstrap: str, topics: Iterable[str] | None = None, timeout: float = 120.0
) -> list[Any]:
    """Every record now on the broker (or in `topics`), from the beginning to the current end
    of each partition."""
    partitions = await _partitions(bootstrap, topics)
    if not partitions:
        return []
    # Assigned partitions, never a subscription: the group is not joined and nothing is
    # committed. The services write no transactions, so read_committed reads every record.
    consumer = make_consumer(bootstrap, f"phi-scan-{uuid.uuid4().hex[:8]}")
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read the broker to its end in {timeout}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, batch in batches.items():
                records.extend(r for r in batch if r.offset < ends[tp])
        return records
    finally:
        await consumer.stop()


async def scan_kafka(
    bootstrap: str, topics: Iterable[str] | None = None, scanner: PhiScanner = SENT
) -> Findings:
    """Every record of every topic on the broker (or of `topics`): keys, values, headers."""
    return scan_records(await read_every_topic(bootstrap, topics), scanner)


def scan_logs(paths: Iterable[Path], scanner: PhiScanner = SENT) -> Findings:
    findings = Findings()
    for path in paths:
        findings.files[path] += 0  # read, even when empty
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                findings.files[path] += 1
                findings.leaks += [Leak(f"{path}:{number}", *f) for f in scanner.find(line)]
    return findings


PROCESS_LOG = re.compile(r"[a-z]+-[a-z_]+-\d+\.log")
"""`clinic_local.processes.ServiceProcess`'s log files: `<service>-<command>-<ns>.log`."""


def process_logs(root: Path) -> list[Path]:
    """Every service process's log file under `root`."""
    return sorted(p for p in root.rglob("*.log") if PROCESS_LOG.fullmatch(p.name))
