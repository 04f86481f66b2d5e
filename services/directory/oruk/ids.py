"""HSDS ids are UUIDs. Waymark's records may carry slugs (`svc-crisis-04`, chosen by whoever
created them, and referred to by that id across Waymark: referrals, events, the demo data), and
an import may bring an ORUK feed's own non-UUID ids (`esd-st-1091`). The ORUK feed shows each
such id as a name-based UUID (uuid5 of Waymark's namespace, the record's kind and the id), the
same every time, and its routes accept it; a UUID is shown as it is. The directory's own API
keeps the slugs.

Pure: no I/O. `as_oruk` maps every id and reference of a rendered ORUK body; `map_ids`, with
the stored ids, maps an imported feed's back (so a Waymark export re-imports onto its slugs).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from services.directory.domain import WAYMARK_NS

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

#: the kind of record a nested object or list holds, by the key it sits under
CHILD_KIND = {
    "organization": "organization",
    "location": "location",
    "service": "service",
    "taxonomy_term": "taxonomy_term",
    "taxonomy_detail": "taxonomy",
    "schedules": "schedule",
    "service_areas": "service_area",
    "service_at_locations": "service_at_location",
    "languages": "language",
    "cost_options": "cost_option",
    "contacts": "contact",
    "phones": "phone",
    "funding": "funding",
    "attributes": "attribute",
    "addresses": "address",
    "accessibility": "accessibility",
    "organization_identifiers": "organization_identifier",
}

#: the kind of record a reference field names
REFERENCE_KIND = {
    "service_id": "service",
    "organization_id": "organization",
    "location_id": "location",
    "service_at_location_id": "service_at_location",
    "taxonomy_term_id": "taxonomy_term",
    "taxonomy_id": "taxonomy",
    "contact_id": "contact",
    "phone_id": "phone",
    "parent_organization_id": "organization",
}


def is_uuid(value: str) -> bool:
    """A UUID in its canonical (lower-case, hyphenated) form."""
    return bool(_UUID.fullmatch(value))


def oruk_id(kind: str, value: str) -> str:
    """The id a record of `kind` with Waymark id `value` has in the ORUK feed."""
    if is_uuid(value):
        return value
    return str(uuid.uuid5(WAYMARK_NS, f"oruk/{kind}/{value}"))


def _ref_kind(key: str, kind: str, node: dict[str, Any]) -> str | None:
    if key == "id":
        return kind
    if key == "parent_id":
        return kind  # a term's parent is a term
    if key == "link_id":
        return str(node.get("link_entity") or "service")
    return REFERENCE_KIND.get(key)


def map_ids(body: Any, kind: str, to: Callable[[str, str], str]) -> Any:
    """`body` (a record of `kind`, a page of them, or a list) with each id and reference
    `value` of a record of kind `k` replaced by `to(k, value)`."""
    if isinstance(body, list):
        return [map_ids(item, kind, to) for item in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key == "contents":
            out[key] = map_ids(value, kind, to)
        elif key in CHILD_KIND and isinstance(value, dict | list):
            out[key] = map_ids(value, CHILD_KIND[key], to)
        elif isinstance(value, str) and (target := _ref_kind(key, kind, body)) is not None:
            out[key] = to(target, value)
        else:
            out[key] = value
    return out


def as_oruk(body: Any, kind: str) -> Any:
    """`body` (a record of `kind`, a page of them, or a list) with every id a UUID."""
    return map_ids(body, kind, oruk_id)
