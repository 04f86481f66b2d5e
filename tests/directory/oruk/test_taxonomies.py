"""Waymark's facts as Open Referral UK attributes of Waymark's taxonomies (pure)."""

from __future__ import annotations

import pytest

from services.directory import domain
from services.directory.domain import Category, Condition, DeliveryMode, WaymarkFacts
from services.directory.oruk import taxonomies
from shared.errors import ValidationFailed


class TestFactsAsAttributes:
    def test_facts_survive_the_trip_through_attributes(self) -> None:
        facts = WaymarkFacts(
            category=Category.CRISIS,
            conditions=(Condition.PERSISTENT_PAIN, Condition.MENTAL_HEALTH),
            delivery_modes=(DeliveryMode.PHONE,),
            communication_support=(domain.CommunicationSupport.BSL,),
            self_referral=True,
            waiting_weeks=0,
        )
        links = taxonomies.attributes_for("svc-1", facts)
        assert taxonomies.facts_from_attributes(links) == facts
        assert taxonomies.attributes_for("svc-1", facts) == links  # stable ids
        assert facts.remote

    def test_exactly_one_category_is_required(self) -> None:
        with pytest.raises(ValidationFailed, match="exactly one"):
            taxonomies.facts_from_attributes([])
        two = [
            taxonomies.AttributeLink("a", taxonomies.CATEGORY_TAXONOMY.term_id("crisis")),
            taxonomies.AttributeLink("b", taxonomies.CATEGORY_TAXONOMY.term_id("peer_support")),
        ]
        with pytest.raises(ValidationFailed, match="found 2"):
            taxonomies.facts_from_attributes(two)

    def test_a_waiting_time_must_be_whole_weeks(self) -> None:
        cat = taxonomies.AttributeLink("a", taxonomies.CATEGORY_TAXONOMY.term_id("crisis"))
        for bad in ("six", "-1", "999", "٣", None):
            wait = taxonomies.AttributeLink(
                "w", taxonomies.REFERRAL_TAXONOMY.term_id("waiting_weeks"), bad
            )
            with pytest.raises(ValidationFailed, match="whole number"):
                taxonomies.facts_from_attributes([cat, wait])

    def test_every_vocabulary_code_has_a_term(self) -> None:
        for tax, enum in [
            (taxonomies.CATEGORY_TAXONOMY, Category),
            (taxonomies.CONDITION_TAXONOMY, Condition),
            (taxonomies.DELIVERY_TAXONOMY, DeliveryMode),
            (taxonomies.COMMUNICATION_TAXONOMY, domain.CommunicationSupport),
        ]:
            assert [t.code for t in tax.terms] == [e.value for e in enum]
