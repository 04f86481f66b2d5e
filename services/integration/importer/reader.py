"""Reading an extract: CSV (RFC 4180, a header row, UTF-8 with or without a byte-order mark) or
NDJSON (one JSON object a line), as records in file order. Blank lines are skipped; a line that
cannot be read is a record of its own whose `error` says why (the run reports it and goes on).

An e-RS extract in CSV has one line per step of a referral, the referral's columns repeated,
the lines of one UBRN together and in time order; in NDJSON one line per referral, its steps in
a `steps` array.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.integration.importer.domain import Kind, Record

STEP_FIELDS = ("step", "step_at", "reason", "appointment_at")


@dataclass(frozen=True)
class Bad:
    """A line that cannot be a record."""

    number: int
    error: str


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def format_of(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise ValueError(f"cannot tell the format of {path.name}: name it .csv or .ndjson, or --format")


def records(path: Path, kind: Kind, fmt: str) -> Iterator[Record | Bad]:
    lines = _csv_lines(path) if fmt == "csv" else _ndjson_lines(path)
    if kind is not Kind.ERS:
        for item in lines:
            yield item if isinstance(item, Bad) else Record(item[0], item[1])
        return
    if fmt == "ndjson":
        yield from _ers_objects(lines)
    else:
        yield from _ers_groups(lines)


def _decoded(raw: Iterator[bytes], bad: set[int]) -> Iterator[str]:
    """Each line as text; a line that is not UTF-8 is noted in `bad` (by its number) and read
    with replacement characters, so its row is reported and the rest of the file still read."""
    for number, line in enumerate(raw, start=1):
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(number)
            yield line.decode("utf-8", "replace")


def _csv_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]] | Bad]:
    bad: set[int] = set()
    with path.open("rb") as f:
        reader = csv.reader(_decoded(f, bad))
        try:
            header = next(reader, None)
        except csv.Error as exc:
            yield Bad(1, f"the header cannot be read: {exc}")
            return
        if not header:
            return
        if bad:
            yield Bad(1, "the header is not UTF-8")
            return
        names = [h.strip().lower() for h in header]
        start = reader.line_num
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Bad(reader.line_num, f"not CSV: {exc}")
                start = reader.line_num
                continue
            lines = set(range(start + 1, reader.line_num + 1))
            start = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if lines & bad:
                yield Bad(reader.line_num, "the line is not UTF-8 (save the extract as UTF-8)")
                continue
            if len(row) != len(names):
                yield Bad(reader.line_num, f"{len(row)} columns where the header has {len(names)}")
                continue
            yield reader.line_num, dict(zip(names, row, strict=True))


def _ndjson_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]] | Bad]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                yield Bad(number, f"not a JSON object: {exc}")
                continue
            if not isinstance(value, dict):
                yield Bad(number, "not a JSON object")
                continue
            yield number, {str(k).lower(): v for k, v in value.items()}


def _ers_objects(lines: Iterator[tuple[int, dict[str, Any]] | Bad]) -> Iterator[Record | Bad]:
    for item in lines:
        if isinstance(item, Bad):
            yield item
            continue
        number, fields = item
        steps = fields.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            yield Bad(number, "steps must be a list of objects (step, step_at, ...)")
            continue
        yield Record(number, fields, tuple(steps))


def _ers_groups(lines: Iterator[tuple[int, dict[str, Any]] | Bad]) -> Iterator[Record | Bad]:
    """Consecutive lines of one UBRN as one referral; a UBRN seen again after another is
    refused (the extract must be sorted by UBRN, then step time)."""
    seen: set[str] = set()
    current: list[tuple[int, dict[str, Any]]] = []

    def flush() -> Iterator[Record | Bad]:
        if not current:
            return
        first, fields = current[0]
        ubrn = str(fields.get("ubrn", "")).strip()
        if ubrn in seen:
            yield Bad(first, "this UBRN's steps are not together: sort the extract by UBRN")
        else:
            seen.add(ubrn)
            steps = tuple({k: f.get(k, "") for k in STEP_FIELDS} for _, f in current)
            yield Record(first, fields, steps)
        current.clear()

    for item in lines:
        if isinstance(item, Bad):
            yield from flush()
            yield item
            continue
        ubrn = str(item[1].get("ubrn", "")).strip()
        if current and str(current[0][1].get("ubrn", "")).strip() != ubrn:
            yield from flush()
        current.append(item)
    yield from flush()


def rows_in(path: Path, kind: Kind, fmt: str) -> int:
    """How many records the file holds (for the progress bar), read once without mapping."""
    return sum(1 for _ in records(path, kind, fmt))
