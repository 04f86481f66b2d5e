"""The dashboard's view of the patient's journey: asked of its PatientJourney workflow (a
Temporal query, through the alert inbox's client), with the referrals it names read through
the other services' APIs (services/notifications/service_apis.py) as the signed-in user.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from services.notifications.alerts.explainer import JourneyExplainer, explainer_for
from services.notifications.service_apis import ApiError, Apis

logger = logging.getLogger(__name__)


# --- the patient's journey (Temporal) -------------------------------------------------------


@dataclass(frozen=True)
class Journey:
    """What the journey says about one alert: its explanation and evidence, and every episode
    (referral) of the journey for the timeline; `unavailable` says why when it can't."""

    explanation: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    found: bool = False  # the journey answered
    alert_known: bool = False  # ... and knows this alert
    unavailable: str | None = None


explainer = explainer_for


async def journey(exp: JourneyExplainer, *, patient_id: str, alert_id: str) -> Journey:
    """One `journey` query of the patient's PatientJourney: the alert's explanation and the
    episodes. Reuses the alert inbox's connected client (JourneyExplainer)."""
    view, unavailable = await exp.query_journey(patient_id, context="dashboard")
    if view is None:
        return Journey(unavailable=unavailable)
    episodes = [e for e in view.get("episodes") or [] if isinstance(e, dict)]
    found = next(
        (
            a
            for a in view.get("alerts") or []
            if isinstance(a, dict) and a.get("alert_id") == alert_id
        ),
        None,
    )
    if found is None:
        return Journey(
            episodes=episodes,
            found=True,
            unavailable="the patient's journey has no record of this alert",
        )
    evidence = [e for e in found.get("evidence") or [] if isinstance(e, dict)]
    explanation = found.get("explanation")
    return Journey(
        explanation=explanation if isinstance(explanation, str) else None,
        evidence=evidence,
        episodes=episodes,
        found=True,
        alert_known=True,
    )


async def gather_referrals(
    api: Apis, token: str, ids: list[str]
) -> list[tuple[str, dict[str, Any] | None, str | None]]:
    """Each referral (id, body or None, why not), fetched together."""

    async def one(rid: str) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            return rid, await api.referral(token, rid), None
        except ApiError as exc:
            if exc.status == 404:
                return rid, None, "not found in the referrals service, or not yours to see"
            if exc.status == 403:
                return rid, None, "you may not see this referral"
            return rid, None, exc.message

    return list(await asyncio.gather(*(one(r) for r in ids)))
