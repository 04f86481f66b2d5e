"""One HL7 v2 message through `receive` on the real database: the ACK the library builds, the
contact and its outbox event, refusals as dead letters, and the re-drive through the API."""

from __future__ import annotations

import uuid

import hl7
import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.integration.hl7.handlers import receive
from shared.settings import Settings
from tests.conftest import auth
from tests.integration.conftest import NewSource
from tests.integration.hl7.messages import NHS, adt, ago

SECRET_TEXT = "Told the nurse about her partner"


async def rows(sessions: async_sessionmaker, sql: str, **params: object) -> list:  # type: ignore[type-arg]
    async with sessions() as session:
        return list((await session.exec(text(sql).bindparams(**params))).all())  # type: ignore[call-overload]


def msa(ack: str) -> tuple[str, str, str]:
    message = hl7.parse(ack)
    return (str(message["MSA.F1"]), str(message["MSA.F2"]), str(message["MSA.F3"]))


def err_code(ack: str) -> str:
    return str(hl7.parse(ack)["ERR.F3.R1.C1"])


class TestReceive:
    async def test_an_a04_is_committed_then_acknowledged_aa_with_its_control_id(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        visit = f"V{uuid.uuid4().hex[:8]}"
        raw = adt(
            "A04",
            facility=source.sending_facility or "",
            control_id="CTL-1",
            visit=visit,
            chief=f"279039007^{SECRET_TEXT}^SCT",
            extra=[f"NTE|1||{SECRET_TEXT}"],
        )
        answer = await receive(integration_sessions, infra, raw.encode())
        assert msa(answer.ack) == ("AA", "CTL-1", "")
        ack = hl7.parse(answer.ack)
        assert str(ack["MSH.F9.R1.C1"]) == "ACK" and str(ack["MSH.F6"]) == source.sending_facility
        [row] = await rows(
            integration_sessions,
            "SELECT id, status, chief_complaint FROM encounter WHERE source_system = :s",
            s=source.id,
        )
        assert (row.status, row.chief_complaint, str(row.id)) == (
            "arrived",
            "279039007",
            answer.result.changed[0][0],
        )
        [event] = await rows(
            integration_sessions,
            "SELECT payload::text AS p FROM outbox WHERE payload->'data'->>'encounter_id' = :i",
            i=str(row.id),
        )
        # codes only: no NHS number, no name, no text, no visit number
        for secret in (NHS, SECRET_TEXT, "SYNTHETIC", visit, "Leeds"):
            assert secret not in event.p

    async def test_the_same_message_again_is_aa_without_a_second_effect(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A04", facility=source.sending_facility or "", control_id="D1", visit="VD1")
        first = await receive(integration_sessions, infra, raw.encode())
        again = await receive(integration_sessions, infra, raw.encode())
        assert msa(first.ack)[0] == msa(again.ack)[0] == "AA"
        assert again.result.duplicate and not again.result.changed
        [count] = await rows(
            integration_sessions,
            "SELECT count(*) AS n FROM outbox o JOIN encounter e "
            "ON o.payload->'data'->>'encounter_id' = e.id::text WHERE e.source_system = :s",
            s=source.id,
        )
        assert count.n == 1

    async def test_a_discharge_then_a_cancelled_discharge_reopen_the_visit(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        fac = source.sending_facility or ""
        for trigger, cid in (("A04", "R1"), ("A03", "R2"), ("A13", "R3")):
            discharge = ago(minutes=20) if trigger == "A03" else None
            raw = adt(trigger, facility=fac, control_id=cid, visit="VR", discharge=discharge)
            assert msa((await receive(integration_sessions, infra, raw.encode())).ack)[0] == "AA"
        [row] = await rows(
            integration_sessions,
            "SELECT status, ended_at, revision FROM encounter WHERE source_system = :s",
            s=source.id,
        )
        assert (row.status, row.ended_at, row.revision) == ("arrived", None, 3)


class TestRefusals:
    async def test_an_invalid_nhs_number_is_ae_with_the_reason_and_a_dead_letter(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt(
            "A04", facility=source.sending_facility or "", control_id="E1", visit="V", nhs="123"
        )
        answer = await receive(integration_sessions, infra, raw.encode())
        code, control, reason = msa(answer.ack)
        assert (code, control) == ("AE", "E1") and "NHS number" in reason
        assert err_code(answer.ack) == "102"
        [letter] = await rows(
            integration_sessions,
            "SELECT source_system, control_id, reason FROM dead_letter WHERE id = :i",
            i=uuid.UUID(answer.result.dead_letter_id or ""),
        )
        assert (letter.source_system, letter.control_id) == (source.id, "E1")

    async def test_a_message_type_not_taken_is_ar_with_its_hl7_error_code(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A02", facility=source.sending_facility or "", control_id="T1", visit="V")
        answer = await receive(integration_sessions, infra, raw.encode())
        assert msa(answer.ack)[0] == "AR" and err_code(answer.ack) == "201"

    async def test_an_unregistered_sender_is_ar_unknown_key(
        self, integration_sessions, infra: Settings
    ) -> None:
        raw = adt("A04", facility="NOBODY-" + uuid.uuid4().hex[:6], control_id="U1", visit="V")
        answer = await receive(integration_sessions, infra, raw.encode())
        assert msa(answer.ack)[0] == "AR" and err_code(answer.ack) == "204"
        assert "not registered" in msa(answer.ack)[2]

    async def test_a_reused_control_id_with_other_content_is_ar_duplicate_key(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        fac = source.sending_facility or ""
        await receive(
            integration_sessions,
            infra,
            adt("A04", facility=fac, control_id="K", visit="V1").encode(),
        )
        other = await receive(
            integration_sessions,
            infra,
            adt("A04", facility=fac, control_id="K", visit="V2").encode(),
        )
        assert msa(other.ack)[0] == "AR" and err_code(other.ack) == "205"

    async def test_malformed_segments_after_a_readable_header_are_the_senders_ae(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A04", facility=source.sending_facility or "", control_id="M1", visit="V")
        raw = raw.replace("\rPV1|", "\rpv1 broken|")
        answer = await receive(integration_sessions, infra, raw.encode())
        code, control, reason = msa(answer.ack)
        assert (code, control) == ("AE", "M1") and "segment name" in reason
        [letter] = await rows(
            integration_sessions,
            "SELECT source_system FROM dead_letter WHERE id = :i",
            i=uuid.UUID(answer.result.dead_letter_id or ""),
        )
        assert letter.source_system == source.id

    async def test_wrong_encoding_characters_are_ar_with_a_dead_letter_of_no_source(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A04", facility=source.sending_facility or "", control_id="W1", visit="V")
        raw = raw.replace("MSH|^~\\&|", "MSH|^~&\\|", 1)
        answer = await receive(integration_sessions, infra, raw.encode())
        code, _, reason = msa(answer.ack)
        assert code == "AR" and "delimiters" in reason
        [letter] = await rows(
            integration_sessions,
            "SELECT source_system, payload FROM dead_letter WHERE id = :i",
            i=uuid.UUID(answer.result.dead_letter_id or ""),
        )
        assert letter.source_system is None and letter.payload == raw

    async def test_bytes_that_are_not_text_are_ar(
        self, integration_sessions, infra: Settings
    ) -> None:
        answer = await receive(integration_sessions, infra, b"MSH|^~\\&|\xff\xfe\x00junk")
        assert msa(answer.ack)[0] == "AR" and "UTF-8" in msa(answer.ack)[2]

    async def test_latin_1_is_read_when_msh_18_says_so(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A04", facility=source.sending_facility or "", control_id="L1", visit="V")
        raw = raw.replace("UNICODE UTF-8", "8859/1").replace("ALEX", "ZOË")
        answer = await receive(integration_sessions, infra, raw.encode("latin-1"))
        assert msa(answer.ack)[0] == "AA"


class TestRedrive:
    async def test_a_message_from_a_sender_registered_later_is_redriven_through_the_api(
        self, integration_sessions, integration_client: httpx.AsyncClient, infra: Settings
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        facility = f"LATE{tag}".upper()
        raw = adt("A04", facility=facility, control_id="LATE-1", visit="VL")
        refused = await receive(integration_sessions, infra, raw.encode())
        assert msa(refused.ack)[0] == "AR"
        admin = auth(infra, role="admin", org="ICS-1")
        body = {
            "id": f"late-{tag}",
            "name": "A PAS registered late",
            "org_code": "RX1",
            "channel": "hl7v2",
            "sending_facility": facility,
        }
        put = await integration_client.put(f"/sources/late-{tag}", json=body, headers=admin)
        assert put.status_code == 200, put.text
        res = await integration_client.post(
            f"/dead-letters/{refused.result.dead_letter_id}/redrive", headers=admin
        )
        assert res.status_code == 200, res.text
        assert res.json()["ack_code"] == "AA" and res.json()["contacts_changed"] == 1
        [row] = await rows(
            integration_sessions,
            "SELECT status FROM dead_letter WHERE id = :i",
            i=uuid.UUID(refused.result.dead_letter_id or ""),
        )
        assert row.status == "redriven"


class TestAcks:
    async def test_a_header_without_message_type_components_still_gets_its_control_id_back(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        raw = adt("A04", facility=source.sending_facility or "", control_id="NC1", visit="V")
        raw = raw.replace("ADT^A04^ADT_A01", "ADT", 1)
        answer = await receive(integration_sessions, infra, raw.encode())
        assert msa(answer.ack)[:2] == ("AR", "NC1") and err_code(answer.ack) == "201"

    async def test_a_reason_quoting_the_message_is_escaped_in_the_ack(
        self, integration_sessions, infra: Settings, new_source: NewSource
    ) -> None:
        source = await new_source()
        # a "code" holding an HL7 escape sequence: the reason quotes it back
        raw = adt(
            "A04",
            facility=source.sending_facility or "",
            control_id="ESC1",
            visit="V",
            chief="2790\\S\\39007^Back pain^SCT",
        )
        answer = await receive(integration_sessions, infra, raw.encode())
        ack = hl7.parse(answer.ack)
        assert [str(s[0]) for s in ack] == ["MSH", "MSA", "ERR"]
        assert msa(answer.ack)[:2] == ("AE", "ESC1")
        # on the wire the reason's backslashes are escaped (\E\, HL7 2.10.4); the library
        # reads the reason back as it was written
        [msa_line] = [line for line in answer.ack.split("\r") if line.startswith("MSA")]
        assert "2790\\E\\" in msa_line
        assert msa(answer.ack)[2] == answer.result.detail
