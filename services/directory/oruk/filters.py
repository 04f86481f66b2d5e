"""The Open Referral UK profile's service filters (`minimum_age`, `maximum_age`, `day`,
`start_time`, `end_time` on `/services` and `/service_at_locations`), with the meaning the
profile's OpenAPI gives them:

- minimum_age: services whose minimum age is at least the value;
- maximum_age: services whose maximum age is at most the value;
- day: services with a schedule on that day (its `byday` holds it; `2MO` counts as MO);
- start_time: services with a schedule that opens at or after the value;
- end_time: services with a schedule that closes at or before the value.

A service without the field compared (no minimum age, no schedule, a schedule without hours)
does not match. Given together, `day`, `start_time` and `end_time` must hold of one schedule.
A value the profile gives no meaning is refused (400), never ignored.

Pure: `parse_filters` checks the query's strings, `conditions` turns them into SQL over the
`service` table aliased `s`, and `matches` is the same rule in Python (its tests state it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time
from typing import Any

from shared.errors import WaymarkError

DAYS = {
    "MO": "MONDAY",
    "TU": "TUESDAY",
    "WE": "WEDNESDAY",
    "TH": "THURSDAY",
    "FR": "FRIDAY",
    "SA": "SATURDAY",
    "SU": "SUNDAY",
}
_BY_NAME = {name: code for code, name in DAYS.items()}
_AGE = re.compile(r"^[0-9]{1,3}(?:\.[0-9]{1,2})?$")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")
MAX_AGE = 150
#: the leading HH:MM[:SS] of a stored opens_at/closes_at (which may carry an offset)
_SQL_CLOCK = "'^[0-9]{2}:[0-9]{2}(?::[0-9]{2})?'"


class InvalidFilter(WaymarkError):
    status, title, slug = 400, "Invalid filter", "invalid-filter"


@dataclass(frozen=True)
class Filters:
    minimum_age: float | None = None
    maximum_age: float | None = None
    day: str | None = None
    start_time: time | None = None
    end_time: time | None = None

    @property
    def on_schedule(self) -> bool:
        return any(v is not None for v in (self.day, self.start_time, self.end_time))


def _age(name: str, raw: str | None) -> float | None:
    if raw is None:
        return None
    value = raw.strip()
    if not _AGE.fullmatch(value) or float(value) > MAX_AGE:
        raise InvalidFilter(f"{name} is an age in years, a number from 0 to {MAX_AGE}: {raw!r}")
    number = float(value)
    return int(number) if number.is_integer() else number


def _day(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = raw.strip().upper()
    if value in DAYS:
        return value
    if value in _BY_NAME:
        return _BY_NAME[value]
    raise InvalidFilter(
        f"day is one day: MO, TU, WE, TH, FR, SA or SU (or its English name): {raw!r}"
    )


def _time(name: str, raw: str | None) -> time | None:
    if raw is None:
        return None
    m = _TIME.fullmatch(raw.strip())
    if m is None:
        raise InvalidFilter(f"{name} is a time of day, HH:MM or HH:MM:SS (24-hour): {raw!r}")
    return time(int(m[1]), int(m[2]), int(m[3] or 0))


def parse_filters(
    *,
    minimum_age: str | None,
    maximum_age: str | None,
    day: str | None,
    start_time: str | None,
    end_time: str | None,
) -> Filters:
    f = Filters(
        minimum_age=_age("minimum_age", minimum_age),
        maximum_age=_age("maximum_age", maximum_age),
        day=_day(day),
        start_time=_time("start_time", start_time),
        end_time=_time("end_time", end_time),
    )
    if f.minimum_age is not None and f.maximum_age is not None and f.minimum_age > f.maximum_age:
        raise InvalidFilter("minimum_age is above maximum_age: no service could match")
    if f.start_time is not None and f.end_time is not None and f.start_time > f.end_time:
        raise InvalidFilter("start_time is after end_time: no schedule could match")
    return f


def conditions(f: Filters) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions on `service s` and their bound parameters."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.minimum_age is not None:
        params["oruk_min_age"] = f.minimum_age
        where.append("s.minimum_age >= CAST(:oruk_min_age AS NUMERIC)")
    if f.maximum_age is not None:
        params["oruk_max_age"] = f.maximum_age
        where.append("s.maximum_age <= CAST(:oruk_max_age AS NUMERIC)")
    if f.on_schedule:
        on = []
        if f.day is not None:
            params["oruk_day"] = f.day
            on.append(
                "EXISTS (SELECT 1 FROM unnest(string_to_array(upper(coalesce("
                "sch.v->>'byday', '')), ',')) AS d(x) WHERE regexp_replace(btrim(d.x), "
                "'^[+-]?[0-9]*', '') = CAST(:oruk_day AS TEXT))"
            )
        if f.start_time is not None:
            params["oruk_start"] = f.start_time
            on.append(
                f"CAST(substring(sch.v->>'opens_at' FROM {_SQL_CLOCK}) AS TIME) "
                ">= CAST(:oruk_start AS TIME)"
            )
        if f.end_time is not None:
            params["oruk_end"] = f.end_time
            on.append(
                f"CAST(substring(sch.v->>'closes_at' FROM {_SQL_CLOCK}) AS TIME) "
                "<= CAST(:oruk_end AS TIME)"
            )
        where.append(
            "EXISTS (SELECT 1 FROM jsonb_array_elements(s.schedules) AS sch(v) WHERE "
            + " AND ".join(on)
            + ")"
        )
    return where, params


def _clock(value: Any) -> time | None:
    m = re.match(r"^([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?", value or "")
    return time(int(m[1]), int(m[2]), int(m[3] or 0)) if m else None


def _on(f: Filters, schedule: dict[str, Any]) -> bool:
    if f.day is not None:
        days = {
            re.sub(r"^[+-]?[0-9]*", "", d.strip())
            for d in (schedule.get("byday") or "").upper().split(",")
        }
        if f.day not in days:
            return False
    opens, closes = _clock(schedule.get("opens_at")), _clock(schedule.get("closes_at"))
    if f.start_time is not None and (opens is None or opens < f.start_time):
        return False
    return not (f.end_time is not None and (closes is None or closes > f.end_time))


def matches(f: Filters, service: dict[str, Any]) -> bool:
    """Whether a service (its `minimum_age`, `maximum_age`, `schedules`) passes `f`."""
    low, high = service.get("minimum_age"), service.get("maximum_age")
    if f.minimum_age is not None and (low is None or low < f.minimum_age):
        return False
    if f.maximum_age is not None and (high is None or high > f.maximum_age):
        return False
    return not f.on_schedule or any(_on(f, s) for s in service.get("schedules") or [])
