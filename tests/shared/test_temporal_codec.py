"""The Temporal payload codec and its keyring (shared/temporal_codec.py), and the one way
every Temporal client is built (shared/temporal_client.py). Pure: files in tmp_path only."""

from __future__ import annotations

import argparse
import base64
import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.service import TLSConfig

from devtools.temporal_cli import cmd_temporal
from shared.settings import Settings
from shared.temporal_client import data_converter, tls_config
from shared.temporal_codec import (
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    Keyring,
    KeyringError,
    KeyringFile,
    PayloadDecryptError,
    UnknownKeyError,
    ensure_keyring,
    read_keyring,
    rotate_keyring,
    write_keyring,
)


@dataclass
class Screening:
    patient_id: str
    instrument: str
    band: str
    safety_flag: bool


SECRET = Screening("pt_abcdefghijklmnop", "PHQ-9", "severe", True)


def json_payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


PLAIN = [
    json_payload('{"patient_id": "pt_abcdefghijklmnop", "band": "severe"}'),
    Payload(metadata={"encoding": b"binary/null"}),
    Payload(metadata={"encoding": b"binary/plain"}, data=bytes(range(256))),
    json_payload('"high"'),
]


@pytest.fixture
def ring(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "temporal-codec.json"
    assert ensure_keyring(path)
    return path


def codec(path: Path) -> EncryptionCodec:
    return EncryptionCodec(KeyringFile(path))


class TestEncryption:
    async def test_every_payload_round_trips_unchanged(self, ring: Path) -> None:
        c = codec(ring)
        assert await c.decode(await c.encode(PLAIN)) == PLAIN

    async def test_an_encrypted_payload_shows_no_plaintext_and_names_its_key(
        self, ring: Path
    ) -> None:
        kid = read_keyring(ring).current
        for p in await codec(ring).encode(PLAIN):
            assert p.metadata["encoding"] == ENCODING == b"binary/encrypted"
            assert p.metadata[KEY_ID] == kid.encode()
            assert set(p.metadata) == {"encoding", KEY_ID}  # json/plain etc. is inside
            for word in (b"severe", b"pt_abcdefghijklmnop", b"json/plain", b"high"):
                assert word not in p.SerializeToString()

    async def test_the_same_payload_encrypts_differently_each_time(self, ring: Path) -> None:
        c = codec(ring)
        first, second = await c.encode([PLAIN[0], PLAIN[0]])
        assert first.data[:12] != second.data[:12] and first.data != second.data

    async def test_through_temporals_data_converter_a_dataclass_round_trips(
        self, ring: Path
    ) -> None:
        converter = data_converter(Settings(temporal_codec_keys_path=ring))
        encoded = await converter.encode([SECRET, "PHQ-9", 27])
        assert all(p.metadata["encoding"] == ENCODING for p in encoded)
        assert b"severe" not in b"".join(p.data for p in encoded)
        assert await converter.decode(encoded, [Screening, str, int]) == [SECRET, "PHQ-9", 27]

    async def test_a_failures_message_is_encrypted_too(self, ring: Path) -> None:
        # Temporal keeps failure messages and stack traces in plain text unless told otherwise
        from temporalio.api.failure.v1 import Failure
        from temporalio.exceptions import ApplicationError

        converter = data_converter(Settings(temporal_codec_keys_path=ring))
        failure = Failure()
        await converter.encode_failure(ApplicationError("band severe for pt_x"), failure)
        assert b"severe" not in failure.SerializeToString()
        assert failure.encoded_attributes.metadata["encoding"] == ENCODING
        assert str(await converter.decode_failure(failure)) == "band severe for pt_x"


class TestTampering:
    async def test_a_changed_byte_anywhere_in_the_data_is_refused(self, ring: Path) -> None:
        c = codec(ring)
        [sealed] = await c.encode([PLAIN[0]])
        for i in (0, 11, 12, len(sealed.data) // 2, len(sealed.data) - 1):
            changed = bytearray(sealed.data)
            changed[i] ^= 0x01
            bad = Payload(metadata=dict(sealed.metadata), data=bytes(changed))
            with pytest.raises(PayloadDecryptError, match="failed authentication"):
                await c.decode([bad])

    async def test_a_payload_relabelled_with_another_held_key_is_refused(self, ring: Path) -> None:
        # the key id is bound as associated data: even a key the ring holds can't be swapped in
        c = codec(ring)
        [sealed] = await c.encode([PLAIN[0]])
        old = read_keyring(ring)
        # same key bytes under two ids: only the binding tells them apart
        write_keyring(
            ring, Keyring(current=old.current, keys={**old.keys, "twin": old.keys[old.current]})
        )
        relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"twin"}, data=sealed.data)
        with pytest.raises(PayloadDecryptError):
            await c.decode([relabelled])

    async def test_a_truncated_payload_is_refused(self, ring: Path) -> None:
        c = codec(ring)
        [sealed] = await c.encode([PLAIN[0]])
        for data in (b"", sealed.data[:12], sealed.data[:-1]):
            with pytest.raises(PayloadDecryptError):
                await c.decode([Payload(metadata=dict(sealed.metadata), data=data)])

    async def test_a_payload_under_another_keyrings_key_of_the_same_id_is_refused(
        self, tmp_path: Path, ring: Path
    ) -> None:
        [sealed] = await codec(ring).encode([PLAIN[0]])
        other = tmp_path / "other.json"
        kid = read_keyring(ring).current
        write_keyring(other, Keyring(current=kid, keys={kid: b"\x07" * 32}))
        with pytest.raises(PayloadDecryptError):
            await codec(other).decode([sealed])


