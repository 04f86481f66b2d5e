"""The SSRF guard's I/O half: an endpoint URL is checked (domain.check_endpoint), and in
production its name is resolved and every address checked too (domain.check_resolved), when a
subscription is made or changed and again before each delivery."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from services.notifications.webhooks import domain
from services.notifications.webhooks.domain import ADDRESS, DeploymentMode, Endpoint
from shared.errors import ValidationFailed

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


async def guard_endpoint(
    url: str, *, mode: DeploymentMode, resolve: Resolver | None = None, timeout: float = 5.0
) -> tuple[Endpoint, list[ADDRESS]]:
    """Check an endpoint URL; in production mode also resolve its name and check every
    address (the checked addresses are returned so the request can go to one of them)."""
    endpoint = domain.check_endpoint(url, mode=mode)
    if mode != "production":
        return endpoint, []
    if endpoint.address is not None:
        return endpoint, [endpoint.address]
    try:
        async with asyncio.timeout(timeout):
            addresses = await (resolve or resolve_addresses)(endpoint.host, endpoint.port)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise ValidationFailed(
            f"the endpoint URL is not allowed: {endpoint.host} cannot be "
            f"resolved ({type(exc).__name__})",
            field="url",
        ) from None
    return endpoint, domain.check_resolved(endpoint, addresses, mode=mode)
