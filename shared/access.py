"""Who may do what: one role table for every Waymark service, decided by a relationship the
system can show. Pure: no I/O, importable by any domain module.

A decision has three parts:
- the caller's **role** (from the identity provider's token), which is the same thing in every
  service (ROLE_TABLE says what each role is for);
- a **capability**: what the endpoint does (read a care plan, act on a referral, manage the
  organisation's webhooks ...);
- the **relationships** between the caller and the thing asked about, worked out by the owning
  service from its own data (a referral from or to the caller's organisation, the person's
  registered GP practice, the person's consent, the person's ICS, the caller's own
  organisation's resource, a break-glass grant).

`GRANTS[role][capability]` lists the relationships that allow it. No entry means never. The
services call `permits` / `granting_relationship`; the security suite generates its role x
endpoint x relationship matrix from the same table (tests/security/test_authorisation_matrix).

Sources: NHS England, "Legitimate relationships" (Spine / Summary Care Record access control,
RBAC and the need for a legitimate relationship); the National Data Guardian's Caldicott
principles 3 and 4 (use the minimum necessary; access on a strict need-to-know basis); NHS
Summary Care Record "emergency access" (break-glass with a stated reason, audited and reviewed
by the organisation's privacy officer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from shared.errors import Forbidden


class Role(StrEnum):
    CLINICIAN = "clinician"
    SERVICE_STAFF = "service_staff"
    COORDINATOR = "coordinator"
    ICS_LEAD = "ics_lead"
    ADMIN = "admin"  # an organisation's administrator: its users, subscriptions, settings
    PARTNER = "partner"  # a partner organisation's system (a machine client)
    SERVICE = "service"  # a Waymark process's own credential


@dataclass(frozen=True)
class Principal:
    """The caller, as the identity provider asserted it. Users are keyed by issuer + subject
    (`identity`): two providers may both have a `gp1`. `issuer` is empty for the deployment's
    own identity provider, whose subjects are the keys as they are; a user of any other
    trusted issuer is namespaced `<sub>@<issuer>`, so keys never collide across issuers."""

    user: str  # the token's `sub`
    roles: frozenset[Role]
    org: str
    ics: str
    name: str = ""
    issuer: str = ""
    # the OAuth client the token was issued to (`azp` / `client_id`)
    client_id: str = ""
    # a system's token (client credentials) is limited to its scopes; a person's token is not
    # (None): what a person may do is their role and relationships
    scopes: frozenset[str] | None = None

    @property
    def is_client(self) -> bool:
        """A system acting for itself (client credentials), not a person."""
        return self.scopes is not None

    def has_scope(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    def has(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def identity(self) -> str:
        """The stable key of this user: `sub` for the deployment's own issuer, else
        `<sub>@<issuer>`."""
        return f"{self.user}@{self.issuer}" if self.issuer else self.user


class Relationship(StrEnum):
    """How the caller is related to what they ask about. Each is shown by data the owning
    service holds, never by the caller's say-so."""

    REFERRAL = "referral"  # a referral from or to the caller's organisation
    REGISTERED_GP = "registered_gp"  # the caller's organisation is the person's GP practice
    CONSENT = "consent"  # the person consented to the caller's organisation
    PLAN_HOLDER = "plan_holder"  # the caller's organisation holds the person's care plan
    ICS_COORDINATION = "ics_coordination"  # the person is cared for in the caller's ICS
    BREAK_GLASS = "break_glass"  # an emergency grant: reason, time limit, audited, IG alerted
    OWN_ORGANISATION = "own_organisation"  # the resource is the caller's organisation's
    SAME_ICS = "same_ics"  # the resource (not a person's data) belongs to the caller's ICS
    ANYONE = "anyone"  # public information (the directory's published services)
    SELF = "self"  # the caller's own inbox and preferences
    # the caller is the deployment's integration service (the EHRs' door), named by its
    # credential's identity in the owning service's configuration
    INTEGRATION = "integration"


