"""The rules of people's messages (services/notifications/messages/domain.py): pure, many cases."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from services.notifications.messages import domain as m
from services.notifications.messages.domain import (
    Channel,
    Outcome,
    RecipientOutcome,
    Route,
    StaffPreference,
    Variant,
)

LONDON = "Europe/London"


class TestAddresses:
    @pytest.mark.parametrize(
        "value", ["a@example.org", "first.last+tag@nhs.net", "x_y@sub.domain.co.uk", "  a@b.io "]
    )
    def test_email_addresses_are_recognised(self, value: str) -> None:
        assert m.is_email(value)

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "no-at-sign",
            "a@b",
            "a@@b.org",
            "a b@c.org",
            "a@-b.org",
            "a..b@c.org",
            "07700 900123",
            "x" * 250 + "@b.org",
            "14 High St, Leeds",
        ],
    )
    def test_things_that_are_not_email_addresses(self, value: str | None) -> None:
        assert not m.is_email(value)

    @pytest.mark.parametrize(
        "value,expected",
        [
            ("07700900123", "+447700900123"),
            ("07700 900123", "+447700900123"),
            ("07700-900-123", "+447700900123"),
            ("+44 7700 900123", "+447700900123"),
            ("+447700900123", "+447700900123"),
            ("0044 7700 900123", "+447700900123"),
            ("(07700) 900123", "+447700900123"),
        ],
    )
    def test_uk_mobiles_are_normalised_to_the_international_form(
        self, value: str, expected: str
    ) -> None:
        assert m.uk_mobile(value) == expected

    @pytest.mark.parametrize(
        "value",
        [
            None,
            "",
            "0113 496 0000",
            "01134960000",
            "0770090012",
            "077009001234",
            "+15551234567",
            "+44 113 496 0000",
            "carer@example.org",
            "ring the home",
        ],
    )
    def test_landlines_foreign_and_short_numbers_are_not_uk_mobiles(
        self, value: str | None
    ) -> None:
        assert m.uk_mobile(value) is None


class TestThePersonsChannel:
    def test_the_preferred_channel_is_used_when_its_contact_exists(self) -> None:
        reach = m.person_reach(preferred="sms", email="p@example.org", mobile="07700900123")
        assert reach.routes == (
            Route(Channel.SMS, "+447700900123"),
            Route(Channel.EMAIL, "p@example.org"),
        )

    def test_email_preferred(self) -> None:
        reach = m.person_reach(preferred="email", email="p@example.org", mobile="07700900123")
        assert reach.routes[0] == Route(Channel.EMAIL, "p@example.org")

    def test_preferred_sms_without_a_mobile_falls_to_the_email_that_exists(self) -> None:
        reach = m.person_reach(preferred="sms", email="p@example.org", mobile=None)
        assert reach.routes == (Route(Channel.EMAIL, "p@example.org"),)

    def test_preferred_email_without_an_address_falls_to_the_mobile(self) -> None:
        reach = m.person_reach(preferred="email", email=None, mobile="07700 900123")
        assert reach.routes == (Route(Channel.SMS, "+447700900123"),)

    @pytest.mark.parametrize("preferred", ["letter", "phone", "in_person", None])
    def test_a_channel_waymark_cannot_send_on_uses_whichever_contact_exists(
        self, preferred: str | None
    ) -> None:
        reach = m.person_reach(preferred=preferred, email=None, mobile="07700900123")
        assert reach.routes == (Route(Channel.SMS, "+447700900123"),)

    def test_no_contact_is_no_reachable_channel_with_the_reason(self) -> None:
        reach = m.person_reach(preferred="letter", email=None, mobile=None)
        assert not reach.reachable
        assert "no reachable channel" in reach.reason and "letter" in reach.reason

    def test_unusable_contacts_count_as_none(self) -> None:
        reach = m.person_reach(preferred="sms", email="not-an-email", mobile="0113 496 0000")
        assert not reach.reachable


class TestStaffChannels:
    def test_without_preferences_the_in_app_inbox_reaches_everyone(self) -> None:
        assert m.staff_reach(None).routes == (Route(Channel.IN_APP),)

    def test_the_users_order_is_kept(self) -> None:
        pref = StaffPreference(
            channels=("sms", "email", "in_app"), email="u@nhs.net", mobile="+447700900123"
        )
        assert [r.channel for r in m.staff_reach(pref).routes] == [
            Channel.SMS,
            Channel.EMAIL,
            Channel.IN_APP,
        ]

    def test_a_channel_without_its_address_is_skipped(self) -> None:
        pref = StaffPreference(channels=("email", "in_app"))
        assert m.staff_reach(pref).routes == (Route(Channel.IN_APP),)

    def test_only_channels_without_addresses_is_unreachable(self) -> None:
        reach = m.staff_reach(StaffPreference(channels=("email", "sms")))
        assert not reach.reachable
        assert "email (no address set)" in reach.reason and "sms" in reach.reason

    def test_in_app_is_not_added_when_the_user_chose_other_channels(self) -> None:
        pref = StaffPreference(channels=("email",), email="u@nhs.net")
        assert m.staff_reach(pref).routes == (Route(Channel.EMAIL, "u@nhs.net"),)


class TestCarers:
    @pytest.mark.parametrize(
        "consent,may_see,told",
        [
            (True, ["goals"], True),
            (True, ["goals", "crisis"], True),
            (True, [], False),
            (False, ["goals"], False),
            (False, [], False),
        ],
    )
    def test_a_carer_is_told_only_with_consent_and_some_access(
        self, consent: bool, may_see: list[str], told: bool
    ) -> None:
        assert m.carer_may_be_told(consent_to_carer_sharing=consent, may_see=may_see) is told

    def test_an_email_contact_is_emailed(self) -> None:
        assert m.carer_reach(" sam@example.org ").routes == (
            Route(Channel.EMAIL, "sam@example.org"),
        )

    def test_a_uk_mobile_contact_is_texted(self) -> None:
        assert m.carer_reach("07700 900000").routes == (Route(Channel.SMS, "+447700900000"),)

    @pytest.mark.parametrize(
        "contact", ["0113 496 0000", "via the care home", "", None, "12 Acacia Avenue"]
    )
    def test_anything_else_is_unreachable_without_repeating_the_contact(
        self, contact: str | None
    ) -> None:
        reach = m.carer_reach(contact)
        assert not reach.reachable and "no reachable channel" in reach.reason
        if contact:
            assert contact not in reach.reason


class TestVariant:
    @pytest.mark.parametrize(
        "comm,needs,expected",
        [
            ({}, [], Variant.PLAIN),
            (None, [], Variant.PLAIN),
            ({"easy_read": True}, [], Variant.EASY_READ),
            ({"learning_disability": True}, [], Variant.EASY_READ),
            ({"dementia": True}, [], Variant.EASY_READ),
            ({"large_print": True}, [], Variant.LARGE_PRINT),
            ({"large_print": True, "easy_read": True}, [], Variant.EASY_READ),
            ({"interpreter": True, "language": "Polish"}, [], Variant.PLAIN),
            ({"bsl": True}, [], Variant.PLAIN),
            ({}, ["Easy read please"], Variant.EASY_READ),
            ({}, ["learning disability"], Variant.EASY_READ),
            ({}, ["Large print"], Variant.LARGE_PRINT),
            ({}, ["interpreter: Polish"], Variant.PLAIN),
        ],
    )
    def test_the_form_follows_the_recorded_needs(self, comm, needs, expected) -> None:  # type: ignore[no-untyped-def]
        assert m.person_variant(comm, needs) is expected

    @pytest.mark.parametrize(
        "comm,needs,large",
        [
            ({"large_print": True, "easy_read": True}, [], True),
            ({"easy_read": True}, [], False),
            ({}, ["partially sighted"], True),
        ],
    )
    def test_large_type_is_kept_with_easy_read_words(self, comm, needs, large) -> None:  # type: ignore[no-untyped-def]
        assert m.wants_large_type(comm, needs) is large


class TestLanguage:
    @pytest.mark.parametrize(
        "text,code",
        [
            (None, "en"),
            ("", "en"),
            ("English", "en"),
            ("Polish", "pl"),
            (" welsh ", "cy"),
            ("Cymraeg", "cy"),
            ("pl", "pl"),
            ("en-GB", "en"),
            ("Punjabi", "pa"),
            ("Klingon", "en"),
        ],
    )
    def test_language_names_and_codes(self, text: str | None, code: str) -> None:
        assert m.language_code(text) == code


def _london(y: int, mo: int, d: int, h: int, mi: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(LONDON)).astimezone(UTC)


class TestQuietHours:
    def test_no_window(self) -> None:
        now = _london(2026, 1, 10, 23, 0)
        assert m.quiet_until(now, None, None, LONDON) is None
        assert m.quiet_until(now, time(22), None, LONDON) is None
        assert m.quiet_until(now, time(22), time(22), LONDON) is None

    def test_inside_a_daytime_window_waits_for_its_end(self) -> None:
        now = _london(2026, 1, 10, 12, 30)
        assert m.quiet_until(now, time(12), time(14), LONDON) == _london(2026, 1, 10, 14, 0)

    def test_outside_a_daytime_window(self) -> None:
        assert m.quiet_until(_london(2026, 1, 10, 15, 0), time(12), time(14), LONDON) is None
        assert m.quiet_until(_london(2026, 1, 10, 11, 59), time(12), time(14), LONDON) is None

    def test_the_start_is_inclusive_and_the_end_exclusive(self) -> None:
        assert m.quiet_until(_london(2026, 1, 10, 12, 0), time(12), time(14), LONDON)
        assert m.quiet_until(_london(2026, 1, 10, 14, 0), time(12), time(14), LONDON) is None

    def test_a_window_crossing_midnight_before_midnight_ends_the_next_morning(self) -> None:
        now = _london(2026, 1, 10, 23, 15)
        assert m.quiet_until(now, time(22), time(7), LONDON) == _london(2026, 1, 11, 7, 0)

    def test_a_window_crossing_midnight_after_midnight_ends_this_morning(self) -> None:
        now = _london(2026, 1, 11, 3, 0)
        assert m.quiet_until(now, time(22), time(7), LONDON) == _london(2026, 1, 11, 7, 0)

    def test_daytime_outside_a_night_window(self) -> None:
        assert m.quiet_until(_london(2026, 1, 11, 12, 0), time(22), time(7), LONDON) is None

    def test_local_time_is_uk_time_in_summer(self) -> None:
        # 21:30 UTC in July is 22:30 in London: inside a 22:00-07:00 window
        now = datetime(2026, 7, 1, 21, 30, tzinfo=UTC)
        assert m.quiet_until(now, time(22), time(7), LONDON) == datetime(
            2026, 7, 2, 6, 0, tzinfo=UTC
        )

    def test_the_window_ending_on_the_morning_the_clocks_go_forward(self) -> None:
        # 29 March 2026: clocks go forward at 01:00 UTC; 07:00 BST is 06:00 UTC
        now = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
        assert m.quiet_until(now, time(22), time(7), LONDON) == datetime(
            2026, 3, 29, 6, 0, tzinfo=UTC
        )

    @pytest.mark.parametrize(
        "channel,held", [(Channel.EMAIL, True), (Channel.SMS, True), (Channel.IN_APP, False)]
    )
    def test_only_email_and_sms_are_held(self, channel: Channel, held: bool) -> None:
        assert m.is_held(channel, datetime.now(UTC)) is held
        assert m.is_held(channel, None) is False


class TestRetries:
    @pytest.mark.parametrize(
        "failures,delay", [(1, 10.0), (2, 60.0), (3, 300.0), (4, None), (0, None)]
    )
    def test_the_schedule_then_give_up(self, failures: int, delay: float | None) -> None:
        assert m.retry_delay(failures, [10, 60, 300]) == delay


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _o(outcome: Outcome, at: int | None = None, error: str | None = None) -> RecipientOutcome:
    return RecipientOutcome(
        "r", outcome, T0 + timedelta(seconds=at) if at is not None else None, error
    )


class TestMessageStatus:
    def test_nobody(self) -> None:
        assert m.message_status([]).status == "skipped"

    def test_all_sent(self) -> None:
        assert m.message_status([_o(Outcome.SENT), _o(Outcome.SENT)]).status == "sent"

    def test_some_sent_some_failed(self) -> None:
        s = m.message_status([_o(Outcome.SENT), _o(Outcome.FAILED, error="boom")])
        assert s.status == "partly_sent" and s.errors == ["r: boom"]

    def test_all_failed(self) -> None:
        s = m.message_status([_o(Outcome.FAILED, error="a"), _o(Outcome.FAILED, error="b")])
        assert s.status == "failed" and len(s.errors) == 2

    def test_a_retry_keeps_it_pending_until_the_earliest_next_time(self) -> None:
        s = m.message_status(
            [_o(Outcome.SENT), _o(Outcome.RETRYING, 30, "timeout"), _o(Outcome.HELD, 10)]
        )
        assert s.status == "pending" and s.next_attempt_at == T0 + timedelta(seconds=10)

    def test_held_only_when_every_open_recipient_is_in_quiet_hours(self) -> None:
        s = m.message_status([_o(Outcome.SENT), _o(Outcome.HELD, 600)])
        assert s.status == "held" and s.next_attempt_at == T0 + timedelta(seconds=600)


class TestWithheld:
    def test_a_death_is_never_announced_by_an_automatic_message(self) -> None:
        assert m.withheld("discharged", {"transition_reason": "deceased"})

    @pytest.mark.parametrize(
        "template,reason", [("discharged", "goals-met"), ("appointment-booked", None)]
    )
    def test_other_messages_go(self, template: str, reason: str | None) -> None:
        assert m.withheld(template, {"transition_reason": reason}) is None


class TestTemplateValues:
    def test_appointment_in_words_uk_time(self) -> None:
        v = m.template_values(
            context={"appointment_at": "2026-07-14T13:05:00+00:00"},
            referral={},
            service_name=None,
            zone=LONDON,
        )
        assert v["appointment"] == "Tuesday 14 July 2026 at 2:05pm"
        assert v["appointment_time"] == "2:05pm"

    def test_on_the_hour_and_midnight_noon(self) -> None:
        assert (
            m.appointment_words(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), LONDON)["appointment_time"]
            == "9am"
        )
        assert (
            m.appointment_words(datetime(2026, 1, 5, 12, 0, tzinfo=UTC), LONDON)["appointment_time"]
            == "12pm"
        )
        assert (
            m.appointment_words(datetime(2026, 1, 5, 0, 30, tzinfo=UTC), LONDON)["appointment_time"]
            == "12:30am"
        )

    def test_unknown_values_are_left_out_not_none(self) -> None:
        v = m.template_values(
            context={"priority": "routine", "appointment_at": None},
            referral={"note": None, "given_name": ""},
            service_name=None,
            zone=LONDON,
        )
        assert "appointment_at" not in v and "advice" not in v and "given_name" not in v
        assert "appointment" not in v

    def test_the_events_facts_win_over_the_referral_as_it_is_now(self) -> None:
        v = m.template_values(
            context={"appointment_at": "2026-07-14T13:00:00+00:00"},
            referral={"appointment_at": "2026-08-01T09:00:00+00:00"},
            service_name=None,
            zone=LONDON,
        )
        assert v["appointment_date"] == "Tuesday 14 July 2026"

    def test_service_name_reason_flag_and_reference(self) -> None:
        v = m.template_values(
            context={
                "referral_id": "0f1e2d3c-aaaa",
                "transition_reason": "refer-elsewhere",
                "service_category": "msk_physiotherapy",
                "flag": "service_withdrawn",
            },
            referral={"note": "Try the yoga class"},
            service_name=None,
            zone=LONDON,
        )
        assert v["service"] == "msk physiotherapy"
        assert v["reason"] == "another service would suit the person better"
        assert v["flag_text"].startswith("the service has been withdrawn")
        assert v["referral_ref"] == "0F1E2D3C"
        assert v["advice"] == "Try the yoga class"

    def test_the_directory_name_wins_over_the_category(self) -> None:
        v = m.template_values(
            context={"service_category": "social_prescribing"},
            referral={},
            service_name="Wayford Link Workers",
            zone=LONDON,
        )
        assert v["service"] == "Wayford Link Workers"

    def test_unknown_reason_codes_are_still_words(self) -> None:
        v = m.template_values(
            context={"transition_reason": "new-code"}, referral={}, service_name=None, zone=LONDON
        )
        assert v["reason"] == "new code"


class TestLogRef:
    """How the dispatcher's log names a recipient: never by what the key holds."""

    @pytest.mark.parametrize("key", ["carer:sam", "carer:Alex Synthetic", "crisis:jo-bloggs"])
    def test_the_free_part_of_a_key_never_reaches_the_log(self, key: str) -> None:
        from services.notifications.messages.delivery_log import log_ref

        ref = log_ref(key)
        kind, rest = key.split(":", 1)
        assert ref.startswith(kind + ":h") and rest not in ref and len(ref) == len(kind) + 12

    def test_a_ref_never_reads_as_a_number(self) -> None:
        """Ten hex characters are all digits about once in a hundred keys; a ten-digit run
        that passes Modulus 11 would look like an NHS number in the log."""
        from services.notifications.messages.delivery_log import log_ref

        refs = [log_ref(f"org:{i}").split(":", 1)[1] for i in range(5000)]
        assert any(r[1:].isdigit() for r in refs)  # the case this guards against happens
        assert not any(r.isdigit() for r in refs)

    def test_the_same_key_gives_the_same_ref_and_others_differ(self) -> None:
        from services.notifications.messages.delivery_log import log_ref

        assert log_ref("carer:sam") == log_ref("carer:sam") != log_ref("carer:sue")

    def test_a_key_without_an_id_is_its_kind(self) -> None:
        from services.notifications.messages.delivery_log import log_ref

        assert log_ref("patient") == "patient"
