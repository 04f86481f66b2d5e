"""The events the directory publishes (models live in shared/events/directory.py).

They carry codes and states only: no names, contacts or free text of the service, which
consumers read through the directory's API."""

from __future__ import annotations

from services.directory.models import Service
from shared.events.directory import (
    DirectoryServiceEventData,
    ServicePublished,
    ServiceUpdated,
    ServiceWithdrawn,
)
from shared.events.envelope import CloudEvent, make_event


def _facts(service: Service) -> dict[str, object]:
    return dict(
        service_id=service.id,
        organization_id=service.organization_id,
        org_code=service.org_code,
        category=service.category,
        conditions=list(service.conditions),
        status=service.status,
        self_referral=service.self_referral,
        waiting_weeks=service.waiting_weeks,
    )


def _event(data: DirectoryServiceEventData, service: Service) -> CloudEvent:
    return make_event(data, subject=service.id)


def service_published(service: Service) -> CloudEvent:
    return _event(ServicePublished(**_facts(service)), service)  # type: ignore[arg-type]


def service_updated(service: Service) -> CloudEvent:
    return _event(ServiceUpdated(**_facts(service)), service)  # type: ignore[arg-type]


def service_withdrawn(service: Service, *, reason: str) -> CloudEvent:
    # the reason is a code (domain.WithdrawalReason); the provider's note stays in the directory
    return _event(ServiceWithdrawn(**_facts(service), reason=reason), service)  # type: ignore[arg-type]
