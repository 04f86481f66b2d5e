"""The local stack's OpenID provider (devtools/idp/server.mjs: the OpenID-certified npm package
`oidc-provider` on the machine's Node.js), one per instance on api_port_base + 40.

This module writes its configuration: the signing keys (shared.auth.ensure_keys), the Waymark
clients with secrets generated once (owner-only files under <home>/idp/<instance>/secrets), the
demo users, and the initial access token Waymark's partner onboarding registers clients with.
In an ICS deployment none of this runs: WAYMARK_OIDC_ISSUER names the ICS's provider.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devtools.stack.health import app_log, app_pid_file
from devtools.stack.process_control import (
    REPO_ROOT,
    StackError,
    read_pid,
    spawn,
    stop_pid,
    wait_until,
)
from devtools.stack.processes import Part
from shared.access import PROCESS_SCOPES, Capability
from shared.auth import ensure_keys, write_private_file
from shared.settings import Settings

NAME = "idp"
IDP_DIR = REPO_ROOT / "devtools" / "idp"
#: the resource (RFC 8707) Waymark's APIs are, to the provider
RESOURCE = "urn:waymark:api"
DASHBOARD_CLIENT = "waymark-dashboard"
CLI_CLIENT = "waymark-cli"
#: where the CLI's authorization code flow is sent back to (never served: the CLI reads the
#: redirect's Location)
CLI_REDIRECT = "http://127.0.0.1/waymark-cli/callback"


@dataclass(frozen=True)
class DemoUser:
    sub: str
    name: str
    roles: tuple[str, ...]
    org: str
    sees: str


def demo_users(s: Settings) -> list[DemoUser]:
    """The local provider's demo users, one or more for every role a person holds (every one
    invented)."""
    ics = s.ics
    return [
        DemoUser("demo-casey", "Casey Coordinator", ("coordinator",), ics, "the alert inbox"),
        DemoUser("demo-jordan", "Jordan Coordinator", ("coordinator",), ics, "a second inbox"),
        DemoUser("demo-lee", "Lee Lead", ("ics_lead",), ics, "the ICS overview"),
        DemoUser("demo-gita", "Dr Gita Rao", ("clinician",), "GP-A81001", "a GP's referrals"),
        DemoUser("demo-sam", "Sam Triage", ("service_staff",), "PAIN-RTH", "a triage worklist"),
        DemoUser("demo-ada", "Ada Admin", ("admin",), "GP-A81001", "partner clients, webhooks"),
    ]


def secret_path(s: Settings, client_id: str) -> Path:
    return s.local_idp_dir / "secrets" / client_id


def client_secret(s: Settings, client_id: str) -> str:
    """A client's secret, generated the first time it is asked for (owner-only file)."""
    path = secret_path(s, client_id)
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


def registration_token(s: Settings) -> str:
    return client_secret(s, "registration-token")


def _dashboard_base(s: Settings) -> list[str]:
    port = s.api_port("notifications")
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def clients(s: Settings) -> list[dict[str, Any]]:
    """The Waymark clients the provider knows from its start: the dashboard (authorization
    code + PKCE), the CLI (the same, for `waymark token --user`), and each Waymark process that
    calls another's API (client credentials, with its scopes)."""
    dashboard = _dashboard_base(s)
    found: list[dict[str, Any]] = [
        {
            "client_id": DASHBOARD_CLIENT,
            "client_secret": client_secret(s, DASHBOARD_CLIENT),
            "client_name": "Waymark dashboard",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [f"{b}/dashboard/auth/callback" for b in dashboard],
            "post_logout_redirect_uris": [f"{b}/dashboard/signed-out" for b in dashboard],
            "scope": "openid profile offline_access waymark",
        },
        {
            "client_id": CLI_CLIENT,
            "client_secret": client_secret(s, CLI_CLIENT),
            "client_name": "Waymark CLI",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "redirect_uris": [CLI_REDIRECT],
            "scope": "openid profile waymark",
        },
    ]
    for process, scopes in PROCESS_SCOPES.items():
        client_id = f"waymark-{process.replace('_', '-')}"
        found.append(
            {
                "client_id": client_id,
                "client_secret": client_secret(s, client_id),
                "client_name": f"Waymark {process}",
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "scope": " ".join(c.value for c in scopes),
                "org": "WAYMARK",
                "ics": s.ics,
                "waymark_roles": ["service"],
            }
        )
    return found


