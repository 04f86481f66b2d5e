"""The care plan rules: pure and synchronous, no I/O.

Screening is scored exactly as the instruments' authors publish it. Every threshold and band
edge lives in `INSTRUMENTS` / `RELIABLE_CHANGE` below (one place), each with its source:

- Keele STarT Back Screening Tool: Hill JC, Dunn KM, Lewis M, et al. "A primary care back pain
  screening tool: identifying patient subgroups for initial treatment". Arthritis Rheum
  2008;59(5):632-641, and the Keele University STarT Back scoring guide. Items 1-8 score 1 for
  "agree"; item 9 scores 1 only for "very much" or "extremely". Total 0-9; the distress
  (psychosocial) subscale is items 5-9 (0-5). Total 0-3: low risk; total >= 4 and subscale
  <= 3: medium; subscale >= 4: high.
- PHQ-9: Kroenke K, Spitzer RL, Williams JBW. "The PHQ-9: validity of a brief depression
  severity measure". J Gen Intern Med 2001;16(9):606-613. Items 0-3, total 0-27; 0-4 minimal,
  5-9 mild, 10-14 moderate, 15-19 moderately severe, 20-27 severe. Item 9 (thoughts of being
  better off dead or of self-harm) above 0 is a safety flag whatever the total.
- GAD-7: Spitzer RL, Kroenke K, Williams JBW, Lowe B. "A brief measure for assessing
  generalized anxiety disorder: the GAD-7". Arch Intern Med 2006;166(10):1092-1097. Items 0-3,
  total 0-21; 0-4 minimal, 5-9 mild, 10-14 moderate, 15-21 severe.
- Reliable change: PHQ-9 change >= 6, GAD-7 change >= 4, as NHS Talking Therapies (IAPT)
  uses them (NHS Talking Therapies Manual, appendix on reliable improvement/deterioration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.access import (
    Capability,
    Principal,
    Relationship,
    granting_relationship,
    may_use,
    permits,
    roles_phrase,
)
from shared.errors import Forbidden, NotFound, ValidationFailed
from shared.vocabulary import HIGH_RISK_BANDS, Instrument


@dataclass(frozen=True)
class Band:
    code: str  # snake_case band code, as events and the API carry it
    low: int  # inclusive
    high: int  # inclusive


@dataclass(frozen=True)
class InstrumentSpec:
    instrument: Instrument
    title: str
    items: tuple[str, ...]  # the item texts, item n at index n-1
    #: answer code -> (display, score) per item number; items not listed use `default_answers`
    default_answers: tuple[tuple[str, str, int], ...]
    item_answers: Mapping[int, tuple[tuple[str, str, int], ...]]
    bands: tuple[Band, ...]  # by total (STarT Back: see score_start_back)
    high_risk_bands: frozenset[str]
    source: str

    @property
    def item_count(self) -> int:
        return len(self.items)

    def answers_for(self, item: int) -> tuple[tuple[str, str, int], ...]:
        return self.item_answers.get(item, self.default_answers)

    @property
    def max_total(self) -> int:
        return sum(max(s for _, _, s in self.answers_for(i)) for i in range(1, self.item_count + 1))


# --- the configuration: every answer score, band edge and threshold, with its source ---------

_FREQUENCY = (
    ("0", "Not at all", 0),
    ("1", "Several days", 1),
    ("2", "More than half the days", 2),
    ("3", "Nearly every day", 3),
)
_AGREE = (("disagree", "Disagree", 0), ("agree", "Agree", 1))
# STarT Back item 9: only "very much" and "extremely" score (Keele scoring guide)
_BOTHERSOME = (
    ("not_at_all", "Not at all", 0),
    ("slightly", "Slightly", 0),
    ("moderately", "Moderately", 0),
    ("very_much", "Very much", 1),
    ("extremely", "Extremely", 1),
)

START_BACK_DISTRESS_ITEMS = (5, 6, 7, 8, 9)  # Hill et al. 2008: the psychosocial subscale
START_BACK_LOW_MAX_TOTAL = 3  # total 0-3: low risk
START_BACK_HIGH_MIN_SUBSCALE = 4  # subscale >= 4: high risk (else total >= 4: medium)
PHQ9_SAFETY_ITEM = 9

INSTRUMENTS: dict[Instrument, InstrumentSpec] = {
    Instrument.START_BACK: InstrumentSpec(
        instrument=Instrument.START_BACK,
        title="Keele STarT Back Screening Tool",
        items=(
            "My back pain has spread down my leg(s) at some time in the last 2 weeks",
            "I have had pain in the shoulder or neck at some time in the last 2 weeks",
            "I have only walked short distances because of my back pain",
            "In the last 2 weeks, I have dressed more slowly than usual because of back pain",
            "It's not really safe for a person with a condition like mine to be physically active",
            "Worrying thoughts have been going through my mind a lot of the time",
            "I feel that my back pain is terrible and it's never going to get any better",
            "In general I have not enjoyed all the things I used to enjoy",
            "Overall, how bothersome has your back pain been in the last 2 weeks?",
        ),
        default_answers=_AGREE,
        item_answers={9: _BOTHERSOME},
        bands=(),  # banded on total and subscale together: see start_back_band
        high_risk_bands=HIGH_RISK_BANDS[Instrument.START_BACK],
        source="Hill et al. 2008, Arthritis Rheum 59(5):632-641; Keele University STarT Back "
        "scoring guide",
    ),
    Instrument.PHQ9: InstrumentSpec(
        instrument=Instrument.PHQ9,
        title="Patient Health Questionnaire (PHQ-9)",
        items=(
            "Little interest or pleasure in doing things",
            "Feeling down, depressed, or hopeless",
            "Trouble falling or staying asleep, or sleeping too much",
            "Feeling tired or having little energy",
            "Poor appetite or overeating",
            "Feeling bad about yourself - or that you are a failure or have let yourself or "
            "your family down",
            "Trouble concentrating on things, such as reading the newspaper or watching television",
            "Moving or speaking so slowly that other people could have noticed? Or the "
            "opposite - being so fidgety or restless that you have been moving around a lot "
            "more than usual",
            "Thoughts that you would be better off dead or of hurting yourself in some way",
        ),
        default_answers=_FREQUENCY,
        item_answers={},
        bands=(
            Band("minimal", 0, 4),
            Band("mild", 5, 9),
            Band("moderate", 10, 14),
            Band("moderately_severe", 15, 19),
            Band("severe", 20, 27),
        ),
        high_risk_bands=HIGH_RISK_BANDS[Instrument.PHQ9],
        source="Kroenke, Spitzer & Williams 2001, J Gen Intern Med 16(9):606-613",
    ),
    Instrument.GAD7: InstrumentSpec(
        instrument=Instrument.GAD7,
        title="Generalised Anxiety Disorder Assessment (GAD-7)",
        items=(
            "Feeling nervous, anxious or on edge",
            "Not being able to stop or control worrying",
            "Worrying too much about different things",
            "Trouble relaxing",
            "Being so restless that it is hard to sit still",
            "Becoming easily annoyed or irritable",
            "Feeling afraid as if something awful might happen",
        ),
        default_answers=_FREQUENCY,
        item_answers={},
        bands=(
            Band("minimal", 0, 4),
            Band("mild", 5, 9),
            Band("moderate", 10, 14),
            Band("severe", 15, 21),
        ),
        high_risk_bands=HIGH_RISK_BANDS[Instrument.GAD7],
        source="Spitzer, Kroenke, Williams & Lowe 2006, Arch Intern Med 166(10):1092-1097",
    ),
}

#: reliable change (NHS Talking Therapies): a change of at least this much between two scores
#: of the same person is more than measurement error. STarT Back has no such threshold.
RELIABLE_CHANGE: dict[Instrument, int] = {Instrument.PHQ9: 6, Instrument.GAD7: 4}


def instrument_from(value: str) -> Instrument:
    try:
        return Instrument(value)
    except ValueError:
        raise ValidationFailed(
            f"unknown instrument {value!r}; one of {', '.join(i.value for i in Instrument)}"
        ) from None


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    instrument: Instrument
    total: int
    band: str
    subscale: int | None  # STarT Back distress subscale (items 5-9)
    safety_flag: bool  # PHQ-9 item 9 above 0
    item_scores: tuple[int, ...]

    @property
    def high_risk(self) -> bool:
        return self.band in INSTRUMENTS[self.instrument].high_risk_bands


@dataclass(frozen=True)
class RiskFlag:
    reason: str  # phq9_item9 | high_risk_band
    severity: str  # urgent | high


def validate_answers(instrument: Instrument, answers: Mapping[str, Any]) -> dict[int, str]:
    """Every item answered, with an answer the instrument allows; nothing else.

    Answers are keyed by item number ("1".."n"); values are the answer codes (PHQ-9/GAD-7:
    0-3; STarT Back items 1-8: agree/disagree, item 9: not_at_all .. extremely).
    """
    spec = INSTRUMENTS[instrument]
    wanted = {str(i) for i in range(1, spec.item_count + 1)}
    unknown = sorted(set(answers) - wanted)
    if unknown:
        raise ValidationFailed(
            f"{instrument.value} has items 1-{spec.item_count}; "
            f"unknown item(s): {', '.join(unknown[:10])}"
        )
    missing = sorted(wanted - set(answers), key=int)
    if missing:
        raise ValidationFailed(
            f"{instrument.value}: every item must be answered; missing "
            f"item(s): {', '.join(missing)}"
        )
    out: dict[int, str] = {}
    for i in range(1, spec.item_count + 1):
        raw = answers[str(i)]
        # booleans are ints in Python: True must not pass as the answer 1
        code = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else None
        allowed = [c for c, _, _ in spec.answers_for(i)]
        if code not in allowed:
            raise ValidationFailed(
                f"{instrument.value} item {i}: answer out of range; allowed: {', '.join(allowed)}",
                item=i,
            )
        out[i] = code
    return out


def score(instrument: Instrument, answers: Mapping[str, Any]) -> Score:
    spec = INSTRUMENTS[instrument]
    valid = validate_answers(instrument, answers)
    item_scores = tuple(
        next(s for c, _, s in spec.answers_for(i) if c == valid[i])
        for i in range(1, spec.item_count + 1)
    )
    total = sum(item_scores)
    if instrument is Instrument.START_BACK:
        subscale = sum(item_scores[i - 1] for i in START_BACK_DISTRESS_ITEMS)
        return Score(
            instrument, total, start_back_band(total, subscale), subscale, False, item_scores
        )
    safety = instrument is Instrument.PHQ9 and item_scores[PHQ9_SAFETY_ITEM - 1] > 0
    return Score(instrument, total, band_for(instrument, total), None, safety, item_scores)


def start_back_band(total: int, subscale: int) -> str:
    """Keele STarT Back: subscale >= 4 is high whatever the total; total <= 3 is low;
    otherwise (total >= 4, subscale <= 3) medium."""
    if not 0 <= subscale <= len(START_BACK_DISTRESS_ITEMS) or not subscale <= total <= 9:
        raise ValueError(f"impossible STarT Back scores: total {total}, subscale {subscale}")
    if subscale >= START_BACK_HIGH_MIN_SUBSCALE:
        return "high"
    if total <= START_BACK_LOW_MAX_TOTAL:
        return "low"
    return "medium"


def band_for(instrument: Instrument, total: int) -> str:
    """The severity band of a PHQ-9 or GAD-7 total."""
    if instrument is Instrument.START_BACK:
        raise ValueError("STarT Back bands need the subscale: use start_back_band")
    for band in INSTRUMENTS[instrument].bands:
        if band.low <= total <= band.high:
            return band.code
    raise ValueError(f"{instrument.value} total {total} is out of range")


def risk_flags(result: Score) -> list[RiskFlag]:
    """What must raise an alert at once: the PHQ-9 item 9 safety flag (urgent), a high-risk
    band (PHQ-9 severe, GAD-7 severe, STarT Back high)."""
    flags = []
    if result.safety_flag:
        flags.append(RiskFlag("phq9_item9", "urgent"))
    if result.high_risk:
        flags.append(RiskFlag("high_risk_band", "high"))
    return flags


@dataclass(frozen=True)
class TrendPoint:
    total: int
    band: str
    change: int | None  # from the previous score; None for the first
    # reliable_improvement | reliable_deterioration | no_reliable_change
    reliable_change: str | None


def reliable_change(instrument: Instrument, previous: int, current: int) -> str | None:
    """Compare two totals of the same person (lower is better on all three instruments)."""
    threshold = RELIABLE_CHANGE.get(instrument)
    if threshold is None:
        return None
    if previous - current >= threshold:
        return "reliable_improvement"
    if current - previous >= threshold:
        return "reliable_deterioration"
    return "no_reliable_change"


def trend(instrument: Instrument, totals_and_bands: Sequence[tuple[int, str]]) -> list[TrendPoint]:
    """Oldest first: each score with its change from the one before."""
    points: list[TrendPoint] = []
    for i, (total, band) in enumerate(totals_and_bands):
        if i == 0:
            points.append(TrendPoint(total, band, None, None))
            continue
        prev = totals_and_bands[i - 1][0]
        points.append(
            TrendPoint(total, band, total - prev, reliable_change(instrument, prev, total))
        )
    return points


def direction(points: Sequence[TrendPoint]) -> str:
    """The overall trend first to last: improving, worsening, stable, or not_enough_data."""
    if len(points) < 2:
        return "not_enough_data"
    delta = points[-1].total - points[0].total
    return "improving" if delta < 0 else "worsening" if delta > 0 else "stable"


# --- versions ---------------------------------------------------------------------------------


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level differences between two plan documents, as JSON Pointer paths (RFC 6901):
    each change is {op: added|removed|changed, path, before, after}."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after)):
            p = f"{path}/{_escape(str(key))}"
            if key not in before:
                out.append({"op": "added", "path": p, "before": None, "after": after[key]})
            elif key not in after:
                out.append({"op": "removed", "path": p, "before": before[key], "after": None})
            else:
                out.extend(diff(before[key], after[key], p))
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i in range(max(len(before), len(after))):
            p = f"{path}/{i}"
            if i >= len(before):
                out.append({"op": "added", "path": p, "before": None, "after": after[i]})
            elif i >= len(after):
                out.append({"op": "removed", "path": p, "before": before[i], "after": None})
            else:
                out.extend(diff(before[i], after[i], p))
        return out
    if before == after and type(before) is type(after):
        return []
    return [{"op": "changed", "path": path or "/", "before": before, "after": after}]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


# --- access -----------------------------------------------------------------------------------
# One role table for every service (shared/access.py); here, the relationships a care plan
# service can show between a caller and a person, and what the answer is when there is none.


@dataclass(frozen=True)
class PersonFacts:
    """What the service holds about a person, as it bears on one caller."""

    referral_with_org: bool  # a referral from or to the caller's organisation
    registered_practice: str | None  # the person's GP practice (ODS), from referral events
    known: bool  # the person has a referral or a plan in this deployment
    ics: str  # the ICS this deployment serves (the person's ICS)


@dataclass(frozen=True)
class PlanFacts:
    holder_org: str
    consented_orgs: Sequence[str]
    ics: str
    break_glass: bool = False  # the caller holds an unexpired break-glass grant on it


def relationships(
    principal: Principal, person: PersonFacts, plan: PlanFacts | None = None
) -> set[Relationship]:
    rels: set[Relationship] = set()
    if person.referral_with_org:
        rels.add(Relationship.REFERRAL)
    if person.registered_practice and person.registered_practice == principal.org:
        rels.add(Relationship.REGISTERED_GP)
    ics = plan.ics if plan is not None else person.ics
    if (person.known or plan is not None) and principal.ics and principal.ics == ics:
        rels.add(Relationship.ICS_COORDINATION)
    if plan is not None:
        if principal.org == plan.holder_org:
            rels.add(Relationship.PLAN_HOLDER)
        if principal.org in plan.consented_orgs:
            rels.add(Relationship.CONSENT)
        if plan.break_glass:
            rels.add(Relationship.BREAK_GLASS)
    return rels


#: relationships that make a caller part of the person's care team: a refusal may then say
#: why (consent); to anyone else a plan they may not see is indistinguishable from none
CARE_TEAM = frozenset(
    {
        Relationship.REFERRAL,
        Relationship.REGISTERED_GP,
        Relationship.CONSENT,
        Relationship.PLAN_HOLDER,
    }
)

_ACTION_WORDS = {
    Capability.CARE_PLAN_READ: "read",
    Capability.CARE_PLAN_WRITE: "change",
    Capability.CARE_PLAN_CREATE: "start",
    Capability.BREAK_GLASS: "break glass on",
}


def check_role(principal: Principal, capability: Capability) -> None:
    """Refuse a role that may never do this, before anything is looked up (so the answer
    says nothing about the person)."""
    if not may_use(principal, capability):
        raise Forbidden(
            f"to {_ACTION_WORDS[capability]} a care plan needs one of the roles: "
            f"{roles_phrase(capability)}",
            reason="role",
        )


def check_plan_access(
    principal: Principal, capability: Capability, rels: set[Relationship], *, plan_id: str
) -> Relationship:
    """The relationship that allows the caller `capability` on an existing plan. Without
    one: a care-team member hears why (403); anyone else hears exactly what an unknown id
    gets (404), so a probe cannot tell a plan exists."""
    check_role(principal, capability)
    granted = granting_relationship(principal, capability, rels)
    if granted is not None:
        return granted
    if rels & CARE_TEAM or (
        capability is Capability.CARE_PLAN_WRITE
        and permits(principal, Capability.CARE_PLAN_READ, rels)
    ):
        raise Forbidden(
            f"the person has not consented to organisation {principal.org} "
            f"using their care plan (ask them, or the plan's holder; in an "
            f"emergency a clinician may break glass)",
            reason="no_consent",
        )
    raise NotFound(not_found_message(plan_id))


def not_found_message(plan_id: str) -> str:
    return f"no care plan {plan_id}"


def check_may_create(principal: Principal, rels: set[Relationship]) -> Relationship:
    """Starting a person's plan needs a care relationship the service can show. The refusal
    is the same whether or not the person already has a plan."""
    check_role(principal, Capability.CARE_PLAN_CREATE)
    granted = granting_relationship(principal, Capability.CARE_PLAN_CREATE, rels)
    if granted is None:
        raise Forbidden(
            "you have no care relationship with this person that Waymark can "
            "show: a referral from or to your organisation, or their registered "
            "GP practice (coordinators: a person cared for in your ICS). A referral "
            "made a moment ago reaches the care plans service within seconds: try "
            "again shortly",
            reason="no_relationship",
        )
    return granted


#: why a clinician breaks glass (coded, for the information governance review); the free-text
#: reason is kept in the audit log only. After NHS Summary Care Record emergency access.
BREAK_GLASS_REASONS = {
    "emergency-care": "the person needs emergency care and cannot be asked",
    "patient-unable-to-consent": "the person lacks capacity to consent now",
    "safeguarding": "a safeguarding concern needs the plan now",
}


#: what the dispatcher uses to reach the person or a carer
CONTACT_FIELDS = ("email", "mobile")


def contact_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Which of the person's or carers' contact details differ between two plan contents."""
    out = []
    b_comm, a_comm = before.get("communication") or {}, after.get("communication") or {}
    out += [f"person's {f}" for f in CONTACT_FIELDS if b_comm.get(f) != a_comm.get(f)]
    b_carers = {c.get("id"): c.get("contact") for c in before.get("carers", [])}
    a_carers = {c.get("id"): c.get("contact") for c in after.get("carers", [])}
    out += [
        f"carer {cid}'s contact"
        for cid in sorted(set(b_carers) | set(a_carers), key=str)
        if b_carers.get(cid) != a_carers.get(cid)
    ]
    b_crisis, a_crisis = _crisis_contacts(before), _crisis_contacts(after)
    out += [
        f"crisis contact {cid}"
        for cid in sorted(set(b_crisis) | set(a_crisis), key=str)
        if b_crisis.get(cid) != a_crisis.get(cid)
    ]
    return out


def _crisis_contacts(content: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Who to call in a crisis, by id: the fields that decide who is reached."""
    contacts = (content.get("crisis") or {}).get("who_to_call") or []
    return {
        str(c.get("id") or crisis_contact_id(c.get("name"), c.get("phone"))): tuple(
            c.get(f) for f in CRISIS_CONTACT_FIELDS
        )
        for c in contacts
    }


def crisis_contact_id(name: Any, phone: Any) -> str:
    """The id of a crisis contact given without one: the same name and number give the same
    id in every version, so resending an unchanged plan changes no contact."""
    digest = hashlib.sha256(f"{name}\x00{phone}".encode()).hexdigest()[:12]
    return f"cc-{digest}"


#: what of a crisis contact is a contact detail (a change is audited as `contact-changed`)
CRISIS_CONTACT_FIELDS = ("name", "relationship", "role", "phone")
