"""The contact details in a plan, which a change is audited for: pure and synchronous."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

#: what the dispatcher uses to reach the person or a carer
CONTACT_FIELDS = ("email", "mobile")


def contact_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Which of the person's or carers' contact details differ between two plan contents."""
    out = []
    b_comm, a_comm = before.get("communication") or {}, after.get("communication") or {}
    out += [f"person's {f}" for f in CONTACT_FIELDS if b_comm.get(f) != a_comm.get(f)]
    b_carers = {c.get("id"): c.get("contact") for c in before.get("carers", [])}
    a_carers = {c.get("id"): c.get("contact") for c in after.get("carers", [])}
    out += [
        f"carer {cid}'s contact"
        for cid in sorted(set(b_carers) | set(a_carers), key=str)
        if b_carers.get(cid) != a_carers.get(cid)
    ]
    b_crisis, a_crisis = _crisis_contacts(before), _crisis_contacts(after)
    out += [
        f"crisis contact {cid}"
        for cid in sorted(set(b_crisis) | set(a_crisis), key=str)
        if b_crisis.get(cid) != a_crisis.get(cid)
    ]
    return out


def _crisis_contacts(content: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Who to call in a crisis, by id: the fields that decide who is reached."""
    contacts = (content.get("crisis") or {}).get("who_to_call") or []
    return {
        str(c.get("id") or crisis_contact_id(c.get("name"), c.get("phone"))): tuple(
            c.get(f) for f in CRISIS_CONTACT_FIELDS
        )
        for c in contacts
    }


def crisis_contact_id(name: Any, phone: Any) -> str:
    """The id of a crisis contact given without one: the same name and number give the same
    id in every version, so resending an unchanged plan changes no contact."""
    digest = hashlib.sha256(f"{name}\x00{phone}".encode()).hexdigest()[:12]
    return f"cc-{digest}"


#: what of a crisis contact is a contact detail (a change is audited as `contact-changed`)
CRISIS_CONTACT_FIELDS = ("name", "relationship", "role", "phone")
