"""The partner webhook rules: pure and synchronous, no I/O.

Deliveries follow the Standard Webhooks specification (https://www.standardwebhooks.com/):
a secret is `whsec_` + base64 of random key bytes; each request carries `webhook-id` (the
delivery id, the same on every attempt and resend so receivers can deduplicate),
`webhook-timestamp` (unix seconds) and `webhook-signature`, a space-separated list of
`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. After a secret rotation the
previous secret keeps signing alongside the new one for a grace period, so a partner can
switch its verifier over without dropping a delivery.

Retries follow Svix's published schedule (settings.webhook_retry_seconds) with up to 20%
jitter that only ever lengthens a delay, so the schedule never adds up to less than the
24 hours the issue promises. A subscription failing with no success for
settings.webhook_disable_after_seconds is disabled.

Endpoint URLs are checked against server-side request forgery: in production mode only
https, no credentials in the URL, and the host (a literal address, or every address its name
resolves to) must be a public unicast address. The resolution itself is I/O and happens
elsewhere (`endpoints.guard_endpoint`); this module judges the addresses it is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import secrets as _secrets
import socket
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from shared.access import Capability
from shared.errors import ValidationFailed

SECRET_PREFIX = "whsec_"
#: Standard Webhooks: keys are 24 to 64 bytes; Waymark makes 32 (the HMAC-SHA256 block input)
SECRET_BYTES = 32
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
RETRY_JITTER = 0.2
MAX_URL_LENGTH = 2000
DeploymentMode = Literal["local", "production"]

ADDRESS = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- secrets and signatures -------------------------------------------------------------------


def new_secret(nbytes: int = SECRET_BYTES) -> str:
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError(f"a secret is {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_...` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is 'whsec_' followed by base64") from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(f"a webhook secret's key is {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes")
    return key


def signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of exactly these body bytes."""
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(
    *,
    secret: str,
    previous_secret: str | None,
    previous_secret_until: datetime | None,
    now: datetime,
) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one while
    its grace period lasts."""
    out = [secret]
    if previous_secret and previous_secret_until is not None and now < previous_secret_until:
        out.append(previous_secret)
    return out


def sign_headers(
    *, msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    if not secrets:
        raise ValueError("at least one secret signs a delivery")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets
        ),
    }


def rotation(
    *, current: str, now: datetime, grace_seconds: float, new: str | None = None
) -> tuple[str, str, datetime]:
    """A rotation: (new secret, the previous one, until when the previous still signs).
    A second rotation within the grace period drops the oldest secret."""
    return new or new_secret(), current, now + timedelta(seconds=grace_seconds)


# --- retries and disabling ---------------------------------------------------------------------


def retry_delay(
    failures: int,
    schedule: Sequence[float],
    rng: random.Random | None = None,
    jitter: float = RETRY_JITTER,
) -> float | None:
    """Seconds to wait after the `failures`-th failed attempt in a row (1 = the first attempt
    failed), or None when the schedule is exhausted and the delivery has failed. The jitter
    (0 to +20%) spreads retries of many deliveries that failed together and never shortens
    the schedule."""
    if failures < 1:
        raise ValueError("failures counts failed attempts, from 1")
    if failures > len(schedule):
        return None
    base = float(schedule[failures - 1])
    return base * (1 + (rng or random).random() * jitter)


def should_disable(*, failing_since: datetime | None, now: datetime, window_seconds: float) -> bool:
    """A subscription failing with no success since `failing_since` for the whole window."""
    return failing_since is not None and now - failing_since >= timedelta(seconds=window_seconds)


def disabled_notice(
    *, subscription_id: str, url: str, failing_since: datetime, last_error: str | None
) -> tuple[str, str]:
    """Subject and body of the inbox message telling a partner its subscription is off."""
    subject = "Your Waymark webhook subscription has been disabled"
    body = (
        f"Waymark could not deliver events to {url} since "
        f"{failing_since.strftime('%d %B %Y %H:%M %Z').strip()}, so it has stopped "
        f"sending to it (subscription {subscription_id}).\n"
        + (f"Last error: {last_error}\n" if last_error else "")
        + "Fix the endpoint, then resume the subscription "
        f"(POST /webhook-subscriptions/{subscription_id}/resume) and ask for a resend of "
        "the events you missed (POST /webhook-subscriptions/"
        f"{subscription_id}/resend with the time range)."
    )
    return subject, body


# --- event types and filters -------------------------------------------------------------------


def check_event_types(
    event_types: Iterable[str], *, known: Collection[str], prefix: str, also: Collection[str] = ()
) -> list[str]:
    """The event types a subscription asks for: each registered and subscribable (referral
    events, and the `also` types: alerts addressed to the partner); duplicates dropped, order
    kept."""
    out: list[str] = []
    for t in event_types:
        if t not in known:
            raise ValidationFailed(f"unknown event type {t!r}", field="event_types")
        if not t.startswith(prefix) and t not in also:
            more = f" and {', '.join(sorted(also))}" if also else ""
            raise ValidationFailed(
                f"{t!r} cannot be subscribed to: partners may subscribe "
                f"to referral events ({prefix}*){more}",
                field="event_types",
            )
        if t not in out:
            out.append(t)
    if not out:
        raise ValidationFailed("name at least one event type", field="event_types")
    return out


#: the scope a partner's client needs to subscribe to an event type (by prefix): referral events
#: are facts about its referrals (referral.read); so are the alerts addressed to it (a referral
#: stalled, a person dropped after a closure), which carry codes about its referrals and no more
EVENT_SCOPES: tuple[tuple[str, Capability], ...] = (
    ("uk.waymark.referral.", Capability.REFERRAL_READ),
    ("uk.waymark.journey.alert.", Capability.REFERRAL_READ),
)


def event_capability(event_type: str) -> Capability:
    """The capability (a client's scope) an event type's subscription needs; an event type no
    prefix names needs webhooks.manage alone (check_event_types refuses those anyway)."""
    for prefix, capability in EVENT_SCOPES:
        if event_type.startswith(prefix):
            return capability
    return Capability.WEBHOOKS_MANAGE


PRIORITIES = ("routine", "urgent")
ROLES = ("sender", "receiver")
_CATEGORY_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-")


def check_filters(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A subscription's filters as `audience.subscription_matches` reads them; empty ones
    dropped. `service_categories` (directory category codes), `priorities`
    (routine, urgent), `role` (sender: the partner referred; receiver: it was referred to)."""
    out: dict[str, Any] = {}
    for key, value in (filters or {}).items():
        if value is None or value == []:
            continue
        if key == "service_categories":
            if (
                not isinstance(value, list)
                or not all(
                    isinstance(c, str) and 0 < len(c) <= 60 and set(c) <= _CATEGORY_CHARS
                    for c in value
                )
                or len(value) > 50
            ):
                raise ValidationFailed(
                    "service_categories is a list of category codes "
                    "(lower case letters, digits, '_' and '-')",
                    field="filters",
                )
            out[key] = sorted(set(value))
        elif key == "priorities":
            if not isinstance(value, list) or not all(p in PRIORITIES for p in value):
                raise ValidationFailed(
                    f"priorities are some of {', '.join(PRIORITIES)}", field="filters"
                )
            out[key] = sorted(set(value))
        elif key == "role":
            if value not in ROLES:
                raise ValidationFailed(f"role is one of {', '.join(ROLES)}", field="filters")
            out[key] = value
        else:
            raise ValidationFailed(
                f"unknown filter {key!r}; filters are service_categories, priorities and role",
                field="filters",
            )
    return out


# --- endpoint URLs and the SSRF guard -----------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    url: str
    scheme: str
    host: str  # lower case; IDNA (ASCII) for names, without brackets for IPv6
    port: int
    address: ADDRESS | None  # set when the host is a literal address

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if isinstance(self.address, ipaddress.IPv6Address) else self.host
        return host if self.port == default else f"{host}:{self.port}"


_BLOCKED_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_BLOCKED_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# IETF protocol assignments: not globally reachable (Python 3.11's is_global misses most)
_IETF = ipaddress.ip_network("192.0.0.0/24")


def address_problem(address: ADDRESS) -> str | None:
    """Why a partner endpoint may not be at this address in production, or None if it is a
    public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
        embedded = address.ipv4_mapped or (address.sixtofour if address.sixtofour else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(embedded)
            return f"an IPv6 address embedding {embedded}, {inner}" if inner else None
        if address.is_site_local:
            return "a site-local IPv6 address"
        if address in ipaddress.ip_network("fc00::/7"):
            return "a unique local (private) IPv6 address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (e.g. a cloud metadata service)"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if isinstance(address, ipaddress.IPv4Address) and address in _IETF:
        return "an IETF protocol assignment address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a public address"
    return None


def _refuse(url_problem: str) -> ValidationFailed:
    return ValidationFailed(f"the endpoint URL is not allowed: {url_problem}", field="url")


def _literal_address(host: str) -> ADDRESS | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_endpoint(url: str, *, mode: DeploymentMode) -> Endpoint:
    """Parse and check an endpoint URL without any I/O. In production mode: https only, and a
    literal address must be public (names are checked once resolved: `check_resolved`).
    Everywhere: an absolute http(s) URL with a host, no credentials, no fragment."""
    if not isinstance(url, str) or not url:
        raise _refuse("it is empty")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"it is longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise _refuse("it contains spaces or control characters")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
        raw_host = parts.hostname
    except ValueError as exc:
        raise _refuse(f"it cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _refuse("use an https:// URL")
    if mode == "production" and scheme != "https":
        raise _refuse("production accepts only https:// endpoints")
    if not raw_host:
        raise _refuse("it has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise _refuse(
            "it carries credentials (user:password@); authenticate with the signature instead"
        )
    if parts.fragment or url.endswith("#"):
        raise _refuse("it has a #fragment, which is never sent")
    if port == 0:
        raise _refuse("port 0")
    address = _literal_address(raw_host)
    if address is not None:
        host = str(address)
    else:
        try:
            host = raw_host.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise _refuse("its host is not a valid domain name") from None
        if (
            not host
            or len(host) > 253
            or any(not 0 < len(label) <= 63 for label in host.split("."))
        ):
            raise _refuse("its host is not a valid domain name")
        if not all(ch.isalnum() or ch in "-._" for ch in host):
            raise _refuse("its host is not a valid domain name")
        if _numeric_host(host):
            # 2130706433, 0x7f.1, 127.1: what inet_aton would turn into an address
            raise _refuse("write an address in standard dotted form, or use a name")
    endpoint = Endpoint(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        address=address,
    )
    if mode == "production":
        if address is not None:
            problem = address_problem(address)
            if problem:
                raise _refuse(f"{address} is {problem}")
        elif host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES):
            raise _refuse(f"{host} is a local name")
    return endpoint


def _numeric_host(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def check_resolved(
    endpoint: Endpoint, addresses: Iterable[str], *, mode: DeploymentMode
) -> list[ADDRESS]:
    """Every address the endpoint's host resolved to must be public (production mode): a name
    resolving to one public and one private address is refused, since either may be used."""
    resolved = []
    for a in addresses:
        try:
            resolved.append(ipaddress.ip_address(a))
        except ValueError:
            raise _refuse(
                f"{endpoint.host} resolved to something that is not an address ({a!r})"
            ) from None
    if not resolved:
        raise _refuse(f"{endpoint.host} does not resolve to any address")
    if mode == "production":
        for address in resolved:
            problem = address_problem(address)
            if problem:
                raise _refuse(f"{endpoint.host} resolves to {address}, {problem}")
    return resolved


def pinned_url(endpoint: Endpoint, address: ADDRESS) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The request to `address` itself (the address just checked, so a second DNS answer
    cannot point the request elsewhere): its URL, the Host header, and the TLS server name
    (httpx's `sni_hostname` extension) so the certificate is still checked for the name."""
    parts = urlsplit(endpoint.url)
    host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = f"{host}:{endpoint.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    extensions: dict[str, Any] = {}
    if endpoint.scheme == "https" and endpoint.address is None:
        extensions["sni_hostname"] = endpoint.host
    return url, {"Host": endpoint.host_header}, extensions
