"""Tokens from the local OpenID provider, as `waymark token` asks for them.

- a client's token: the client credentials grant at the provider's token endpoint;
- a demo user's token: the authorization code flow with PKCE (S256), state and nonce, as the
  `waymark-cli` client, choosing the user on the provider's own sign-in page the way a person
  clicks it (the provider is the real one; only the browser is this code).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from devtools.stack import idp
from shared import oidc
from shared.settings import Settings


class TokenRefused(RuntimeError):
    pass


async def client_token(s: Settings, client_id: str, secret: str, scope: str = "") -> str:
    token, _ = await oidc.client_credentials(s, client_id, secret, scope)
    return token


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


async def user_token(s: Settings, user: str) -> str:
    """A demo user's access token through the authorization code flow (local provider only)."""
    if s.oidc_issuer:
        raise TokenRefused("user tokens come from your ICS's provider: sign in to the dashboard")
    meta = await oidc.metadata(s)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    query = {
        "client_id": idp.CLI_CLIENT,
        "response_type": "code",
        "redirect_uri": idp.CLI_REDIRECT,
        "scope": "openid profile waymark",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": idp.RESOURCE,
    }
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as c:
        url = f"{meta['authorization_endpoint']}?{urlencode(query)}"
        for _ in range(10):
            res = await c.get(url)
            if res.status_code in (302, 303):
                url = urljoin(url, res.headers["location"])
                if url.startswith(idp.CLI_REDIRECT):
                    break
                continue
            page = res.text
            form = re.search(r'<form method="post" action="([^"]+)"', page)
            if res.status_code != 200 or form is None:
                raise TokenRefused(f"the provider's sign-in page answered {res.status_code}")
            if f'value="{user}"' not in page:
                raise TokenRefused(f"{user!r} is not one of the provider's demo users")
            res = await c.post(urljoin(url, form.group(1)), data={"user": user})
            if res.status_code not in (302, 303):
                raise TokenRefused(f"signing in as {user} answered {res.status_code}")
            url = urljoin(url, res.headers["location"])
        else:
            raise TokenRefused("the sign-in did not come back to the client")
        back = parse_qs(urlsplit(url).query)
        if back.get("state") != [state]:
            raise TokenRefused("the provider answered with another state")
        if "code" not in back:
            raise TokenRefused(f"the provider refused: {back.get('error', ['?'])[0]}")
        res = await c.post(
            meta["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": back["code"][0],
                "redirect_uri": idp.CLI_REDIRECT,
                "code_verifier": verifier,
            },
            auth=(idp.CLI_CLIENT, idp.client_secret(s, idp.CLI_CLIENT)),
        )
    body = res.json()
    if res.status_code != 200:
        raise TokenRefused(f"the token endpoint refused: {body.get('error_description', body)}")
    return str(body["access_token"])
