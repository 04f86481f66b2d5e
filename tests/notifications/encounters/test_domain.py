"""The rules about contacts (services/notifications/encounters/domain.py): which happened,
which were unplanned, which are shown, in which words; pure, every kind and status."""

from __future__ import annotations

import pytest

from services.notifications.encounters import domain as D
from shared.vocabulary import (
    ALWAYS_UNPLANNED,
    CONTACT_LABELS,
    HAPPENED_STATUSES,
    ContactKind,
    ContactStatus,
)

ALL_KINDS = [k.value for k in ContactKind]
ALL_STATUSES = [s.value for s in ContactStatus]


class TestHappened:
    @pytest.mark.parametrize("status", ALL_STATUSES)
    def test_only_arrived_in_progress_and_finished_happened(self, status):
        assert D.happened(status) == (status in {"arrived", "in_progress", "finished"})

    @pytest.mark.parametrize("status", ["", "Finished", "done", "planned"])
    def test_an_unknown_status_did_not_happen(self, status):
        assert not D.happened(status)


class TestUnplanned:
    @pytest.mark.parametrize("kind", ALL_KINDS)
    def test_the_source_saying_unplanned_is_believed_for_every_kind(self, kind):
        assert D.is_unplanned(kind, planned=False)

    @pytest.mark.parametrize("kind", ALL_KINDS)
    def test_a_planned_contact_is_unplanned_only_for_the_always_unplanned_kinds(self, kind):
        assert D.is_unplanned(kind, planned=True) == (ContactKind(kind) in ALWAYS_UNPLANNED)

    def test_the_always_unplanned_kinds_are_urgent_care(self):
        assert {k.value for k in ALWAYS_UNPLANNED} == {
            "ae_attendance",
            "nhs_111",
            "out_of_hours",
            "crisis_team",
        }

    def test_an_unknown_kind_is_as_the_source_says(self):
        assert D.is_unplanned("walk_in_centre", planned=False)
        assert not D.is_unplanned("walk_in_centre", planned=True)

    @pytest.mark.parametrize("kind", ALL_KINDS)
    @pytest.mark.parametrize("status", ALL_STATUSES)
    @pytest.mark.parametrize("planned", [True, False])
    def test_counted_means_happened_and_unplanned(self, kind, status, planned):
        expected = ContactStatus(status) in HAPPENED_STATUSES and (
            not planned or ContactKind(kind) in ALWAYS_UNPLANNED
        )
        assert D.counts_as_unplanned(kind, planned, status) == expected


class TestShown:
    @pytest.mark.parametrize("status", ALL_STATUSES)
    def test_cancelled_and_entered_in_error_are_never_shown(self, status):
        assert D.shown(status) == (status not in {"cancelled", "entered_in_error"})

    def test_booked_and_did_not_attend_are_shown_though_they_did_not_happen(self):
        for status in ("booked", "did_not_attend"):
            assert D.shown(status) and not D.happened(status)

    @pytest.mark.parametrize("status", ["", "unknown", "CANCELLED"])
    def test_a_status_nobody_can_say_in_words_is_not_shown(self, status):
        assert not D.shown(status)


class TestWords:
    @pytest.mark.parametrize("kind", list(ContactKind))
    def test_every_kind_reads_as_the_vocabulary_label(self, kind):
        assert D.kind_label(kind.value) == CONTACT_LABELS[kind]

    @pytest.mark.parametrize(
        "code,words", [("walk_in_centre", "Walk in centre"), ("", "Contact"), ("x", "X")]
    )
    def test_an_unknown_kind_reads_as_itself(self, code, words):
        assert D.kind_label(code) == words

    def test_every_status_has_words_and_an_unknown_one_reads_as_itself(self):
        assert set(D.STATUS_WORDS) == set(ContactStatus)
        assert D.status_words("did_not_attend") == "did not attend"
        assert D.status_words("in_progress") == "in progress"
        assert D.status_words("on_the_way") == "on the way"
