"""The per-record report (CSV, or NDJSON when its name ends .ndjson) and the progress display.

The report holds, for every record: its position in the file, its line, its key at the source
(attendance, appointment or UBRN: never an NHS number), the outcome (accepted, unchanged,
refused; a dry run says valid or refused) and the reason. A resumed import keeps the report's
entries of the records done before and appends the rest, so the report of a file has one entry
per record however often the import was interrupted.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from services.integration.importer.runner import Options, Summary

COLUMNS = ("record", "line", "key", "outcome", "reason")
#: plain progress lines (not a terminal) at most this often
LINE_EVERY_SECONDS = 5.0


class ReportWriter:
    def __init__(self, path: Path, *, keep_records: int = 0) -> None:
        self.path = path
        self.ndjson = path.suffix.lower() in (".ndjson", ".jsonl")
        kept = self._kept(keep_records) if keep_records else []
        self.file: TextIO = path.open("w", encoding="utf-8", newline="")
        self.csv = None if self.ndjson else csv.writer(self.file)
        if self.csv is not None:
            self.csv.writerow(COLUMNS)
        for entry in kept:
            self._emit(entry)

    def _kept(self, n: int) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8", newline="") as f:
            if self.ndjson:
                entries = [json.loads(line) for line in f if line.strip()]
            else:
                entries = list(csv.DictReader(f))
        return [e for e in entries if int(e["record"]) <= n]

    def _emit(self, entry: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow([entry.get(c) if entry.get(c) is not None else "" for c in COLUMNS])
        else:
            self.file.write(json.dumps(entry) + "\n")

    def write(self, record: int, line: int, key: str, outcome: str, reason: str | None) -> None:
        self._emit(
            {"record": record, "line": line, "key": key, "outcome": outcome, "reason": reason}
        )

    def flush(self) -> None:
        self.file.flush()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.file.close()


class Progress:
    """A progress bar (tqdm) on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, opts: Options, total: int, done: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        mode = opts.progress
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        self.mode, self.total, self.done = mode, total, done
        self.label = f"{opts.kind.value} {opts.path.name}"
        self.bar = (
            tqdm(total=total, initial=done, desc=self.label, unit="rec", file=self.stream)
            if mode == "bar"
            else None
        )
        self.t0 = self.last = time.monotonic()
        self.start_done = done

    def step(self, summary: Summary) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if self.mode == "lines" and now - self.last >= LINE_EVERY_SECONDS:
            self.last = now
            self._line(summary, now)

    def _line(self, summary: Summary, now: float) -> None:
        rate = (self.done - self.start_done) / max(now - self.t0, 1e-9)
        print(
            f"{self.label}: {self.done}/{self.total} records ({rate:.0f}/s): "
            f"{summary.accepted} accepted, {summary.unchanged} unchanged, "
            f"{summary.refused} refused",
            file=self.stream,
            flush=True,
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.close()
