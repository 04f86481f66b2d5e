"""The demo directory `waymark seed` loads: a synthetic community service directory for the
fictional "Wayford and Marsh" ICS, created and published through the directory's HTTP API
like any provider would.

Everything here is invented: organisations, services, phone numbers (Ofcom's drama range
01632 960xxx), places and postcodes (the synthetic WY area, see data/). Seeding twice changes
nothing: every request carries an Idempotency-Key derived from what it creates.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.directory.data.generate_postcodes import read as read_postcodes
from services.directory.domain import Category
from shared.auth import mint_token
from shared.settings import Settings


@dataclass(frozen=True)
class DemoProvider:
    code: str
    name: str
    description: str


@dataclass(frozen=True)
class DemoService:
    id: str
    org: str
    category: Category
    name: str
    description: str
    conditions: tuple[str, ...]
    delivery_modes: tuple[str, ...]
    postcodes: tuple[str, ...] = ()  # empty: online/phone only
    self_referral: bool = False
    waiting_weeks: int | None = None
    communication_support: tuple[str, ...] = ()
    schedules: tuple[dict[str, Any], ...] = ()
    cost: float = 0
    minimum_age: int | None = 18
    eligibility: str | None = None
    how_to_refer: str = "Refer through Waymark (GP, physiotherapist or link worker)."
    extra: dict[str, Any] = field(default_factory=dict)


PROVIDERS = [
    DemoProvider(
        "PAIN-RTH",
        "Wayford Royal Pain Service",
        "NHS specialist pain service of Wayford Royal Hospitals.",
    ),
    DemoProvider(
        "TT-TALK1",
        "Wayford and Marsh Talking Therapies",
        "NHS Talking Therapies, including pathways for long-term conditions.",
    ),
    DemoProvider("PHYSIO-1", "Marsh Community MSK", "Community musculoskeletal physiotherapy."),
    DemoProvider(
        "SP-LINK1",
        "Wayford Social Prescribing Network",
        "Link workers based in the area's GP practices.",
    ),
    DemoProvider("PEER-1", "Pain Peers Wayford", "A charity of people living with pain."),
    DemoProvider("MIND-WM", "Wayford and Marsh Mind", "Local mental health charity."),
    DemoProvider("SELFM-1", "Better Living Courses CIC", "Self-management education."),
    DemoProvider(
        "YOGA-1",
        "Healthy Backs Yoga Collective",
        "Yoga for healthy lower backs and gentle movement classes.",
    ),
    DemoProvider("LEISURE1", "Marsh Leisure Trust", "Leisure centres and exercise referral."),
    DemoProvider("WORK-1", "Working Well Wayford", "Vocational rehabilitation and work support."),
    DemoProvider(
        "OH-WORK1",
        "Wayford Employers' Health Partnership",
        "Occupational health for local employers.",
    ),
    DemoProvider("CARERS-1", "Carers Together Wayford and Marsh", "Support for unpaid carers."),
    DemoProvider(
        "CRISIS-1", "Wayford and Marsh Crisis Care", "NHS urgent mental health crisis services."
    ),
    DemoProvider("COMM-1", "Hollins Moor Community Hub", "Community centre and groups."),
]

_WEEKDAYS = [{"byday": ["MO", "TU", "WE", "TH", "FR"], "opens_at": "09:00", "closes_at": "17:00"}]

#: the services the referrals demo and tests refer to by id
FIXED = [
    DemoService(
        "svc-pain-mgmt-programme",
        "PAIN-RTH",
        Category.PAIN_MANAGEMENT_PROGRAMME,
        "Persistent Pain Management Programme",
        "A ten week group programme run by psychologists and physiotherapists: "
        "pacing, movement, sleep, mood and flare-up plans for persistent back and neck "
        "pain.",
        ("persistent_pain", "mental_health"),
        ("group", "in_person", "video"),
        ("WY1 0BG",),
        waiting_weeks=14,
        communication_support=("interpreters",),
        schedules=({"byday": ["TU"], "opens_at": "13:00", "closes_at": "16:00"},),
    ),
    DemoService(
        "svc-pain-clinic",
        "PAIN-RTH",
        Category.PAIN_MANAGEMENT_PROGRAMME,
        "Specialist Pain Clinic",
        "Consultant-led assessment and treatment of complex persistent pain.",
        ("persistent_pain",),
        ("in_person",),
        ("WY1 0BG",),
        waiting_weeks=22,
        schedules=tuple(_WEEKDAYS),
        how_to_refer="GP or consultant referral.",
    ),
    DemoService(
        "svc-talking-therapies-ltc",
        "TT-TALK1",
        Category.TALKING_THERAPIES_LTC,
        "Talking Therapies for Long-Term Conditions",
        "CBT-based therapy for people whose persistent pain affects their mood, by "
        "phone, video or in person.",
        ("persistent_pain", "mental_health"),
        ("phone", "video", "in_person"),
        ("WY2 0AB",),
        self_referral=True,
        waiting_weeks=6,
        communication_support=("bsl", "interpreters", "easy_read"),
        schedules=(
            {"byday": ["MO", "TU", "WE", "TH", "FR"], "opens_at": "08:00", "closes_at": "20:00"},
        ),
        minimum_age=16,
        how_to_refer="Self-refer online or by phone, or through your GP.",
    ),
    DemoService(
        "svc-msk-physio",
        "PHYSIO-1",
        Category.MSK_PHYSIOTHERAPY,
        "Community MSK Physiotherapy",
        "Assessment, exercise and advice for back, neck and joint pain.",
        ("persistent_pain",),
        ("in_person", "video"),
        ("WY7 1AB", "WY3 0AB"),
        self_referral=True,
        waiting_weeks=8,
        schedules=tuple(_WEEKDAYS),
        minimum_age=16,
    ),
    DemoService(
        "svc-social-prescribing",
        "SP-LINK1",
        Category.SOCIAL_PRESCRIBING,
        "Social Prescribing Link Workers",
        "A link worker helps with what matters to you: groups, activities, money and "
        "housing advice, loneliness.",
        ("persistent_pain", "mental_health"),
        ("in_person", "phone"),
        ("WY1 0BG", "WY6 0AB"),
        self_referral=True,
        communication_support=("easy_read", "learning_disability", "dementia_friendly"),
        schedules=tuple(_WEEKDAYS),
    ),
]

#: per category: (name pattern, description, conditions, modes, usual provider)
_TEMPLATES: dict[Category, tuple[str, str, tuple[str, ...], tuple[str, ...], str]] = {
    Category.PAIN_MANAGEMENT_PROGRAMME: (
        "{place} Pain Management Group",
        "Group sessions on living well with persistent pain: pacing, goals and movement.",
        ("persistent_pain", "mental_health"),
        ("group", "in_person"),
        "PAIN-RTH",
    ),
    Category.TALKING_THERAPIES_LTC: (
        "{place} Talking Therapies (long-term conditions)",
        "Talking therapy for people with persistent pain, low mood or anxiety.",
        ("persistent_pain", "mental_health"),
        ("phone", "video", "in_person"),
        "TT-TALK1",
    ),
    Category.MSK_PHYSIOTHERAPY: (
        "{place} Physiotherapy Clinic",
        "MSK physiotherapy for back and neck pain.",
        ("persistent_pain",),
        ("in_person",),
        "PHYSIO-1",
    ),
    Category.SOCIAL_PRESCRIBING: (
        "{place} Community Connector",
        "Link worker support to find groups, activities and practical help.",
        ("persistent_pain", "mental_health"),
        ("in_person", "phone"),
        "SP-LINK1",
    ),
    Category.PEER_SUPPORT: (
        "{place} Pain Peer Support Group",
        "Meet others living with persistent pain; share what helps.",
        ("persistent_pain",),
        ("group", "in_person"),
        "PEER-1",
    ),
    Category.SELF_MANAGEMENT_COURSE: (
        "{place} Living Well Course",
        "Six week self-management course for long-term pain and low mood.",
        ("persistent_pain", "mental_health"),
        ("group", "video"),
        "SELFM-1",
    ),
    Category.EXERCISE_YOGA: (
        "{place} Yoga for Healthy Lower Backs",
        "Twelve week yoga course designed for people with back pain.",
        ("persistent_pain",),
        ("group", "in_person"),
        "YOGA-1",
    ),
    Category.VOCATIONAL_REHABILITATION: (
        "{place} Work and Health Support",
        "Help to stay in work or return to work with pain or mental health problems: "
        "employer liaison, phased returns, fit notes.",
        ("persistent_pain", "mental_health"),
        ("phone", "video", "in_person"),
        "WORK-1",
    ),
    Category.CARERS_SUPPORT: (
        "{place} Carers' Group",
        "Support, breaks and advice for unpaid carers.",
        ("persistent_pain", "mental_health"),
        ("group", "in_person", "phone"),
        "CARERS-1",
    ),
    Category.CRISIS: (
        "{place} Crisis Café",
        "Evening safe space for people in mental health crisis; no appointment needed.",
        ("mental_health",),
        ("in_person", "phone"),
        "CRISIS-1",
    ),
}
_ALT_PROVIDERS = {
    Category.PEER_SUPPORT: "MIND-WM",
    Category.EXERCISE_YOGA: "LEISURE1",
    Category.VOCATIONAL_REHABILITATION: "OH-WORK1",
    Category.SOCIAL_PRESCRIBING: "COMM-1",
    Category.CRISIS: "MIND-WM",
}
PER_CATEGORY = 8


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def generated_services() -> list[DemoService]:
    """Eight services per category spread over the synthetic area, deterministic."""
    rng = random.Random(4)
    postcodes = read_postcodes()
    places = sorted({p[3] for p in postcodes})
    by_place = {place: [p[0] for p in postcodes if p[3] == place] for place in places}
    out = []
    for category, (pattern, description, conditions, modes, org) in _TEMPLATES.items():
        for n in range(PER_CATEGORY):
            place = places[(n * 5 + list(_TEMPLATES).index(category)) % len(places)]
            online_only = n == 7 and category not in (Category.CRISIS, Category.MSK_PHYSIOTHERAPY)
            name = pattern.format(place=place)
            these_modes = modes
            if online_only:
                name = name.replace(place, "Online") + f" {n}"
                these_modes = tuple(m for m in modes if m in ("phone", "video")) or ("video",)
            provider = _ALT_PROVIDERS.get(category, org) if n % 3 == 2 else org
            in_work = category is Category.VOCATIONAL_REHABILITATION or (
                category is Category.SELF_MANAGEMENT_COURSE and n % 2 == 1
            )
            day = rng.choice(["MO", "TU", "WE", "TH", "FR", "SA"])
            evening = category in (Category.CRISIS, Category.PEER_SUPPORT) or in_work
            schedule = (
                {"byday": [day], "opens_at": "18:00", "closes_at": "21:00"}
                if evening
                else {"byday": [day], "opens_at": "10:00", "closes_at": "12:30"}
            )
            out.append(
                DemoService(
                    id=f"svc-{_slug(category.value)}-{n + 1:02d}",
                    org=provider,
                    category=category,
                    name=name,
                    description=description
                    + (" Evening sessions for people in work." if in_work else ""),
                    conditions=conditions,
                    delivery_modes=these_modes,
                    postcodes=() if online_only else (rng.choice(by_place[place]),),
                    self_referral=category
                    in (Category.PEER_SUPPORT, Category.CRISIS, Category.CARERS_SUPPORT)
                    or rng.random() < 0.4,
                    waiting_weeks=(
                        None
                        if category in (Category.CRISIS, Category.PEER_SUPPORT)
                        else rng.choice([0, 1, 2, 4, 6, 9, 13, 18])
                    ),
                    communication_support=tuple(
                        sorted(
                            rng.sample(
                                [
                                    "bsl",
                                    "interpreters",
                                    "easy_read",
                                    "learning_disability",
                                    "dementia_friendly",
                                ],
                                k=rng.choice([0, 0, 1, 2]),
                            )
                        )
                    ),
                    schedules=(schedule,),
                    cost=5.0 if category is Category.EXERCISE_YOGA and n % 2 == 0 else 0,
                    minimum_age=16 if category is Category.CRISIS else 18,
                    eligibility="For people in work, or off work and wanting to return."
                    if in_work
                    else None,
                    how_to_refer=(
                        "Self-refer by phone or online, or ask your GP or link worker."
                        if category in (Category.PEER_SUPPORT, Category.CARERS_SUPPORT)
                        else "Refer through Waymark or contact the service."
                    ),
                )
            )
    return out


def demo_services() -> list[DemoService]:
    return FIXED + generated_services()


def service_body(s: DemoService, coordinates: dict[str, tuple[float, float]]) -> dict[str, Any]:
    locations = [
        {
            "name": f"{s.name} venue {i + 1}" if i else f"{s.name} venue",
            "postcode": pc,
            "address_1": f"{10 + i} High Street",
            "city": "Wayford" if pc.startswith("WY1 ") else "Marsh",
        }
        for i, pc in enumerate(s.postcodes)
    ]
    for loc in locations:
        if loc["postcode"] not in coordinates:
            raise ValueError(f"demo postcode {loc['postcode']} is not in the postcode table")
    return {
        "id": s.id,
        "org_code": s.org,
        "name": s.name,
        "description": s.description,
        "category": s.category.value,
        "conditions": list(s.conditions),
        "delivery_modes": list(s.delivery_modes),
        "self_referral": s.self_referral,
        "waiting_weeks": s.waiting_weeks,
        "communication_support": list(s.communication_support),
        "how_to_refer": s.how_to_refer,
        "eligibility_description": s.eligibility,
        "minimum_age": s.minimum_age,
        "locations": locations,
        "schedules": [dict(x) for x in s.schedules],
        "cost_options": [{"amount": s.cost, "amount_description": "per session"}] if s.cost else [],
        "contacts": [
            {"name": "Reception", "phone": f"01632 960{zlib.crc32(s.id.encode()) % 1000:03d}"}
        ],
        "languages": [{"name": "English", "code": "en"}],
    }


def _fix_postcodes(services: list[DemoService]) -> list[DemoService]:
    """FIXED names well-known outward codes; map each to a real row of the synthetic table
    in that district, so the demo never depends on a particular generated unit."""
    table = read_postcodes()
    known = {p[0] for p in table}
    out = []
    for s in services:
        fixed = []
        for pc in s.postcodes:
            if pc in known:
                fixed.append(pc)
            else:
                district = pc.split()[0]
                fixed.append(next(p[0] for p in table if p[0].split()[0] == district))
        out.append(DemoService(**{**s.__dict__, "postcodes": tuple(fixed)}))
    return out


def seed_directory(settings: Settings) -> list[str]:
    """Create and publish the demo directory through the API; returns the service ids."""
    base = f"http://127.0.0.1:{settings.api_port('directory')}"
    services = _fix_postcodes(demo_services())
    coordinates = {p[0]: (p[1], p[2]) for p in read_postcodes()}
    tokens = {
        p.code: mint_token(
            settings,
            sub=f"demo-staff-{p.code}",
            roles=["service_staff"],
            org=p.code,
            name="Demo Staff",
        )
        for p in PROVIDERS
    }
    created = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for p in PROVIDERS:
            r = http.put(
                f"/organizations/{p.code}",
                json={"name": p.name, "description": p.description},
                headers={"Authorization": f"Bearer {tokens[p.code]}"},
            )
            r.raise_for_status()
        for s in services:
            headers = {"Authorization": f"Bearer {tokens[s.org]}"}
            r = http.post(
                "/services",
                json=service_body(s, coordinates),
                headers={**headers, "Idempotency-Key": f"demo-directory-{s.id}"},
            )
            r.raise_for_status()
            if r.json()["lifecycle"] == "draft":
                r = http.post(
                    f"/services/{s.id}/publish",
                    headers={**headers, "Idempotency-Key": f"demo-directory-publish-{s.id}"},
                )
                r.raise_for_status()
            created.append(s.id)
    return created
