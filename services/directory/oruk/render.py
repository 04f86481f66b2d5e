"""An ORUK body as the UK profile's schemas require it: every id a UUID (see `ids`), and every
field the profile makes required present, even where Waymark does not know it.

What Waymark does not know it does not invent: an address's `state_province` (England's county)
is the one its location was given, else an empty string, which the profile's schema permits
(a string, no minimum length); so are `address_1` and `city`. A location without a type is
physical when it has coordinates or an address, else virtual. A taxonomy term without a
description gets an empty one. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from services.directory.oruk.ids import CHILD_KIND, as_oruk

#: fields the profile requires that Waymark may not hold, by the kind of record
UNKNOWN_AS_EMPTY = {
    "address": ("address_1", "city", "state_province"),
    "taxonomy_term": ("description",),
    "taxonomy": ("description",),
    "organization": ("description",),
}


def _complete(node: Any, kind: str) -> None:
    if isinstance(node, list):
        for item in node:
            _complete(item, kind)
        return
    if not isinstance(node, dict):
        return
    for name in UNKNOWN_AS_EMPTY.get(kind, ()):
        if node.get(name) is None:
            node[name] = ""
    if kind == "location" and node.get("location_type") is None:
        placed = node.get("latitude") is not None or bool(node.get("addresses"))
        node["location_type"] = "physical" if placed else "virtual"
    for key, value in node.items():
        if key == "contents":
            _complete(value, kind)
        elif key in CHILD_KIND:
            _complete(value, CHILD_KIND[key])


def render(body: Any, kind: str) -> Any:
    """`body` (a record of `kind`, or a page of them) as the feed serves it."""
    out = as_oruk(body, kind)
    _complete(out, kind)
    return out
