"""The referral lifecycle over the API (real PostgreSQL, in-process app) and the rules behind it
(services/referrals/domain.py, pure).

Every step is checked for what it must write: the new ETag and version, an append-only history
row (who, when, why, the note), an audit entry, and an outbox event that carries the state
change and its coded reason but nothing personal.

The expected state machine is written out here (ALLOWED, TARGET) from issue #3 and NHS e-RS,
not derived from the code under test.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.referrals import domain
from services.referrals.domain import Action, ReferralState, Transition
from shared.auth import Principal, Role
from shared.errors import Conflict, Forbidden, ValidationFailed
from shared.settings import Settings
from shared.topics import REFERRALS
from tests.conftest import auth
from tests.referrals.support import (
    ALL_ACTIONS,
    ALL_STATES,
    OPEN_STATES,
    REASON,
    SIDE,
    Parties,
    act,
    appointment,
    assert_event_matches_its_schema,
    assert_no_personal_data,
    assert_problem,
    audit_of_referral,
    create,
    drive_to,
    events_of,
    if_match,
    new_org,
    new_parties,
    personal_data,
    referral_row,
    step,
    transitions_of,
)

# --- the state machine, as the issue states it ------------------------------------------------

#: the actions each state allows
ALLOWED: dict[str, set[str]] = {
    "draft": {"submit", "cancel"},
    "submitted": {"accept", "reject", "return", "cancel", "hold"},
    "accepted": {"book", "cancel", "hold"},
    "booked": {"attend", "did-not-attend", "cancel", "hold"},
    "attended": {"book", "discharge", "cancel"},
    "did_not_attend": {"book", "discharge", "cancel"},
    "on_hold": {"resume", "cancel"},
    "rejected": set(),
    "returned": set(),
    "discharged": set(),
    "cancelled": set(),
}

#: where each legal action leads (resume: back to the state the hold came from)
TARGET: dict[str, str] = {
    "submit": "submitted",
    "accept": "accepted",
    "reject": "rejected",
    "return": "returned",
    "book": "booked",
    "attend": "attended",
    "did-not-attend": "did_not_attend",
    "discharge": "discharged",
    "cancel": "cancelled",
    "hold": "on_hold",
}

#: the event type suffix each action publishes
EVENT: dict[str, str] = {
    "submit": "submitted",
    "accept": "accepted",
    "reject": "rejected",
    "return": "returned",
    "book": "booked",
    "attend": "attended",
    "did-not-attend": "did-not-attend",
    "discharge": "discharged",
    "cancel": "cancelled",
    "hold": "on-hold",
    "resume": "resumed",
}

#: coded reasons (e-RS reject / return reasons, discharge outcomes, cancel and hold reasons)
REASONS: dict[str, set[str]] = {
    "reject": {
        "not-appropriate-for-service",
        "does-not-meet-criteria",
        "service-unavailable",
        "duplicate-referral",
        "insufficient-information",
        "patient-declined",
    },
    "return": {
        "advice-and-guidance-given",
        "refer-elsewhere",
        "insufficient-information",
        "manage-in-primary-care",
    },
    "discharge": {
        "treatment-completed",
        "goals-met",
        "self-management",
        "onward-referral",
        "patient-declined-further-care",
        "did-not-attend-discharged",
        "moved-away",
        "deceased",
    },
    "cancel": {
        "patient-request",
        "referred-in-error",
        "no-longer-required",
        "service-withdrawn",
        "duplicate-referral",
    },
    "hold": {"awaiting-information", "patient-unwell", "patient-request", "awaiting-investigation"},
}

#: a reason from another action's set, for each action that needs one
WRONG_REASON = {
    "reject": "advice-and-guidance-given",
    "return": "duplicate-referral",
    "discharge": "patient-request",
    "cancel": "treatment-completed",
    "hold": "patient-declined",
}

#: a state from which each action is legal
FROM = {
    "submit": "draft",
    "accept": "submitted",
    "reject": "submitted",
    "return": "submitted",
    "book": "accepted",
    "attend": "booked",
    "did-not-attend": "booked",
    "discharge": "attended",
    "cancel": "submitted",
    "hold": "submitted",
    "resume": "on_hold",
}

LEGAL = [(s, a) for s in ALL_STATES for a in ALL_ACTIONS if a in ALLOWED[s]]
ILLEGAL = [(s, a) for s in ALL_STATES for a in ALL_ACTIONS if a not in ALLOWED[s]]


def test_the_tables_cover_every_state_and_action_of_the_code() -> None:
    assert set(ALLOWED) == {s.value for s in ReferralState} == set(ALL_STATES)
    assert set(ALL_ACTIONS) == {a.value for a in Action}
    assert len(LEGAL) + len(ILLEGAL) == 11 * 11


def _now() -> datetime:
    return datetime.now(UTC)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


class Journey:
    """One referral followed through its lifecycle over the API; each step checks the
    response, the ETag, the history, the audit log and the outbox."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        s: Settings,
        sessions: async_sessionmaker,
        parties: Parties,
        referral: dict[str, Any],
    ) -> None:
        self.client, self.s, self.sessions, self.parties = client, s, sessions, parties
        self.referral = referral
        self.history: list[dict[str, Any]] = []
        self.audit_ids: set[Any] = set()
        self.event_ids: list[str] = []

    @classmethod
    async def start(
        cls,
        client: httpx.AsyncClient,
        s: Settings,
        sessions: async_sessionmaker,
        parties: Parties | None = None,
        *,
        as_draft: bool = False,
    ) -> Journey:
        parties = parties or await new_parties(s, sessions)
        t0 = _now()
        referral = await create(
            client,
            s,
            parties,
            as_draft=as_draft,
            clinical_summary=f"Neck pain, panic attacks {uuid.uuid4().hex}",
        )
        t1 = _now()
        j = cls(client, s, sessions, parties, referral)
        j.history = await j._history()
        assert len(j.history) == 1
        first = j.history[0]
        assert (first["from_state"], first["to_state"]) == (None, referral["state"])
        # users are keyed by issuer + subject
        assert (first["actor"], first["actor_org"]) == (
            f"{parties.referrer_user}",
            parties.referrer_org,
        )
        assert t0 <= _at(first["at"]) <= t1
        j.audit_ids = {a.id for a in await audit_of_referral(sessions, referral["id"])}
        j.event_ids = [e.event_id for e in await events_of(sessions, referral["id"])]
        assert len(j.event_ids) == (0 if as_draft else 1)
        return j

    @classmethod
    async def follow(
        cls,
        client: httpx.AsyncClient,
        s: Settings,
        sessions: async_sessionmaker,
        parties: Parties,
        referral: dict[str, Any],
    ) -> Journey:
        """Follow a referral from where it is now."""
        j = cls(client, s, sessions, parties, referral)
        j.history = await j._history()
        j.audit_ids = {a.id for a in await audit_of_referral(sessions, referral["id"])}
        j.event_ids = [e.event_id for e in await events_of(sessions, referral["id"])]
        return j

    async def _history(self) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"/referrals/{self.referral['id']}/history", headers=self.parties.referrer(self.s)
        )
        assert r.status_code == 200, r.text
        return list(r.json())

    async def do(
        self,
        action: str,
        *,
        to: str,
        side: str | None = None,
        reason: str | None = None,
        note: str | None = None,
        appointment_at: str | None = None,
    ) -> dict[str, Any]:
        side = side or SIDE[action]
        if reason is None and action in REASON:
            reason = REASON[action]
        body: dict[str, Any] = {}
        if reason is not None:
            body["reason_code"] = reason
        if note is not None:
            body["note"] = note
        if action == "book":
            body["appointment_at"] = appointment_at = appointment_at or appointment()
        before = self.referral
        t0 = _now()
        r = await act(self.client, self.s, self.parties, before, action, side=side, body=body)
        t1 = _now()
        assert r.status_code == 200, (action, r.text)
        out = r.json()

        # the response, its ETag, and a fresh read agree on the new version
        version = before["version"] + 1
        assert r.headers["etag"] == f'W/"{version}"'
        assert (out["version"], out["state"]) == (version, to)
        assert set(out["allowed_actions"]) == ALLOWED[to]
        assert _at(out["updated_at"]) >= _at(before["updated_at"])
        for unchanged in (
            "id",
            "patient_id",
            "nhs_number",
            "from_org",
            "to_org",
            "to_service_id",
            "service_category",
            "reason_codes",
            "clinical_summary",
            "created_at",
        ):
            assert out[unchanged] == before[unchanged], unchanged
        if action == "book":
            assert _at(out["appointment_at"]) == _at(appointment_at)  # type: ignore[arg-type]
        read = await self.client.get(
            f"/referrals/{out['id']}", headers=self.parties.receiver(self.s)
        )
        assert read.status_code == 200 and read.headers["etag"] == f'W/"{version}"'
        assert read.json() == out

        # history: one row appended, the earlier ones untouched
        history = await self._history()
        assert history[:-1] == self.history, "history is append-only"
        last = history[-1]
        assert {
            k: last[k]
            for k in ("from_state", "to_state", "actor", "actor_org", "reason_code", "note")
        } == {
            "from_state": before["state"],
            "to_state": to,
            "actor": f"{self.parties.user(side)}",
            "actor_org": self.parties.org(side),
            "reason_code": reason,
            "note": note,
        }
        assert t0 <= _at(last["at"]) <= t1
        self.history = history
        [*_, row] = await transitions_of(self.sessions, out["id"])

        # one audit entry for the change
        audit = await audit_of_referral(self.sessions, out["id"])
        new = [a for a in audit if a.id not in self.audit_ids and a.action != "read"]
        assert len(new) == 1, [(a.action, a.detail) for a in new]
        a = new[0]
        role = "clinician" if side == "referrer" else "service_staff"
        assert (a.action, a.actor, a.actor_org, a.actor_roles) == (
            f"transition:{action}",
            self.parties.user(side),
            self.parties.org(side),
            role,
        )
        assert (a.resource_type, a.patient_id) == ("Referral", out["patient_id"])
        assert a.detail == f"{before['state']} -> {to}"
        self.audit_ids = {x.id for x in audit}

        # one event, of the right type, without personal data
        events = await events_of(self.sessions, out["id"])
        assert [e.event_id for e in events[:-1]] == self.event_ids
        ev = events[-1]
        self.event_ids.append(ev.event_id)
        assert ev.event_id == row.event_id
        assert ev.event_type == f"uk.waymark.referral.{EVENT[action]}"
        assert (ev.topic, ev.key) == (self.s.topic(REFERRALS), out["patient_id"])
        p = ev.payload
        assert (p["id"], p["type"], p["subject"], p["source"]) == (
            ev.event_id,
            ev.event_type,
            out["patient_id"],
            "waymark/referrals",
        )
        assert t0 <= _at(p["time"]) <= t1
        data = p["data"]
        assert (data["referral_id"], data["state"], data["previous_state"]) == (
            out["id"],
            to,
            before["state"],
        )
        assert data["transition_reason"] == (None if action == "submit" else reason)
        assert (
            data["from_org"],
            data["to_org"],
            data["to_service_id"],
            data["service_category"],
            data["priority"],
            data["reason_codes"],
        ) == (
            out["from_org"],
            out["to_org"],
            out["to_service_id"],
            out["service_category"],
            out["priority"],
            out["reason_codes"],
        )
        if out["appointment_at"] is None:
            assert data["appointment_at"] is None
        else:
            assert _at(data["appointment_at"]) == _at(out["appointment_at"])
        assert_event_matches_its_schema(p)
        assert_no_personal_data(p, *personal_data(out), note)

        self.referral = out
        return out