class Capability(StrEnum):
    REFERRAL_CREATE = "referral.create"
    REFERRAL_READ = "referral.read"
    REFERRAL_ACT = "referral.act"
    # record referrals an EHR already holds, with their past dates (go-live history)
    REFERRAL_HISTORY_IMPORT = "referral.history_import"
    CARE_PLAN_CREATE = "care_plan.create"
    CARE_PLAN_READ = "care_plan.read"
    CARE_PLAN_WRITE = "care_plan.write"
    BREAK_GLASS = "care_plan.break_glass"
    PATIENT_CONTACT_READ = "patient_contact.read"  # for the dispatcher only
    MESSAGE_CONTEXT_READ = "message_context.read"  # for the dispatcher only
    MESSAGE_LOG_READ = "message_log.read"
    ALERT_READ = "alert.read"
    ALERT_ACT = "alert.act"
    FIGURES_READ = "figures.read"  # aggregate figures, no patient detail
    OWN_INBOX = "inbox.own"
    OWN_PREFERENCES = "preferences.own"
    DIRECTORY_READ = "directory.read"
    DIRECTORY_MANAGE = "directory.manage"
    WEBHOOKS_MANAGE = "webhooks.manage"
    # an organisation's partner systems' OAuth clients: register, see, rotate, revoke
    CLIENTS_MANAGE = "clients.manage"
    # the integration service (issue #17): a registered source system sends contacts; an ICS
    # administrator registers sources and looks after their dead letters
    CONTACTS_SUBMIT = "contacts.submit"
    INTEGRATION_MANAGE = "integration.manage"
    # the operators' Temporal codec server: decrypt (and encrypt) the journeys' workflow
    # payloads for the Temporal UI or CLI; pseudonymous journey facts, every decode audited
    TEMPORAL_CODEC = "temporal.codec"


R = Relationship
C = Capability

#: a system's OAuth client (client credentials) holds scopes, and a scope is a capability: the
#: endpoints a client may call are those whose capability its token's `scope` names (its role
#: and relationships still decide what it sees there). Waymark's own processes hold only what
#: they call: the referrals service reads the directory's identifiers, the integration service
#: imports referral history, the notifications dispatcher reads a message's details, the bridge
#: reads the directory's service names.
PROCESS_SCOPES: dict[str, tuple[Capability, ...]] = {
    "referrals": (Capability.DIRECTORY_READ,),
    "integration": (Capability.REFERRAL_HISTORY_IMPORT, Capability.DIRECTORY_READ),
    "notifications": (
        Capability.PATIENT_CONTACT_READ,
        Capability.MESSAGE_CONTEXT_READ,
        Capability.DIRECTORY_READ,
    ),
    "journeys": (Capability.DIRECTORY_READ,),
}

#: what each role is for, in plain words (README's security section renders this)
ROLE_TABLE: dict[Role, str] = {
    Role.CLINICIAN: "a health or care professional: referrals and care plans of the people "
    "their organisation cares for; break-glass in an emergency",
    Role.SERVICE_STAFF: "a receiving service's team: triage, booking and outcomes of referrals "
    "to or from their organisation, the plans of people they care for, "
    "their organisation's directory entries",
    Role.COORDINATOR: "an ICS care coordinator: every referral, plan and alert of people cared "
    "for in their ICS, for coordination",
    Role.ICS_LEAD: "an ICS lead: figures for the ICS (loops and stalls per 1,000 referrals, "
    "waits), no patient detail",
    Role.ADMIN: "an organisation's administrator: its directory entries, partner webhook "
    "subscriptions, partner systems' clients and settings; no patient data, except that an "
    "admin of the deployment's ICS may decrypt the journey workflows' pseudonymous payloads "
    "through the Temporal codec server, each time audited",
    Role.PARTNER: "a partner organisation's system (machine client): referrals from or to "
    "its organisation and its own event subscriptions; no care plans",
    Role.SERVICE: "a Waymark process (machine client): only the narrow endpoints that hand "
    "a message's details to the notifications dispatcher, and, for the integration service's "
    "credential alone, the referrals' historical import",
}

_CARE = frozenset({R.PLAN_HOLDER, R.REGISTERED_GP, R.CONSENT})
_COMMON = {
    C.DIRECTORY_READ: frozenset({R.ANYONE}),
    C.OWN_INBOX: frozenset({R.SELF}),
    C.OWN_PREFERENCES: frozenset({R.SELF}),
}

