"""Histories as a busy worker can record them: a workflow task that ends right after a local
activity's marker, with the commands that followed it recorded in the next workflow task.

A worker records a local activity's marker as soon as the activity resolves; when the task has
to be completed then (a heartbeat of a long task, a worker under load), the workflow code that
runs after the activity completes in a new workflow task. The 100,000-journey run recorded
exactly that (HAZ-100, bench/results/journey-nondeterminism-2026-12-04.json). Workflow code
must replay either shape, so the replay tests split recorded histories this way.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from temporalio.client import WorkflowHistory

LOCAL_ACTIVITY_MARKER = "core_local_activity"
_WFT = "EVENT_TYPE_WORKFLOW_TASK_"


def _is_local_activity_marker(event: dict[str, Any]) -> bool:
    attrs = event.get("markerRecordedEventAttributes") or {}
    return attrs.get("markerName") == LOCAL_ACTIVITY_MARKER


def split_after_local_activities(history: WorkflowHistory) -> tuple[WorkflowHistory, int]:
    """The history with a workflow task boundary after every local activity marker that is
    followed by more commands of the same workflow task; and how many boundaries were added."""
    events = history.to_json_dict()["events"]
    out: list[dict[str, Any]] = []
    renumber: dict[int, int] = {}
    completed_in: int | None = None  # the (new) id of the workflow task completion in force
    splits = 0
    for i, event in enumerate(events):
        event = copy.deepcopy(event)
        old_id = int(event["eventId"])
        renumber[old_id] = len(out) + 1
        event["eventId"] = str(len(out) + 1)
        _renumber_references(event, renumber)
        if event["eventType"] == _WFT + "COMPLETED":
            completed_in = len(out) + 1
        elif event["eventType"].startswith(_WFT):
            completed_in = None
        elif completed_in is not None and "workflowTaskCompletedEventId" in _attributes(event):
            _attributes(event)["workflowTaskCompletedEventId"] = str(completed_in)
        out.append(event)
        following = events[i + 1] if i + 1 < len(events) else None
        if (
            _is_local_activity_marker(event)
            and completed_in is not None
            and following is not None
            and not following["eventType"].startswith(_WFT)
            and "workflowTaskCompletedEventId" in _attributes(following)
        ):
            completed_in = _append_task(out, event)
            splits += 1
    return WorkflowHistory.from_json(history.workflow_id, {"events": out}), splits


def _attributes(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("Attributes") and isinstance(value, dict):
            return value
    return {}


def _renumber_references(event: dict[str, Any], renumber: dict[int, int]) -> None:
    attrs = _attributes(event)
    for key, value in list(attrs.items()):
        if key.endswith("EventId") and str(value).isdigit() and int(value) in renumber:
            attrs[key] = str(renumber[int(value)])


def _append_task(out: list[dict[str, Any]], after: dict[str, Any]) -> int:
    """Schedule, start and complete a workflow task after `after`; the completion's id."""
    at = after.get("eventTime")
    scheduled = len(out) + 1
    task_queue = {"name": "split", "kind": "TASK_QUEUE_KIND_NORMAL"}
    for event_type, attrs in (
        ("SCHEDULED", {"taskQueue": task_queue, "startToCloseTimeout": "10s", "attempt": 1}),
        ("STARTED", {"scheduledEventId": str(scheduled), "requestId": "split"}),
        ("COMPLETED", {"scheduledEventId": str(scheduled), "startedEventId": str(scheduled + 1)}),
    ):
        event = {
            "eventId": str(len(out) + 1),
            "eventType": _WFT + event_type,
            "workflowTask" + event_type.title() + "EventAttributes": attrs,
        }
        if at:
            event["eventTime"] = at
        out.append(event)
    return len(out)


def patch_ids(history: WorkflowHistory) -> list[str]:
    """The patches a history recorded, in order."""
    ids = []
    for event in history.events:
        attrs = event.marker_recorded_event_attributes
        if attrs.marker_name == "core_patch":
            ids.append(json.loads(attrs.details["patch-data"].payloads[0].data)["id"])
    return ids
