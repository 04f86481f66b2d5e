"""After a full run: no NHS number, name, date of birth or free text in any event or log.

Events carry pseudonymous ids, codes and states; personal details stay in the owning services
and are fetched through their APIs. This module is collected last (pytest collects `tests/`
alphabetically, hence `zz_`), so the scan sees what every test before it made the running stack
publish and log. It reads:
- every message on every topic of the test instance (`<topic_prefix>*`, the DLQs included:
  a dead letter is its original bytes, so it must be as clean), key, headers and value,
  from the beginning of each topic;
- every log file of the test instance's processes, from where each stood when this test
  session was collected (older runs are not this run's business);
and looks for what `scanner.py` describes: any valid NHS number, and the names, birth dates
and free text the run's synthetic patients have in the referrals and care plans databases.

Before scanning, one more patient goes through the running stack with every kind of personal
detail (a referral with a clinical summary, a transition with a free-text note, a care plan
with goals, carers and crisis contacts), so there is always something to look for.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from devtools import stack
from shared.kafka_security import client_options
from shared.settings import SERVICE_SCHEMAS, Settings, get_settings
from shared.temporal_client import connect as connect_temporal
from tests.conftest import auth
from tests.helpers import (
    create_care_plan,
    end_offsets,
    eventually,
    instance_topics,
    referral_body,
    synthetic_nhs_number,
)
from tests.zz_privacy.scanner import (
    PersonalData,
    Scanner,
    Tally,
    code_literals,
    scan_logs,
    scan_topic,
    valid_nhs_number,
)
from workflows.journeys import workflow_id
from workflows.journeys.workflows import PatientJourney

pytestmark = pytest.mark.stack


def instance_logs(s: Settings) -> list[Path]:
    """The log files of the instance's processes (devtools/stack/health.py names them
    `<instance>-<part>.log`) and of any helper process a test ran as `<name>-<instance>.log`."""
    files = {p.log(s) for p in stack.parts() if p.kind == "app"}
    files |= set(s.logs_dir.glob(f"*-{s.instance}.log"))
    return sorted(files)


def _sizes(s: Settings) -> dict[Path, int]:
    return {p: p.stat().st_size for p in instance_logs(s) if p.exists()}


#: where each log file stood when the session collected this module (before any test ran)
LOGS_AT_START = _sizes(get_settings())

#: consumer groups of the running stack and the topics each reads
GROUPS = {
    "referrals-directory": ["waymark.directory.v1"],
    "care-plans-referrals": ["waymark.referrals.v1"],
    "notifications": [
        "waymark.referrals.v1",
        "waymark.directory.v1",
        "waymark.care-plans.v1",
        "waymark.journeys.v1",
    ],
    "journeys-bridge": [
        "waymark.referrals.v1",
        "waymark.care-plans.v1",
        "waymark.notifications.v1",
        "waymark.encounters.v1",
    ],
}

FREE_TEXT_KEYS = {"what_matters_to_me", "what", "note", "return_to_work_goal", "when", "plan"}
CONTACT_KEYS = {"name", "owner_name", "contact", "phone", "email", "mobile"}


def _walk_plan(value: Any, known: PersonalData, key: str | None = None) -> None:
    """A care plan document's free text and people's contact details."""
    if isinstance(value, dict):
        for k, v in value.items():
            _walk_plan(v, known, k)
    elif isinstance(value, list):
        for v in value:
            _walk_plan(v, known, key)
    elif key in FREE_TEXT_KEYS:
        known.add_free_text(value)
    elif key in CONTACT_KEYS:
        known.add_free_text(value, min_len=8)


async def load_personal_data(s: Settings) -> PersonalData:
    """The run's patients as the owning services hold them."""
    known = PersonalData()
    conn = await asyncpg.connect(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_credentials("owner")[1],
        database=s.db_name,
    )
    try:
        for r in await conn.fetch(
            "SELECT nhs_number, given_name, family_name, birth_date, clinical_summary, "
            "communication_needs FROM referrals.referral"
        ):
            known.nhs_numbers.add(r["nhs_number"])
            # a referral imported from an e-RS extract holds no name, birth date or summary
            if r["given_name"] is not None:
                known.given_names.add(r["given_name"])
            if r["family_name"] is not None:
                known.family_names.add(r["family_name"])
            if r["birth_date"] is not None:
                known.birth_dates.add(r["birth_date"])
            if r["clinical_summary"] is not None:
                known.add_free_text(r["clinical_summary"])
            for need in r["communication_needs"] or []:
                known.add_free_text(need)
        for r in await conn.fetch(
            "SELECT note FROM referrals.referral_transition WHERE note IS NOT NULL"
        ):
            known.add_free_text(r["note"])
        for r in await conn.fetch("SELECT nhs_number FROM care_plans.care_plan"):
            known.nhs_numbers.add(r["nhs_number"])
        for r in await conn.fetch("SELECT content, reason FROM care_plans.care_plan_version"):
            _walk_plan(json.loads(r["content"]), known)
            known.add_free_text(r["reason"])
    finally:
        await conn.close()
    known.drop_code_literals(code_literals())
    return known


