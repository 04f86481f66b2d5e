"""Mapping the service a standard ServiceRequest names to a directory service: a read of the
directory's API (GET /service-identifiers) with this service's own credential. Reads only, as
the architecture allows one service of another."""

from __future__ import annotations

import logging

import httpx
from fastapi import Request

from services.referrals.config import get_referrals_settings
from services.referrals.fhir import FhirInvalid, Performer
from shared.auth import service_token
from shared.errors import WaymarkError
from shared.settings import Settings

logger = logging.getLogger(__name__)


class DirectoryUnavailable(WaymarkError):
    status, title, slug = 503, "Service unavailable", "directory-unavailable"


async def directory_lookup(settings: Settings, system: str, value: str) -> list[dict[str, str]]:
    """The directory services an identifier names (none or one)."""
    url = f"{settings.api_url('directory')}/service-identifiers"
    timeout = get_referrals_settings().directory_timeout_seconds
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            r = await http.get(
                url,
                params={"system": system, "value": value},
                headers={"Authorization": f"Bearer {await service_token(settings, 'referrals')}"},
            )
    except (httpx.HTTPError, OSError) as exc:
        logger.warning("directory unavailable for a service code (%s)", type(exc).__name__)
        raise DirectoryUnavailable(
            "the directory cannot be reached to map the service code; nothing was changed, "
            "retry shortly",
            headers={"Retry-After": "5"},
        ) from None
    if r.status_code == 422:
        raise FhirInvalid(
            f"ServiceRequest.performer: {system[:80]}|{value[:64]} is not an identifier the "
            "directory can hold (a URI system and a code of letters, digits and . _ : / -)"
        )
    if r.status_code != 200:
        logger.warning("directory answered %s to a service-code lookup", r.status_code)
        raise DirectoryUnavailable(
            "the directory could not map the service code; retry shortly",
            headers={"Retry-After": "5"},
        )
    found: list[dict[str, str]] = r.json()
    return found


async def resolve_performer(request: Request, performer: Performer) -> str:
    """The directory service id a ServiceRequest's performer names."""
    if performer.directory_id is not None:
        return performer.directory_id
    assert performer.service_code is not None
    system, value = performer.service_code
    found = await directory_lookup(request.app.state.settings, system, value)
    if not found:
        raise FhirInvalid(
            f"ServiceRequest.performer: no directory service carries the identifier "
            f"{system[:80]}|{value[:64]}; the receiving service's organisation registers it "
            "in the directory (PUT /services/{id}/identifiers)"
        )
    service = found[0]
    if performer.ods is not None and performer.ods != service["org_code"]:
        raise FhirInvalid(
            f"ServiceRequest.performer: {performer.ods} does not run the service "
            f"{system[:80]}|{value[:64]} names (the directory says {service['org_code']})"
        )
    return service["service_id"]
