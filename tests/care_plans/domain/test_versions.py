"""Differences between two plan versions: services/care_plans/domain/versions.py."""

from __future__ import annotations

from services.care_plans.domain import versions


class TestDiff:
    def test_changed_added_and_removed_fields_by_json_pointer(self) -> None:
        before = {"a": 1, "goals": [{"what": "walk"}], "x/y": "old", "gone": True}
        after = {"a": 2, "goals": [{"what": "walk"}, {"what": "swim"}], "x/y": "new"}
        assert versions.diff(before, after) == [
            {"op": "changed", "path": "/a", "before": 1, "after": 2},
            {"op": "added", "path": "/goals/1", "before": None, "after": {"what": "swim"}},
            {"op": "removed", "path": "/gone", "before": True, "after": None},
            {"op": "changed", "path": "/x~1y", "before": "old", "after": "new"},
        ]

    def test_identical_documents_have_no_differences(self) -> None:
        doc = {"a": [1, {"b": None}]}
        assert versions.diff(doc, doc) == []

    def test_a_type_change_is_a_change(self) -> None:
        assert versions.diff({"a": 1}, {"a": True}) == [
            {"op": "changed", "path": "/a", "before": 1, "after": True}
        ]
