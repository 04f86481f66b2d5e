"""Looking for personal data where it must never be: in Kafka messages and in log files.

What counts as personal data here:
- an NHS number: ten digits with a valid Modulus 11 check digit, written together, in the
  3-3-4 spaced form or with hyphens (any number, not only the patients' of the run);
- the given and family names and birth dates of the run's synthetic patients, as the owning
  services hold them;
- a birth date in ISO form next to a date-of-birth key (`birth_date`, `dob`, `born` ...);
- the free text the services hold about a person (clinical summaries, notes, care plan text,
  carers' and crisis contacts' names and numbers), each string longer than a few words.

Free text that is exactly a string literal of Waymark's own source is not about anyone. The
API fuzz tests (schemathesis, on Hypothesis) write such literals into notes: Hypothesis draws
string constants from the local, non-test modules it finds loaded (`shared.outbox`, a module
name the stack starts, for one), and the same literal then turns up in a log line because the
code wrote it there, not because a person's note leaked.
"""

from __future__ import annotations

import ast
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka_security import client_options
from shared.settings import Settings

#: ten digits, together, spaced 3-3-4 or hyphenated 3-3-4, standing alone: not inside an
#: identifier (letters or digits either side) and not the integer part of a decimal
NHS_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{3})([ -]?)(\d{3})\2(\d{4})(?![0-9A-Za-z]|\.\d)")
DOB_KEY = re.compile(
    r"(?:birth|dob\b|born)[A-Za-z_]*[\"']?\s*[:=]\s*[\"']?"
    r"(\d{4}-\d{2}-\d{2})",
    re.IGNORECASE,
)
NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'-]*")
#: free text shorter than this is too likely to be a code or a common word
MIN_FREE_TEXT = 13


def valid_nhs_number(digits: str) -> bool:
    """Modulus 11, as NHS England specifies it (and tests.helpers.synthetic_nhs_number makes)."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


@dataclass
class PersonalData:
    """What the run's synthetic patients are, as the owning services hold it."""

    nhs_numbers: set[str] = field(default_factory=set)
    given_names: set[str] = field(default_factory=set)
    family_names: set[str] = field(default_factory=set)
    birth_dates: set[str] = field(default_factory=set)
    free_text: set[str] = field(default_factory=set)
    #: free-text values left out as literals of the code (`drop_code_literals`)
    literals_dropped: int = 0

    def add_free_text(self, value: Any, min_len: int = MIN_FREE_TEXT) -> None:
        """Remember text the services hold about a person, to look for it elsewhere. Filler
        made of one or two characters repeated ('xxxx...', as the limit tests and the
        oversized poison events both send) says nothing about anyone and is left out, or the
        poison test's own junk would count as a leak."""
        if not isinstance(value, str):
            return
        text = value.strip()
        if len(text) >= min_len and len(set(text.lower()) - set(" .,-")) > 2:
            self.free_text.add(text)

    def drop_code_literals(self, literals: set[str]) -> int:
        """Forget free text that is exactly one of the code's own string literals; how many."""
        dropped = self.free_text & literals
        self.free_text -= dropped
        self.literals_dropped += len(dropped)
        return len(dropped)

    def counts(self) -> dict[str, int]:
        return {
            "NHS numbers": len(self.nhs_numbers),
            "given names": len(self.given_names),
            "family names": len(self.family_names),
            "birth dates": len(self.birth_dates),
            "free-text strings": len(self.free_text),
        }


#: the repository root, whose non-test modules Hypothesis counts as local code
ROOT = Path(__file__).resolve().parents[2]


def _is_test_file(path: Path) -> bool:
    """Hypothesis's own rule (`hypothesis.internal.constants_ast.is_local_module_file`)."""
    return bool({"test", "tests"} & set(path.parts)) or path.stem.startswith("test_")


