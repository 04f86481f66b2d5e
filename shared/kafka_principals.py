"""Who may do what on Kafka, as data: one principal (SCRAM user) per Waymark process kind, the
topics it publishes, the topics it consumes and its consumer groups. The local stack turns this
table into the broker's ACLs (devtools/stack/kafka_acls.py), the tests check it against the
consumers' own topic lists, and the Kubernetes KafkaUsers are generated from it.

Least privilege: a principal writes only the topic it owns and the dead-letter topic (.dlq) of
each topic it reads; reads only what it consumes; uses only its own consumer groups. Topic and
group names here are unprefixed; an instance's ACLs are for its own `WAYMARK_TOPIC_PREFIX`.
Idempotent producers need no cluster permission (WRITE on the topic is enough since Kafka 2.8);
no principal uses transactions (the DLQ re-drive, which does, runs as `waymark-admin`).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.topics import CARE_PLANS, DIRECTORY, ENCOUNTERS, JOURNEYS, NOTIFICATIONS, REFERRALS, dlq

#: the super user: creates topics and ACLs, runs devtools and tests; no service runs as it
ADMIN = "waymark-admin"


@dataclass(frozen=True)
class KafkaPrincipal:
    name: str
    #: topics it publishes (its outbox relay)
    owns: tuple[str, ...]
    #: topics its consumers read
    reads: tuple[str, ...] = ()
    #: its consumer groups
    groups: tuple[str, ...] = ()

    @property
    def writes(self) -> tuple[str, ...]:
        """Its own topics and the dead-letter topic of each topic it reads."""
        return self.owns + tuple(dlq(t) for t in self.reads)


PRINCIPALS: tuple[KafkaPrincipal, ...] = (
    KafkaPrincipal(
        "referrals", owns=(REFERRALS,), reads=(DIRECTORY,), groups=("referrals-directory",)
    ),
    KafkaPrincipal("directory", owns=(DIRECTORY,)),
    KafkaPrincipal(
        "care-plans", owns=(CARE_PLANS,), reads=(REFERRALS,), groups=("care-plans-referrals",)
    ),
    KafkaPrincipal(
        "notifications",
        owns=(NOTIFICATIONS,),
        reads=(REFERRALS, DIRECTORY, CARE_PLANS, JOURNEYS, ENCOUNTERS),
        groups=("notifications",),
    ),
    KafkaPrincipal("integration", owns=(ENCOUNTERS,)),
    KafkaPrincipal(
        "journeys",
        owns=(JOURNEYS,),
        reads=(REFERRALS, CARE_PLANS, NOTIFICATIONS, ENCOUNTERS),
        groups=("journeys-bridge",),
    ),
)

#: every SCRAM user of a Waymark cluster, the admin included
USERS: tuple[str, ...] = (ADMIN, *(p.name for p in PRINCIPALS))


def principal(name: str) -> KafkaPrincipal:
    for p in PRINCIPALS:
        if p.name == name:
            return p
    raise KeyError(f"no Kafka principal {name!r}; one of {', '.join(p.name for p in PRINCIPALS)}")


@dataclass(frozen=True, order=True)
class AclRule:
    """One ALLOW binding, in the broker's words: resource type, name, pattern, operation."""

    principal: str
    resource_type: str  # TOPIC | GROUP
    name: str
    operation: str  # READ | WRITE | DESCRIBE
    pattern: str = "LITERAL"

    @property
    def user(self) -> str:
        return f"User:{self.principal}"


def acl_rules(p: KafkaPrincipal, prefix: str = "") -> list[AclRule]:
    """The ALLOW bindings of one principal for an instance with topic prefix `prefix`."""
    rules: set[AclRule] = set()
    for topic in p.writes:
        rules |= {AclRule(p.name, "TOPIC", prefix + topic, op) for op in ("WRITE", "DESCRIBE")}
    for topic in p.reads:
        rules |= {AclRule(p.name, "TOPIC", prefix + topic, op) for op in ("READ", "DESCRIBE")}
    for group in p.groups:
        rules.add(AclRule(p.name, "GROUP", prefix + group, "READ"))
    return sorted(rules)


def all_acl_rules(prefix: str = "") -> list[AclRule]:
    return [rule for p in PRINCIPALS for rule in acl_rules(p, prefix)]


def principal_of_service(service: str) -> str:
    """The principal a service's processes run as (devtools/stack/processes.py):
    care_plans -> care-plans, journeys -> journeys; an unknown one is refused."""
    name = service.replace("_", "-")
    principal(name)  # refuses an unknown one
    return name
