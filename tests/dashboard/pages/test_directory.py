"""The directory search (pages/directory.py): distances from a postcode, signposting links
back to an alert, an unknown postcode explained on the page, and the form for every role.

In-process against the notifications app and the real database; each test signs in with a
browser-like client of its own (its own cookie jar)."""

from __future__ import annotations

import re
from urllib.parse import quote

from tests.dashboard.page_support import sign_in


class TestDirectoryPage:
    async def test_a_search_near_a_postcode_lists_distances_and_signposting_links(
        self, web, directory, journey
    ):
        await sign_in(web)
        alert = quote(journey.alert_id, safe="")
        page = await web.get(
            f"/dashboard/directory?postcode={quote(directory)}&radius_km=50&alert={alert}"
        )
        assert page.status_code == 200, page.text
        assert re.search(r"\d+ services? found within 50 km of", page.text)
        assert re.search(r"[\d.]+ km away", page.text)
        assert f'href="/dashboard/alerts/{alert}?signpost=' in page.text
        assert "Signpost to " in page.text

    async def test_an_unknown_postcode_is_explained_on_the_page(self, web, directory):
        await sign_in(web)
        page = await web.get("/dashboard/directory?postcode=ZZ99%209ZZ")
        assert page.status_code == 422 and "There is a problem" in page.text
        assert "<h1>Find a service</h1>" in page.text

    async def test_the_empty_form_and_every_role(self, web, directory):
        for user in ("demo-casey", "demo-sam", "demo-gita"):
            await sign_in(web, user)
            page = await web.get("/dashboard/directory")
            assert page.status_code == 200 and "Search by words" in page.text
            assert '<label for="category">Kind of service</label>' in page.text