def code_literals(root: Path = ROOT) -> set[str]:
    """Every string literal in the repository's Python outside its tests: what Hypothesis may
    draw as text for a fuzzed request. The walk never enters hidden directories (the local
    stack's data under .waymark), node_modules or test directories."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [
            d
            for d in dirs
            if not d.startswith(".")
            and d not in ("node_modules", "site-packages")
            and d not in ("test", "tests")
        ]
        for name in files:
            path = Path(folder, name)
            if not name.endswith(".py") or _is_test_file(path.relative_to(root)):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value.strip())
    return found


@dataclass(frozen=True)
class Hit:
    where: str
    kind: str
    found: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.found!r}"


def _ends_an_identifier(text: str, start: int) -> bool:
    """Whether the match at `start` follows `<letter or digit>-` or `_`, as in `ref-123...`."""
    return start >= 2 and text[start - 1] in "-_" and text[start - 2].isalnum()


class Scanner:
    def __init__(self, known: PersonalData) -> None:
        self.known = known
        # names are matched as whole words, without regard to case
        self._given = {n.lower() for n in known.given_names if " " not in n and len(n) >= 2}
        self._family = {n.lower() for n in known.family_names if " " not in n and len(n) >= 2}
        # names of several words, and free text, as substrings
        self._phrases = sorted(
            {n for n in known.given_names | known.family_names if " " in n} | known.free_text,
            key=len,
            reverse=True,
        )
        self._dates = sorted(known.birth_dates)

    def scan(self, text: str, where: str) -> list[Hit]:
        hits = []
        for m in NHS_NUMBER.finditer(text):
            digits = m.group(1) + m.group(3) + m.group(4)
            if not valid_nhs_number(digits):
                continue
            # the tail of an identifier ("ref-5399526875": a test's random hex id that
            # happened to be all digits, and one in eleven of those pass Modulus 11) counts
            # only when it is one of the run's patients' numbers; standing alone, any does
            if _ends_an_identifier(text, m.start()) and digits not in self.known.nhs_numbers:
                continue
            hits.append(Hit(where, "NHS number", m.group(0)))
        for m in DOB_KEY.finditer(text):
            hits.append(Hit(where, "birth date by a date-of-birth key", m.group(0)))
        for date in self._dates:
            if date in text:
                hits.append(Hit(where, "a patient's birth date", date))
        if self._given or self._family:
            for m in NAME_TOKEN.finditer(text):
                token = m.group(0).lower()
                if token in self._family:
                    hits.append(Hit(where, "family name", m.group(0)))
                elif token in self._given:
                    hits.append(Hit(where, "given name", m.group(0)))
        for phrase in self._phrases:
            if phrase in text:
                hits.append(Hit(where, "free text or name", phrase))
        return hits


@dataclass
class Tally:
    """What a scan looked at, and what it found."""

    messages: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    log_lines: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)


def message_text(record: Any) -> str:
    """Everything of a Kafka record a reader sees: key, headers and value."""
    parts = [(record.key or b"").decode(errors="replace")]
    parts += [f"{k}={v.decode(errors='replace')}" for k, v in (record.headers or ())]
    parts.append((record.value or b"").decode(errors="replace"))
    return "\n".join(parts)


async def scan_topic(
    settings: Settings, topic: str, scanner: Scanner, tally: Tally, timeout: float = 300
) -> None:
    """Every record of a topic, from the beginning to its end as it is now (aborted
    transactions too: they are on the broker's disk all the same)."""
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_uncommitted",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh metadata
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        tally.messages.setdefault(topic, 0)
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if end[tp] > 0}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end in {timeout:.0f}s")
            for tp, records in (
                await consumer.getmany(*pending, timeout_ms=500, max_records=2000)
            ).items():
                for r in records:
                    if r.offset >= end[tp]:
                        continue
                    tally.messages[topic] += 1
                    tally.bytes_read += len(r.value or b"")
                    tally.hits.extend(
                        scanner.scan(message_text(r), f"{topic}[{r.partition}]@{r.offset}")
                    )
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()


def log_lines(path: Path, start: int = 0) -> Iterator[tuple[int, str]]:
    """(line number, line) of a log file from byte `start` on."""
    with open(path, "rb") as f:
        f.seek(start)
        for n, raw in enumerate(f, start=1):
            yield n, raw.decode(errors="replace")


def scan_logs(files: Iterable[tuple[Path, int]], scanner: Scanner, tally: Tally) -> None:
    for path, start in files:
        count = 0
        for n, line in log_lines(path, start):
            count += 1
            tally.hits.extend(scanner.scan(line, f"{path.name}:+{n}"))
        tally.log_lines[path.name] = count
