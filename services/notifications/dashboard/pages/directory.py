"""The directory of services, searched as the directory API shows it to the user: by words,
distance from a postcode (no map), kind of service, self-referral and cost; from an alert, each
result links back to signpost the person there."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from services.notifications import service_apis
from services.notifications.dashboard.rendering import alert_ref, render
from services.notifications.dashboard.session import ViewerDep

router = APIRouter()

RADIUS_CHOICES = ("2", "5", "10", "25", "50")


@router.get("/directory")
async def directory_page(
    request: Request,
    v: ViewerDep,
    q: Annotated[str, Query(max_length=200)] = "",
    postcode: Annotated[str, Query(max_length=12)] = "",
    radius_km: Annotated[str, Query(max_length=5)] = "10",
    category: Annotated[str, Query(max_length=60)] = "",
    self_referral: Annotated[str, Query(max_length=5)] = "",
    free: Annotated[str, Query(max_length=5)] = "",
    alert: Annotated[str | None, Query(max_length=300)] = None,
    page: Annotated[int, Query(ge=1, le=1000)] = 1,
) -> Response:
    """Search the directory for a service to signpost to: distance from a postcode, no map."""
    api = service_apis.apis(request)
    q, postcode, category = q.strip(), postcode.strip(), category.strip()
    radius = radius_km if radius_km in RADIUS_CHOICES else "10"
    searching = bool(q or postcode or category or self_referral or free)
    try:
        vocab = await api.vocabularies(v.token)
        categories = [c for c in vocab.get("categories", []) if isinstance(c, dict)]
    except service_apis.ApiError:
        categories = []
    params: list[tuple[str, str]] = []
    if q:
        params.append(("q", q))
    if postcode:
        params += [("postcode", postcode), ("radius_km", radius), ("include_remote", "true")]
    if category:
        params.append(("category", category))
    if self_referral == "true":
        params.append(("self_referral", "true"))
    if free == "true":
        params.append(("free", "true"))
    results: dict[str, Any] | None = None
    error = None
    status = 200
    if searching:
        try:
            results = await api.search_services(v.token, params + [("page", str(page))])
        except service_apis.ApiError as exc:
            if exc.status not in (400, 422):
                raise
            error, status = exc.message, 422
    alert_id = alert_ref(alert)
    query = urlencode(params + ([("alert", alert_id)] if alert_id else []))
    return render(
        request,
        "directory.html",
        title="Find a service",
        viewer=v,
        status=status,
        form={
            "q": q,
            "postcode": postcode,
            "radius_km": radius,
            "category": category,
            "self_referral": self_referral == "true",
            "free": free == "true",
        },
        radii=RADIUS_CHOICES,
        categories=categories,
        results=results,
        error=error,
        alert=alert_id,
        query=query,
        page=page,
    )
