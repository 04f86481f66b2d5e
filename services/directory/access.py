"""Who may change the directory: service staff and administrators manage their own
organisation's entries (the role table in shared/access.py)."""

from __future__ import annotations

from shared.access import Capability, organisation_relationships, permits
from shared.auth import Principal
from shared.errors import Forbidden


def may_manage(p: Principal, *, org_code: str, org_ics: str) -> bool:
    """Service staff and administrators manage their own organisation's entries (the role
    table)."""
    return permits(
        p,
        Capability.DIRECTORY_MANAGE,
        organisation_relationships(p, owner_org=org_code, owner_ics=org_ics),
    )


def require_manage(p: Principal, *, org_code: str, org_ics: str) -> None:
    if not may_manage(p, org_code=org_code, org_ics=org_ics):
        raise Forbidden(
            f"only {org_code}'s own service staff or administrators may change "
            "its directory entries"
        )
