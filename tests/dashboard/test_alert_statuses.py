"""The inbox pages with the alerts of issue #15: a pathway prompt reads as one, and a
progressing alert (its cause has gone) leaves the worklist but has a filter of its own, a
clear state and the actions a coordinator may still take."""

from __future__ import annotations

import re
from datetime import datetime

from services.notifications.effects import apply_event
from shared.db import unit_of_work
from shared.settings import Settings
from tests.dashboard.page_support import alert_url, button_names, row_of, sign_in
from tests.notifications.alert_support import (
    alert_event,
    coordinator,
    new_patient,
    put_alert,
    rows,
)

ROWS = re.compile(r'<tr data-alert-id="([^"]+)"')


async def _alerts(s: Settings, sessions: object) -> tuple[str, dict[str, str]]:
    patient = new_patient()
    ids = {
        "pathway": await put_alert(
            s,
            sessions,
            patient_id=patient,  # type: ignore[arg-type]
            kind="pathway",
            rule="pathway.start_back_high",
            severity="high",
        ),
        "progressing": await put_alert(
            s,
            sessions,
            patient_id=patient,  # type: ignore[arg-type]
            kind="looping",
            severity="high",
            status="progressing",
        ),
    }
    return patient, ids


class TestPathwayAndProgressing:
    async def test_a_pathway_prompt_is_labelled_and_filtered_by_its_kind(
        self, web, settings, sessions
    ):
        patient, ids = await _alerts(settings, sessions)
        await sign_in(web)
        page = await web.get(f"/dashboard/alerts?patient_id={patient}&kind=pathway")
        assert page.status_code == 200
        assert ROWS.findall(page.text) == [ids["pathway"]]
        row = row_of(page.text, ids["pathway"])
        assert "Pathway prompt: STarT Back high risk" in row
        assert '<label for="kind-pathway">Pathway prompt</label>' in page.text
        assert 'value="pathway" checked' in page.text

    async def test_a_progressing_alert_is_off_the_worklist_but_has_its_own_filter(
        self, web, settings, sessions
    ):
        patient, ids = await _alerts(settings, sessions)
        await sign_in(web)
        worklist = await web.get(f"/dashboard/alerts?patient_id={patient}")
        assert ROWS.findall(worklist.text) == [ids["pathway"]]
        assert "1 alert matches these filters" in worklist.text
        # the filter is a labelled checkbox whose meaning is read out with it
        assert (
            '<input type="checkbox" id="status-progressing" name="status" '
            'value="progressing" aria-describedby="status-progressing-hint">' in worklist.text
        )
        assert 'id="status-progressing-hint">The cause has gone' in worklist.text

        page = await web.get(f"/dashboard/alerts?patient_id={patient}&status=progressing")
        assert ROWS.findall(page.text) == [ids["progressing"]]
        row = row_of(page.text, ids["progressing"])
        assert 'data-status="progressing"' in row
        assert '<span class="tag tag--status-progressing">progressing</span>' in row
        assert "The cause has gone" in row
        # a coordinator may still take it up or close it
        assert button_names(row) == ["Acknowledge", "Assign to me", "Snooze", "Resolve"]

    async def test_the_detail_page_says_progressing_and_confirms_an_action_once(
        self, web, settings, sessions
    ):
        patient, ids = await _alerts(settings, sessions)
        alert_id = ids["progressing"]
        await sign_in(web)
        page = await web.get(alert_url(alert_id))
        assert page.status_code == 200
        assert "tag--status-progressing" in page.text and "The cause has gone" in page.text

        me = "coord-detail"
        r = await web.post(
            f"/alerts/{alert_id}/acknowledge", headers=coordinator(settings, user=me)
        )
        assert r.status_code == 200, r.text
        waiting = await web.get(alert_url(alert_id))
        assert waiting.text.count("the journey has not yet confirmed it") == 1

        # the journey's echo: the acknowledgement at the time it was taken, the next seq
        [out] = await rows(sessions, "SELECT payload FROM outbox WHERE key = :k", k=patient)
        event, data = alert_event(
            patient_id=patient,
            alert_id=alert_id,
            change="acknowledged",
            kind="looping",
            severity="high",
            status="acknowledged",
            assignee=me,
            seq=2,
            at=datetime.fromisoformat(out.payload["time"]),
        )
        async with unit_of_work(sessions) as session:
            await apply_event(session=session, event=event, data=data, settings=settings)
        done = await web.get(alert_url(alert_id))
        assert "the journey has not yet confirmed it" not in done.text
        history = re.search(r'<table class="table" id="history">.*?</table>', done.text, re.S)
        assert history
        changes = re.findall(r"<tr><td>[^<]*</td><td>([a-z]+)</td>", history.group(0))
        assert changes == ["raised", "acknowledged"]  # one row per action
