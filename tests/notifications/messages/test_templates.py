"""Message templates (services/notifications/messages/templates.py and templates/): every message in
every form renders from the values a real send has, a missing value fails naming it, and a
language or form without a template falls back and says so."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.notifications.audience import MESSAGE_ROUTES
from services.notifications.messages import domain as m
from services.notifications.messages.templates import (
    TEMPLATE_DIR,
    MissingVariable,
    TemplateFailure,
    Templates,
)

TEMPLATES = sorted({r.template for routes in MESSAGE_ROUTES.values() for r in routes})
AUDIENCES = {
    r.template: sorted(
        {r.audience.value for rs in MESSAGE_ROUTES.values() for r in rs if r.template == t}
    )
    for routes in MESSAGE_ROUTES.values()
    for r in routes
    for t in [r.template]
}


def values(audience: str = "person", **extra: Any) -> dict[str, Any]:
    """What the sender has for a booked referral with advice, returned reason and a carer."""
    return m.template_values(
        context={
            "referral_id": "3f2a9c10-1111-2222-3333-444455556666",
            "from_org": "GP-A1",
            "to_org": "PAIN-1",
            "service_category": "pain_management_programme",
            "priority": "urgent",
            "state": "booked",
            "transition_reason": "refer-elsewhere",
            "appointment_at": "2026-03-03T14:30:00+00:00",
            "flag": "service_withdrawn",
        },
        referral={
            "given_name": "Alex",
            "from_practitioner": "Dr Okafor",
            "note": "Please try the <community> yoga class first & review.",
        },
        service_name="Wayford Pain Service",
        zone="Europe/London",
        extra={"audience": audience, "carer_name": "Sam", **extra},
    )


@pytest.fixture(scope="module")
def templates() -> Templates:
    return Templates()


class TestEveryMessageRenders:
    def test_every_routed_template_exists_in_english_plain_and_easy_read(self) -> None:
        for name in TEMPLATES:
            for variant in ("plain", "easy_read"):
                assert (TEMPLATE_DIR / "en" / f"{name}.{variant}.j2").is_file(), (name, variant)

    @pytest.mark.parametrize("name", TEMPLATES)
    @pytest.mark.parametrize("variant", ["plain", "easy_read", "large_print"])
    def test_renders_subject_body_and_sms(
        self, templates: Templates, name: str, variant: str
    ) -> None:
        for audience in AUDIENCES[name]:
            r = templates.render(name, variant=variant, language="en", values=values(audience))
            assert r.subject and "\n" not in r.subject
            assert r.text and r.sms
            assert "None" not in r.text and "{{" not in r.text and "{%" not in r.text
            assert r.language == "en" and r.variant == variant and r.note is None

    @pytest.mark.parametrize("name", ["appointment-booked", "appointment-missed", "discharged"])
    def test_person_messages_name_the_person_and_the_service(
        self, templates: Templates, name: str
    ) -> None:
        r = templates.render(name, variant="plain", language="en", values=values())
        assert "Alex" in r.text and "Wayford Pain Service" in r.text
        assert len(r.sms) <= 306  # two SMS fragments at most

    def test_the_booked_message_says_when_in_words(self, templates: Templates) -> None:
        r = templates.render("appointment-booked", variant="plain", language="en", values=values())
        assert "Tuesday 3 March 2026 at 2:30pm" in r.text
        assert "Tuesday 3 March 2026 at 2:30pm" in r.sms

    def test_carers_are_addressed_by_name_about_the_person(self, templates: Templates) -> None:
        r = templates.render(
            "appointment-booked", variant="plain", language="en", values=values("carers")
        )
        assert r.text.startswith("Dear Sam,")
        assert "Alex has an appointment" in r.text
        assert "Your appointment" not in r.subject

    def test_returned_and_rejected_carry_the_reason_and_the_advice(
        self, templates: Templates
    ) -> None:
        for name in ("referral-returned", "referral-rejected"):
            r = templates.render(name, variant="plain", language="en", values=values("referrer"))
            assert "another service would suit the person better" in r.text
            # text/plain: the advice exactly as written, nothing escaped
            assert "Please try the <community> yoga class first & review." in r.text

    def test_advice_is_optional_where_the_template_says_so(self, templates: Templates) -> None:
        v = values("referrer")
        del v["advice"], v["note"]
        r = templates.render("referral-returned", variant="plain", language="en", values=v)
        assert "Advice from the service" not in r.text


class TestEasyRead:
    """Mencap / NHS England easy read: short sentences, one idea per line, plain words."""

    @pytest.mark.parametrize("name", TEMPLATES)
    def test_short_sentences_one_idea_per_line(self, templates: Templates, name: str) -> None:
        for audience in AUDIENCES[name]:
            r = templates.render(name, variant="easy_read", language="en", values=values(audience))
            for line in r.text.splitlines():
                if not line or line.startswith("Please try the"):  # quoted advice
                    continue
                sentences = [s for s in re.split(r"(?<=[.?!])\s+", line) if s]
                assert len(sentences) == 1, line
                assert len(line.split()) <= 15, line

    def test_easy_read_is_shorter_and_plainer_than_plain(self, templates: Templates) -> None:
        plain = templates.render(
            "appointment-booked", variant="plain", language="en", values=values()
        )
        easy = templates.render(
            "appointment-booked", variant="easy_read", language="en", values=values()
        )
        assert easy.text != plain.text
        assert "Day: Tuesday 3 March 2026." in easy.text and "Time: 2:30pm." in easy.text
        words = easy.text.split()
        assert sum(len(w) for w in words) / len(words) < 5.5

    def test_easy_read_email_has_an_html_part_in_larger_type(self, templates: Templates) -> None:
        r = templates.render(
            "appointment-booked", variant="easy_read", language="en", values=values()
        )
        assert r.html is not None and "font-size:19px" in r.html


class TestLargePrint:
    def test_the_same_words_as_plain_with_an_html_part_in_large_type(
        self, templates: Templates
    ) -> None:
        plain = templates.render("discharged", variant="plain", language="en", values=values())
        large = templates.render(
            "discharged", variant="large_print", language="en", values=values()
        )
        assert large.text == plain.text and large.subject == plain.subject
        assert plain.html is None
        assert large.html is not None
        sizes = [int(x) for x in re.findall(r"font-size:(\d+)px", large.html)]
        assert sizes and min(sizes) >= 24
        assert 'lang="en"' in large.html

    def test_the_html_part_escapes_what_people_wrote(self, templates: Templates) -> None:
        r = templates.render(
            "referral-returned", variant="large_print", language="en", values=values("referrer")
        )
        assert r.html is not None
        assert "&lt;community&gt; yoga class first &amp; review." in r.html
        assert "<community>" not in r.html

    def test_easy_read_words_in_large_type_when_both_are_needed(self, templates: Templates) -> None:
        r = templates.render(
            "appointment-booked",
            variant="easy_read",
            language="en",
            values=values(),
            large_type=True,
        )
        assert r.variant == "easy_read" and r.html is not None and "font-size:24px" in r.html


class TestMissingVariable:
    def test_a_missing_value_is_a_permanent_failure_naming_it(self, templates: Templates) -> None:
        v = values()
        for k in ("appointment", "appointment_at", "appointment_date", "appointment_time"):
            v.pop(k)
        with pytest.raises(MissingVariable) as e:
            templates.render("appointment-booked", variant="plain", language="en", values=v)
        assert e.value.variable == "appointment"
        assert "'appointment'" in str(e.value) and "appointment-booked" in str(e.value)

    def test_in_easy_read_too(self, templates: Templates) -> None:
        v = values()
        v.pop("given_name")
        with pytest.raises(MissingVariable, match="given_name"):
            templates.render("discharged", variant="easy_read", language="en", values=v)

    def test_an_unknown_template_or_form_fails(self, templates: Templates) -> None:
        with pytest.raises(TemplateFailure, match="no template named"):
            templates.render("no-such-message", variant="plain", language="en", values=values())
        with pytest.raises(TemplateFailure, match="unknown template variant"):
            templates.render("discharged", variant="braille", language="en", values=values())


def _write(root: Path, rel: str, body: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


@pytest.fixture
def small(tmp_path: Path) -> Templates:
    (tmp_path / "_layout.html.j2").write_text((TEMPLATE_DIR / "_layout.html.j2").read_text())
    _write(
        tmp_path,
        "en/hello.plain.j2",
        "{% block subject %}Hello{% endblock %}{% block body %}Hello {{ name }}.{% endblock %}",
    )
    _write(
        tmp_path,
        "en/hello.easy_read.j2",
        "{% block subject %}Hi{% endblock %}{% block body %}Hi {{ name }}.{% endblock %}",
    )
    _write(
        tmp_path,
        "cy/hello.plain.j2",
        "{% block subject %}Helo{% endblock %}{% block body %}Helo {{ name }}.{% endblock %}",
    )
    return Templates(tmp_path)


class TestLanguageFallback:
    def test_the_persons_language_when_there_is_a_template(self, small: Templates) -> None:
        r = small.render("hello", variant="plain", language="cy", values={"name": "Alex"})
        assert (r.text, r.language, r.note) == ("Helo Alex.", "cy", None)

    def test_english_when_there_is_none_and_the_fallback_is_said(self, small: Templates) -> None:
        r = small.render("hello", variant="plain", language="pl", values={"name": "Alex"})
        assert r.text == "Hello Alex." and r.language == "en"
        assert r.note == "no Polish (pl) template for hello; sent in English"

    def test_a_form_missing_in_the_language_uses_its_plain_words_and_says_so(
        self, small: Templates
    ) -> None:
        r = small.render("hello", variant="easy_read", language="cy", values={"name": "Alex"})
        assert r.text == "Helo Alex." and r.variant == "plain"
        assert r.note is not None and "no easy read version of hello in cy" in r.note

    def test_large_print_needs_no_template_of_its_own(self, small: Templates) -> None:
        r = small.render("hello", variant="large_print", language="en", values={"name": "A"})
        assert r.variant == "large_print" and r.note is None and r.html is not None

    def test_the_sms_is_the_first_paragraph_when_a_template_has_no_sms_block(
        self, tmp_path: Path
    ) -> None:
        _write(
            tmp_path,
            "en/two.plain.j2",
            "{% block subject %}S{% endblock %}"
            "{% block body %}First line.\n\nSecond paragraph.{% endblock %}",
        )
        r = Templates(tmp_path).render("two", variant="plain", language="en", values={})
        assert r.sms == "First line."
