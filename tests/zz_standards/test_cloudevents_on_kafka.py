"""After the session: every message on every topic of the test instance is a CloudEvent that
a consumer outside Waymark reads with the official SDK (`cloudevents` 2.2.0, Kafka Protocol
Binding 1.0, structured mode), and a CloudEvents source + id pair is one event.

It reads what this session wrote (records from the moment the session collected this module,
so older runs' messages on a long-lived instance are not its business), the DLQs included:
a dead letter is its original bytes and headers. Messages a test writes malformed on purpose
(poison for the DLQ tests) carry `waymark-test-malformed` and are counted apart. One more
patient goes through the stack first, so a run of this module alone has traffic on every
topic a patient's journey touches.
"""

from __future__ import annotations

import time

import pytest

from shared.settings import Settings
from tests.cloudevents_support import Findings, read_since
from tests.helpers import instance_topics
from tests.zz_privacy.test_no_personal_data import one_patient_through_the_stack, settle

pytestmark = pytest.mark.stack

#: when this session collected the module: the session's messages are the ones after it
SESSION_STARTED_MS = int(time.time() * 1000) - 5_000


class TestEveryMessageIsACloudEvent:
    async def test_the_sdk_reads_every_message_of_the_session_and_an_id_is_one_event(
        self, running_apps: Settings
    ) -> None:
        s = running_apps
        await one_patient_through_the_stack(s)
        in_flight = await settle(s)
        found = Findings()
        topics = await instance_topics(s)
        for topic in topics:
            await read_since(s, topic, SESSION_STARTED_MS, found)

        assert found.read[s.topic("waymark.referrals.v1")] > 0, (found.read, in_flight)
        broken = {t: (len(p), p[:3]) for t, p in found.problems.items()}
        assert not broken, f"messages a CloudEvents consumer cannot read, by topic: {broken}"
        reused = {k: sorted(v.values())[:3] for k, v in found.contents.items() if len(v) > 1}
        assert not reused, (
            f"{len(reused)} source + id pairs name events with different content, e.g. "
            f"{dict(list(reused.items())[:3])}"
        )
        print(
            f"read {sum(found.read.values())} messages of this session on {len(topics)} topics: "
            f"all CloudEvents in structured mode ({sum(found.on_purpose.values())} malformed "
            f"on purpose by tests, not counted); {len(found.contents)} distinct events"
        )
