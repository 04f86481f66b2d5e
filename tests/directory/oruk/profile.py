"""The Open Referral UK profile's own schemas and OpenAPI (vendored in `uk_profile/`), as
`jsonschema` validators: what a partner's conformance check runs against the feed.

`errors(schema, body)` checks a body against one of the profile's JSON schemas;
`openapi_errors(path, body)` against the 200 response schema the profile's OpenAPI gives `path`
(its `$ref`s to raw.githubusercontent.com resolve to the vendored files). Formats are checked:
`uuid`, `email`, `date-time`, and `uri` (absolute: a scheme and a host), which jsonschema would
otherwise skip without the optional rfc3987 package.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry
from referencing.jsonschema import DRAFT202012

HERE = Path(__file__).parent / "uk_profile"
#: where the profile's OpenAPI says its schemas live
PUBLISHED = "https://raw.githubusercontent.com/openreferral/uk-profile/main/schema/"
OPENAPI = "urn:waymark-test:uk-profile/openapi.json"
SCHEMAS = (
    "compiled/service.json",
    "compiled/service_list.json",
    "compiled/service_at_location.json",
    "compiled/service_at_location_list.json",
    "taxonomy.json",
    "taxonomy_term.json",
)

FORMATS = FormatChecker()


@FORMATS.checks("uri", raises=ValueError)
def _absolute_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def _load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


@cache
def _registry() -> Registry:
    resources = [(PUBLISHED + n, DRAFT202012.create_resource(_load(n))) for n in SCHEMAS]
    resources.append((OPENAPI, DRAFT202012.create_resource(_load("openapi.json"))))
    return Registry().with_resources(resources)


def _validator(ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=_registry(), format_checker=FORMATS)


def errors(schema: str, body: Any) -> list[str]:
    """The profile schema `schema` (e.g. `compiled/service.json`)'s complaints about `body`."""
    assert schema in SCHEMAS, schema
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(PUBLISHED + schema).iter_errors(body)
    ]


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def openapi_paths() -> set[str]:
    return {p for p, item in _load("openapi.json")["paths"].items() if item}


def openapi_errors(path: str, body: Any) -> list[str]:
    """The complaints of the 200 response schema the profile's OpenAPI gives `GET path`."""
    spec = _load("openapi.json")
    assert path in spec["paths"], path
    ref = (
        OPENAPI
        + "#/"
        + _pointer(
            "paths", path, "get", "responses", "200", "content", "application/json", "schema"
        )
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(ref).iter_errors(body)
    ]
