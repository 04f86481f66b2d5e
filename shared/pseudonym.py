"""Keyed pseudonymisation: a patient's NHS number becomes a stable pseudonymous id
(HMAC-SHA256 with a secret key), which is what events, logs and workflows carry.

Without the key the id cannot be turned back into an NHS number, nor recomputed from one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from shared.auth import write_private_file
from shared.settings import Settings


def ensure_pseudonym_key(settings: Settings) -> None:
    path = settings.pseudonym_key_file()
    if path.exists():
        return
    write_private_file(path, secrets.token_hex(32).encode(), exclusive=True)


@lru_cache(maxsize=4)
def _key(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def pseudonymise(nhs_number: str, settings: Settings) -> str:
    return pseudonymiser(settings)(nhs_number)


def pseudonymiser(settings: Settings) -> Callable[[str], str]:
    """`pseudonymise` with the key looked up once, for a caller with many NHS numbers (finding
    and reading the key file was most of a pseudonym's cost, profiled under issue #17)."""
    ensure_pseudonym_key(settings)
    key = _key(settings.pseudonym_key_file())

    def pseudonym(nhs_number: str) -> str:
        digest = hmac.new(key, nhs_number.encode(), hashlib.sha256).digest()
        return "pt_" + base64.b32encode(digest[:15]).decode().lower()

    return pseudonym
