"""The contract between the care plans service and the journey rules: real assessments
recorded through the care plans API, their `assessment.recorded` events as the bridge turns
them into signals, and the alerts the journey rules raise. One vocabulary of bands
(shared/vocabulary.py) means what care plans flags as a high-risk band is what a coordinator
is alerted to (issue #15: 0 of 208 STarT Back high results reached the inbox)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.events.envelope import CloudEvent
from shared.events.registry import REGISTRY
from shared.settings import Settings
from shared.vocabulary import BANDS, Instrument
from tests.care_plans.conftest import care_plans_sessions  # noqa: F401
from tests.care_plans.support import World, create_plan, outbox_of
from workflows.journeys.bridge import to_assessment
from workflows.journeys.rules import apply_assessment, evaluate, load_rules
from workflows.journeys.state import JourneyState

#: the rules a journey started today runs with (the workflow turns the vocabulary and alert
#: rules version 2 on)
RULES = dataclasses.replace(load_rules(), bands_from_vocabulary=True, version=2)
#: the rule each instrument's high-risk band prompts (the person has no referral open here)
PROMPT = {
    "STarT-Back": "pathway.start_back_high",
    "PHQ-9": "pathway.severe_mood",
    "GAD-7": "pathway.severe_mood",
}


def start_back(distress: int, physical: int) -> dict[str, str]:
    """Items 1-4 physical, 5-9 distress (item 9 scores only 'very much' or 'extremely')."""
    answers = {str(i): "agree" if i <= physical else "disagree" for i in range(1, 5)}
    for i in range(5, 9):
        answers[str(i)] = "agree" if i - 4 <= min(distress, 4) else "disagree"
    answers["9"] = "very_much" if distress >= 5 else "slightly"
    return answers


def frequency(n: int, total: int) -> dict[str, int]:
    values, left = [], total
    for _ in range(n):
        values.append(min(3, left))
        left -= values[-1]
    return {str(i + 1): v for i, v in enumerate(values)}


#: (instrument, answers, the band care plans must give, whether a coordinator is alerted)
CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("STarT-Back", start_back(distress=5, physical=4), "high", True),
    ("STarT-Back", start_back(distress=4, physical=0), "high", True),
    ("STarT-Back", start_back(distress=3, physical=4), "medium", False),
    ("STarT-Back", start_back(distress=1, physical=1), "low", False),
    ("PHQ-9", {**frequency(8, 24), "9": 0}, "severe", True),
    ("PHQ-9", {**frequency(8, 17), "9": 0}, "moderately_severe", False),
    ("PHQ-9", {**frequency(8, 12), "9": 0}, "moderate", False),
    ("GAD-7", frequency(7, 21), "severe", True),
    ("GAD-7", frequency(7, 15), "severe", True),
    ("GAD-7", frequency(7, 14), "moderate", False),
]


class TestScreeningReachesTheJourney:
    @pytest.mark.parametrize(
        ("instrument", "answers", "band", "alerted"),
        CASES,
        ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)],
    )
    async def test_a_recorded_assessment_alerts_exactly_when_its_band_is_high_risk(
        self,
        care_plans_client: httpx.AsyncClient,
        care_plans_sessions: async_sessionmaker,  # noqa: F811
        settings: Settings,
        instrument: str,
        answers: dict[str, Any],
        band: str,
        alerted: bool,
    ) -> None:
        w = World(settings)
        plan = await create_plan(care_plans_client, w)
        r = await care_plans_client.post(
            f"/care-plans/{plan['id']}/assessments",
            headers=w.holder_h(),
            json={"instrument": instrument, "answers": answers},
        )
        assert r.status_code == 201, r.text
        recorded = r.json()
        assert recorded["band"] == band and band in BANDS[Instrument(instrument)]
        # the care plans service's own flag and the journey's alert agree
        flagged = any(f["reason"] == "high_risk_band" for f in recorded["risk_flags"])
        assert flagged is alerted

        rows = [
            e
            for e in await outbox_of(care_plans_sessions, plan["patient_id"])
            if e.event_type == "uk.waymark.care-plan.assessment.recorded"
        ]
        assert len(rows) == 1
        event = CloudEvent.model_validate(rows[0].payload)
        signal = to_assessment(event, REGISTRY.parse(event))  # as the bridge sends it
        state = JourneyState(patient_id=plan["patient_id"])
        assert apply_assessment(state, signal)
        changes = evaluate(state, RULES, datetime.now(UTC))
        raised = [c.alert for c in changes if c.change == "raised"]
        assert [a.rule for a in raised] == ([PROMPT[instrument]] if alerted else [])
        if alerted:
            # the care plan's own severity for the same result, and its words for the band
            assert (
                raised[0].severity
                == {f["reason"]: f["severity"] for f in recorded["risk_flags"]}["high_risk_band"]
            )
            assert raised[0].kind == "pathway"
            words = "high risk" if instrument == "STarT-Back" else band.replace("_", " ")
            assert f"is in the {words} band" in raised[0].explanation
