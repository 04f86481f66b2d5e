"""The field types every body of the directory API shares, Waymark's own and ORUK's: printable
text of bounded length, record ids and organisation codes, e-mail addresses, URLs, ages and
language codes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from services.directory import domain
from shared.identifiers import ORG_CODE_PATTERN

# printable text: no NUL or other control characters (tab and newlines allowed)
_CONTROL = set(chr(c) for c in range(32) if chr(c) not in "\t\n\r") | {"\x7f"}


def _clean(v: str) -> str:
    if any(ch in _CONTROL for ch in v):
        raise ValueError("must not contain control characters such as NUL")
    return v


Text = Annotated[str, StringConstraints(max_length=10000), AfterValidator(_clean)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=300), AfterValidator(_clean)]
#: a field the ORUK profile requires on every address: "" when the directory does not know it
#: (the feed never invents an address line, a city or a county); an import takes "" as unknown
ShortOrUnknown = Annotated[
    str,
    StringConstraints(max_length=300),
    AfterValidator(_clean),
    Field(description='"" when not known (the UK profile requires the field)'),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(_clean),
]
RecordId = Annotated[str, StringConstraints(pattern=domain.RECORD_ID)]
OrgCode = Annotated[str, StringConstraints(pattern=ORG_CODE_PATTERN)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,60}$")]
Url = Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")]
Clock = Annotated[str, StringConstraints(max_length=20)]
Age = Annotated[int, Field(ge=0, le=130)]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]


def unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("list each value once")
    return values
