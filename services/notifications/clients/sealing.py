"""The registration access token sealed at rest: AES-256-GCM under a key kept outside the
database (settings.partner_client_seal_key_file()), the client id bound in as associated data
so a sealed token copied onto another row does not open. A copy of the table alone can
neither read, change nor delete a partner's client at the provider."""

from __future__ import annotations

import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.auth import write_private_file
from shared.settings import Settings

VERSION = b"\x01"  # the format: version, 12-byte nonce, ciphertext with its tag


class SealKeyMissing(RuntimeError):
    """Production must be given the key; only a local stack makes its own."""


def _key(settings: Settings) -> bytes:
    path = settings.partner_client_seal_key_file()
    if not path.exists():
        if settings.deployment_mode != "local":
            raise SealKeyMissing(
                f"no partner client sealing key at {path}: set "
                "WAYMARK_PARTNER_CLIENT_SEAL_KEY_PATH to a file of 32 random bytes"
            )
        try:
            write_private_file(path, secrets.token_bytes(32), exclusive=True)
        except FileExistsError:
            pass  # another process made it a moment ago: use theirs
    key = path.read_bytes()
    if len(key) != 32:
        raise SealKeyMissing(f"the partner client sealing key at {path} is not 32 bytes")
    return key


def seal(settings: Settings, client_id: str, token: str) -> bytes:
    nonce = os.urandom(12)
    return (
        VERSION + nonce + AESGCM(_key(settings)).encrypt(nonce, token.encode(), client_id.encode())
    )


def unseal(settings: Settings, client_id: str, sealed: bytes) -> str:
    if sealed[:1] != VERSION:
        raise ValueError("unknown sealed token format")
    try:
        plain = AESGCM(_key(settings)).decrypt(sealed[1:13], sealed[13:], client_id.encode())
    except InvalidTag:
        raise ValueError("the sealed registration token does not open with this key") from None
    return plain.decode()
