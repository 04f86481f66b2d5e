"""Authentication on every endpoint of every service: each route of each app (every OpenAPI
operation, and the routes outside the OpenAPI: FastAPI's docs and the dashboard's pages) is
called without a token and with every kind of bad one, and must answer 401 with a problem
that says what is wrong. Never 2xx, 403, 404, 422 or 500: the token is checked before the
route looks at anything else.

The bad tokens: none, the wrong scheme, not a JWT, expired, signed by another key (a fresh EC
key made here), for another audience, from another issuer, `alg: none`, HS256 signed with our
public key (the algorithm-confusion attack), and a genuine token whose claims were changed
after signing.

Where a route takes its token elsewhere as well, each carrier is tried: the live alert stream
accepts `?access_token=` and the dashboard's session cookie, and the dashboard's pages the
cookie. Formats: problem+json everywhere, except FHIR routes (under /fhir), which answer a
FHIR OperationOutcome (issue code `login`), and the dashboard's pages, which send a browser
to sign in (303 to /dashboard/login, then the identity provider) and answer a script asking for
JSON with problem+json 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from shared.auth import _local_signing_key
from shared.settings import Settings
from tests.conftest import auth
from tests.security.conftest import Api
from tests.security.support import FHIR_JSON, Operation, error_text, media_type, operations

#: the routes anyone may call, and why; everything else needs a valid token
PUBLIC: dict[str, str] = {
    "GET /health": "the liveness and readiness probe: says only that the service and its "
    "database answer",
    "GET /openapi.json": "the API's description (no data)",
    "GET /docs": "the API's description, as a page",
    "GET /docs/oauth2-redirect": "part of the docs page",
    "GET /redoc": "the API's description, as another page",
    "GET /dashboard/login": "the start of the dashboard's sign-in: off to the identity provider",
    "GET /dashboard/auth/callback": "where the identity provider sends the browser back (the "
    "sign-in's sealed state, the code and the ID token are checked before any session exists)",
    "GET /dashboard/signed-out": "where the provider sends the browser after signing out",
    "GET /dashboard/static/{name}": "the dashboard's stylesheet and script",
    "GET /dashboard/{rest:path}": "'no page here' for any other dashboard address (no data)",
    "POST /dashboard/{rest:path}": "the same, for a form posted to no page",
    "GET /fhir/metadata": "a FHIR base's CapabilityStatement: what it serves and where its "
    "tokens come from, read by a client before it has one (issue #19; no data)",
    "GET /fhir/.well-known/smart-configuration": "SMART App Launch discovery: the OpenID "
    "provider's endpoints, read before sign-in (issue #19; no data)",
}

#: the directory's open data: the Open Referral UK feed is public information, read-only, rate
#: limited per client address, and needs a token again when an ICS turns `oruk_public` off
#: (tests/directory/oruk/test_profile.py); it serves published services only
OPEN_DATA: dict[str, str] = {
    f"GET /oruk{path}": "the Open Referral UK feed"
    for path in (
        "/",
        "/services",
        "/services/{service_id}",
        "/service_at_locations",
        "/service_at_locations/{sal_id}",
        "/taxonomies",
        "/taxonomies/{taxonomy_id}",
        "/taxonomy_terms",
        "/taxonomy_terms/{term_id}",
    )
}
PUBLIC.update(OPEN_DATA)

#: the route that also takes the token as `?access_token=` or the dashboard's cookie
STREAM = "GET /alerts/stream"
SESSION_COOKIE = "waymark_session"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT put together by hand (PyJWT refuses to make the malicious ones)."""
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims, default=str).encode())
    )
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{_b64(signature)}"


@dataclass(frozen=True)
class Credential:
    """A bad credential and the words the 401 must use to say what is wrong with it."""

    name: str
    words: tuple[str, ...]
    scheme: str | None = "Bearer"
    token: str | None = None  # None: no Authorization header at all
    raw: str | None = None  # an Authorization header that is not a bearer token
    carriers: tuple[str, ...] = field(default=("header",))

    def headers(self) -> dict[str, str]:
        if self.raw is not None:
            return {"Authorization": self.raw}
        if self.token is None:
            return {}
        return {"Authorization": f"{self.scheme} {self.token}"}


