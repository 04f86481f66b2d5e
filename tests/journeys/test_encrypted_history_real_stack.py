"""Journey payloads are encrypted at rest in Temporal, through the whole stack `waymark up`
starts (Kafka, bridge, worker, Temporal): a screening result's history read straight from
Temporal, as anyone with access to the frontend could, shows no band, flag, instrument or
pseudonym; read through the codec it decodes; after `waymark temporal rotate-key` the running
workflow still takes signals, whose payloads carry the new key id."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload

from shared.events.care_plans import AssessmentRecorded
from shared.events.envelope import make_event
from shared.settings import Settings, settings_env
from shared.temporal_client import connect as connect_temporal
from shared.temporal_codec import EncryptionCodec, KeyringFile, read_keyring
from shared.topics import CARE_PLANS
from tests.helpers import eventually, publish
from workflows.journeys import workflow_id
from workflows.journeys.workflows import PatientJourney

#: what a journey's history must never show in plain text
WORDS = (b"severe", b"moderately_severe", b"PHQ-9", b"GAD-7", b"safety", b"phq9")
#: payloads Temporal never passes through a codec, and what they hold: headers (the trace
#: context), search attributes and the SDK's own markers (patch ids, a local activity's
#: sequence number and type; its result is a data payload, encrypted)
METADATA = ("header", "search_attributes", "details[patch-data]", "details[data]")


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """(where, payload) for every Payload anywhere inside a protobuf message."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is None:
                continue
            items = [(f"{field.name}[{k}]", v) for k, v in value.items()]
        elif field.is_repeated:
            items = [(f"{field.name}[{i}]", v) for i, v in enumerate(value)]
        else:
            items = [(field.name, value)]
        for name, item in items:
            where = f"{path}.{name}"
            if isinstance(item, Payload):
                yield where, item
            else:
                yield from payloads_in(item, where)


def split(events: list[Message]) -> tuple[list[Payload], list[tuple[str, Payload]]]:
    """The data payloads (a journey's), and Temporal's own metadata payloads."""
    data, meta = [], []
    for e in events:
        for where, p in payloads_in(e):
            if any(f".{m}" in where for m in METADATA):
                meta.append((where, p))
            else:
                data.append(p)
    return data, meta


async def send_assessment(s: Settings, patient: str, instrument: str, band: str) -> None:
    event = make_event(
        AssessmentRecorded(
            plan_id=f"plan-{uuid.uuid4().hex[:6]}",
            assessment_id=f"{instrument}-{uuid.uuid4().hex[:6]}",
            instrument=instrument,
            total=21,
            band=band,
            safety_flag=instrument == "PHQ-9",
            registered_practice="GP-1",
            holder_org="GP-1",
        ),
        subject=patient,
    )
    await publish(s, CARE_PLANS, event)


class TestJourneyHistoriesAreEncrypted:
    async def test_a_history_shows_no_plaintext_decodes_with_the_codec_and_survives_rotation(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        patient = f"pt_crypt_{uuid.uuid4().hex[:10]}"
        keys = KeyringFile(s.temporal_codec_keys_file())
        codec = EncryptionCodec(keys)
        client = await connect_temporal(s)
        handle = client.get_workflow_handle(workflow_id(patient))

        async def applied(n: int):  # type: ignore[no-untyped-def]
            try:
                view = await handle.query(PatientJourney.journey)
            except Exception:  # noqa: BLE001 - not started yet
                return None
            return view if view.events_applied == n and view.alerts else None

        await send_assessment(s, patient, "PHQ-9", "severe")
        view = await eventually(lambda: applied(1), timeout=60, interval=0.3)
        # through the codec (what the worker and the explainer use) the journey reads plainly
        assert any(a.rule == "safety.phq9_item9" for a in view.alerts)

        # straight from Temporal, as anyone with access to the frontend or its database sees it
        raw = await connect_temporal(s, encrypted=False)
        history = await raw.get_workflow_handle(workflow_id(patient)).fetch_history()
        payloads, meta = split(history.events)
        assert len(payloads) >= 4  # the input, the signal, the activities' inputs and results
        old_kid = keys.load().current
        assert {EncryptionCodec.key_id(p) for p in payloads} == {old_kid}
        every_byte = b"".join(e.SerializeToString() for e in history.events)
        for word in WORDS:
            assert word not in every_byte, word
        for where, p in meta:
            assert patient.encode() not in p.SerializeToString(), where
        assert patient.encode() not in b"".join(p.SerializeToString() for p in payloads)

        # the same history through the codec: the screening result is there
        plain = b"".join(p.data for p in await codec.decode(payloads))
        assert b"severe" in plain and b"PHQ-9" in plain and patient.encode() in plain

        # an operator rotates the key while everything runs
        rotated = subprocess.run(
            [sys.executable, "-m", "devtools.cli", "temporal", "rotate-key"],
            env=settings_env(s),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rotated.returncode == 0, rotated.stderr
        new_kid = read_keyring(s.temporal_codec_keys_file()).current
        assert new_kid != old_kid and new_kid in rotated.stdout

        await send_assessment(s, patient, "GAD-7", "severe")
        await eventually(lambda: applied(2), timeout=60, interval=0.3)

        history = await raw.get_workflow_handle(workflow_id(patient)).fetch_history()
        signals = [
            e.workflow_execution_signaled_event_attributes
            for e in history.events
            if e.HasField("workflow_execution_signaled_event_attributes")
        ]
        assert [EncryptionCodec.key_id(sig.input.payloads[0]) for sig in signals] == [
            old_kid,
            new_kid,
        ]
        after = split(history.events)[0][len(payloads) :]
        assert after and {EncryptionCodec.key_id(p) for p in after} <= {old_kid, new_kid}
        assert new_kid in {EncryptionCodec.key_id(p) for p in after}
        every_byte = b"".join(e.SerializeToString() for e in history.events)
        for word in WORDS:
            assert word not in every_byte, word
        # both keys' payloads still decode with the rotated keyring
        both = split(history.events)[0]
        assert b"GAD-7" in b"".join(p.data for p in await codec.decode(both))
