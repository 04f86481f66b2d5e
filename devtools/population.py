"""The demo's synthetic population, loaded the way an ICS loads its history at go-live: the
labelled journey generator's referrals written as an e-RS worklist extract and its people's GP
reviews as a GPAD-shaped extract, then imported by the bulk importer
(services/integration/importer): referrals through the referrals service's historical import
path, with their real past dates, so every demo referral, and every alert its journey raises,
opens onto a real record; GP appointments through the integration service's own handler.

Every person is invented; NHS numbers come from the 999 range NHS England keeps for test data,
after the named demo people's. Seeding again changes nothing: the population's clock (the
`now` its journeys are laid out from) is kept in the extract's file name, which the import run
records, so a second seed on the same database writes the very same files, and a finished file
is not imported twice (and the referrals service's path is idempotent per UBRN in any case).
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from devtools.integration_cli import admin_headers
from devtools.synthetic.extracts import (
    ERS_COLUMNS,
    GPAD_COLUMNS,
    ers_rows,
    gpad_rows,
    nhs_numbers,
    write_csv,
)
from shared.settings import Settings

#: the population's seed: fixed, so seeding again loads the very same people and referrals
POPULATION_SEED = 8
POPULATION_PEOPLE = 500
POPULATION_MONTHS = 12
POPULATION_PREFIX = "pt_demo"
#: the bulk sources the demo's extracts come from (registered by the seed)
ERS_SOURCE = "demo-ers-worklist"
GP_SOURCE = "demo-gp-appointments"
GP_PRACTICE = "GP-A81001"
_STAMP = "%Y%m%dT%H%M%SZ"
_FILE = re.compile(r"population-s(?P<seed>[0-9]+)-n[0-9]+-(?P<clock>[0-9]{8}T[0-9]{6}Z)-ers\.csv")


def population_nhs_numbers(n: int, *, seed: int) -> list[str]:
    """The population's NHS numbers: a run of the 999 test range that depends on the seed (the
    named demo people have the first bodies; another seed is other people)."""
    return nhs_numbers(n, first_body=1000 + (seed * 104729) % 890000)


@dataclass
class Population:
    people: int
    referrals: int  # referrals in the e-RS extract
    steps: int  # their dated steps (one referral event each)
    gp_appointments: int
    loops: int  # the alerts the journeys will raise for it (the generator's labels)
    stalls: int
    files: list[Path] = field(default_factory=list)
    #: per extract: (kind, accepted, unchanged, refused, seconds), for the operator's log
    imports: list[tuple[str, int, int, int, float]] = field(default_factory=list)


async def _clock(settings: Settings, seed: int) -> datetime | None:
    """The clock of this seed's population already imported into this database, if any."""
    from services.integration.importer import store
    from shared.db import make_engine, make_sessionmaker

    engine = make_engine(settings, "integration", pool_size=1)
    try:
        runs = await store.runs(make_sessionmaker(engine))
    finally:
        await engine.dispose()
    for run in runs:
        m = _FILE.fullmatch(run.file_name)
        if run.source_system == ERS_SOURCE and m and int(m["seed"]) == seed:
            return datetime.strptime(m["clock"], _STAMP).replace(tzinfo=UTC)
    return None


def register_sources(settings: Settings) -> None:
    """The demo's two bulk sources, through the integration API (as an ICS admin would)."""
    sources = [
        (ERS_SOURCE, "Demo e-RS worklist extract", settings.ics),
        (GP_SOURCE, "Demo GP appointments extract (GPAD-shaped)", GP_PRACTICE),
    ]
    with httpx.Client(
        base_url=settings.api_url("integration"), timeout=30, headers=admin_headers(settings)
    ) as http:
        for source_id, name, org in sources:
            body = {"id": source_id, "name": name, "org_code": org, "channel": "bulk"}
            resp = http.put(f"/sources/{source_id}", json=body)
            if resp.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f"{resp.status_code}: {resp.text}", request=resp.request, response=resp
                )


def write_extracts(
    settings: Settings, *, people: int, seed: int, clock: datetime, folder: Path
) -> tuple[Population, Path, Path]:
    from devtools.synthetic import DEMO_MIX, generate
    from services.directory.demo import FIXED

    journeys = generate(
        people,
        seed=seed,
        now=clock,
        patient_prefix=POPULATION_PREFIX,
        months=POPULATION_MONTHS,
        mix=DEMO_MIX,
    )
    numbers = population_nhs_numbers(people, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"population-s{seed}-n{people}-{clock.strftime(_STAMP)}"
    ers = ers_rows(journeys, numbers, known_services={s.id for s in FIXED})
    gpad = gpad_rows(numbers, seed=seed, now=clock, practice=GP_PRACTICE)
    ers_path = write_csv(folder / f"{stem}-ers.csv", ERS_COLUMNS, ers)
    gp_path = write_csv(folder / f"{stem}-gpad.csv", GPAD_COLUMNS, gpad)
    rules = [r for j in journeys for r in j.expected_rules]
    population = Population(
        people=len(journeys),
        referrals=len({r[0] for r in ers}),
        steps=len(ers),
        gp_appointments=len(gpad),
        loops=sum(1 for r in rules if r.startswith("looping.")),
        stalls=sum(1 for r in rules if r.startswith("stalled.")),
        files=[ers_path, gp_path],
    )
    return population, ers_path, gp_path


async def _import(settings: Settings, population: Population, ers: Path, gp: Path) -> None:
    from services.integration.importer.domain import Kind
    from services.integration.importer.runner import Options, run_import
    from shared.db import make_engine, make_sessionmaker

    engine = make_engine(settings, "integration", pool_size=10)
    try:
        sessions = make_sessionmaker(engine)
        for kind, path, source in ((Kind.ERS, ers, ERS_SOURCE), (Kind.GPAD, gp, GP_SOURCE)):
            opts = Options(path=path, kind=kind, source_id=source, progress="auto")
            s = await run_import(settings, opts, sessions=sessions)
            population.imports.append(
                (kind.value, s.accepted, s.unchanged, s.refused, round(s.seconds, 1))
            )
            if s.refused:
                raise RuntimeError(
                    f"{s.refused} of the demo's {kind.value} records were refused: see {s.report}"
                )
    finally:
        await engine.dispose()


def seed_population(
    settings: Settings,
    *,
    people: int = POPULATION_PEOPLE,
    seed: int = POPULATION_SEED,
    now: datetime | None = None,
) -> Population:
    """Write the population's extracts (times up to POPULATION_MONTHS back from its clock) and
    import them. Another `seed` is another population (other people, other UBRNs)."""
    clock = now or asyncio.run(_clock(settings, seed)) or datetime.now(UTC)
    clock = clock.replace(microsecond=0)
    folder = settings.home / "demo" / settings.instance
    population, ers, gp = write_extracts(
        settings, people=people, seed=seed, clock=clock, folder=folder
    )
    if not people:
        return population
    register_sources(settings)
    asyncio.run(_import(settings, population, ers, gp))
    for kind, accepted, unchanged, refused, seconds in population.imports:
        print(
            f"  imported {kind}: {accepted} accepted, {unchanged} unchanged, {refused} refused "
            f"in {seconds} s",
            file=sys.stderr,
        )
    return population