class TestUnknownKeys:
    @pytest.mark.parametrize("kid", [b"retired-2024", b"", b"\xff\xfe"])
    async def test_a_payload_naming_a_key_not_in_the_ring_is_an_error_not_a_pass_through(
        self, ring: Path, kid: bytes
    ) -> None:
        p = Payload(metadata={"encoding": ENCODING, KEY_ID: kid}, data=b"\x00" * 40)
        with pytest.raises(UnknownKeyError, match="does not hold") as err:
            await codec(ring).decode([p])
        assert read_keyring(ring).current in str(err.value)  # names what the ring has
        assert str(ring) in str(err.value)

    async def test_a_payload_without_a_key_id_is_an_error(self, ring: Path) -> None:
        with pytest.raises(UnknownKeyError):
            await codec(ring).decode([Payload(metadata={"encoding": ENCODING}, data=b"x" * 40)])


class TestPlaintextPassesThrough:
    async def test_payloads_written_before_encryption_decode_unchanged(self, ring: Path) -> None:
        assert await codec(ring).decode(PLAIN) == PLAIN

    async def test_a_history_mixing_plain_and_encrypted_payloads_decodes(self, ring: Path) -> None:
        c = codec(ring)
        mixed = [PLAIN[0], *(await c.encode([PLAIN[3]])), PLAIN[1]]
        assert await c.decode(mixed) == [PLAIN[0], PLAIN[3], PLAIN[1]]


