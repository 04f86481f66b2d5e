"""Encryption of every Temporal payload: workflow inputs, signals, queries' answers, activity
inputs and results. Temporal's history and its UI then hold ciphertext, never a band, a flag
or a pseudonym.

A payload becomes `encoding: binary/encrypted`, `encryption-key-id: <kid>` and the data
`nonce (12 bytes) || AES-256-GCM(the whole original payload)`, with the key id bound as
associated data (a payload relabelled with another key id fails to decrypt). The shape is
temporalio/samples-python's `encryption` sample, so its codec server and the Temporal CLI's
`--codec-endpoint` speak it.

The keys are a keyring, a JSON file readable by its owner only:
`{"current": "<kid>", "keys": {"<kid>": "<base64 of 32 bytes>", ...}}`. Encoding uses the
current key; decoding picks the key a payload names, so histories written before a rotation
stay readable as long as their key stays in the ring. A payload that is not encrypted
(histories recorded before encryption, the tests' recorded histories) passes through decoding
unchanged; one naming a key the ring does not hold is an error, never a pass-through.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from shared.auth import write_private_file

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyringError(Exception):
    """The keyring file is missing or is not a keyring."""


class UnknownKeyError(Exception):
    """A payload names a key the keyring does not hold."""


class PayloadDecryptError(Exception):
    """A payload failed authentication: changed after it was written, or a different key."""


@dataclass(frozen=True)
class Keyring:
    current: str
    keys: dict[str, bytes]
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            if not KID.fullmatch(kid):
                raise KeyringError(f"key id {kid!r} must be 1-64 letters, digits, '.', '_', '-'")
            if len(key) != KEY_BYTES:
                raise KeyringError(f"key {kid!r} must be {KEY_BYTES} bytes, not {len(key)}")
            self._ciphers[kid] = AESGCM(key)
        if self.current not in self.keys:
            raise KeyringError(f"the current key {self.current!r} is not in the keyring")

    @classmethod
    def parse(cls, raw: bytes, *, source: str = "keyring") -> Keyring:
        try:
            doc = json.loads(raw)
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
            return cls(current=str(doc["current"]), keys=keys)
        except KeyringError as exc:
            raise KeyringError(f"{source}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise KeyringError(
                f'{source} is not a keyring {{"current": kid, "keys": {{kid: base64}}}} '
                f"({type(exc).__name__}: {exc})"
            ) from None

    def to_json(self) -> bytes:
        keys = {k: base64.b64encode(v).decode() for k, v in self.keys.items()}
        return json.dumps({"current": self.current, "keys": keys}, indent=2).encode() + b"\n"

    def cipher(self, kid: str) -> AESGCM | None:
        return self._ciphers.get(kid)

    def with_new_key(self, kid: str | None = None) -> Keyring:
        """The keyring with a fresh key made current; every older key kept for reading."""
        kid = kid or new_key_id()
        if kid in self.keys:
            raise KeyringError(f"the keyring already has a key {kid!r}")
        return Keyring(current=kid, keys={**self.keys, kid: secrets.token_bytes(KEY_BYTES)})


def new_key_id() -> str:
    """A key id that says when it was made: 20260105-9f2c41ab."""
    return f"{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(4)}"


def new_keyring() -> Keyring:
    kid = new_key_id()
    return Keyring(current=kid, keys={kid: secrets.token_bytes(KEY_BYTES)})


def read_keyring(path: Path) -> Keyring:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyringError(
            f"no Temporal payload keyring at {path} ({exc.strerror}): `waymark migrate` or "
            "`waymark up` makes a local one; a deployment mounts it (WAYMARK_TEMPORAL_CODEC_"
            "KEYS_PATH)"
        ) from None
    return Keyring.parse(raw, source=str(path))


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Replace the keyring in one step (a reader sees the old file or the new, never half)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    write_private_file(tmp, keyring.to_json(), exclusive=True)
    os.replace(tmp, path)


def ensure_keyring(path: Path) -> bool:
    """Make a keyring with one key where there is none; True if one was made."""
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    write_private_file(tmp, new_keyring().to_json(), exclusive=True)
    try:
        os.link(tmp, path)  # fails if another process made one meanwhile: keep theirs
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def rotate_keyring(path: Path) -> tuple[str, str]:
    """A new key becomes current; the old ones stay for reading. (old kid, new kid)."""
    old = read_keyring(path)
    new = old.with_new_key()
    write_keyring(path, new)
    return old.current, new.current


class KeyringFile:
    """The keyring as its file holds it now. Each use looks at the file's identity (inode,
    size, modification time: one stat, about a microsecond) and reads it again when it changed,
    so a rotation reaches running processes without a restart. A payload naming a key not yet
    seen reads the file again before giving up (another process may have rotated first)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._ring: Keyring | None = None

    def load(self, *, force: bool = False) -> Keyring:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if self._ring is None or force or stamp != self._stamp:
            self._ring = read_keyring(self.path)
            self._stamp = stamp
        return self._ring


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with the keyring's current key; decoding picks the payload's key."""

    def __init__(self, keys: KeyringFile) -> None:
        super().__init__()
        self.keys = keys

    async def encode(self, payloads: Iterable[Payload]) -> list[Payload]:
        ring = self.keys.load()
        kid = ring.current.encode()
        cipher = ring.cipher(ring.current)
        assert cipher is not None
        out = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, p.SerializeToString(), kid)
            out.append(Payload(metadata={"encoding": ENCODING, KEY_ID: kid}, data=nonce + sealed))
        return out

    async def decode(self, payloads: Iterable[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def decode_one(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            return p  # written before encryption (or by a test's plain client)
        kid = p.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        ring = self.keys.load()
        cipher = ring.cipher(kid)
        if cipher is None:
            ring = self.keys.load(force=True)
            cipher = ring.cipher(kid)
        if cipher is None:
            raise UnknownKeyError(
                f"a Temporal payload is encrypted with key {kid!r}, which the keyring at "
                f"{self.keys.path} does not hold (it has {', '.join(sorted(ring.keys))}); "
                "put the key back in the keyring to read it"
            )
        if len(p.data) <= NONCE_BYTES:
            raise PayloadDecryptError(f"a Temporal payload under key {kid!r} is truncated")
        try:
            plain = cipher.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise PayloadDecryptError(
                f"a Temporal payload under key {kid!r} failed authentication: it was changed "
                "after it was written, or its key in the keyring is not the one it was written with"
            ) from None
        return Payload.FromString(plain)

    @staticmethod
    def key_id(p: Payload) -> str | None:
        """The key a payload is encrypted with, or None if it is not encrypted."""
        if p.metadata.get("encoding") != ENCODING:
            return None
        return p.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
