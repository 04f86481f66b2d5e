"""The directory's Open Referral UK face: Waymark's own request shapes to the ORUK (HSDS 3)
record every service is stored as, and stored rows back to ORUK and to Waymark's view.

Pure mapping, no I/O: the handlers pass in whatever was read (rows, geocoded postcodes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.directory import domain
from services.directory.domain import WaymarkFacts
from services.directory.models import Attribute, Location, Organization, Service, TaxonomyTerm
from services.directory.oruk import taxonomies
from services.directory.oruk.schemas import (
    OrukAttribute,
    OrukContact,
    OrukCostOption,
    OrukLanguage,
    OrukLocation,
    OrukOrganization,
    OrukService,
    OrukServiceArea,
    OrukServiceAtLocation,
    OrukTaxonomyTerm,
)
from services.directory.schemas import (
    ContactIn,
    CostOptionIn,
    LanguageIn,
    LocationIn,
    ScheduleIn,
    ServiceAreaIn,
    ServiceCreate,
    ServiceUpdate,
)
from shared.errors import ValidationFailed

Geocoder = Mapping[str, tuple[float, float]]  # postcode -> (latitude, longitude)


# --- Waymark's request shapes -> ORUK ---------------------------------------------------------


def _contact(c: ContactIn) -> OrukContact:
    phones = [{"id": domain.new_id(), "number": c.phone}] if c.phone else []
    return OrukContact.model_validate(
        {
            "id": domain.new_id(),
            "name": c.name,
            "title": c.title,
            "email": c.email,
            "phones": phones,
        }
    )


def _cost(service_id: str, c: CostOptionIn) -> OrukCostOption:
    return OrukCostOption(
        id=domain.new_id(),
        service_id=service_id,
        option=c.option,
        currency="GBP",
        amount=c.amount,
        amount_description=c.amount_description,
    )


def _language(service_id: str, lang: LanguageIn) -> OrukLanguage:
    return OrukLanguage(id=domain.new_id(), service_id=service_id, name=lang.name, code=lang.code)


def _schedule(service_id: str, s: ScheduleIn) -> dict[str, Any]:
    return {
        "id": domain.new_id(),
        "service_id": service_id,
        "freq": "WEEKLY",
        "interval": 1,
        "byday": ",".join(d.value for d in s.byday),
        "opens_at": s.opens_at.strftime("%H:%M") if s.opens_at else None,
        "closes_at": s.closes_at.strftime("%H:%M") if s.closes_at else None,
        "description": s.description,
        "valid_from": s.valid_from,
        "valid_to": s.valid_to,
    }


def _area(service_id: str, a: ServiceAreaIn) -> OrukServiceArea:
    return OrukServiceArea(
        id=domain.new_id(), service_id=service_id, name=a.name, description=a.description
    )


def _location(service_id: str, loc: LocationIn, geocode: Geocoder) -> OrukServiceAtLocation:
    location_id = loc.id or domain.new_id()
    lat, lon = loc.latitude, loc.longitude
    if lat is None and loc.postcode is not None:
        if loc.postcode not in geocode:
            raise ValidationFailed(
                f"postcode {loc.postcode} is well-formed but not in the "
                "directory's postcode table; give latitude and longitude"
            )
        lat, lon = geocode[loc.postcode]
    addresses = []
    if loc.postcode is not None or loc.address_1 is not None or loc.city is not None:
        addresses.append(
            {
                "id": domain.new_id(),
                "location_id": location_id,
                "address_1": loc.address_1,
                "city": loc.city,
                "state_province": loc.county,
                "postal_code": loc.postcode,
                "country": "GB",
                "address_type": "physical",
            }
        )
    location = OrukLocation.model_validate(
        {
            "id": location_id,
            "location_type": loc.location_type.value,
            "name": loc.name,
            "description": loc.description,
            "latitude": lat,
            "longitude": lon,
            "addresses": addresses,
        }
    )
    return OrukServiceAtLocation(
        id=domain.new_id(), service_id=service_id, location_id=location_id, location=location
    )


def _waymark_attributes(service_id: str, facts: WaymarkFacts) -> list[OrukAttribute]:
    return [
        OrukAttribute(
            id=a.id,
            link_id=service_id,
            link_type=a.link_type,
            link_entity="service",
            value=a.value,
            taxonomy_term_id=a.taxonomy_term_id,
        )
        for a in taxonomies.attributes_for(service_id, facts)
    ]


def facts_of_fields(fields: ServiceCreate | Mapping[str, Any]) -> WaymarkFacts:
    get = fields.get if isinstance(fields, Mapping) else lambda k: getattr(fields, k)  # type: ignore[union-attr]
    return WaymarkFacts(
        category=domain.Category(get("category")),
        conditions=domain.unique_sorted(domain.Condition(c) for c in get("conditions")),
        delivery_modes=domain.unique_sorted(domain.DeliveryMode(m) for m in get("delivery_modes")),
        communication_support=domain.unique_sorted(
            domain.CommunicationSupport(s) for s in get("communication_support")
        ),
        self_referral=bool(get("self_referral")),
        waiting_weeks=get("waiting_weeks"),
    )


def from_create(
    cmd: ServiceCreate, *, service_id: str, org: Organization, geocode: Geocoder
) -> OrukService:
    facts = facts_of_fields(cmd)
    return OrukService.model_validate(
        {
            "id": service_id,
            "organization_id": org.id,
            "name": cmd.name,
            "alternate_name": cmd.alternate_name,
            "description": cmd.description,
            "url": cmd.url,
            "email": cmd.email,
            "status": cmd.status,
            "application_process": cmd.how_to_refer,
            "eligibility_description": cmd.eligibility_description,
            "minimum_age": cmd.minimum_age,
            "maximum_age": cmd.maximum_age,
            "fees_description": cmd.fees_description,
            "alert": cmd.alert,
            "schedules": [_schedule(service_id, s) for s in cmd.schedules],
            "service_areas": [_area(service_id, a) for a in cmd.service_areas],
            "service_at_locations": [_location(service_id, loc, geocode) for loc in cmd.locations],
            "languages": [_language(service_id, lang) for lang in cmd.languages],
            "cost_options": [_cost(service_id, c) for c in cmd.cost_options],
            "contacts": [_contact(c) for c in cmd.contacts],
            "attributes": _waymark_attributes(service_id, facts),
        }
    )


_SCALARS = {
    "name": "name",
    "alternate_name": "alternate_name",
    "description": "description",
    "url": "url",
    "email": "email",
    "status": "status",
    "how_to_refer": "application_process",
    "eligibility_description": "eligibility_description",
    "minimum_age": "minimum_age",
    "maximum_age": "maximum_age",
    "fees_description": "fees_description",
    "alert": "alert",
}
_FACTS = (
    "category",
    "conditions",
    "delivery_modes",
    "communication_support",
    "self_referral",
    "waiting_weeks",
)


def apply_update(
    current: OrukService, facts: WaymarkFacts, patch: ServiceUpdate, *, geocode: Geocoder
) -> OrukService:
    """The stored ORUK record with a Waymark update applied; lists given replace lists."""
    changes = patch.model_dump(exclude_unset=True)
    data = current.model_dump(exclude_none=True)
    sid = current.id
    for key, target in _SCALARS.items():
        if key in changes:
            data[target] = changes[key]
    if "schedules" in changes:
        data["schedules"] = [_schedule(sid, s) for s in patch.schedules or []]
    if "service_areas" in changes:
        data["service_areas"] = [_area(sid, a).model_dump() for a in patch.service_areas or []]
    if "locations" in changes:
        data["service_at_locations"] = [
            _location(sid, loc, geocode).model_dump() for loc in patch.locations or []
        ]
    if "languages" in changes:
        data["languages"] = [_language(sid, lang).model_dump() for lang in patch.languages or []]
    if "cost_options" in changes:
        data["cost_options"] = [_cost(sid, c).model_dump() for c in patch.cost_options or []]
    if "contacts" in changes:
        data["contacts"] = [_contact(c).model_dump() for c in patch.contacts or []]
    if any(k in changes for k in _FACTS):
        merged = {k: getattr(facts, k) for k in _FACTS}
        merged.update({k: changes[k] for k in _FACTS if k in changes})
        new_facts = facts_of_fields(merged)
        kept = [
            a
            for a in data.get("attributes", [])
            if not taxonomies.is_waymark_term(a["taxonomy_term_id"])
        ]
        data["attributes"] = kept + [a.model_dump() for a in _waymark_attributes(sid, new_facts)]
    data.pop("last_modified", None)
    return OrukService.model_validate(data)


# --- what a record looks like, for "did anything change?" -------------------------------------


def fingerprint(record: OrukService) -> dict[str, Any]:
    """The parts of a record an import can change (not the server's timestamps, not the
    embedded copies of terms and organisation, which live in their own tables)."""
    data = record.model_dump(
        mode="json", exclude_none=True, exclude={"last_modified", "organization", "organization_id"}
    )
    for a in data.get("attributes", []):
        for k in ("taxonomy_term", "link_id", "link_entity"):
            a.pop(k, None)
    for sal in data.get("service_at_locations", []):
        for k in ("service", "distance", "service_id", "location_id"):
            sal.pop(k, None)
    for group in ("schedules", "service_areas", "cost_options", "languages"):
        for item in data.get(group, []):
            item.pop("service_id", None)
    return data


# --- stored rows -> ORUK ----------------------------------------------------------------------


def _jsonable(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(i) for i in items]


def organization_to_oruk(org: Organization) -> OrukOrganization:
    return OrukOrganization.model_validate(
        {
            "id": org.id,
            "name": org.name,
            "description": org.description,
            "email": org.email,
            "website": org.website,
            "logo": org.logo,
            "uri": org.uri,
            "organization_identifiers": _jsonable(org.identifiers),
        }
    )


def term_to_oruk(t: TaxonomyTerm) -> OrukTaxonomyTerm:
    return OrukTaxonomyTerm(
        id=t.id,
        code=t.code,
        name=t.name,
        description=t.description,
        parent_id=t.parent_id,
        taxonomy=t.taxonomy,
        taxonomy_id=t.taxonomy_id,
        language=t.language,
        term_uri=t.term_uri,
    )


def location_to_oruk(loc: Location) -> OrukLocation:
    return OrukLocation.model_validate(
        {
            "id": loc.id,
            "location_type": loc.location_type,
            "url": loc.url,
            "name": loc.name,
            "alternate_name": loc.alternate_name,
            "description": loc.description,
            "transportation": loc.transportation,
            "latitude": loc.latitude,
            "longitude": loc.longitude,
            "external_identifier": loc.external_identifier,
            "external_identifier_type": loc.external_identifier_type,
            "addresses": _jsonable(loc.addresses),
            "accessibility": _jsonable(loc.accessibility),
        }
    )


def service_to_oruk(
    row: Service,
    *,
    org: Organization | None,
    links: Sequence[tuple[str, str | None, Location]],
    attributes: Sequence[tuple[Attribute, TaxonomyTerm]],
    last_modified: datetime | None = None,
) -> OrukService:
    """`links`: (service_at_location id, its description, location), in order."""
    return OrukService.model_validate(
        {
            "id": row.id,
            "organization_id": row.organization_id,
            "name": row.name,
            "alternate_name": row.alternate_name,
            "description": row.description or None,
            "url": row.url,
            "email": row.email,
            "status": row.status,
            "interpretation_services": row.interpretation_services,
            "application_process": row.application_process,
            "fees_description": row.fees_description,
            "accreditations": row.accreditations,
            "eligibility_description": row.eligibility_description,
            "minimum_age": row.minimum_age,
            "maximum_age": row.maximum_age,
            "assured_date": row.assured_date,
            "assurer_email": row.assurer_email,
            "alert": row.alert,
            "last_modified": last_modified or row.updated_at,
            "organization": organization_to_oruk(org) if org is not None else None,
            "phones": _jsonable(row.phones),
            "schedules": _jsonable(row.schedules),
            "service_areas": _jsonable(row.service_areas),
            "service_at_locations": [
                {
                    "id": sal_id,
                    "service_id": row.id,
                    "location_id": loc.id,
                    "description": description,
                    "location": location_to_oruk(loc),
                }
                for sal_id, description, loc in links
            ],
            "languages": _jsonable(row.languages),
            "funding": _jsonable(row.funding),
            "cost_options": _jsonable(row.cost_options),
            "contacts": _jsonable(row.contacts),
            "attributes": [
                {
                    "id": a.id,
                    "link_id": row.id,
                    "link_type": a.link_type,
                    "link_entity": "service",
                    "value": a.value,
                    "taxonomy_term_id": a.taxonomy_term_id,
                    "taxonomy_term": term_to_oruk(t),
                }
                for a, t in attributes
            ],
        }
    )
