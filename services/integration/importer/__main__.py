"""`python -m services.integration.importer KIND FILE --source ID`: import one extract file.

Exit status: 0 when every record was handled (refused records are in the report), 1 when the
import could not start, 3 when it stopped part-way (the referrals service did not answer as
agreed): run the same command again to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from pathlib import Path

from services.integration.importer.domain import Kind
from services.integration.importer.referrals import ReferralsUnavailable
from services.integration.importer.runner import ImportRefused, Options, Summary, run_import
from shared.db import make_engine, make_sessionmaker
from shared.settings import Settings, get_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m services.integration.importer",
        description="Import 12 months of history from an extract file (docs/integration/bulk.md).",
    )
    p.add_argument("kind", choices=[k.value for k in Kind], help="ecds, gpad or ers")
    p.add_argument("file", type=Path)
    p.add_argument("--source", required=True, help="the registered bulk source (channel bulk)")
    p.add_argument("--format", choices=["csv", "ndjson"], help="default: from the file's name")
    p.add_argument("--report", type=Path, help="default: <file stem>.report.csv beside the file")
    p.add_argument(
        "--dry-run", action="store_true", help="check and map every record, change nothing"
    )
    p.add_argument(
        "--service-map",
        type=Path,
        help="CSV with columns ers_service_id,waymark_service_id (e-RS services to directory ids)",
    )
    p.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto")
    p.add_argument(
        "--workers",
        type=int,
        default=8,
        help="e-RS referrals sent at once (default 8; one UBRN's steps never overlap)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=200,
        help="A&E and GP records applied per transaction (default 200)",
    )
    return p


def read_service_map(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    with path.open(encoding="utf-8-sig", newline="") as f:
        return {
            r["ers_service_id"].strip(): r["waymark_service_id"].strip()
            for r in csv.DictReader(f)
            if r.get("ers_service_id") and r.get("waymark_service_id")
        }


async def run(settings: Settings, opts: Options) -> Summary:
    if opts.dry_run:
        return await run_import(settings, opts)
    engine = make_engine(settings, "integration", pool_size=opts.workers + 2)
    try:
        return await run_import(settings, opts, sessions=make_sessionmaker(engine))
    finally:
        await engine.dispose()


def describe(s: Summary, path: Path) -> str:
    if s.already_finished:
        return (
            f"{path.name} was imported before (SHA-256 {s.file_sha256[:16]}…): nothing to do "
            f"({s.accepted} accepted, {s.unchanged} unchanged, {s.refused} refused then)"
        )
    verb = "checked" if s.dry_run else "imported"
    accepted = "valid" if s.dry_run else "accepted"
    resumed = f", resumed after {s.skipped} done before" if s.skipped else ""
    handled = s.accepted + s.unchanged + s.refused
    return (
        f"{verb} {path.name}: {s.records} records{resumed}; {handled} handled in "
        f"{s.seconds:.1f} s ({s.rate:.0f}/s): {s.accepted} {accepted}, "
        + ("" if s.dry_run else f"{s.unchanged} unchanged, ")
        + f"{s.refused} refused; report {s.report}"
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.file.is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 1
    try:
        opts = Options(
            path=args.file,
            kind=Kind(args.kind),
            source_id=args.source,
            fmt=args.format,
            report=args.report,
            dry_run=args.dry_run,
            service_map=read_service_map(args.service_map),
            progress=args.progress,
            workers=max(1, args.workers),
            batch=max(1, args.batch),
        )
        summary = asyncio.run(run(get_settings(), opts))
    except (ImportRefused, ValueError) as exc:
        print(f"import refused: {exc}", file=sys.stderr)
        return 1
    except ReferralsUnavailable as exc:
        print(f"import stopped (run it again to resume): {exc}", file=sys.stderr)
        return 3
    print(describe(summary, args.file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
