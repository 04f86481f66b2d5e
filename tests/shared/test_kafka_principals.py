"""The table of Kafka principals (shared/kafka_principals.py), checked against the code that
publishes and consumes: every topic has one writer, every consumer's topics and group are its
principal's, and the ACLs it yields are least privilege."""

from __future__ import annotations

import pytest

from devtools.stack.processes import app_processes
from shared.kafka_principals import (
    ADMIN,
    PRINCIPALS,
    USERS,
    AclRule,
    acl_rules,
    all_acl_rules,
    principal,
    principal_of_service,
)
from shared.settings import Settings
from shared.topics import (
    CARE_PLANS,
    DIRECTORY,
    ENCOUNTERS,
    JOURNEYS,
    NOTIFICATIONS,
    REFERRALS,
    all_topics,
    dlq,
)

EVENT_TOPICS = (REFERRALS, DIRECTORY, CARE_PLANS, NOTIFICATIONS, JOURNEYS, ENCOUNTERS)

#: the agreed table (issue #18): who publishes each topic, who reads it
OWNER = {
    REFERRALS: "referrals",
    DIRECTORY: "directory",
    CARE_PLANS: "care-plans",
    NOTIFICATIONS: "notifications",
    JOURNEYS: "journeys",
    ENCOUNTERS: "integration",
}
READERS = {
    REFERRALS: {"care-plans", "notifications", "journeys"},
    DIRECTORY: {"referrals", "notifications"},
    CARE_PLANS: {"notifications", "journeys"},
    NOTIFICATIONS: {"journeys"},
    JOURNEYS: {"notifications"},
    ENCOUNTERS: {"notifications", "journeys"},
}


class TestTheTable:
    def test_one_principal_per_process_kind_plus_the_admin(self):
        assert set(USERS) == {
            ADMIN,
            "referrals",
            "directory",
            "care-plans",
            "notifications",
            "integration",
            "journeys",
        }
        assert len(USERS) == len(set(USERS))

    @pytest.mark.parametrize("topic", EVENT_TOPICS)
    def test_every_event_topic_has_exactly_one_writer_its_owner(self, topic):
        writers = [p.name for p in PRINCIPALS if topic in p.writes]
        assert writers == [OWNER[topic]]

    @pytest.mark.parametrize("topic", EVENT_TOPICS)
    def test_readers_are_the_agreed_ones(self, topic):
        assert {p.name for p in PRINCIPALS if topic in p.reads} == READERS[topic]

    @pytest.mark.parametrize("topic", EVENT_TOPICS)
    def test_a_dead_letter_topic_is_written_by_exactly_its_topics_readers(self, topic):
        assert {p.name for p in PRINCIPALS if dlq(topic) in p.writes} == READERS[topic]

    def test_every_topic_written_or_read_exists(self):
        names = {t.name for t in all_topics()}
        for p in PRINCIPALS:
            assert set(p.writes) | set(p.reads) <= names, p.name

    def test_an_unknown_principal_is_refused(self):
        with pytest.raises(KeyError, match="no Kafka principal"):
            principal("dispatcher")
        with pytest.raises(KeyError):
            principal_of_service("billing")
        assert principal_of_service("care_plans") == "care-plans"


class TestAclRules:
    def test_referrals_may_do_exactly_its_own_things(self):
        pre = "i1."
        assert set(acl_rules(principal("referrals"), pre)) == {
            AclRule("referrals", "TOPIC", f"{pre}{REFERRALS}", "WRITE"),
            AclRule("referrals", "TOPIC", f"{pre}{REFERRALS}", "DESCRIBE"),
            AclRule("referrals", "TOPIC", f"{pre}{DIRECTORY}", "READ"),
            AclRule("referrals", "TOPIC", f"{pre}{DIRECTORY}", "DESCRIBE"),
            AclRule("referrals", "TOPIC", f"{pre}{dlq(DIRECTORY)}", "WRITE"),
            AclRule("referrals", "TOPIC", f"{pre}{dlq(DIRECTORY)}", "DESCRIBE"),
            AclRule("referrals", "GROUP", f"{pre}referrals-directory", "READ"),
        }

    def test_a_principal_that_consumes_nothing_may_only_write_its_topic(self):
        assert {(r.name, r.operation) for r in acl_rules(principal("integration"))} == {
            (ENCOUNTERS, "WRITE"),
            (ENCOUNTERS, "DESCRIBE"),
        }

    @pytest.mark.parametrize("prefix", ["", "test.", "h1."])
    def test_every_binding_is_literal_allow_on_the_instances_own_names(self, prefix):
        rules = all_acl_rules(prefix)
        assert rules and all(r.pattern == "LITERAL" for r in rules)
        assert all(r.name.startswith(prefix) for r in rules)
        assert {r.operation for r in rules} == {"READ", "WRITE", "DESCRIBE"}
        # nothing on the cluster, no wildcards, no transactional ids
        assert {r.resource_type for r in rules} == {"TOPIC", "GROUP"}
        assert not any("*" in r.name for r in rules)
        assert all(r.principal != ADMIN for r in rules)

    def test_no_principal_reads_a_dead_letter_topic(self):
        # re-driving dead letters is an operator's job (waymark-admin)
        assert not any(r.operation == "READ" and r.name.endswith(".dlq") for r in all_acl_rules(""))


def _plain() -> Settings:
    return Settings(kafka_security_protocol="PLAINTEXT", topic_prefix="t.")


class TestTheConsumersAgree:
    """Each consumer's own topic list and group, built as its process builds it."""

    async def _consumers(self) -> dict[str, object]:
        from services.care_plans.consumers import build_consumer as care_plans
        from services.notifications.consumers import build_consumer as notifications
        from services.referrals.consumers import build_consumer as referrals
        from workflows.journeys.bridge import build_consumer as bridge

        s = _plain()
        return {
            "referrals": referrals(s, None),  # type: ignore[arg-type]
            "care-plans": care_plans(s, None),  # type: ignore[arg-type]
            "notifications": notifications(s, None),  # type: ignore[arg-type]
            "journeys": bridge(s, None),  # type: ignore[arg-type]
        }

    async def test_each_consumer_reads_what_its_principal_reads_in_its_own_group(self):
        consumers = await self._consumers()
        for name, consumer in consumers.items():
            p = principal(name)
            assert sorted(consumer.topics) == sorted(f"t.{t}" for t in p.reads), name  # type: ignore[attr-defined]
            assert [consumer.name] == [f"t.{g}" for g in p.groups], name  # type: ignore[attr-defined]
        # and no principal reads what no consumer of it reads
        assert {p.name for p in PRINCIPALS if p.reads} == set(consumers)

    def test_every_process_runs_as_the_principal_of_its_part(self):
        rows = {row.name: row.kafka_principal for row in app_processes()}
        assert all(rows.values()), "a process without a Kafka principal"
        assert ADMIN not in rows.values()
        for name, who in rows.items():
            if name.startswith("journeys-"):
                assert who == "journeys"
            elif name in ("dev-sinks", "notifications-dispatcher"):
                assert who == "notifications"
            else:
                assert name.startswith(who + "-"), (name, who)