#: GRANTS[role][capability]: the relationships that allow it (absent: never)
GRANTS: dict[Role, dict[Capability, frozenset[Relationship]]] = {
    Role.CLINICIAN: {
        **_COMMON,
        C.REFERRAL_CREATE: frozenset({R.OWN_ORGANISATION}),
        C.REFERRAL_READ: frozenset({R.REFERRAL}),
        C.REFERRAL_ACT: frozenset({R.REFERRAL}),
        C.CARE_PLAN_CREATE: frozenset({R.REFERRAL, R.REGISTERED_GP}),
        C.CARE_PLAN_READ: _CARE | {R.BREAK_GLASS},
        C.CARE_PLAN_WRITE: _CARE,
        C.BREAK_GLASS: frozenset({R.ICS_COORDINATION}),
        C.MESSAGE_LOG_READ: frozenset({R.REFERRAL}),
    },
    Role.SERVICE_STAFF: {
        **_COMMON,
        C.REFERRAL_CREATE: frozenset({R.OWN_ORGANISATION}),
        C.REFERRAL_READ: frozenset({R.REFERRAL}),
        C.REFERRAL_ACT: frozenset({R.REFERRAL}),
        C.CARE_PLAN_CREATE: frozenset({R.REFERRAL, R.REGISTERED_GP}),
        C.CARE_PLAN_READ: _CARE,
        C.CARE_PLAN_WRITE: _CARE,
        C.MESSAGE_LOG_READ: frozenset({R.REFERRAL}),
        C.DIRECTORY_MANAGE: frozenset({R.OWN_ORGANISATION}),
    },
    Role.COORDINATOR: {
        **_COMMON,
        C.REFERRAL_READ: frozenset({R.ICS_COORDINATION}),
        C.CARE_PLAN_CREATE: frozenset({R.ICS_COORDINATION}),
        C.CARE_PLAN_READ: frozenset({R.ICS_COORDINATION}),
        C.CARE_PLAN_WRITE: frozenset({R.ICS_COORDINATION}),
        C.MESSAGE_LOG_READ: frozenset({R.ICS_COORDINATION}),
        C.ALERT_READ: frozenset({R.ICS_COORDINATION}),
        C.ALERT_ACT: frozenset({R.ICS_COORDINATION}),
        C.FIGURES_READ: frozenset({R.SAME_ICS}),
    },
    Role.ICS_LEAD: {
        **_COMMON,
        C.FIGURES_READ: frozenset({R.SAME_ICS}),
    },
    Role.ADMIN: {
        **_COMMON,
        C.DIRECTORY_MANAGE: frozenset({R.OWN_ORGANISATION}),
        C.WEBHOOKS_MANAGE: frozenset({R.OWN_ORGANISATION}),
        C.CLIENTS_MANAGE: frozenset({R.OWN_ORGANISATION}),
        C.INTEGRATION_MANAGE: frozenset({R.SAME_ICS}),
        C.TEMPORAL_CODEC: frozenset({R.SAME_ICS}),
    },
    Role.PARTNER: {
        C.DIRECTORY_READ: frozenset({R.ANYONE}),
        C.REFERRAL_CREATE: frozenset({R.OWN_ORGANISATION}),
        C.REFERRAL_READ: frozenset({R.REFERRAL}),
        C.REFERRAL_ACT: frozenset({R.REFERRAL}),
        C.MESSAGE_LOG_READ: frozenset({R.REFERRAL}),
        C.WEBHOOKS_MANAGE: frozenset({R.OWN_ORGANISATION}),
        C.CONTACTS_SUBMIT: frozenset({R.OWN_ORGANISATION}),
    },
    Role.SERVICE: {
        C.DIRECTORY_READ: frozenset({R.ANYONE}),
        C.PATIENT_CONTACT_READ: frozenset({R.ANYONE}),
        C.MESSAGE_CONTEXT_READ: frozenset({R.ANYONE}),
        C.REFERRAL_HISTORY_IMPORT: frozenset({R.INTEGRATION}),
    },
}


