"""The journey's plain-English explanation of an alert, asked of the patient's PatientJourney
workflow (a Temporal query): the journey owns the explanation. The alert API and the
dashboard's pages share one client per API process (`explainer_for`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from services.notifications.alerts.schemas import EvidenceOut
from shared.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanation:
    explanation: str | None
    evidence: list[EvidenceOut] | None
    unavailable: str | None = None


class JourneyExplainer:
    """Asks the patient's PatientJourney workflow (a Temporal query) why it raised an alert:
    the journey owns the explanation. One client per API process, connected on first use;
    when Temporal can't answer, the caller gets the reason instead of the explanation."""

    CONNECT_TIMEOUT = 5.0
    QUERY_TIMEOUT = 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        from shared.temporal_client import connect

        async with self._lock:
            if self._client is None:
                self._client = await asyncio.wait_for(connect(self.settings), self.CONNECT_TIMEOUT)
            return self._client

    async def query_journey(
        self, patient_id: str, *, context: str
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The patient's journey view (the `journey` query), or None and why not: a
        failure to reach Temporal is an answer for the caller to show, never a 500."""
        from temporalio.service import RPCError, RPCStatusCode

        from shared.identifiers import journey_workflow_id as workflow_id

        try:
            client = await self._connect()
        except Exception as exc:  # noqa: BLE001
            logger.warning("%s: cannot reach Temporal (%s)", context, type(exc).__name__)
            return None, "the journey service (Temporal) could not be reached; try again shortly"
        try:
            view = await asyncio.wait_for(
                client.get_workflow_handle(workflow_id(patient_id)).query(
                    "journey", rpc_timeout=timedelta(seconds=self.QUERY_TIMEOUT)
                ),
                self.QUERY_TIMEOUT + 2,
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None, "the patient's journey was not found"
            logger.warning("%s: journey query failed (%s)", context, exc.status)
            return None, "the patient's journey did not answer; try again shortly"
        except Exception as exc:  # noqa: BLE001 - timeouts, a failed or rejected query
            logger.warning("%s: journey query failed (%s)", context, type(exc).__name__)
            return None, "the patient's journey did not answer; try again shortly"
        return (view if isinstance(view, dict) else {}), None

    async def explain(self, *, patient_id: str, alert_id: str) -> Explanation:
        view, unavailable = await self.query_journey(patient_id, context=f"alert {alert_id}")
        if view is None:
            return Explanation(None, None, unavailable)
        found = next(
            (
                a
                for a in view.get("alerts", [])
                if isinstance(a, dict) and a.get("alert_id") == alert_id
            ),
            None,
        )
        if found is None:
            return Explanation(None, None, "the patient's journey has no record of this alert")
        evidence = [
            EvidenceOut(
                referral_id=e.get("referral_id"),
                at=str(e.get("at", "")),
                state=str(e.get("state", "")),
                detail=str(e.get("detail", "")),
            )
            for e in found.get("evidence") or []
            if isinstance(e, dict)
        ]
        return Explanation(found.get("explanation"), evidence)


def explainer_for(request: Any) -> JourneyExplainer:
    """The app's one JourneyExplainer (one Temporal client per API process), made on first
    use; the alert API and the dashboard share it."""
    state = request.app.state
    if getattr(state, "journey_explainer", None) is None:
        state.journey_explainer = JourneyExplainer(state.settings)
    explainer: JourneyExplainer = state.journey_explainer
    return explainer