class TestRotation:
    async def test_after_rotation_old_ciphertext_decodes_and_new_uses_the_new_key(
        self, ring: Path
    ) -> None:
        before = codec(ring)
        old_sealed = await before.encode(PLAIN)
        old_kid, new_kid = rotate_keyring(ring)
        assert old_kid != new_kid
        after = codec(ring)  # a process started after the rotation
        assert await after.decode(old_sealed) == PLAIN
        new_sealed = await after.encode(PLAIN)
        assert {p.metadata[KEY_ID] for p in new_sealed} == {new_kid.encode()}
        assert await after.decode(new_sealed) == PLAIN

    async def test_a_running_codec_takes_up_a_rotation_without_a_restart(self, ring: Path) -> None:
        running = codec(ring)
        old_sealed = await running.encode([PLAIN[0]])
        _, new_kid = rotate_keyring(ring)
        [fresh] = await running.encode([PLAIN[0]])
        assert fresh.metadata[KEY_ID] == new_kid.encode()
        assert await running.decode([*old_sealed, fresh]) == [PLAIN[0], PLAIN[0]]

    async def test_a_codec_decodes_a_key_another_process_rotated_in_meanwhile(
        self, ring: Path
    ) -> None:
        reader, writer = codec(ring), codec(ring)
        await reader.decode(await reader.encode([PLAIN[0]]))  # the reader has loaded the ring
        rotate_keyring(ring)
        assert await reader.decode(await writer.encode([PLAIN[0]])) == [PLAIN[0]]

    def test_rotations_keep_every_older_key(self, ring: Path) -> None:
        kids = [read_keyring(ring).current]
        for _ in range(3):
            kids.append(rotate_keyring(ring)[1])
        after = read_keyring(ring)
        assert sorted(after.keys) == sorted(kids) and after.current == kids[-1]
        assert len(set(after.keys.values())) == 4  # each a fresh key

    def test_the_cli_rotates_and_lists_key_ids_never_keys(
        self, ring: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        s = Settings(temporal_codec_keys_path=ring)
        old = read_keyring(ring)
        assert cmd_temporal(argparse.Namespace(action="rotate-key"), s) == 0
        new = read_keyring(ring)
        assert new.current != old.current and new.current in capsys.readouterr().out
        assert cmd_temporal(argparse.Namespace(action="keys"), s) == 0
        out = capsys.readouterr().out
        assert f"{new.current}  (current)" in out and old.current in out
        assert all(base64.b64encode(k).decode() not in out for k in new.keys.values())

    def test_the_cli_says_when_there_is_no_keyring(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        s = Settings(temporal_codec_keys_path=tmp_path / "absent.json")
        assert cmd_temporal(argparse.Namespace(action="rotate-key"), s) == 1
        assert "waymark migrate" in capsys.readouterr().err


class TestKeyringFile:
    def test_made_once_readable_by_its_owner_only(self, ring: Path) -> None:
        assert stat.S_IMODE(ring.stat().st_mode) == 0o600
        content = ring.read_bytes()
        assert not ensure_keyring(ring)
        assert ring.read_bytes() == content
        rotate_keyring(ring)
        assert stat.S_IMODE(ring.stat().st_mode) == 0o600
        assert [p.name for p in ring.parent.iterdir()] == [ring.name]  # no temp file left

    def test_the_file_is_the_documented_json(self, ring: Path) -> None:
        doc = json.loads(ring.read_text())
        assert set(doc) == {"current", "keys"} and doc["current"] in doc["keys"]
        assert all(len(base64.b64decode(v)) == 32 for v in doc["keys"].values())

    def test_a_missing_keyring_says_how_to_make_one(self, tmp_path: Path) -> None:
        with pytest.raises(KeyringError, match="waymark migrate"):
            read_keyring(tmp_path / "none.json")
        with pytest.raises(KeyringError):
            data_converter(Settings(temporal_codec_keys_path=tmp_path / "none.json"))

    @pytest.mark.parametrize(
        "content",
        [
            b"not json",
            b"[]",
            b'{"keys": {}}',
            b'{"current": "a", "keys": {}}',
            b'{"current": "a", "keys": {"a": "short"}}',
            b'{"current": "a", "keys": {"a": "' + base64.b64encode(b"k" * 16) + b'"}}',
            b'{"current": "a b", "keys": {"a b": "' + base64.b64encode(b"k" * 32) + b'"}}',
            b'{"current": "a", "keys": {"a": "!!!not base64!!!"}}',
        ],
    )
    def test_anything_but_a_keyring_is_refused_with_the_files_name(
        self, tmp_path: Path, content: bytes
    ) -> None:
        path = tmp_path / "ring.json"
        path.write_bytes(content)
        with pytest.raises(KeyringError, match="ring.json"):
            read_keyring(path)


class TestTls:
    def test_no_tls_setting_means_plain_grpc(self) -> None:
        assert tls_config(Settings()) is False

    def test_mtls_reads_the_client_pair_the_ca_and_the_server_name(self, tmp_path: Path) -> None:
        for name in ("ca.pem", "cert.pem", "key.pem"):
            (tmp_path / name).write_bytes(name.encode())
        tls = tls_config(
            Settings(
                temporal_tls_ca_path=tmp_path / "ca.pem",
                temporal_tls_cert_path=tmp_path / "cert.pem",
                temporal_tls_key_path=tmp_path / "key.pem",
                temporal_tls_server_name="temporal-frontend.temporal.svc",
            )
        )
        assert tls == TLSConfig(
            server_root_ca_cert=b"ca.pem",
            domain="temporal-frontend.temporal.svc",
            client_cert=b"cert.pem",
            client_private_key=b"key.pem",
        )

    def test_a_server_name_alone_is_tls_with_the_systems_roots(self) -> None:
        tls = tls_config(Settings(temporal_tls_server_name="temporal.example.nhs.uk"))
        assert isinstance(tls, TLSConfig) and tls.server_root_ca_cert is None

    def test_a_client_certificate_without_its_key_is_refused_at_start(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="go together"):
            Settings(temporal_tls_cert_path=tmp_path / "cert.pem")
