"""People's messages from Jinja2 templates: one per (message, form, language).

Files live in `templates/<language>/<name>.<variant>.j2`, each with a `subject` and a `body`
block and optionally an `sms` block (a short text; the body otherwise). Text is rendered with
autoescape off (mail is text/plain) and StrictUndefined: a template that uses a value the
message does not have is a permanent failure naming the value, never "None" in someone's
letterbox. An HTML part (autoescape on) carries the same words in larger type for easy read
and large print.

Large print is the plain words in large type, so it needs no files of its own (a
`<name>.large_print.j2` is used if one exists). When the person's language or form has no
template the English or plain one is used, and the fallback is said in the delivery log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    UndefinedError,
)

from services.notifications.messages.domain import Variant

TEMPLATE_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
#: type sizes of the HTML part: large print 18pt (RNIB's clear and large print guidance);
#: easy read at least 14pt (Mencap, NHS England's easy read guidance)
LARGE_TYPE_PX = 24
EASY_READ_PX = 19

LANGUAGE_NAMES = {
    "en": "English",
    "cy": "Welsh",
    "pl": "Polish",
    "ro": "Romanian",
    "pa": "Panjabi",
    "ur": "Urdu",
    "pt": "Portuguese",
    "es": "Spanish",
    "ar": "Arabic",
    "bn": "Bengali",
    "gu": "Gujarati",
    "it": "Italian",
    "fr": "French",
    "zh": "Chinese",
    "lt": "Lithuanian",
    "ta": "Tamil",
    "tr": "Turkish",
    "so": "Somali",
    "fa": "Farsi",
    "uk": "Ukrainian",
}


class TemplateFailure(Exception):
    """Rendering cannot succeed however often it is tried (a permanent failure)."""


class MissingVariable(TemplateFailure):
    def __init__(self, variable: str, template: str) -> None:
        super().__init__(
            f"template variable '{variable}' is missing: {template} needs it and "
            "this message does not have it"
        )
        self.variable = variable


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    sms: str
    html: str | None
    language: str  # the language actually used
    variant: str  # the form actually used
    note: str | None  # a fallback, said in the delivery log


_UNDEFINED = re.compile(r"'([^']+)' is undefined")
_BLANK_RUNS = re.compile(r"\n{3,}")


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


class Templates:
    def __init__(self, root: Path = TEMPLATE_DIR) -> None:
        self.root = root
        self.text_env = Environment(
            loader=FileSystemLoader(root),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.html_env = Environment(
            loader=FileSystemLoader(root), undefined=StrictUndefined, autoescape=True
        )

    def _find(self, name: str, variant: str, language: str) -> tuple[Template, str, str, list[str]]:
        """The template to use and why it may not be the one asked for."""
        notes: list[str] = []
        languages = [language] if language == DEFAULT_LANGUAGE else [language, DEFAULT_LANGUAGE]
        variants = [variant] if variant == Variant.PLAIN else [variant, Variant.PLAIN.value]
        for lang in languages:
            for v in variants:
                try:
                    tpl = self.text_env.get_template(f"{lang}/{name}.{v}.j2")
                except TemplateNotFound:
                    continue
                if lang != language:
                    notes.append(
                        f"no {LANGUAGE_NAMES.get(language, language)} ({language}) "
                        f"template for {name}; sent in English"
                    )
                if v != variant and variant != Variant.LARGE_PRINT:
                    notes.append(
                        f"no {variant.replace('_', ' ')} version of {name} in {lang}; "
                        "sent the plain words"
                    )
                return tpl, lang, v, notes
        raise TemplateFailure(f"no template named {name!r}")

    def render(
        self,
        name: str,
        *,
        variant: str,
        language: str,
        values: Mapping[str, Any],
        large_type: bool = False,
    ) -> Rendered:
        """Subject, text body, SMS text and (easy read, large print) an HTML part.

        Raises MissingVariable (naming it) or TemplateFailure; both are permanent."""
        if variant not in {v.value for v in Variant}:
            raise TemplateFailure(f"unknown template variant {variant!r}")
        tpl, lang, used_variant, notes = self._find(name, variant, language)
        label = f"{name} ({used_variant}, {lang})"
        try:
            ctx = tpl.new_context(dict(values))
            subject = " ".join("".join(tpl.blocks["subject"](ctx)).split())
            body = _tidy("".join(tpl.blocks["body"](ctx)))
            # a text message without its own words is the body's first paragraph
            sms = (
                _tidy("".join(tpl.blocks["sms"](ctx)))
                if "sms" in tpl.blocks
                else body.split("\n\n")[0]
            )
        except UndefinedError as exc:
            m = _UNDEFINED.search(str(exc))
            raise MissingVariable(m.group(1) if m else str(exc), label) from None
        except KeyError as exc:
            raise TemplateFailure(f"{label} has no {exc} block") from None
        if not subject or not body:
            raise TemplateFailure(f"{label} rendered an empty subject or body")
        # large print keeps the asked-for form's name: the same words, in large type
        shown = variant if variant == Variant.LARGE_PRINT else used_variant
        html = None
        if shown == Variant.LARGE_PRINT or large_type or shown == Variant.EASY_READ:
            px = LARGE_TYPE_PX if (shown == Variant.LARGE_PRINT or large_type) else EASY_READ_PX
            html = self.html(subject=subject, body=body, language=lang, font_px=px)
        return Rendered(
            subject=subject,
            text=body,
            sms=sms,
            html=html,
            language=lang,
            variant=shown,
            note="; ".join(notes) or None,
        )

    def html(self, *, subject: str, body: str, language: str, font_px: int) -> str:
        """The text's words as HTML (escaped), one paragraph per block of lines."""
        paragraphs = [p.splitlines() for p in body.split("\n\n") if p.strip()]
        return self.html_env.get_template("_layout.html.j2").render(
            subject=subject, paragraphs=paragraphs, language=language, font_px=font_px
        )
