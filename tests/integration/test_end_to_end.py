"""The EHR doors end to end, through the processes `waymark up` starts: a hospital PAS sends
ADT over MLLP (the `hl7` library's own client) -> the integration service's listener -> contact
+ outbox -> relay -> Kafka -> bridge -> PatientJourney -> alert -> the coordinators' inbox; and
an e-RS extract loaded by the bulk importer -> the referrals service's history -> a stall."""

from __future__ import annotations

import asyncio
import csv
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hl7
import httpx
from hl7.mllp import open_hl7_connection
from sqlalchemy import text

from devtools.synthetic.extracts import ERS_COLUMNS
from shared.db import make_engine, make_sessionmaker, unit_of_work
from shared.pseudonym import pseudonymise
from shared.settings import Settings, settings_env
from tests.conftest import auth
from tests.helpers import eventually, synthetic_nhs_number
from workflows.journeys.rules import load_rules

FREQUENT = "looping.frequent_attender"
LOW_BACK_PAIN = "279039007"  # SNOMED CT: low back pain (finding)


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def adt(event: str, *, facility: str, control: str, nhs: str, visit: str, at: datetime) -> str:
    """An ADT message as an emergency department's PAS sends it (HL7 v2.4)."""
    pv1_45 = f"|{_ts(at + timedelta(hours=4))}" if event == "A03" else ""
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|{facility}|WAYMARK|ICS|{_ts(at)}||ADT^{event}^ADT_A01|{control}|P|2.4",
            f"EVN|{event}|{_ts(at)}",
            f"PID|1||{nhs}^^^NHS^NH||SYNTHETIC^PERSON||19800101|F",
            "PV1|1|E|ED^^^RX1||||||||||||||||" + visit + "|" * 25 + _ts(at) + pv1_45,
            f"PV2|||{LOW_BACK_PAIN}^Low back pain^SCT",
        ]
    )


async def send_all(s: Settings, messages: list[str]) -> list[str]:
    """Send each message and wait for its ACK; the MSA-1 codes, in order."""
    reader, writer = await open_hl7_connection("127.0.0.1", s.integration_mllp_listen_port)
    codes = []
    try:
        for raw in messages:
            writer.writemessage(hl7.parse(raw))
            await writer.drain()
            ack = await asyncio.wait_for(reader.readmessage(), timeout=30)
            codes.append(str(ack.segment("MSA")[1]))
    finally:
        writer.close()
    return codes


async def inbox_rules(s: Settings, patient: str) -> list[tuple[str, str]]:
    engine = make_engine(s, "notifications")
    try:
        async with unit_of_work(make_sessionmaker(engine)) as session:
            rows = await session.exec(  # type: ignore[call-overload]
                text("SELECT rule, status FROM alert WHERE patient_id = :p").bindparams(p=patient)
            )
            return [tuple(r) for r in rows.all()]
    finally:
        await engine.dispose()


class TestFourAttendancesOverMLLP:
    async def test_become_one_frequent_attender_alert_in_the_coordinators_inbox(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        tag = uuid.uuid4().hex[:8].upper()
        facility = f"RX1-{tag}"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{s.api_port('integration')}", timeout=30
        ) as http:
            r = await http.put(
                f"/sources/pas-{tag.lower()}",
                json={
                    "id": f"pas-{tag.lower()}",
                    "name": "Synthetic ED PAS",
                    "org_code": "RX1",
                    "channel": "hl7v2",
                    "sending_facility": facility,
                },
                headers=auth(s, role="admin", org="ICS-1", sub=f"ops-{tag}"),
            )
            assert r.status_code == 200, r.text
        nhs = synthetic_nhs_number()
        patient = pseudonymise(nhs, s)
        first = datetime.now(UTC) - timedelta(days=100)
        messages = []
        for i in range(4):
            at = first + timedelta(days=20 * i)
            visit = f"V{tag}{i}"
            for event in ("A04", "A03"):
                messages.append(
                    adt(
                        event,
                        facility=facility,
                        control=f"{tag}-{i}-{event}",
                        nhs=nhs,
                        visit=visit,
                        at=at,
                    )
                )
        # the PAS resends the last message (no ACK reached it): acknowledged, applied once
        codes = await send_all(s, messages + messages[-1:])
        assert codes == ["AA"] * (len(messages) + 1)

        async def alerted():  # type: ignore[no-untyped-def]
            return await inbox_rules(s, patient) or None

        await eventually(alerted, timeout=load_rules().settle_seconds + 90, interval=1.0)
        # settled: one alert for the four attendances, and no other open alert about them
        await asyncio.sleep(2)
        got = await inbox_rules(s, patient)
        assert [rule for rule, _ in got].count(FREQUENT) == 1, got
        assert [row for row in got if row[1] == "open"] == [(FREQUENT, "open")], got


class TestAnImportedReferralThatWaited:
    async def test_becomes_a_stall_in_the_coordinators_inbox(
        self, running_apps: Settings, tmp_path: Path
    ) -> None:
        """An e-RS worklist extract loaded by the bulk importer (the real command, as an ICS
        operator runs it at go-live) holds a referral sent 30 days ago and never triaged: the
        referrals service holds it with its real date, and the journey judges its triage
        deadline (10 working days) long past: a stall in the coordinators' inbox."""
        s = running_apps
        tag = uuid.uuid4().hex[:8]
        source = f"ers-{tag}"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{s.api_port('integration')}", timeout=30
        ) as http:
            r = await http.put(
                f"/sources/{source}",
                json={
                    "id": source,
                    "name": "e-RS worklist",
                    "org_code": "ICS-1",
                    "channel": "bulk",
                },
                headers=auth(s, role="admin", org="ICS-1", sub=f"ops-{tag}"),
            )
            assert r.status_code == 200, r.text
        nhs = synthetic_nhs_number()
        sent = (datetime.now(UTC) - timedelta(days=30)).replace(microsecond=0)
        extract = tmp_path / "ers-worklist.csv"
        with extract.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(ERS_COLUMNS)
            row = {
                "ubrn": f"0000{tag}",
                "nhs_number": nhs,
                "referring_org": "A81001",
                "registered_practice": "A81001",
                "receiving_org": "PAIN-1",
                "service_id": "svc-pain-mgmt",
                "specialty": "Pain Management",
                "priority": "Routine",
                "reason_codes": "279039007",
                "step": "sent",
                "step_at": sent.isoformat(),
                "reason": "",
                "appointment_at": "",
            }
            out.writerow([row[c] for c in ERS_COLUMNS])
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.integration.importer",
                "ers",
                str(extract),
                "--source",
                source,
                "--progress",
                "none",
            ],
            env=settings_env(s),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        patient = pseudonymise(nhs, s)

        async def stalled():  # type: ignore[no-untyped-def]
            got = await inbox_rules(s, patient)
            return got if ("stalled.not_triaged", "open") in got else None

        got = await eventually(stalled, timeout=load_rules().settle_seconds + 120, interval=1.0)
        assert [rule for rule, _ in got] == ["stalled.not_triaged"], got
