"""`waymark token` and `waymark idp`: tokens from the local OpenID provider, and its key
rotation (devtools/idp, devtools/stack/idp.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from shared.settings import Settings


def cmd_token(args: argparse.Namespace, s: Settings) -> int:
    """An access token: a demo user's (--user, through the local provider's sign-in), a
    client's (--client, client credentials), or minted with the local provider's key (--role,
    for scripts and tests: any roles and organisation)."""
    from devtools import tokens
    from shared.auth import mint_token
    from shared.errors import WaymarkError

    try:
        if args.user:
            token = asyncio.run(tokens.user_token(s, args.user))
        elif args.client:
            from devtools.stack import idp

            secret = (
                Path(args.secret_file).read_text().strip()
                if args.secret_file
                else idp.client_secret(s, args.client)
                if idp.secret_path(s, args.client).exists()
                else ""
            )
            if not secret:
                print(f"no secret for client {args.client}: give --secret-file", file=sys.stderr)
                return 2
            token = asyncio.run(tokens.client_token(s, args.client, secret, args.scope))
        elif args.role:
            token = mint_token(
                s,
                sub=args.sub,
                roles=args.role,
                org=args.org,
                ics=args.ics,
                name=args.name,
                ttl=timedelta(minutes=args.minutes),
            )
        else:
            print("say whose token: --user <demo user>, --client <id> or --role", file=sys.stderr)
            return 2
    except (ValueError, RuntimeError, WaymarkError) as exc:
        print(f"cannot get a token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


async def _rotate_idp_keys(s: Settings) -> str:
    from devtools.stack import idp

    return await idp.rotate_keys(s)


def cmd_idp(args: argparse.Namespace, s: Settings) -> int:
    if s.oidc_issuer:
        print("keys are the ICS provider's own: rotate them there", file=sys.stderr)
        return 2
    kid = asyncio.run(_rotate_idp_keys(s))
    print(f"signing with the new key {kid}; the previous keys stay published")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tok = sub.add_parser(
        "token",
        help="an access token from the local identity provider (a demo user's, a client's) "
        "or minted with its key",
    )
    tok.add_argument("--user", help="a demo user of the local provider, e.g. demo-casey")
    tok.add_argument("--client", help="a client id: its client credentials token")
    tok.add_argument("--secret-file", help="the client's secret (default: the local one)")
    tok.add_argument("--scope", default="", help="scopes to ask for (space-separated)")
    tok.add_argument(
        "--role",
        action="append",
        help="mint a token with this role (repeatable): clinician, service_staff, "
        "coordinator, ics_lead, admin, partner, service",
    )
    tok.add_argument("--org", default="ICS-1", help="organisation code (with --role)")
    tok.add_argument("--sub", default="dev-user", help="user id (with --role)")
    tok.add_argument("--name", default="", help="display name (with --role)")
    tok.add_argument("--ics", default="ICS-1")
    tok.add_argument("--minutes", type=int, default=480)
    tok.set_defaults(fn=cmd_token)

    idp_cmd = sub.add_parser("idp", help="the local identity provider")
    idp_sub = idp_cmd.add_subparsers(dest="idp_command", required=True)
    rot = idp_sub.add_parser(
        "rotate-keys", help="sign with a new key; the old ones stay published until replaced"
    )
    rot.set_defaults(fn=cmd_idp)