async def one_patient_through_the_stack(s: Settings) -> dict[str, str]:
    """A referral (submitted, then returned with a free-text note) and a care plan for one
    new synthetic patient, over the running APIs; waits until the journey has both referral
    events."""
    marker = uuid.uuid4().hex[:8]
    body = referral_body(
        clinical_summary=f"Privacy scan {marker}: sciatica since spring, "
        "sleeping badly, worried about losing work."
    )
    referrer = auth(s, role="clinician", org="GP-PRIVACY")
    async with httpx.AsyncClient(base_url=s.api_url("referrals"), timeout=30) as http:
        r = await http.post("/referrals", json=body, headers=referrer)
        assert r.status_code == 201, r.text
        referral = r.json()
        note = f"Advice {marker}: try the back pain exercise leaflet before re-referring."
        r = await http.post(
            f"/referrals/{referral['id']}/return",
            json={"reason_code": "advice-and-guidance-given", "note": note},
            headers={
                **auth(s, role="service_staff", org="PAIN-1"),
                "If-Match": f'W/"{referral["version"]}"',
            },
        )
        assert r.status_code == 200, r.text
    content = {
        "what_matters_to_me": f"Walking the dog along the canal again ({marker})",
        "goals": [{"id": "walk", "what": f"Walk to the lock and back by summer {marker}"}],
        "carers": [
            {
                "id": "c1",
                "name": f"Robin Carer-{marker}",
                "relationship": "partner",
                "contact": "07700 900321",
                "may_see": ["goals"],
            }
        ],
        "crisis": {
            "who_to_call": [{"name": f"Jamie Friend-{marker}", "phone": "07700 900654"}],
            "when": f"When the pain keeps me awake three nights running {marker}",
        },
    }
    async with httpx.AsyncClient(base_url=s.api_url("care_plans"), timeout=30) as http:
        r = await create_care_plan(
            http,
            referrer,
            {
                "nhs_number": body["patient"]["nhs_number"],
                "content": content,
                "consented_organisations": ["PAIN-1"],
                "reason": f"first conversation {marker}",
            },
        )
        assert r.status_code == 201, r.text
    client = await connect_temporal(s)

    async def journey_has_both() -> bool:
        try:
            view = await client.get_workflow_handle(workflow_id(referral["patient_id"])).query(
                PatientJourney.journey
            )
        except Exception:  # noqa: BLE001 - not started yet
            return False
        return view.events_applied >= 2

    await eventually(journey_has_both, timeout=90, interval=0.5)
    return {
        "family_name": body["patient"]["family_name"],
        "note": note,
        "nhs_number": body["patient"]["nhs_number"],
    }


async def unsettled(s: Settings) -> list[str]:
    """What is not yet on the topics or not yet consumed: outbox rows still to publish (not
    those parked for an operator, nor those waiting behind a parked row of their key), and
    consumer groups of the stack behind the end of a topic they read."""
    left = []
    conn = await asyncpg.connect(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_credentials("owner")[1],
        database=s.db_name,
    )
    try:
        for schema in SERVICE_SCHEMAS:
            n = await conn.fetchval(f"""
                SELECT count(*) FROM {schema}.outbox o
                WHERE o.sent_at IS NULL AND o.parked_at IS NULL AND NOT EXISTS (
                    SELECT 1 FROM {schema}.outbox p WHERE p.parked_at IS NOT NULL
                    AND p.sent_at IS NULL AND p.topic = o.topic AND p.key = o.key)""")
            if n:
                left.append(f"{n} unsent in {schema}.outbox")
    finally:
        await conn.close()
    admin = AIOKafkaAdminClient(**client_options(s))
    await admin.start()
    try:
        for group, topics in GROUPS.items():
            committed = await admin.list_consumer_group_offsets(s.topic(group))
            for topic in topics:
                for tp, end in (await end_offsets(s, s.topic(topic))).items():
                    done = committed.get(tp)
                    if end and (done is None or done.offset < end):
                        left.append(f"{group} behind on {tp.topic}[{tp.partition}]")
    finally:
        await admin.close()
    return left