class InsufficientScope(Forbidden):
    """A system's token (client credentials) used for a capability its scopes do not name: the
    token, not the thing asked about, is refused (RFC 6750 section 3.1), so the answer says which
    scope it lacks and reveals nothing about the resource."""

    title, slug = "Insufficient scope", "insufficient-scope"

    def __init__(self, capability: Capability) -> None:
        super().__init__(
            f"this client's token does not carry the scope {capability.value!r}; ask the "
            "organisation's administrator to add it to the client",
            headers={
                "WWW-Authenticate": (
                    f'Bearer error="insufficient_scope", scope="{capability.value}"'
                )
            },
            error="insufficient_scope",
            scope=capability.value,
        )


def check_scope(principal: Principal, capability: Capability) -> None:
    """A client (client credentials token) may use a capability only when its scopes name it;
    a person's token has no scopes (their role and relationships decide). Every decision below
    calls this first, so every service enforces scopes the same way."""
    if principal.scopes is not None and capability.value not in principal.scopes:
        raise InsufficientScope(capability)


#: relationships that reach a person's data (the rest are about organisations' resources)
PATIENT_RELATIONSHIPS = frozenset(
    {R.REFERRAL, R.REGISTERED_GP, R.CONSENT, R.PLAN_HOLDER, R.ICS_COORDINATION, R.BREAK_GLASS}
)

#: the order a granting relationship is named in (audit: "access: consent")
_PREFERENCE = list(Relationship)


def roles_with(capability: Capability) -> frozenset[Role]:
    """The roles that may ever use `capability` (through some relationship)."""
    return frozenset(r for r, caps in GRANTS.items() if capability in caps)


def relationships_for(principal: Principal, capability: Capability) -> frozenset[Relationship]:
    """Every relationship through which one of the caller's roles allows `capability` (a client
    without the scope: InsufficientScope)."""
    check_scope(principal, capability)
    out: set[Relationship] = set()
    for role in principal.roles:
        out |= GRANTS.get(role, {}).get(capability, frozenset())
    return frozenset(out)


def granting_relationship(
    principal: Principal, capability: Capability, relationships: Iterable[Relationship]
) -> Relationship | None:
    """The relationship through which one of the caller's roles allows `capability`, or
    None. Deterministic: the first of `Relationship`'s order. A client whose token's scopes do
    not name `capability` is refused outright (InsufficientScope, a 403)."""
    check_scope(principal, capability)
    have = set(relationships)
    allowed: set[Relationship] = set()
    for role in principal.roles:
        allowed |= GRANTS.get(role, {}).get(capability, frozenset())
    for rel in _PREFERENCE:
        if rel in have and rel in allowed:
            return rel
    return None


def permits(
    principal: Principal, capability: Capability, relationships: Iterable[Relationship]
) -> bool:
    return granting_relationship(principal, capability, relationships) is not None


def may_use(principal: Principal, capability: Capability) -> bool:
    """Whether any of the caller's roles could use `capability` at all (before looking at
    any relationship): a role that never may gets a plain 403 naming the roles that may. A
    client without the scope: InsufficientScope."""
    check_scope(principal, capability)
    return any(capability in GRANTS.get(role, {}) for role in principal.roles)


def roles_phrase(capability: Capability) -> str:
    return ", ".join(sorted(r.value for r in roles_with(capability)))


def organisation_relationships(
    principal: Principal, *, owner_org: str, owner_ics: str | None = None
) -> set[Relationship]:
    """Relationships to an organisation's own resource (a directory entry, a subscription)."""
    rels = {R.ANYONE}
    if principal.org == owner_org:
        rels.add(R.OWN_ORGANISATION)
    if owner_ics is not None and principal.ics and principal.ics == owner_ics:
        rels.add(R.SAME_ICS)
    return rels


def referral_relationships(
    principal: Principal, *, from_org: str, to_org: str, ics: str
) -> set[Relationship]:
    """Relationships to a referral (and so to the person it is about)."""
    rels = {R.ANYONE}
    if principal.org in (from_org, to_org):
        rels.add(R.REFERRAL)
    if principal.ics and principal.ics == ics:
        rels.update({R.ICS_COORDINATION, R.SAME_ICS})
    return rels
