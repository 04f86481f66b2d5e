"""The demo's referrals speak the one vocabulary: each names the category the directory's demo
gives the service it refers to (they once said `pain_management` where the directory says
`pain_management_programme`)."""

from __future__ import annotations

from devtools.demo import REFERRALS
from services.directory.demo import FIXED
from shared.vocabulary import Category


def test_every_demo_referral_names_its_services_own_category() -> None:
    categories = {s.id: s.category for s in FIXED}
    for r in REFERRALS:
        assert r.to_service_id in categories, r.to_service_id
        assert r.category is categories[r.to_service_id], r
        assert isinstance(r.category, Category)