def config(s: Settings) -> dict[str, Any]:
    ensure_keys(s)
    d = s.local_idp_dir
    cookie_keys = client_secret(s, "cookie-key")
    return {
        "issuer": s.issuer,
        "host": s.api_host,
        "port": s.idp_port,
        "jwks_path": str(d / "jwks.json"),
        "store_path": str(d / "store.json"),
        "cookie_keys": [cookie_keys],
        "audience": s.jwt_audience,
        "resource": RESOURCE,
        "api_scopes": [c.value for c in Capability],
        "registration_token": registration_token(s),
        "clients": clients(s),
        "users": [
            {"sub": u.sub, "name": u.name, "roles": list(u.roles), "org": u.org, "ics": s.ics}
            for u in demo_users(s)
        ],
        "ttl": {
            "access_token": 900,
            "client_credentials": 300,
            "refresh_token": s.dashboard_session_max_seconds,
            "session": s.dashboard_session_max_seconds,
        },
    }


def write_config(s: Settings) -> Path:
    """The provider's configuration file (owner-only: it holds the clients' secrets), made by
    `waymark up` and, for Compose's `idp` container, by `waymark migrate`."""
    path = s.local_idp_dir / "config.json"
    write_private_file(path, json.dumps(config(s), indent=1).encode())
    return path


def node_modules() -> None:
    """The provider's npm packages, installed from the lock file once."""
    if (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise StackError("the local identity provider needs Node.js 20 and npm")
    res = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=IDP_DIR,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise StackError(f"npm ci in {IDP_DIR} failed:\n{res.stdout}\n{res.stderr}")


async def probe(s: Settings) -> bool:
    """The instance's own provider answers: its issuer, publishing this instance's current
    signing key. Another instance's provider left on the port (another checkout's) has the
    same issuer but other keys: it is not ours, and tokens we mint would not verify there."""
    from shared.auth import local_signing_kid

    try:
        async with httpx.AsyncClient(timeout=2) as c:
            res = await c.get(f"{s.issuer}/.well-known/openid-configuration")
            if res.status_code != 200 or res.json().get("issuer") != s.issuer:
                return False
            jwks = await c.get(res.json()["jwks_uri"])
        kid = local_signing_kid(s)
        return jwks.status_code == 200 and any(k.get("kid") == kid for k in jwks.json()["keys"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False


async def start(s: Settings) -> None:
    if s.deployment_mode != "local":
        return  # the ICS's issuer: nothing local to run
    if read_pid(app_pid_file(s, NAME)) is not None and await probe(s):
        return
    stop_pid(app_pid_file(s, NAME))
    node_modules()
    path = write_config(s)
    spawn(
        ["node", str(IDP_DIR / "server.mjs"), str(path)],
        log=app_log(s, NAME),
        pid_file=app_pid_file(s, NAME),
        cwd=IDP_DIR,
    )
    await wait_until(
        lambda: probe(s),
        what="the local identity provider",
        timeout=30,
        pid_file=app_pid_file(s, NAME),
        log=app_log(s, NAME),
    )


def stop(s: Settings) -> None:
    stop_pid(app_pid_file(s, NAME))


async def rotate_keys(s: Settings) -> str:
    """A new signing key, published at once (the provider restarts with it; the old keys stay
    published so the tokens they signed verify until they expire)."""
    from shared.auth import rotate_local_keys

    kid = rotate_local_keys(s)
    stop(s)
    await start(s)
    return kid


def part() -> Part:
    p = Part(
        NAME,
        "app",
        start,
        probe,
        stop,
        port=lambda s: s.idp_port,
        urls=lambda s: [f"{s.issuer}/.well-known/openid-configuration"],
        log=lambda s: app_log(s, NAME),
        pid_file=lambda s: app_pid_file(s, NAME),
    )
    p.local_only = True
    return p