@pytest.fixture
async def journey(
    referrals_client: httpx.AsyncClient, settings: Settings, referrals_sessions: async_sessionmaker
) -> Journey:
    return await Journey.start(referrals_client, settings, referrals_sessions)


def _note(text: str) -> str:
    return f"{text} ({uuid.uuid4().hex[:8]})"


class TestHappyPath:
    async def test_submitted_accepted_booked_attended_discharged(self, journey: Journey) -> None:
        assert journey.referral["state"] == "submitted"
        assert journey.referral["version"] == 1
        journey_note = _note("Seen in clinic; pacing plan agreed")
        await journey.do("accept", to="accepted", note=_note("Triaged: routine"))
        booked = await journey.do("book", to="booked")
        assert booked["appointment_at"] is not None
        await journey.do("attend", to="attended")
        done = await journey.do("discharge", to="discharged", reason="goals-met", note=journey_note)
        assert done["version"] == 5
        assert done["allowed_actions"] == []
        assert [(h["from_state"], h["to_state"]) for h in journey.history] == [
            (None, "submitted"),
            ("submitted", "accepted"),
            ("accepted", "booked"),
            ("booked", "attended"),
            ("attended", "discharged"),
        ]
        assert len(journey.event_ids) == 5 and len(set(journey.event_ids)) == 5

    async def test_a_draft_is_submitted_by_its_referrer(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        j = await Journey.start(referrals_client, settings, referrals_sessions, as_draft=True)
        out = await j.do("submit", to="submitted")
        assert out["submitted_at"] is not None
        await j.do("accept", to="accepted")


class TestAlternativeBranches:
    @pytest.mark.parametrize("reason", sorted(REASONS["reject"]))
    async def test_the_receiver_rejects_with_a_coded_reason(
        self, journey: Journey, reason: str
    ) -> None:
        out = await journey.do(
            "reject",
            to="rejected",
            reason=reason,
            note=_note("Does not meet the programme's criteria"),
        )
        assert out["allowed_actions"] == []

    async def test_returned_with_advice_the_referrer_can_read(self, journey: Journey) -> None:
        advice = _note("Try a graded activity plan and review PHQ-9 in 6 weeks")
        await journey.do("return", to="returned", reason="advice-and-guidance-given", note=advice)
        # the advice reaches the referrer through the API (never through the event)
        assert journey.history[-1]["note"] == advice
        assert journey.history[-1]["reason_code"] == "advice-and-guidance-given"

    async def test_did_not_attend_then_rebooked_then_attended(self, journey: Journey) -> None:
        await journey.do("accept", to="accepted")
        first = await journey.do("book", to="booked", appointment_at=appointment(7))
        await journey.do("did-not-attend", to="did_not_attend")
        second = await journey.do("book", to="booked", appointment_at=appointment(21))
        assert _at(second["appointment_at"]) > _at(first["appointment_at"])
        await journey.do("attend", to="attended")
        await journey.do("discharge", to="discharged", reason="treatment-completed")

    async def test_did_not_attend_then_discharged(self, journey: Journey) -> None:
        await journey.do("accept", to="accepted")
        await journey.do("book", to="booked")
        await journey.do("did-not-attend", to="did_not_attend")
        await journey.do("discharge", to="discharged", reason="did-not-attend-discharged")

    async def test_attended_then_a_further_appointment_is_booked(self, journey: Journey) -> None:
        await journey.do("accept", to="accepted")
        await journey.do("book", to="booked")
        await journey.do("attend", to="attended")
        await journey.do("book", to="booked")
        await journey.do("attend", to="attended")
        await journey.do("discharge", to="discharged", reason="self-management")

    @pytest.mark.parametrize("held_from", ["submitted", "accepted", "booked"])
    async def test_hold_and_resume_returns_to_the_state_it_was_held_from(
        self, journey: Journey, held_from: str
    ) -> None:
        path = {"submitted": [], "accepted": ["accept"], "booked": ["accept", "book"]}
        for action in path[held_from]:
            await journey.do(action, to=TARGET[action])
        appointment_before = journey.referral["appointment_at"]
        held = await journey.do(
            "hold", to="on_hold", reason="patient-unwell", note=_note("In hospital for two weeks")
        )
        assert held["held_from"] == held_from
        resumed = await journey.do("resume", to=held_from)
        assert resumed["held_from"] is None
        assert resumed["appointment_at"] == appointment_before
        # and the referral carries on from there
        next_action = {"submitted": "accept", "accepted": "book", "booked": "attend"}[held_from]
        await journey.do(next_action, to=TARGET[next_action])

    async def test_held_twice_resumes_to_the_latest_state(self, journey: Journey) -> None:
        await journey.do("hold", to="on_hold", reason="awaiting-information")
        await journey.do("resume", to="submitted")
        await journey.do("accept", to="accepted")
        await journey.do("hold", to="on_hold", reason="awaiting-investigation")
        await journey.do("resume", to="accepted")

    @pytest.mark.parametrize(
        "state, side",
        [
            (state, side)
            for state in OPEN_STATES
            for side in ("referrer", "receiver")
            # a draft is the referrer's own until it is submitted
            if not (state == "draft" and side == "receiver")
        ],
    )
    async def test_cancelled_from_every_open_state_by_either_side(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        state: str,
        side: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, state)
        j = await Journey.follow(referrals_client, settings, referrals_sessions, parties, referral)
        out = await j.do(
            "cancel",
            to="cancelled",
            side=side,
            reason="no-longer-required",
            note=_note("Patient moved to another ICS"),
        )
        assert out["allowed_actions"] == []


class TestEveryTransition:
    @pytest.mark.parametrize("state, action", LEGAL, ids=[f"{s}-{a}" for s, a in LEGAL])
    async def test_a_legal_action_moves_the_referral(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        state: str,
        action: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, state)
        out = await step(referrals_client, settings, parties, referral, action)
        held_from = {"on_hold": "submitted"}  # drive_to holds a submitted referral
        assert out["state"] == (held_from[state] if action == "resume" else TARGET[action])
        assert out["version"] == referral["version"] + 1

    @pytest.mark.parametrize("state", ALL_STATES)
    async def test_every_illegal_action_is_a_409_naming_the_allowed_ones(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        state: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, state)
        transitions_before = await transitions_of(referrals_sessions, referral["id"])
        events_before = await events_of(referrals_sessions, referral["id"])
        illegal = [a for s, a in ILLEGAL if s == state]
        assert illegal
        for action in illegal:
            r = await act(referrals_client, settings, parties, referral, action)
            if state == "draft":
                # a draft has not been sent: the receiving service cannot even see it
                assert_problem(r, 404, "that you may see")
                continue
            body = assert_problem(r, 409, action, state)
            assert set(body["allowed_actions"]) == ALLOWED[state], action
            assert body["state"] == state
            for allowed in ALLOWED[state]:
                assert allowed in body["detail"]
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == (state, referral["version"])
        assert len(await transitions_of(referrals_sessions, referral["id"])) == len(
            transitions_before
        )
        assert len(await events_of(referrals_sessions, referral["id"])) == len(events_before)


class TestInvalidTransitions:
    @pytest.mark.parametrize("action", sorted(REASON))
    async def test_a_missing_reason_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        action: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, FROM[action])
        for body in ({}, {"note": "no reason given"}, {"reason_code": None}):
            r = await act(referrals_client, settings, parties, referral, action, body=body)
            assert_problem(r, 422, "reason_code")
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == (FROM[action], referral["version"])

    @pytest.mark.parametrize("action", sorted(REASON))
    async def test_a_reason_not_in_the_actions_set_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        action: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, FROM[action])
        for reason in (WRONG_REASON[action], "made-up-reason"):
            r = await act(
                referrals_client, settings, parties, referral, action, body={"reason_code": reason}
            )
            assert_problem(r, 422, reason)
        for malformed in ("Patient Request", "patient_request", "x" * 61, ""):
            r = await act(
                referrals_client,
                settings,
                parties,
                referral,
                action,
                body={"reason_code": malformed},
            )
            assert_problem(r, 422, "reason_code")
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == (FROM[action], referral["version"])

    @pytest.mark.parametrize(
        "action", ["accept", "book", "attend", "did-not-attend", "resume", "submit"]
    )
    async def test_a_reason_code_on_an_action_that_takes_none_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        action: str,
    ) -> None:
        # reasons are codes from the sets in domain.py; anything else would travel in the
        # event's transition_reason, e.g. the patient's NHS number
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, FROM[action])
        body = {
            **({"appointment_at": appointment()} if action == "book" else {}),
            "reason_code": referral["nhs_number"],
        }
        r = await act(referrals_client, settings, parties, referral, action, body=body)
        for ev in await events_of(referrals_sessions, referral["id"]):
            assert_no_personal_data(ev.payload, referral["nhs_number"])
        assert_problem(r, 422, "reason_code")

    async def test_book_without_an_appointment_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "accepted")
        for body in ({}, {"appointment_at": None}, {"note": "Tuesday"}):
            r = await act(referrals_client, settings, parties, referral, "book", body=body)
            assert_problem(r, 422, "appointment_at")
        bad_times = [
            "2026-05-01T10:00:00",
            "next Tuesday",
            "1999-12-31T10:00:00+00:00",
            "2101-01-01T10:00:00+00:00",
            "2026-02-30T10:00:00+00:00",
        ]
        for when in bad_times:
            r = await act(
                referrals_client, settings, parties, referral, "book", body={"appointment_at": when}
            )
            assert_problem(r, 422, "appointment_at")
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version, row.appointment_at) == ("accepted", 2, None)

    @pytest.mark.parametrize(
        "body, field",
        [
            ({"reason_code": "patient-request", "note": "a\u0000b"}, "note"),
            ({"reason_code": "patient-request", "note": "x" * 2001}, "note"),
            ({"reason_code": "patient-request", "extra": 1}, "extra"),
            ({"reason_code": 42}, "reason_code"),
        ],
        ids=["nul-in-note", "note-too-long", "unknown-field", "reason-not-a-string"],
    )
    async def test_a_bad_body_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        body: dict[str, Any],
        field: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await act(referrals_client, settings, parties, referral, "cancel", body=body)
        assert_problem(r, 422, field)

    async def test_an_unknown_action_or_referral(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await referrals_client.post(
            f"/referrals/{referral['id']}/approve",
            json={},
            headers={**parties.receiver(settings), **if_match(1)},
        )
        assert_problem(r, 422, "action")
        for rid in (str(uuid.uuid4()), "not-a-uuid"):
            r = await referrals_client.post(
                f"/referrals/{rid}/accept",
                json={},
                headers={**parties.receiver(settings), **if_match(1)},
            )
            assert_problem(r, 404, "no referral")


class TestWhoMayAct:
    @pytest.mark.parametrize("action", ["accept", "reject", "return", "hold"])
    async def test_the_referrer_cannot_take_the_receivers_actions(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        action: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        for role in ("clinician", "service_staff", "partner"):
            r = await act(
                referrals_client,
                settings,
                parties,
                referral,
                action,
                headers=parties.referrer(settings, role),
            )
            assert_problem(r, 403, "receiving service")
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == ("submitted", 1)

    @pytest.mark.parametrize(
        "action, state",
        [
            ("book", "accepted"),
            ("attend", "booked"),
            ("did-not-attend", "booked"),
            ("discharge", "attended"),
            ("resume", "on_hold"),
        ],
    )
    async def test_the_referrer_cannot_record_the_services_outcomes(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        action: str,
        state: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, state)
        r = await act(referrals_client, settings, parties, referral, action, side="referrer")
        assert_problem(r, 403, "receiving service")

    async def test_the_receiver_can_neither_see_nor_submit_the_referrers_draft(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "draft")
        r = await act(referrals_client, settings, parties, referral, "submit", side="receiver")
        assert_problem(r, 404, "that you may see")
        seen = await referrals_client.get(
            f"/referrals/{referral['id']}", headers=parties.receiver(settings)
        )
        assert seen.status_code == 404
        worklist = await referrals_client.get(
            "/worklist", params={"state": "draft"}, headers=parties.receiver(settings)
        )
        assert referral["id"] not in [i["id"] for i in worklist.json()["items"]]
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == ("draft", 1)

    @pytest.mark.parametrize("role", ["coordinator"])
    async def test_coordinators_and_admins_oversee_but_do_not_act(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        role: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        for org in (parties.receiver_org, parties.referrer_org, new_org("ICB")):
            headers = auth(settings, role=role, org=org, ics=parties.ics)
            for action in ("accept", "cancel"):
                r = await act(
                    referrals_client, settings, parties, referral, action, headers=headers
                )
                assert_problem(r, 403)
        assert (await referral_row(referrals_sessions, referral["id"])).version == 1

    async def test_another_organisation_gets_a_404(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        headers = auth(settings, role="service_staff", org=new_org(), ics=parties.ics)
        for action in ("accept", "cancel"):
            r = await act(referrals_client, settings, parties, referral, action, headers=headers)
            assert_problem(r, 404, "no referral")


class TestPreconditions:
    async def test_without_if_match_it_is_a_428(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await referrals_client.post(
            f"/referrals/{referral['id']}/accept", json={}, headers=parties.receiver(settings)
        )
        assert_problem(r, 428, "If-Match")
        assert (await referral_row(referrals_sessions, referral["id"])).version == 1

    async def test_a_stale_etag_is_a_412_naming_the_current_version(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "accepted")
        assert referral["version"] == 2
        for stale in (1, 3, 0):
            r = await act(referrals_client, settings, parties, referral, "book", version=stale)
            body = assert_problem(r, 412)
            assert body["current_version"] == 2
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == ("accepted", 2)

    @pytest.mark.parametrize(
        "value", ['W/"abc"', "3", "W/3", '"-1"', 'W/"1234567890"', '"', "", 'W/"1" junk']
    )
    async def test_a_malformed_if_match_is_a_422(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        value: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await referrals_client.post(
            f"/referrals/{referral['id']}/accept",
            json={},
            headers={**parties.receiver(settings), "If-Match": value},
        )
        assert_problem(r, 422, "If-Match")
        assert (await referral_row(referrals_sessions, referral["id"])).version == 1

    async def test_a_strong_etag_is_accepted_too(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        r = await referrals_client.post(
            f"/referrals/{referral['id']}/accept",
            json={},
            headers={**parties.receiver(settings), "If-Match": '"1"'},
        )
        assert r.status_code == 200, r.text

    @pytest.mark.parametrize(
        "first, second", [("accept", "accept"), ("accept", "reject"), ("cancel", "hold")]
    )
    async def test_two_concurrent_changes_with_one_etag_one_wins_one_gets_412(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
        first: str,
        second: str,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        responses = await asyncio.gather(
            act(referrals_client, settings, parties, referral, first),
            act(referrals_client, settings, parties, referral, second, side="receiver"),
        )
        assert sorted(r.status_code for r in responses) == [200, 412], [r.text for r in responses]
        [won] = [r for r in responses if r.status_code == 200]
        [lost] = [r for r in responses if r.status_code == 412]
        assert lost.json()["current_version"] == 2
        row = await referral_row(referrals_sessions, referral["id"])
        assert (row.state, row.version) == (won.json()["state"], 2)
        transitions = await transitions_of(referrals_sessions, referral["id"])
        assert [t.to_state for t in transitions] == ["submitted", won.json()["state"]]
        assert len(await events_of(referrals_sessions, referral["id"])) == 2


class TestIdempotentTransitions:
    async def test_a_replayed_transition_returns_the_first_response_and_changes_nothing(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        headers = {
            **parties.receiver(settings),
            **if_match(1),
            "Idempotency-Key": str(uuid.uuid4()),
        }
        url = f"/referrals/{referral['id']}/accept"
        first = await referrals_client.post(url, json={"note": "triaged"}, headers=headers)
        again = await referrals_client.post(url, json={"note": "triaged"}, headers=headers)
        assert first.status_code == again.status_code == 200, again.text
        assert "idempotent-replayed" not in first.headers
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert again.headers["etag"] == first.headers["etag"] == 'W/"2"'
        assert len(await transitions_of(referrals_sessions, referral["id"])) == 2
        assert len(await events_of(referrals_sessions, referral["id"])) == 2
        audit = await audit_of_referral(referrals_sessions, referral["id"])
        assert [a.action for a in audit].count("transition:accept") == 1

        # after the referral moved on, the retry still gets the first answer, not a 412
        await step(referrals_client, settings, parties, first.json(), "book")
        late = await referrals_client.post(url, json={"note": "triaged"}, headers=headers)
        assert late.status_code == 200 and late.json() == first.json()
        assert (await referral_row(referrals_sessions, referral["id"])).state == "booked"

        # the same key for a different request is a conflict
        other = await referrals_client.post(url, json={"note": "changed"}, headers=headers)
        assert_problem(other, 409, "Idempotency-Key")

    async def test_concurrent_retries_with_one_key_make_one_transition(
        self,
        referrals_client: httpx.AsyncClient,
        settings: Settings,
        referrals_sessions: async_sessionmaker,
    ) -> None:
        parties = await new_parties(settings, referrals_sessions)
        referral = await drive_to(referrals_client, settings, parties, "submitted")
        headers = {
            **parties.receiver(settings),
            **if_match(1),
            "Idempotency-Key": str(uuid.uuid4()),
        }
        responses = await asyncio.gather(
            *[
                referrals_client.post(
                    f"/referrals/{referral['id']}/accept", json={}, headers=headers
                )
                for _ in range(4)
            ]
        )
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 3
        assert len(await transitions_of(referrals_sessions, referral["id"])) == 2


# --- the rules, pure --------------------------------------------------------------------------


def _principal(*roles: str, org: str = "ORG-A", ics: str = "ICS-1") -> Principal:
    return Principal(user="u-1", roles=frozenset(Role(r) for r in roles), org=org, ics=ics)


def _plan(
    action: str,
    state: str,
    *,
    reason: str | None = None,
    held_from: str | None = None,
    appointment: bool = False,
) -> Transition:
    if reason is None and action in REASON:
        reason = REASON[action]
    return domain.plan_transition(
        action=Action(action),
        state=ReferralState(state),
        held_from=ReferralState(held_from) if held_from else None,
        reason_code=reason,
        has_appointment=appointment or action == "book",
    )


class TestAllowedActions:
    @pytest.mark.parametrize("state", ALL_STATES)
    def test_each_state_allows_exactly_its_actions(self, state: str) -> None:
        got = domain.allowed_actions(ReferralState(state))
        assert {a.value for a in got} == ALLOWED[state]
        assert len(got) == len(set(got))

    def test_terminal_states_allow_nothing_and_open_ones_allow_cancel(self) -> None:
        for state in ALL_STATES:
            actions = {a.value for a in domain.allowed_actions(ReferralState(state))}
            assert ("cancel" in actions) == (state in OPEN_STATES)
            assert bool(actions) == (state in OPEN_STATES)


class TestPlanTransition:
    @pytest.mark.parametrize("state, action", LEGAL, ids=[f"{s}-{a}" for s, a in LEGAL])
    def test_a_legal_action_plans_its_transition(self, state: str, action: str) -> None:
        held = "accepted" if state == "on_hold" else None
        t = _plan(action, state, held_from=held)
        assert t.action == Action(action)
        assert t.from_state == ReferralState(state)
        assert t.to_state == ReferralState("accepted" if action == "resume" else TARGET[action])
        assert t.reason_code == REASON.get(action)

    @pytest.mark.parametrize("state, action", ILLEGAL, ids=[f"{s}-{a}" for s, a in ILLEGAL])
    def test_an_illegal_action_is_a_conflict_naming_the_allowed_actions(
        self, state: str, action: str
    ) -> None:
        with pytest.raises(Conflict) as exc:
            _plan(action, state, held_from="submitted")
        assert exc.value.status == 409
        assert set(exc.value.extra["allowed_actions"]) == ALLOWED[state]
        assert exc.value.extra["state"] == state
        assert action in exc.value.message and state in exc.value.message
        if not ALLOWED[state]:
            assert "closed" in exc.value.message

    @pytest.mark.parametrize("held_from", ["submitted", "accepted", "booked"])
    def test_resume_returns_to_the_state_held_from(self, held_from: str) -> None:
        t = _plan("resume", "on_hold", held_from=held_from)
        assert (t.from_state, t.to_state) == (ReferralState.ON_HOLD, ReferralState(held_from))

    def test_resume_without_a_remembered_state_is_a_conflict(self) -> None:
        with pytest.raises(Conflict):
            _plan("resume", "on_hold", held_from=None)

    @pytest.mark.parametrize(
        "action, reason",
        [(a, r) for a, reasons in sorted(REASONS.items()) for r in sorted(reasons)],
    )
    def test_every_listed_reason_is_accepted(self, action: str, reason: str) -> None:
        t = _plan(action, FROM[action], reason=reason)
        assert t.reason_code == reason

    @pytest.mark.parametrize("action", sorted(REASONS))
    @pytest.mark.parametrize("reason", [None, ""])
    def test_a_missing_reason_is_invalid(self, action: str, reason: str | None) -> None:
        with pytest.raises(ValidationFailed) as exc:
            domain.plan_transition(
                action=Action(action),
                state=ReferralState(FROM[action]),
                held_from=None,
                reason_code=reason,
                has_appointment=False,
            )
        assert exc.value.status == 422 and "reason_code" in exc.value.message

    @pytest.mark.parametrize("action", sorted(REASONS))
    def test_a_reason_from_another_set_is_invalid(self, action: str) -> None:
        others = set().union(*REASONS.values()) - REASONS[action]
        for reason in sorted(others) + ["anything"]:
            with pytest.raises(ValidationFailed):
                _plan(action, FROM[action], reason=reason)

    def test_reasons_shared_between_sets_are_accepted_by_each(self) -> None:
        _plan("reject", "submitted", reason="insufficient-information")
        _plan("return", "submitted", reason="insufficient-information")
        _plan("cancel", "booked", reason="duplicate-referral")
        _plan("reject", "submitted", reason="duplicate-referral")

    @pytest.mark.parametrize(
        "action", ["submit", "accept", "book", "attend", "did-not-attend", "resume"]
    )
    def test_an_action_without_reasons_takes_no_reason_code(self, action: str) -> None:
        with pytest.raises(ValidationFailed):
            _plan(action, FROM[action], reason="9434765919", held_from="submitted")

    @pytest.mark.parametrize("state", ["accepted", "attended", "did_not_attend"])
    def test_book_needs_an_appointment(self, state: str) -> None:
        with pytest.raises(ValidationFailed) as exc:
            domain.plan_transition(
                action=Action.BOOK,
                state=ReferralState(state),
                held_from=None,
                reason_code=None,
                has_appointment=False,
            )
        assert "appointment_at" in exc.value.message
        assert _plan("book", state, appointment=True).to_state == ReferralState.BOOKED

    def test_the_state_is_checked_before_the_reason(self) -> None:
        # an illegal action is a 409 even when its body is also wrong
        with pytest.raises(Conflict):
            domain.plan_transition(
                action=Action.REJECT,
                state=ReferralState.BOOKED,
                held_from=None,
                reason_code=None,
                has_appointment=False,
            )


RECEIVER_ACTIONS = [a for a in ALL_ACTIONS if a not in ("submit", "cancel")]


class TestCheckActor:
    @pytest.mark.parametrize("role", ["clinician", "service_staff", "partner"])
    @pytest.mark.parametrize("action", ALL_ACTIONS)
    def test_acting_roles_by_side(self, role: str, action: str) -> None:
        orgs = dict(from_org="REF-1", to_org="RCV-1")
        referrer, receiver = _principal(role, org="REF-1"), _principal(role, org="RCV-1")
        stranger = _principal(role, org="OTHER-1")
        may_referrer = action in ("submit", "cancel")
        may_receiver = action != "submit"
        for who, may in ((referrer, may_referrer), (receiver, may_receiver), (stranger, False)):
            if may:
                domain.check_actor(who, action=Action(action), **orgs)
            else:
                with pytest.raises(Forbidden):
                    domain.check_actor(who, action=Action(action), **orgs)

    @pytest.mark.parametrize("role", ["coordinator", "admin"])
    @pytest.mark.parametrize("action", ALL_ACTIONS)
    def test_overseeing_roles_never_act(self, role: str, action: str) -> None:
        for org in ("REF-1", "RCV-1", "OTHER-1"):
            with pytest.raises(Forbidden) as exc:
                domain.check_actor(
                    _principal(role, org=org),
                    action=Action(action),
                    from_org="REF-1",
                    to_org="RCV-1",
                )
            assert exc.value.status == 403

    def test_a_coordinator_who_is_also_a_clinician_acts_as_the_clinician(self) -> None:
        p = _principal("coordinator", "clinician", org="RCV-1")
        domain.check_actor(p, action=Action.ACCEPT, from_org="REF-1", to_org="RCV-1")
        with pytest.raises(Forbidden):
            domain.check_actor(p, action=Action.SUBMIT, from_org="REF-1", to_org="RCV-1")

    @pytest.mark.parametrize("action", ALL_ACTIONS)
    def test_an_organisation_referring_to_its_own_service_takes_both_sides(
        self, action: str
    ) -> None:
        domain.check_actor(
            _principal("clinician", org="SAME-1"),
            action=Action(action),
            from_org="SAME-1",
            to_org="SAME-1",
        )

    def test_the_message_names_who_may_act(self) -> None:
        with pytest.raises(Forbidden) as exc:
            domain.check_actor(
                _principal("clinician", org="REF-1"),
                action=Action.ACCEPT,
                from_org="REF-1",
                to_org="RCV-1",
            )
        assert "receiving service" in exc.value.message
        with pytest.raises(Forbidden) as exc:
            domain.check_actor(
                _principal("clinician", org="RCV-1"),
                action=Action.SUBMIT,
                from_org="REF-1",
                to_org="RCV-1",
            )
        assert "referring organisation" in exc.value.message


class TestMayRead:
    REF = dict(from_org="REF-1", to_org="RCV-1", ics="ICS-1")

    @pytest.mark.parametrize(
        "roles, org, ics, expected",
        [
            # acting roles: their organisation is the referrer or the receiver
            (("clinician",), "REF-1", "ICS-1", True),
            (("clinician",), "RCV-1", "ICS-1", True),
            (("clinician",), "OTHER-1", "ICS-1", False),
            (("service_staff",), "RCV-1", "ICS-1", True),
            (("service_staff",), "REF-1", "ICS-1", True),
            (("service_staff",), "OTHER-1", "ICS-1", False),
            (("partner",), "RCV-1", "ICS-1", True),
            (("partner",), "REF-1", "ICS-1", True),
            (("partner",), "OTHER-1", "ICS-1", False),
            # the organisation decides for acting roles, not the ICS claim
            (("clinician",), "REF-1", "ICS-2", True),
            (("partner",), "OTHER-1", "ICS-2", False),
            # coordinators and admins: everything in their ICS, nothing outside it
            (("coordinator",), "ICB-1", "ICS-1", True),
            (("coordinator",), "ICB-1", "ICS-2", False),
            (("coordinator",), "REF-1", "ICS-2", False),
            # an organisation's administrator sees no patient data, even its own organisation's
            (("admin",), "ADMIN-1", "ICS-1", False),
            (("admin",), "RCV-1", "ICS-1", False),
            (("ics_lead",), "ICB-1", "ICS-1", False),
            (("coordinator",), "ICB-1", "", False),
            # several roles: any that grants
            (("coordinator", "partner"), "RCV-1", "ICS-2", True),
            (("coordinator", "partner"), "OTHER-1", "ICS-1", True),
            (("coordinator", "partner"), "OTHER-1", "ICS-2", False),
        ],
    )
    def test_who_may_read_a_referral(
        self, roles: tuple[str, ...], org: str, ics: str, expected: bool
    ) -> None:
        assert domain.may_read(_principal(*roles, org=org, ics=ics), **self.REF) is expected

    @pytest.mark.parametrize(
        "roles", [("clinician",), ("service_staff",), ("partner",), ("coordinator",), ("admin",)]
    )
    def test_no_role_reads_across_both_org_and_ics(self, roles: tuple[str, ...]) -> None:
        for org, ics in itertools.product(["X-1", "Y-2"], ["ICS-8", "ICS-9"]):
            assert domain.may_read(_principal(*roles, org=org, ics=ics), **self.REF) is False
