"""A withdrawn service's event leaves the directory through the outbox relay and reaches
`waymark.directory.v1` on the real Kafka broker, with the facts the referrals service needs
and nothing personal."""

from __future__ import annotations

import json

import httpx

from shared.events.envelope import CloudEvent
from shared.events.registry import load_all
from shared.outbox import OutboxRelay
from shared.settings import Settings
from shared.topics import DIRECTORY
from tests.cloudevents_support import kafka_problem
from tests.directory.conftest import create_published, new_provider
from tests.helpers import read_topic

WITHDRAWN = "uk.waymark.directory.service.withdrawn"


class TestWithdrawnEventOnKafka:
    async def test_withdrawal_is_published_on_the_directory_topic(
        self, directory_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        p = await new_provider(directory_client, settings)
        s = await create_published(
            directory_client,
            p,
            name="Evening pain group at St Anne's",
            description="Run by Dr Jane Example.",
            self_referral=True,
            waiting_weeks=3,
            conditions=["persistent_pain", "mental_health"],
            category="peer_support",
            contacts=[
                {"name": "Jane Example", "email": "jane@example.org", "phone": "01632 960555"}
            ],
        )
        r = await directory_client.post(
            f"/services/{s['id']}/withdraw",
            headers=p.headers,
            json={"reason": "service_closed", "note": "Jane Example has retired."},
        )
        assert r.status_code == 200, r.text

        relay = OutboxRelay(settings=settings, schema="directory")
        await relay.start()
        try:
            while await relay.publish_batch():
                pass
        finally:
            await relay.stop()

        key = s["id"].encode()
        records = await read_topic(
            settings,
            settings.topic(DIRECTORY),
            until=lambda recs: any(
                r.key == key and json.loads(r.value)["type"] == WITHDRAWN for r in recs
            ),
        )
        mine = [r for r in records if r.key == key]
        types = [json.loads(r.value)["type"] for r in mine]
        assert [kafka_problem(r.headers, r.key, r.value) for r in mine] == [None, None]
        assert types == ["uk.waymark.directory.service.published", WITHDRAWN]
        raw = mine[-1].value
        event = CloudEvent.model_validate(json.loads(raw))
        assert event.subject == s["id"] and event.source == "waymark/directory"
        data = load_all().parse(event)
        assert data.model_dump() == {
            "service_id": s["id"],
            "organization_id": s["organization_id"],
            "org_code": p.code,
            "category": "peer_support",
            "conditions": ["persistent_pain", "mental_health"],
            "status": "active",
            "self_referral": True,
            "waiting_weeks": 3,
            "reason": "service_closed",
        }
        for personal in (b"Jane", b"jane@example.org", b"01632", b"St Anne", b"retired"):
            assert personal not in raw, personal