async def settle(s: Settings, timeout: float = 120) -> list[str]:
    """Wait (a while) until nothing is unsettled, so the scan sees everything the run made;
    whatever is still in flight then is reported, not scanned."""
    try:
        await eventually(lambda: _nothing(unsettled(s)), timeout=timeout, interval=1)
        return []
    except AssertionError:
        return await unsettled(s)


async def _nothing(pending: Any) -> bool:
    return not await pending


class TestNoPersonalDataInEventsOrLogs:
    async def test_no_topic_message_and_no_log_line_holds_personal_data(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        mine = await one_patient_through_the_stack(s)
        in_flight = await settle(s)

        known = await load_personal_data(s)
        assert mine["family_name"] in known.family_names and mine["note"] in known.free_text
        assert mine["nhs_number"] in known.nhs_numbers
        scanner = Scanner(known)
        tally = Tally()
        topics = await instance_topics(s)
        assert s.topic("waymark.referrals.v1") in topics
        for topic in topics:
            await scan_topic(s, topic, scanner, tally)
        logs = [(p, LOGS_AT_START.get(p, 0)) for p in instance_logs(s) if p.exists()]
        scan_logs(logs, scanner, tally)

        print(
            f"\nlooked for: {len(known.nhs_numbers)} patients' NHS numbers (and any valid "
            f"NHS number), "
            + ", ".join(
                f"{n} {what}" for what, n in known.counts().items() if what != "NHS numbers"
            )
        )
        print(
            f"messages scanned: {sum(tally.messages.values())} on {len(topics)} topics "
            f"({tally.bytes_read / 1e6:.1f} MB of values)"
        )
        for topic, n in tally.messages.items():
            print(f"  {n:>8}  {topic}")
        print(
            f"log lines scanned: {sum(tally.log_lines.values())} in {len(tally.log_lines)} "
            "files (this session's part of each)"
        )
        for name, n in tally.log_lines.items():
            print(f"  {n:>8}  {name}")
        if known.literals_dropped:
            print(
                f"not looked for: {known.literals_dropped} free-text values that are string "
                "literals of Waymark's own code (the API fuzz tests write them)"
            )
        if in_flight:
            print(f"still in flight when scanned (not seen): {', '.join(in_flight)}")
        print(f"hits: {len(tally.hits)}")
        for hit in tally.hits[:30]:
            print(f"  {hit}")

        assert tally.messages[s.topic("waymark.referrals.v1")] > 0
        assert sum(tally.log_lines.values()) > 0
        assert tally.hits == [], "\n".join(str(h) for h in tally.hits[:30])


class TestTheScannerFindsWhatItLooksFor:
    """The scan above could fail: the same scanner finds planted personal data."""

    def known(self) -> tuple[PersonalData, str]:
        nhs = synthetic_nhs_number()
        known = PersonalData(
            nhs_numbers={nhs},
            given_names={"Alex"},
            family_names={"Synthetic-ab12cd"},
            birth_dates={"1972-03-04"},
        )
        known.add_free_text("Low back pain for 8 months, low mood.")
        return known, nhs

    @pytest.mark.parametrize(
        "planted, kind",
        [
            ("{nhs}", "NHS number"),
            ("nhs={spaced}", "NHS number"),
            ('"patient": "{hyphened}"', "NHS number"),
            ('{{"family_name": "SYNTHETIC-AB12CD"}}', "family name"),
            ("hello alex, how are you", "given name"),
            ('{{"birth_date":"1980-01-02"}}', "birth date by a date-of-birth key"),
            ("dob = 1980-01-02", "birth date by a date-of-birth key"),
            ("born: 1980-01-02", "birth date by a date-of-birth key"),
            ("on 1972-03-04 something", "a patient's birth date"),
            ("summary: Low back pain for 8 months, low mood.", "free text or name"),
        ],
    )
    def test_it_finds_planted_personal_data(self, planted: str, kind: str) -> None:
        known, nhs = self.known()
        text = planted.format(
            nhs=nhs,
            spaced=f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}",
            hyphened=f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}",
        )
        hits = Scanner(known).scan(text, "here")
        assert kind in {h.kind for h in hits}, (text, hits)

    @pytest.mark.parametrize(
        "clean",
        [
            '{"id": "3f2b9c1e-1d2a-4c3b-9a8e-123456789012", "subject": "pt_abc2345672"}',
            "at 1764319440.123 the relay woke",  # an epoch time with a fraction
            '{"at_ms": 1764319440123}',  # 13 digits
            "2026-11-28T09:12:25.123456+00:00 submitted",  # an event time
            "offset 9434765918 of nothing",  # ten digits failing Modulus 11
            "alexander street",  # a name only inside another word
            "no referral ref-5399526875",  # a random id's digits that pass Modulus 11
            '{"referral_id": "ref_5399526875"}',
        ],
    )
    def test_it_leaves_identifiers_and_times_alone(self, clean: str) -> None:
        known, _ = self.known()
        assert not valid_nhs_number("9434765918")
        assert Scanner(known).scan(clean, "here") == []

    async def test_it_finds_an_nhs_number_and_a_name_planted_on_a_topic(
        self, infra: Settings, new_topic: str
    ) -> None:
        known, nhs = self.known()
        producer = AIOKafkaProducer(**client_options(infra), acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(new_topic, value=b'{"clean": "pt_x"}', key=b"a")
            await producer.send_and_wait(
                new_topic,
                key=b"b",
                value=json.dumps({"nhs_number": nhs, "family_name": "Synthetic-ab12cd"}).encode(),
            )
            await producer.send_and_wait(
                new_topic, key=b"c", value=b"{}", headers=[("dlq.reason", f"bad {nhs}".encode())]
            )
        finally:
            await producer.stop()
        tally = Tally()
        await scan_topic(infra, new_topic, Scanner(known), tally)
        assert tally.messages[new_topic] == 3
        assert sorted(h.kind for h in tally.hits) == ["NHS number", "NHS number", "family name"]

    @pytest.mark.parametrize("template", ["ref-{nhs}", "pt_{nhs}", "no referral ref-{nhs}."])
    def test_a_patients_number_is_found_even_inside_an_identifier(self, template: str) -> None:
        known, nhs = self.known()
        assert valid_nhs_number("5399526875")
        hits = Scanner(known).scan(template.format(nhs=nhs), "here")
        assert [(h.kind, h.found) for h in hits] == [("NHS number", nhs)]
        assert Scanner(known).scan(template.format(nhs="5399526875"), "here") == []

    def test_filler_is_not_free_text_but_real_text_is(self) -> None:
        known = PersonalData()
        for filler in ("x" * 300, "ab" * 40, "- - - - - - - - - -", "XXXXXXXXXXXXXXXX"):
            known.add_free_text(filler)
        assert known.free_text == set()
        known.add_free_text("Lives alone, carer visits daily")
        assert known.free_text == {"Lives alone, carer visits daily"}

    def test_a_literal_of_our_own_code_is_not_free_text_but_a_note_is(self) -> None:
        literals = code_literals()
        # what the fuzz tests wrote as a note in CI, and what the relay logs as its logger
        assert "shared.outbox" in literals
        known = PersonalData()
        known.add_free_text("shared.outbox")
        known.add_free_text("Advice 1a2b3c4d: try the back pain exercise leaflet first.")
        assert known.drop_code_literals(literals) == 1
        assert known.free_text == {"Advice 1a2b3c4d: try the back pain exercise leaflet first."}
        line = "INFO shared.outbox relay started; Advice 1a2b3c4d: try the back pain"
        assert Scanner(known).scan(line, "here") == []
        assert len(Scanner(known).scan(line + " exercise leaflet first.", "here")) == 1

    def test_the_literals_come_from_product_code_only(self, tmp_path: Path) -> None:
        (tmp_path / "svc").mkdir()
        (tmp_path / "svc" / "mod.py").write_text('NAME = "a product literal"\n')
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "helpers.py").write_text('NOTE = "a test note text"\n')
        (tmp_path / "svc" / "test_x.py").write_text('NOTE = "another test note"\n')
        assert code_literals(tmp_path) == {"a product literal"}

    def test_it_reads_a_log_from_where_it_stood(self, tmp_path: Path) -> None:
        known, nhs = self.known()
        log = tmp_path / "test-x.log"
        log.write_text(f"old line with {nhs}\n")
        start = log.stat().st_size
        with log.open("a") as f:
            f.write("a clean line\n")
            f.write("INFO referral for Alex Synthetic-ab12cd\n")
        tally = Tally()
        scan_logs([(log, start)], Scanner(known), tally)
        assert tally.log_lines == {"test-x.log": 2}
        assert sorted(h.kind for h in tally.hits) == ["family name", "given name"]
        assert all(h.where == "test-x.log:+2" for h in tally.hits)
