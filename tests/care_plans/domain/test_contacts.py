"""The contact details a plan change is audited for: services/care_plans/domain/contacts.py."""

from __future__ import annotations

from services.care_plans.domain import contacts


class TestContactChanges:
    def test_the_persons_and_carers_contact_changes_are_named(self) -> None:
        before = {
            "communication": {"email": "a@example.org"},
            "carers": [{"id": "c1", "contact": "07700 900000"}],
        }
        after = {
            "communication": {"email": "b@example.org", "mobile": "07700 900001"},
            "carers": [
                {"id": "c1", "contact": "07700 900002"},
                {"id": "c2", "contact": "07700 900003"},
            ],
        }
        assert contacts.contact_changes(before, after) == [
            "person's email",
            "person's mobile",
            "carer c1's contact",
            "carer c2's contact",
        ]
        assert contacts.contact_changes(before, before) == []
