"""The audience rules (audience.py): which event owes which message to whom, and which
partner may ever see which event (pure, no I/O)."""

from __future__ import annotations

import pytest

from services.notifications import audience
from services.notifications.audience import Audience
from shared.events.referrals import EVENT_FOR_STATE, ReferralFlagged
from shared.events.registry import REGISTRY, load_all

R = "uk.waymark.referral."


class TestMessageRoutes:
    @pytest.mark.parametrize(
        ("event", "audiences"),
        [
            ("submitted", {Audience.RECEIVING_SERVICE}),
            ("accepted", {Audience.REFERRER}),
            ("rejected", {Audience.REFERRER}),
            ("returned", {Audience.REFERRER}),
            ("flagged", {Audience.REFERRER}),
            ("booked", {Audience.PERSON, Audience.CARERS}),
            ("did-not-attend", {Audience.PERSON, Audience.CARERS}),
            ("discharged", {Audience.PERSON, Audience.CARERS}),
        ],
    )
    def test_each_referral_event_reaches_the_people_it_concerns(self, event, audiences):
        assert {r.audience for r in audience.routes_for(R + event)} == audiences

    @pytest.mark.parametrize("event", ["attended", "cancelled", "on-hold", "resumed"])
    def test_events_nobody_is_told_about_owe_no_message(self, event):
        assert audience.routes_for(R + event) == ()

    @pytest.mark.parametrize(
        "event_type",
        [
            "uk.waymark.journey.alert.raised",
            "uk.waymark.directory.service.published",
            "uk.waymark.care-plan.assessment.recorded",
            "",
            "uk.waymark.referral",
        ],
    )
    def test_non_referral_events_owe_no_message(self, event_type):
        assert audience.routes_for(event_type) == ()

    def test_every_routed_type_is_a_registered_event(self):
        load_all()
        known = {m.EVENT_TYPE for m in REGISTRY.all_models()}
        assert set(audience.MESSAGE_ROUTES) <= known

    def test_every_state_change_event_is_either_routed_or_deliberately_silent(self):
        silent = {R + s for s in ("attended", "cancelled", "on-hold")}
        for cls in [*EVENT_FOR_STATE.values(), ReferralFlagged]:
            assert (cls.EVENT_TYPE in audience.MESSAGE_ROUTES) != (cls.EVENT_TYPE in silent), (
                cls.EVENT_TYPE
            )

    def test_one_audience_per_event_at_most_once(self):
        for event_type, routes in audience.MESSAGE_ROUTES.items():
            audiences = [r.audience for r in routes]
            assert len(audiences) == len(set(audiences)), event_type


class TestMessageContext:
    def test_keeps_codes_and_drops_everything_else(self):
        ctx = audience.message_context(
            {
                "referral_id": "r1",
                "from_org": "GP-1",
                "to_org": "PAIN-1",
                "service_category": "pain",
                "priority": "urgent",
                "state": "booked",
                "appointment_at": "2026-12-01T10:00:00+00:00",
                "transition_reason": None,
                "reason_codes": ["279039007"],
                "unknown": "x",
            }
        )
        assert ctx == {
            "referral_id": "r1",
            "from_org": "GP-1",
            "to_org": "PAIN-1",
            "service_category": "pain",
            "priority": "urgent",
            "state": "booked",
            "appointment_at": "2026-12-01T10:00:00+00:00",
        }


def _data(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "from_org": "GP-1",
        "to_org": "PAIN-1",
        "service_category": "pain_management_programme",
        "priority": "routine",
    }
    base.update(kw)
    return base


class TestPartnerIsolation:
    @pytest.mark.parametrize(
        ("org", "expected"),
        [("GP-1", True), ("PAIN-1", True), ("PAIN-2", False), ("gp-1", False), ("", False)],
    )
    def test_an_event_concerns_only_the_referring_and_receiving_organisations(self, org, expected):
        assert audience.concerns_org(org, _data()) is expected

    def test_a_subscription_of_another_organisation_never_matches_whatever_it_asks_for(self):
        assert not audience.subscription_matches(
            org="PAIN-2",
            event_types=[R + "submitted"],
            filters={},
            event_type=R + "submitted",
            data=_data(),
        )

    @pytest.mark.parametrize(
        ("filters", "data", "expected"),
        [
            ({}, _data(), True),
            ({"service_categories": ["pain_management_programme"]}, _data(), True),
            ({"service_categories": ["msk_physiotherapy"]}, _data(), False),
            ({"priorities": ["urgent"]}, _data(), False),
            ({"priorities": ["urgent", "routine"]}, _data(), True),
            ({"role": "receiver"}, _data(), True),
            ({"role": "sender"}, _data(), False),
            ({"role": "sender"}, _data(from_org="PAIN-1", to_org="TT-1"), True),
            ({"role": "receiver"}, _data(from_org="PAIN-1", to_org="TT-1"), False),
            (
                {"service_categories": ["pain_management_programme"], "priorities": ["urgent"]},
                _data(priority="urgent"),
                True,
            ),
        ],
    )
    def test_filters_narrow_what_a_subscription_receives(self, filters, data, expected):
        assert (
            audience.subscription_matches(
                org="PAIN-1",
                event_types=[R + "submitted"],
                filters=filters,
                event_type=R + "submitted",
                data=data,
            )
            is expected
        )

    def test_an_event_type_not_subscribed_to_is_not_sent(self):
        assert not audience.subscription_matches(
            org="PAIN-1",
            event_types=[R + "accepted"],
            filters={},
            event_type=R + "submitted",
            data=_data(),
        )
