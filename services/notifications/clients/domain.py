"""The rules of partner onboarding: pure and synchronous, no I/O.

A partner's client holds scopes, and a scope is a capability (shared/access.py): the endpoints
its token may call, and the events its webhook subscriptions may carry. It may hold only what
the role table lets a partner system do at all (PARTNER_SCOPES); never a Waymark process's
capabilities (the dispatcher's narrow reads, the history import), never an administrator's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from shared.access import GRANTS, Capability, Role
from shared.errors import Conflict, ValidationFailed

#: the scopes an administrator may give a partner's client, with what each lets it do
PARTNER_SCOPES: dict[Capability, str] = {
    Capability.REFERRAL_READ: "read referrals from or to the organisation, and receive their "
    "events (webhooks) and the alerts addressed to it",
    Capability.REFERRAL_CREATE: "make referrals from the organisation",
    Capability.REFERRAL_ACT: "triage, book and record outcomes of the organisation's referrals "
    "(with referral.read)",
    Capability.MESSAGE_LOG_READ: "read the delivery log of its referrals' messages",
    Capability.WEBHOOKS_MANAGE: "manage the organisation's webhook subscriptions",
    Capability.CONTACTS_SUBMIT: "send contacts with care (FHIR Encounter) as a registered "
    "source system",
    Capability.DIRECTORY_READ: "read the directory of services",
}
assert set(PARTNER_SCOPES) <= set(GRANTS[Role.PARTNER]), "a partner scope the role lacks"

#: the role a partner's client's tokens carry
PARTNER_ROLES = (Role.PARTNER.value,)

MAX_NAME = 80
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,80}")
#: a client id recorded by hand (a provider without dynamic registration)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,200}")


class Status(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class Registration(StrEnum):
    DYNAMIC = "dynamic"  # registered by Waymark at the provider (RFC 7591)
    MANUAL = "manual"  # registered at the provider by hand, recorded here


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise ValidationFailed(
            f"name the client in 1 to {MAX_NAME} characters, no control characters",
            field="name",
        )
    return name


def check_scopes(requested: Iterable[str]) -> list[str]:
    """The scopes asked for: each one a partner may hold; duplicates dropped; sorted."""
    allowed = {c.value for c in PARTNER_SCOPES}
    out = sorted(set(requested))
    if not out:
        raise ValidationFailed("give the client at least one scope", field="scopes")
    refused = [s for s in out if s not in allowed]
    if refused:
        raise ValidationFailed(
            f"a partner's client cannot hold {', '.join(refused)}; "
            f"the scopes are: {', '.join(sorted(allowed))}",
            field="scopes",
        )
    return out


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.fullmatch(client_id):
        raise ValidationFailed(
            "a client id is 1 to 200 letters, digits or . _ : @ -", field="client_id"
        )
    return client_id


def registration_metadata(
    *, name: str, org: str, ics: str, scopes: Iterable[str], secret_version: int
) -> dict[str, Any]:
    """The client's metadata as the provider is asked to register it (RFC 7591 section 2, and
    Waymark's extra members the provider copies into the client's tokens: org, ics, roles)."""
    return {
        "client_name": name,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": " ".join(scopes),
        "org": org,
        "ics": ics,
        "waymark_roles": list(PARTNER_ROLES),
        # raising it in an update (RFC 7592) makes the provider issue a new secret
        "waymark_secret_version": secret_version,
    }


def check_may_change(status: str, registration: str, *, action: str) -> None:
    """A revoked client is gone at the provider: nothing more can be done to it. A client
    registered by hand is rotated at the provider, by hand."""
    if status == Status.REVOKED:
        raise Conflict(f"this client is revoked; register a new one instead of trying to {action}")
    if registration == Registration.MANUAL and action == "rotate its secret":
        raise Conflict(
            "this client was registered at the identity provider by hand: rotate its secret "
            "there (Waymark never held it)"
        )
