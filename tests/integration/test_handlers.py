"""apply_message on the real database: one transaction per message, idempotent by source and
control id, refusals kept as dead letters with the reason, events staged in the outbox."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.integration.domain import ContactReport, UnmappableReport
from services.integration.handlers import Refused, apply_message
from services.integration.models import SourceSystem
from shared.pseudonym import pseudonymise
from shared.settings import Settings
from shared.vocabulary import ContactKind, ContactStatus
from tests.helpers import synthetic_nhs_number
from tests.integration.conftest import NewSource

NHS = "9434765919"


def a_report(ref: str, **kw: object) -> ContactReport:
    base = ContactReport(
        source_ref=ref,
        nhs_number=NHS,
        contact_kind=ContactKind.AE_ATTENDANCE,
        status=ContactStatus.ARRIVED,
        started_at=datetime.now(UTC) - timedelta(hours=2),
        source_org="RX1",
        chief_complaint="279039007",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


async def rows(sessions: async_sessionmaker, sql: str, **params: object) -> list:  # type: ignore[type-arg]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())  # type: ignore[call-overload]


async def apply(
    sessions: async_sessionmaker,
    settings: Settings,
    source: SourceSystem,
    control_id: str,
    *reports: ContactReport,
    payload: str | None = None,
):  # type: ignore[no-untyped-def]
    return await apply_message(
        sessions,
        settings,
        source_id=source.id,
        channel=source.channel,  # type: ignore[arg-type]
        control_id=control_id,
        payload=payload or f"message {control_id}",
        reports=lambda _source: list(reports),
    )


class TestApplyMessage:
    async def test_a_contact_is_stored_and_its_event_staged_without_identifiers(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        ref = f"V{uuid.uuid4().hex[:8]}"
        result = await apply(integration_sessions, infra, source, "C1", a_report(ref))
        assert result.ack_code == "AA" and not result.duplicate
        [(encounter_id, revision)] = result.changed
        assert revision == 1
        [row] = await rows(
            integration_sessions,
            "SELECT patient_id, contact_kind, planned FROM encounter WHERE id = :i",
            i=uuid.UUID(encounter_id),
        )
        assert row.patient_id == pseudonymise(NHS, infra)
        assert (row.contact_kind, row.planned) == ("ae_attendance", False)
        [event] = await rows(
            integration_sessions,
            "SELECT topic, key, payload FROM outbox WHERE payload->'data'->>'encounter_id' = :i",
            i=encounter_id,
        )
        assert event.topic == infra.topic("waymark.encounters.v1")
        assert event.key == row.patient_id
        dumped = json.dumps(event.payload)
        assert NHS not in dumped and ref not in dumped and source.name not in dumped
        assert event.payload["type"] == "uk.waymark.encounter.recorded"
        assert event.payload["data"]["source_system"] == source.id

    async def test_the_same_message_again_is_acknowledged_and_applies_nothing(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        report = a_report(f"V{uuid.uuid4().hex[:8]}")
        first = await apply(integration_sessions, infra, source, "C1", report)
        again = await apply(integration_sessions, infra, source, "C1", report)
        assert (again.ack_code, again.duplicate, again.changed) == ("AA", True, [])
        [(count,)] = await rows(
            integration_sessions,
            "SELECT count(*) FROM outbox WHERE payload->'data'->>'encounter_id' = :i",
            i=first.changed[0][0],
        )
        assert count == 1

    async def test_a_reused_control_id_with_other_content_is_refused(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        await apply(integration_sessions, infra, source, "C1", a_report("V1"), payload="one")
        other = await apply(
            integration_sessions, infra, source, "C1", a_report("V2"), payload="two"
        )
        assert other.ack_code == "AR" and "used before" in (other.detail or "")
        assert (
            await rows(
                integration_sessions,
                "SELECT 1 FROM encounter WHERE source_system = :s AND source_ref = 'V2'",
                s=source.id,
            )
            == []
        )

    async def test_a_second_message_about_a_contact_is_a_new_revision(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        ref = f"V{uuid.uuid4().hex[:8]}"
        await apply(integration_sessions, infra, source, "C1", a_report(ref))
        ended = a_report(ref, status=ContactStatus.FINISHED, ended_at=datetime.now(UTC))
        result = await apply(integration_sessions, infra, source, "C2", ended)
        assert result.changed[0][1] == 2
        # the same facts under a new control id: acknowledged, nothing new
        same = await apply(integration_sessions, infra, source, "C3", ended)
        assert same.ack_code == "AA" and same.changed == []

    async def test_an_unknown_sender_is_refused_and_kept_as_a_dead_letter(
        self, integration_sessions, infra: Settings
    ) -> None:
        result = await apply_message(
            integration_sessions,
            infra,
            sending_facility="NOBODY-" + uuid.uuid4().hex,
            channel="hl7v2",
            control_id="C1",
            payload="MSH|...",
            reports=lambda _s: [a_report("V1")],
        )
        assert result.ack_code == "AR" and "not registered" in (result.detail or "")
        [letter] = await rows(
            integration_sessions,
            "SELECT source_system, reason, status FROM dead_letter WHERE id = :i",
            i=uuid.UUID(result.dead_letter_id or ""),
        )
        assert letter.source_system is None and letter.status == "open"

    async def test_an_inactive_source_is_refused(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source(active=False)
        result = await apply(integration_sessions, infra, source, "C1", a_report("V1"))
        assert result.ack_code == "AR"

    async def test_an_unmappable_message_applies_nothing_and_says_why(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        good, bad = a_report("V-good"), a_report("V-bad", nhs_number="1234567890")
        result = await apply(integration_sessions, infra, source, "C1", good, bad)
        assert result.ack_code == "AE" and "NHS number" in (result.detail or "")
        # the whole message or nothing: the good contact before the bad one is not kept
        assert (
            await rows(
                integration_sessions,
                "SELECT 1 FROM encounter WHERE source_system = :s",
                s=source.id,
            )
            == []
        )
        [logged] = await rows(
            integration_sessions,
            "SELECT outcome, ack_code FROM inbound_message WHERE source_system = :s",
            s=source.id,
        )
        assert tuple(logged) == ("refused", "AE")

    async def test_a_refused_message_sent_again_once_fixed_is_applied_and_its_letter_closed(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        state = {"fail": True}

        def reports(_s: SourceSystem) -> list[ContactReport]:
            if state["fail"]:
                raise Refused("SIU^S99 is not a message type Waymark takes")
            return [a_report(f"V{uuid.uuid4().hex[:8]}")]

        async def send():  # type: ignore[no-untyped-def]
            return await apply_message(
                integration_sessions,
                infra,
                source_id=source.id,
                channel="hl7v2",
                control_id="C9",
                payload="same",
                reports=reports,
            )

        assert (await send()).ack_code == "AR"
        state["fail"] = False
        assert (await send()).ack_code == "AA"
        [letter] = await rows(
            integration_sessions,
            "SELECT status FROM dead_letter WHERE source_system = :s",
            s=source.id,
        )
        assert letter.status == "redriven"

    async def test_a_visit_number_reported_for_another_person_is_refused(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        await apply(integration_sessions, infra, source, "C1", a_report("V1"))
        other = a_report("V1", nhs_number="9876543210")
        result = await apply(integration_sessions, infra, source, "C2", other)
        assert result.ack_code == "AE" and "another NHS number" in (result.detail or "")


def test_unmappable_is_a_value_error() -> None:
    assert issubclass(UnmappableReport, ValueError)


class TestOneContactFromTwoSources:
    """The PAS's HL7 v2 feed and the ECDS extract both report one attendance (HAZ-098): one
    contact, one encounter id, counted once by the journeys. Within one channel a source's
    own ids tell contacts apart."""

    async def test_the_second_source_names_the_same_contact(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        pas, extract = await new_source(), await new_source(channel="bulk")
        nhs = synthetic_nhs_number()
        arrived = datetime.now(UTC) - timedelta(days=3)
        first = await apply(
            integration_sessions,
            infra,
            pas,
            "C1",
            a_report("V1", nhs_number=nhs, started_at=arrived),
        )
        [(encounter_id, _)] = first.changed
        ended = arrived + timedelta(hours=4)
        second = await apply(
            integration_sessions,
            infra,
            extract,
            "row-7",
            a_report(
                "ECDS-7",
                nhs_number=nhs,
                started_at=arrived + timedelta(minutes=12),
                source_org="RX101",
                status=ContactStatus.FINISHED,
                ended_at=ended,
                attendance_category="1",
            ),
        )
        assert second.ack_code == "AA"
        assert second.changed == [(encounter_id, 2)]
        patient = pseudonymise(nhs, infra)
        contacts = await rows(
            integration_sessions,
            "SELECT id, status, attendance_category FROM encounter WHERE patient_id = :p",
            p=patient,
        )
        assert [(str(c.id), c.status, c.attendance_category) for c in contacts] == [
            (encounter_id, "finished", "1")
        ]
        # the extract's own id now finds it: the same row again changes nothing
        again = await apply(
            integration_sessions,
            infra,
            extract,
            "row-7b",
            a_report(
                "ECDS-7",
                nhs_number=nhs,
                started_at=arrived + timedelta(minutes=12),
                source_org="RX101",
                status=ContactStatus.FINISHED,
                ended_at=ended,
                attendance_category="1",
            ),
        )
        assert again.ack_code == "AA" and again.changed == []

    async def test_another_attendance_of_the_same_person_stays_its_own(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        pas, extract = await new_source(), await new_source(channel="bulk")
        nhs = synthetic_nhs_number()
        arrived = datetime.now(UTC) - timedelta(days=3)
        await apply(
            integration_sessions,
            infra,
            pas,
            "C1",
            a_report("V1", nhs_number=nhs, started_at=arrived),
        )
        later = await apply(
            integration_sessions,
            infra,
            extract,
            "row-8",
            a_report("ECDS-8", nhs_number=nhs, started_at=arrived + timedelta(days=1)),
        )
        crisis = await apply(
            integration_sessions,
            infra,
            extract,
            "row-9",
            a_report(
                "ECDS-9",
                nhs_number=nhs,
                started_at=arrived,
                contact_kind=ContactKind.CRISIS_TEAM,
            ),
        )
        [(count,)] = await rows(
            integration_sessions,
            "SELECT count(*) FROM encounter WHERE patient_id = :p",
            p=pseudonymise(nhs, infra),
        )
        assert count == 3 and later.changed[0][1] == 1 and crisis.changed[0][1] == 1

    async def test_two_visits_of_one_channel_are_never_merged(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        pas, other_pas = await new_source(), await new_source()
        nhs = synthetic_nhs_number()
        arrived = datetime.now(UTC) - timedelta(days=3)
        await apply(
            integration_sessions,
            infra,
            pas,
            "C1",
            a_report("V1", nhs_number=nhs, started_at=arrived),
            a_report("V2", nhs_number=nhs, started_at=arrived + timedelta(minutes=30)),
        )
        # another PAS's visit of the same time: its own contact (within a channel, sources' own
        # ids tell contacts apart)
        await apply(
            integration_sessions,
            infra,
            other_pas,
            "C1",
            a_report("V1", nhs_number=nhs, started_at=arrived),
        )
        [(count,)] = await rows(
            integration_sessions,
            "SELECT count(*) FROM encounter WHERE patient_id = :p",
            p=pseudonymise(nhs, infra),
        )
        assert count == 3
