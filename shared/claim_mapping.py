"""How an identity provider's claims become Waymark's roles and organisation, by configuration.

Pure: a mapping is data read from a TOML file (shared/claim_mappings/<name>.toml, or the path of
an ICS's own file) and `map_claims` is a function of the token's claims. Two kinds:

- `flat`: a claim (a dotted path, e.g. `realm_access.roles`) holding a list of role values,
  translated through the file's [roles] table (or taken as Waymark role names), and a claim
  holding the organisation code;
- `cis2`: NHS CIS2's `nhsid_nrbac_roles` entries, of which the one `selected_roleid` names
  gives the role (by the National RBAC Database role code, the `R....` part of `role_code`)
  and the organisation (`org_code`).

A token whose claims map to no Waymark role, or to no organisation, is refused: a user with no
role Waymark knows gets nothing, never a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.access import Role
from shared.identifiers import ORG_CODE

MAPPINGS_DIR = Path(__file__).parent / "claim_mappings"


class ClaimsRefused(ValueError):
    """The token's claims do not give a Waymark role and organisation (the reason says why)."""


@dataclass(frozen=True)
class ClaimMapping:
    kind: str
    roles_claim: str
    roles: dict[str, tuple[Role, ...]]
    roles_are_waymark_names: bool = False
    org_claim: str = ""
    ics_claim: str = ""
    name_claim: str = "name"
    selected_role_claim: str = ""


@dataclass(frozen=True)
class MappedClaims:
    roles: frozenset[Role]
    org: str
    ics: str
    name: str


def parse_mapping(raw: dict[str, Any], source: str) -> ClaimMapping:
    kind = raw.get("kind")
    if kind not in ("flat", "cis2"):
        raise ValueError(f"{source}: kind must be 'flat' or 'cis2'")
    table: dict[str, tuple[Role, ...]] = {}
    for value, names in dict(raw.get("roles", {})).items():
        try:
            table[str(value)] = tuple(Role(n) for n in names)
        except ValueError as exc:
            raise ValueError(f"{source}: [roles] {value!r}: {exc}") from None
    mapping = ClaimMapping(
        kind=kind,
        roles_claim=str(raw.get("roles_claim", "")),
        roles=table,
        roles_are_waymark_names=bool(raw.get("roles_are_waymark_names", False)),
        org_claim=str(raw.get("org_claim", "")),
        ics_claim=str(raw.get("ics_claim", "")),
        name_claim=str(raw.get("name_claim", "name")),
        selected_role_claim=str(raw.get("selected_role_claim", "")),
    )
    if not mapping.roles_claim:
        raise ValueError(f"{source}: roles_claim is required")
    if kind == "flat" and not mapping.org_claim:
        raise ValueError(f"{source}: a flat mapping needs org_claim")
    if kind == "flat" and not (table or mapping.roles_are_waymark_names):
        raise ValueError(f"{source}: a [roles] table (or roles_are_waymark_names) is required")
    if kind == "cis2" and not table:
        raise ValueError(f"{source}: a cis2 mapping needs a [roles] table of RBAC role codes")
    return mapping


@lru_cache(maxsize=8)
def load_mapping(name_or_path: str) -> ClaimMapping:
    """A shipped mapping by name (waymark, cis2, generic) or an ICS's own TOML file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = MAPPINGS_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ValueError(f"no claim mapping {name_or_path!r} (looked for {path})")
    return parse_mapping(tomllib.loads(path.read_text()), str(path))


def _claim(claims: dict[str, Any], dotted: str) -> Any:
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _role_values(mapping: ClaimMapping, values: list[str]) -> frozenset[Role]:
    roles: set[Role] = set()
    for v in values:
        if mapping.roles_are_waymark_names:
            try:
                roles.add(Role(v))
            except ValueError:
                raise ClaimsRefused(f"the token names an unknown role: {v!r}") from None
        else:
            roles.update(mapping.roles.get(v, ()))
    return frozenset(roles)


def _cis2(mapping: ClaimMapping, claims: dict[str, Any]) -> tuple[frozenset[Role], str]:
    entries = _claim(claims, mapping.roles_claim)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ClaimsRefused(f"the token has no {mapping.roles_claim} list of role profiles")
    selected = _claim(claims, mapping.selected_role_claim) if mapping.selected_role_claim else None
    if selected is not None:
        chosen = [e for e in entries if str(e.get("person_roleid")) == str(selected)]
    elif len(entries) == 1:
        chosen = entries
    else:
        raise ClaimsRefused("the user holds several role profiles and the token selects none")
    if not chosen:
        raise ClaimsRefused("the selected role profile is not among the user's role profiles")
    profile = chosen[0]
    code = str(profile.get("role_code", "")).split(":")[-1]
    return frozenset(mapping.roles.get(code, ())), str(profile.get("org_code", ""))


def map_claims(mapping: ClaimMapping, claims: dict[str, Any], default_ics: str) -> MappedClaims:
    """The Waymark roles, organisation, ICS and display name the claims give."""
    if mapping.kind == "cis2":
        roles, org = _cis2(mapping, claims)
    else:
        values = _claim(claims, mapping.roles_claim)
        if isinstance(values, str):
            values = values.split()
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ClaimsRefused(
                f"the access token's {mapping.roles_claim} must be a list of role names"
            )
        roles = _role_values(mapping, values)
        org = _claim(claims, mapping.org_claim)
    if not roles:
        raise ClaimsRefused("the token's roles give no Waymark role")
    if not isinstance(org, str) or not ORG_CODE.fullmatch(org):
        raise ClaimsRefused(
            "the access token must carry roles and an organisation code "
            "(letters, digits and '-', at most 20)"
        )
    ics = _claim(claims, mapping.ics_claim) if mapping.ics_claim else None
    name = _claim(claims, mapping.name_claim) if mapping.name_claim else None
    return MappedClaims(
        roles=roles,
        org=org,
        ics=ics if isinstance(ics, str) and ics else default_ics,
        name=name if isinstance(name, str) else "",
    )