def bad_credentials(s: Settings) -> list[Credential]:
    kid, own_key = _local_signing_key(s)
    public_jwk = json.dumps(
        {k: v for k, v in json.loads(ECAlgorithm.to_jwk(own_key)).items() if k != "d"}
    ).encode()
    kid_header = {"kid": kid}
    foreign_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = datetime.now(UTC)

    def claims(**over: Any) -> dict[str, Any]:
        c = {
            "iss": s.issuer,
            "aud": s.jwt_audience,
            "client_id": "security-probe-client",
            "sub": "security-probe",
            "roles": ["admin", "coordinator", "service"],
            "org": "ORG-SEC1",
            "ics": s.ics,
            "name": "Probe",
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(hours=1),
            "jti": str(uuid.uuid4()),
        }
        c.update(over)
        return c

    def sign(c: dict[str, Any], key: Any = own_key) -> str:
        return jwt.encode(c, key, algorithm="ES256", headers=kid_header)

    def epoch(c: dict[str, Any]) -> dict[str, Any]:
        return {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in c.items()}

    genuine = sign(claims(roles=["clinician"]))
    head, _, rest = genuine.partition(".")
    signature = rest.partition(".")[2]
    tampered = f"{head}.{_b64(json.dumps(epoch(claims())).encode())}.{signature}"
    both = ("header", "query", "cookie")
    return [
        Credential("no token", ("access token", "sign in")),
        Credential("wrong scheme", ("access token", "bearer"), raw="Basic dXNlcjpwYXNz"),
        Credential("not a JWT", ("not valid",), token="not-a-jwt", carriers=both),
        Credential(
            "expired",
            ("expired",),
            carriers=both,
            token=jwt.encode(
                claims(
                    iat=now - timedelta(hours=2),
                    nbf=now - timedelta(hours=2),
                    exp=now - timedelta(minutes=5),
                ),
                own_key,
                algorithm="ES256",
                headers=kid_header,
            ),
        ),
        Credential(
            "signed by another key",
            ("signature",),
            carriers=both,
            token=sign(claims(), foreign_key),
        ),
        Credential(
            "another audience",
            ("audience",),
            carriers=both,
            token=sign(claims(aud="another-service")),
        ),
        Credential(
            "another issuer",
            ("issuer",),
            carriers=both,
            token=sign(claims(iss="https://idp.example.invalid")),
        ),
        Credential(
            "alg none",
            ("alg",),
            carriers=both,
            token=_unsigned({"alg": "none", "typ": "JWT", "kid": kid}, epoch(claims()), None),
        ),
        Credential(
            "HS256 with our public key",
            ("alg",),
            carriers=both,
            token=_unsigned(
                {"alg": "HS256", "typ": "JWT", "kid": kid}, epoch(claims()), public_jwk
            ),
        ),
        Credential("claims changed after signing", ("signature",), carriers=both, token=tampered),
    ]


def _is_page(op: Operation) -> bool:
    return op.path == "/dashboard" or op.path.startswith("/dashboard/")


def _carriers(op: Operation, cred: Credential) -> list[str]:
    if op.key == STREAM:
        return list(cred.carriers)
    if _is_page(op):
        return [c for c in cred.carriers if c != "query"]
    return ["header"]


async def _send(
    client: httpx.AsyncClient, op: Operation, cred: Credential, carrier: str, accept: str
) -> httpx.Response:
    headers = {"Accept": accept}
    params: dict[str, str] = {}
    if carrier == "header":
        headers.update(cred.headers())
    elif carrier == "query":
        params["access_token"] = cred.token or ""
    else:
        headers["Cookie"] = f"{SESSION_COOKIE}={cred.token or ''}"
    # a body the route would refuse (422) if it looked at it before the token
    body = {} if op.method in ("POST", "PUT", "PATCH") and not _is_page(op) else None
    client.cookies.clear()  # the in-process clients are shared by the whole session
    return await client.request(op.method, op.url(), headers=headers, params=params, json=body)


def _check_401(op: Operation, cred: Credential, r: httpx.Response) -> str | None:
    """What is wrong with the answer to a bad credential, or None."""
    if r.status_code != 401:
        return f"{r.status_code} (not 401): {r.text[:160]}"
    if r.headers.get("www-authenticate") != "Bearer":
        return "a 401 without WWW-Authenticate: Bearer"
    fhir = op.path == "/fhir" or op.path.startswith("/fhir/")
    want = FHIR_JSON if fhir else "application/problem+json"
    if media_type(r) != want:
        return f"answered {media_type(r)!r}, not {want}"
    body = r.json()
    if fhir:
        if body.get("resourceType") != "OperationOutcome" or body["issue"][0]["code"] != "login":
            return f"not an OperationOutcome with issue code login: {body}"
    elif body.get("status") != 401 or body.get("title") != "Not authenticated":
        return f"not a 401 problem titled 'Not authenticated': {body}"
    said = error_text(r).lower()
    if not any(w in said for w in cred.words):
        return f"the problem does not say what is wrong ({' or '.join(cred.words)}): {said!r}"
    return None


