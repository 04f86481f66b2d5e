"""`waymark seed`: synthetic demo data, sent through the public APIs like any client would, and
a synthetic population loaded through the bulk importer.

Every person here is invented. NHS numbers are in the 999 range that NHS England keeps for
test data, so none belongs to a real person. Seeding twice changes nothing (each request
carries an Idempotency-Key; the population's extracts are the same files again, and a finished
file is not imported twice).

The population (`seed_population`, devtools/population.py) is made by the labelled journey
generator (devtools/synthetic/): about 500 people over 12 months with realistic loops and
stalls, written as an e-RS worklist extract and a GP appointments extract and imported as an
ICS imports its history at go-live, so every demo referral exists in the referrals service with
its real past dates and the coordinators' dashboard has real alerts that open onto real records.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import httpx

from devtools.population import (  # noqa: F401 (the seed's population, as `waymark seed` loads it)
    POPULATION_MONTHS,
    POPULATION_PEOPLE,
    POPULATION_PREFIX,
    POPULATION_SEED,
    Population,
    seed_population,
)
from shared.auth import mint_token
from shared.settings import Settings
from shared.vocabulary import Category


def _with_check_digit(nine: str) -> str | None:
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return None if check == 10 else nine + str(check)


def demo_nhs_numbers(n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        number = _with_check_digit(f"999{i:06d}")
        if number:
            out.append(number)
        i += 1
    return out


@dataclass(frozen=True)
class DemoReferral:
    patient: int
    from_org: str
    to_org: str
    to_service_id: str
    category: Category  # the directory's category of the service referred to
    reasons: tuple[str, ...]
    summary: str
    priority: str = "routine"
    needs: tuple[str, ...] = ()


PEOPLE = [
    ("Ada", "Demo-Lovelace", "1968-02-11"),
    ("Ben", "Demo-Okafor", "1979-07-30"),
    ("Cara", "Demo-Nowak", "1985-11-03"),
    ("Dev", "Demo-Patel", "1959-05-21"),
    ("Eli", "Demo-Jones", "1992-09-14"),
]

REFERRALS = [
    DemoReferral(
        0,
        "GP-A81001",
        "PAIN-RTH",
        "svc-pain-mgmt-programme",
        Category.PAIN_MANAGEMENT_PROGRAMME,
        ("279039007", "35489007"),
        "Persistent low back pain 14 months; low mood.",
    ),
    DemoReferral(
        0,
        "GP-A81001",
        "TT-TALK1",
        "svc-talking-therapies-ltc",
        Category.TALKING_THERAPIES_LTC,
        ("82423001", "35489007"),
        "Talking therapies for long-term conditions.",
    ),
    DemoReferral(
        1,
        "GP-A81002",
        "PHYSIO-1",
        "svc-msk-physio",
        Category.MSK_PHYSIOTHERAPY,
        ("81680005",),
        "Neck pain after a fall at work.",
        needs=("interpreter: Igbo",),
    ),
    DemoReferral(
        2,
        "GP-A81002",
        "SP-LINK1",
        "svc-social-prescribing",
        Category.SOCIAL_PRESCRIBING,
        ("82423001", "197480006"),
        "Chronic pain, anxiety, isolated.",
    ),
    DemoReferral(
        3,
        "GP-A81003",
        "PAIN-RTH",
        "svc-pain-clinic",
        Category.PAIN_MANAGEMENT_PROGRAMME,
        ("279039007",),
        "Back pain, three A&E attendances this year.",
        priority="urgent",
        needs=("easy read", "carer present"),
    ),
    DemoReferral(
        4,
        "OH-WORK1",
        "PHYSIO-1",
        "svc-msk-physio",
        Category.MSK_PHYSIOTHERAPY,
        ("279039007",),
        "Workplace referral: lifting injury.",
    ),
]


def seed(settings: Settings) -> list[str]:
    numbers = demo_nhs_numbers(len(PEOPLE))
    base = f"http://127.0.0.1:{settings.api_port('referrals')}"
    created = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for i, r in enumerate(REFERRALS):
            given, family, dob = PEOPLE[r.patient]
            token = mint_token(
                settings,
                sub=f"demo-clinician-{r.from_org}",
                roles=["clinician"],
                org=r.from_org,
                name="Demo Clinician",
            )
            patient = {
                "nhs_number": numbers[r.patient],
                "given_name": given,
                "family_name": family,
                "birth_date": dob,
            }
            if r.from_org.startswith("GP-"):
                patient["registered_practice"] = r.from_org  # the demo people's own practice
            body = {
                "patient": patient,
                "source": "workplace" if r.from_org.startswith("OH-") else "gp",
                "from_practitioner": "Dr Demo",
                "to_org": r.to_org,
                "to_service_id": r.to_service_id,
                "reason_codes": list(r.reasons),
                "clinical_summary": r.summary,
                "priority": r.priority,
                "consent_to_referral": True,
                "communication_needs": list(r.needs),
            }
            # the key names this demo referral as it is now: seeding again replays it, and a
            # changed demo record is a new request rather than a conflicting one
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
            headers = {
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": f"demo-seed-{i}-{digest}",
            }
            resp = http.post("/referrals", json=body, headers=headers)
            deadline = time.monotonic() + 60
            # the directory's events reach the referrals service's replica asynchronously
            while (
                resp.status_code == 422 and "directory" in resp.text and time.monotonic() < deadline
            ):
                time.sleep(0.5)
                resp = http.post("/referrals", json=body, headers=headers)
            if resp.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f"{resp.status_code}: {resp.text}", request=resp.request, response=resp
                )
            created.append(resp.json()["id"])
    return created


def _post(http: httpx.Client, path: str, body: dict, token: str, key: str) -> httpx.Response:  # type: ignore[type-arg]
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"{key}-{digest}"}
    resp = http.post(path, json=body, headers=headers)
    # a plan needs the referral just seeded to have reached the care plans service (Kafka):
    # until then it is refused for want of a care relationship
    deadline = time.monotonic() + 60
    while (
        resp.status_code == 403 and "no_relationship" in resp.text and time.monotonic() < deadline
    ):
        time.sleep(0.5)
        resp = http.post(path, json=body, headers=headers)
    if resp.status_code >= 400:
        raise httpx.HTTPStatusError(
            f"{resp.status_code}: {resp.text}", request=resp.request, response=resp
        )
    return resp


def seed_care_plans(settings: Settings) -> list[str]:
    """Two demo plans: one with a STarT Back screen, one whose PHQ-9 raises a safety alert."""
    numbers = demo_nhs_numbers(len(PEOPLE))
    base = f"http://127.0.0.1:{settings.api_port('care_plans')}"
    plans = []
    demo = [
        (
            0,
            "GP-A81001",
            ["PAIN-RTH", "TT-TALK1"],
            "Getting back to my allotment and sleeping through the night.",
            "Walk to the allotment three times a week",
            "STarT-Back",
            {str(i): "agree" for i in range(1, 6)}
            | {"6": "disagree", "7": "disagree", "8": "disagree", "9": "moderately"},
        ),
        (
            3,
            "GP-A81003",
            ["PAIN-RTH"],
            "Being able to pick up my granddaughter.",
            "Understand my pain with the pain management programme",
            "PHQ-9",
            {"1": 2, "2": 2, "3": 1, "4": 2, "5": 1, "6": 1, "7": 1, "8": 0, "9": 1},
        ),
    ]
    with httpx.Client(base_url=base, timeout=30) as http:
        for person, org, consented, matters, goal, instrument, answers in demo:
            token = mint_token(
                settings,
                sub=f"demo-clinician-{org}",
                roles=["clinician"],
                org=org,
                name="Demo Clinician",
            )
            plan = _post(
                http,
                "/care-plans",
                {
                    "nhs_number": numbers[person],
                    "consented_organisations": consented,
                    "reason": "plan agreed at the first conversation",
                    "content": {
                        "what_matters_to_me": matters,
                        "goals": [{"what": goal}],
                        # synthetic contact details: example.org mail, Ofcom's drama
                        # numbers (07700 900xxx are never a real phone)
                        "communication": {
                            "easy_read": person == 3,
                            "preferred_channel": "sms" if person == 3 else "email",
                            "email": f"{PEOPLE[person][0].lower()}.demo@example.org",
                            "mobile": f"07700 900{person:03d}",
                        },
                    },
                },
                token,
                f"demo-plan-{person}",
            ).json()
            _post(
                http,
                f"/care-plans/{plan['id']}/assessments",
                {"instrument": instrument, "answers": answers},
                token,
                f"demo-assessment-{person}",
            )
            plans.append(plan["id"])
    return plans


def seed_preferences(settings: Settings) -> list[str]:
    """The demo referrers' own notification choices: email first, then the in-app inbox, so
    the outcome of a demo referral arrives in the local SMTP sink."""
    base = f"http://127.0.0.1:{settings.api_port('notifications')}"
    users = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for org in sorted({r.from_org for r in REFERRALS}):
            user = f"demo-clinician-{org}"
            token = mint_token(
                settings, sub=user, roles=["clinician"], org=org, name="Demo Clinician"
            )
            headers = {"Authorization": f"Bearer {token}"}
            current = http.get("/preferences/me", headers=headers)
            current.raise_for_status()
            body = {
                "channels": ["email", "in_app"],
                "email": f"{user.lower()}@example.org",
                "quiet_start": "20:00",
                "quiet_end": "07:30",
            }
            if all(current.json().get(k) == v for k, v in body.items()):
                users.append(user)  # already so: seeding again changes nothing
                continue
            resp = http.put(
                "/preferences/me",
                json=body,
                headers={**headers, "If-Match": current.headers["etag"]},
            )
            if resp.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f"{resp.status_code}: {resp.text}", request=resp.request, response=resp
                )
            users.append(user)
    return users