def _check_sign_in(r: httpx.Response) -> str | None:
    """A browser asking for a dashboard page without a valid session is sent to sign in."""
    if r.status_code != 303 or not r.headers.get("location", "").startswith("/dashboard/login"):
        return f"{r.status_code} (not a 303 to /dashboard/login): {r.text[:160]}"
    return None


@pytest.mark.parametrize(
    "service", ["referrals", "directory", "care_plans", "notifications", "integration"]
)
async def test_every_route_refuses_every_bad_credential_with_a_401_problem(
    apis: dict[str, Api], settings: Settings, service: str
) -> None:
    api = apis[service]
    ops = [op for op in operations(service, api.app) if op.key not in PUBLIC]
    credentials = bad_credentials(settings)
    failures: list[str] = []
    checks = 0
    for op in ops:
        for cred in credentials:
            for carrier in _carriers(op, cred):
                r = await _send(api.client, op, cred, carrier, accept="application/json")
                checks += 1
                # the cookie carries a session id, never a token: any bad one is no session
                said = cred if carrier != "cookie" else replace(cred, words=("session",))
                if (why := _check_401(op, said, r)) is not None:
                    failures.append(f"{op.key} [{cred.name} in the {carrier}]: {why}")
                if _is_page(op):
                    r = await _send(api.client, op, cred, carrier, accept="text/html")
                    checks += 1
                    if (why := _check_sign_in(r)) is not None:
                        failures.append(f"{op.key} [{cred.name}, browser]: {why}")
    print(
        f"\n{service}: {len(ops)} routes x {len(credentials)} bad credentials "
        f"(and carriers) = {checks} requests, all refused"
    )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "service", ["referrals", "directory", "care_plans", "notifications", "integration"]
)
async def test_a_valid_token_gets_past_authentication_on_every_route(
    apis: dict[str, Api], settings: Settings, service: str
) -> None:
    """The control: the same requests with a genuine token (a clinician of an organisation
    of its own, so nothing is found or changed) are never a 401 and never an internal error,
    so the 401s above are about the credentials."""
    api = apis[service]
    headers = auth(settings, role="clinician", org=f"GP-{uuid.uuid4().hex[:8].upper()}")
    failures = []
    for op in operations(service, api.app):
        if op.key in PUBLIC:
            continue
        body = {} if op.method in ("POST", "PUT", "PATCH") and not _is_page(op) else None
        r = await api.client.request(
            op.method, op.url(), json=body, headers={**headers, "Accept": "application/json"}
        )
        if r.status_code in (401, 500):
            failures.append(f"{op.key}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_the_public_routes_are_few_and_every_one_exists(apis: dict[str, Api]) -> None:
    every = {op.key for api in apis.values() for op in operations(api.name, api.app)}
    assert set(PUBLIC) <= every, set(PUBLIC) - every
    assert len(PUBLIC) - len(OPEN_DATA) <= 13
    # the open data is the directory's read-only feed and nothing else
    assert all(k.startswith("GET /oruk/") for k in OPEN_DATA)
    # no patient or organisation data behind any other public route: none names a resource
    for key in set(PUBLIC) - set(OPEN_DATA):
        assert not any(
            w in key
            for w in (
                "referral",
                "plan",
                "patient",
                "alert",
                "webhook",
                "message",
                "inbox",
                "services",
                "organizations",
            )
        )


async def test_the_public_routes_answer_without_a_token(apis: dict[str, Api]) -> None:
    for api in apis.values():
        r = await api.client.get("/health")
        assert r.status_code == 200 and r.json() == {"status": "ok", "service": api.name}
        assert (await api.client.get("/openapi.json")).status_code == 200
    dashboard = apis["notifications"].client
    dashboard.cookies.clear()
    assert (await dashboard.get("/dashboard/login")).status_code == 303  # to the provider
    assert (await dashboard.get("/dashboard/signed-out")).status_code == 200
    assert (await dashboard.get("/dashboard/static/dashboard.css")).status_code == 200
    assert (
        await dashboard.get("/dashboard/no-such-page", headers={"Accept": "application/json"})
    ).status_code == 404
    # a callback without the sign-in's state is refused, not an error
    assert (
        await dashboard.get("/dashboard/auth/callback", params={"code": "x", "state": "y"})
    ).status_code == 400
    dashboard.cookies.clear()
