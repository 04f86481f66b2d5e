"""Secrets: none in the repository, and the ones Waymark needs are made at set-up (readable by
their owner only) or read from where the environment says.

The scan reads every file git tracks or would add (`git ls-files --cached --others
--exclude-standard`: what the next commit could hold) for private keys (PEM), JSON Web
Tokens, GOV.UK Notify API keys, Standard Webhooks secrets (`whsec_`) and AWS access keys. Only
the entries of ALLOWED may match, each an obviously synthetic fixture; each pattern is shown
to find a real secret of its kind made here, so a scan that finds nothing means something.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import uuid
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm

from devtools.stack import ensure_sms_api_key
from services.notifications.webhooks import domain as webhooks
from shared import oidc
from shared.auth import (
    ensure_keys,
    mint_token,
    service_token,
    verify_token,
    write_private_file,
)
from shared.errors import Unauthenticated
from shared.pseudonym import ensure_pseudonym_key, pseudonymise
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: what a secret of each kind looks like (written so that this file does not match itself)
PATTERNS: dict[str, re.Pattern[str]] = {
    "private key": re.compile("-" * 5 + r"BEGIN (?:[A-Z]+ )*PRIVATE KEY" + "-" * 5),
    # a JSON Web Key's private part (an EC or RSA key's "d")
    "private JWK": re.compile('"d"' + r'\s*:\s*"[A-Za-z0-9_-]{40,}"'),
    "JSON Web Token": re.compile(
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\."
        r"[A-Za-z0-9_-]{16,}"
    ),
    "Notify API key": re.compile(rf"[A-Za-z0-9_]+-{_UUID}-{_UUID}"),
    "webhook secret": re.compile("whsec" + r"_[A-Za-z0-9+/]{24,}={0,2}"),
    "AWS access key": re.compile(r"\b(?:AK|AS)IA[0-9A-Z]{16}\b"),
}
#: (path, the matching text) of the synthetic fixtures allowed to match: none today. Add an
#: entry only for a value that is obviously not a real secret, with the reason beside it.
ALLOWED: dict[tuple[str, str], str] = {}
#: file names that are secrets whatever they hold
SECRET_FILES = re.compile(
    r"(^|/)(\.waymark/|.*\.(pem|key|p12|pfx|jks)$|id_(rsa|ed25519|ecdsa)$|"
    r"\.env$|temporal-codec[^/]*\.json$)"
)


def _candidate_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return sorted(p for p in out.stdout.decode().split("\0") if p)


def scan(text: str) -> list[tuple[str, str]]:
    return [
        (kind, m.group(0)) for kind, pattern in PATTERNS.items() for m in pattern.finditer(text)
    ]


class TestRepository:
    def test_no_secret_in_any_file_the_repository_holds_or_would_add(self) -> None:
        files = _candidate_files()
        assert len(files) > 100 and "shared/auth.py" in files  # git answered
        found, scanned = [], 0
        for name in files:
            path = ROOT / name
            if not path.is_file():
                continue  # deleted in the working tree
            data = path.read_bytes()
            if b"\0" in data[:8192]:
                continue  # binary (images)
            scanned += 1
            for kind, value in scan(data.decode("utf-8", errors="replace")):
                if (name, value) not in ALLOWED:
                    found.append(f"{name}: a {kind} ({value[:24]}...)")
        print(
            f"\nsecrets: {scanned} files scanned, {len(PATTERNS)} kinds of secret, "
            f"{len(found)} found"
        )
        assert found == []

    def test_no_file_that_is_a_secret_by_its_name(self) -> None:
        assert [f for f in _candidate_files() if SECRET_FILES.search(f)] == []

    def test_the_local_state_with_its_keys_is_ignored_by_git(self, settings: Settings) -> None:
        probe = (
            (settings.local_idp_dir / "jwks.json").relative_to(ROOT)
            if settings.home.is_relative_to(ROOT)
            else Path(".waymark/keys/idp/dev/jwks.json")
        )
        for path in (
            str(probe),
            ".waymark/keys/pseudonym.key",
            ".waymark/keys/notify-api.key",
            ".waymark/keys/temporal-codec.json",
        ):
            assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    def test_every_pattern_finds_a_real_secret_of_its_kind(self, tmp_path: Path) -> None:
        s = Settings(home=tmp_path)
        ensure_keys(s)
        ensure_sms_api_key(s)
        rsa_pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            .decode()
        )
        samples = {
            "private key": [rsa_pem],
            "private JWK": [(s.local_idp_dir / "jwks.json").read_text()],
            "JSON Web Token": [mint_token(s, sub="u", roles=["clinician"], org="ORG-1")],
            "Notify API key": [s.sms_api_key_file().read_text().strip()],
            "webhook secret": [webhooks.new_secret(), webhooks.new_secret()],
            "AWS access key": [
                "AKIA"
                + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
            ],
        }
        assert set(samples) == set(PATTERNS)
        for kind, values in samples.items():
            for value in values:
                assert kind in {k for k, _ in scan(f"config = '{value}'\n")}, (kind, value)

    def test_the_kubernetes_secrets_template_holds_placeholders_only(self) -> None:
        docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/secrets.template.yaml").read_text()))
        secrets_ = [d for d in docs if d and d.get("kind") == "Secret"]
        assert len(secrets_) >= 5
        for d in secrets_:
            assert "data" not in d, d["metadata"]["name"]  # base64 data would hide a value
            for key, value in d["stringData"].items():
                assert value == "REPLACE-ME" or (
                    key == "username" and (value == "temporal" or value.startswith("waymark_"))
                ), (key, value)
        config = yaml.safe_load((ROOT / "deploy/k8s/config.yaml").read_text())
        assert not [k for k in config["data"] if re.search(r"PASSWORD|SECRET|TOKEN$", k)]
        assert "WAYMARK_JWT_PRIVATE_KEY_PATH" not in config["data"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestKeysMadeAtSetUp:
    def test_the_test_stack_s_own_keys_were_made_by_set_up_for_their_owner_only(
        self, infra: Settings
    ) -> None:
        for path in (
            infra.local_idp_dir / "jwks.json",
            infra.local_idp_dir / "secrets" / "waymark-dashboard",
            infra.pseudonym_key_file(),
            infra.sms_api_key_file(),
            infra.temporal_codec_keys_file(),
        ):
            assert path.is_file(), path
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
            assert path.stat().st_uid == os.getuid()

    def test_signing_keys_are_made_once_readable_by_their_owner_only(self, tmp_path: Path) -> None:
        s = Settings(home=tmp_path / "home")
        ensure_keys(s)
        path = s.local_idp_dir / "jwks.json"
        assert _mode(path) == 0o600
        first = path.read_bytes()
        jwk = json.loads(first)["keys"][0]
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256") and jwk["kid"]
        ensure_keys(s)
        assert path.read_bytes() == first  # never replaced
        token = mint_token(s, sub="u", roles=["clinician"], org="ORG-1")
        public = ECAlgorithm.from_jwk({k: v for k, v in jwk.items() if k != "d"})
        claims = jwt.decode(token, public, algorithms=["ES256"], audience=s.jwt_audience)
        assert claims["sub"] == "u" and jwt.get_unverified_header(token)["kid"] == jwk["kid"]

    def test_two_set_ups_make_different_keys(self, tmp_path: Path) -> None:
        a, b = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
        for s in (a, b):
            ensure_keys(s)
            ensure_pseudonym_key(s)
            ensure_sms_api_key(s)
        for path in ("keys/pseudonym.key", "keys/notify-api.key"):
            assert (tmp_path / "a" / path).read_bytes() != (tmp_path / "b" / path).read_bytes()
        jwks = [(s.local_idp_dir / "jwks.json").read_bytes() for s in (a, b)]
        assert jwks[0] != jwks[1]

    def test_the_pseudonym_and_notify_keys_are_private_and_well_formed(
        self, tmp_path: Path
    ) -> None:
        s = Settings(home=tmp_path)
        ensure_pseudonym_key(s)
        ensure_sms_api_key(s)
        assert _mode(s.pseudonym_key_file()) == 0o600
        assert re.fullmatch(r"[0-9a-f]{64}", s.pseudonym_key_file().read_text().strip())
        assert _mode(s.sms_api_key_file()) == 0o600
        assert PATTERNS["Notify API key"].fullmatch(s.sms_api_key_file().read_text().strip())
        with pytest.raises(FileExistsError):  # a pseudonym key is never overwritten
            write_private_file(s.pseudonym_key_file(), b"00" * 32, exclusive=True)

    def test_each_webhook_secret_is_new_random_bytes(self) -> None:
        made = {webhooks.new_secret() for _ in range(50)}
        assert len(made) == 50
        for secret in made:
            assert len(webhooks.secret_key(secret)) == 32


class TestSecretsFromTheEnvironment:
    async def test_a_deployment_verifies_tokens_with_the_issuer_s_published_keys_alone(
        self, infra: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Production names the ICS's issuer and mounts the pseudonym key; the APIs fetch the
        issuer's keys (JWKS) and make no key of their own."""
        mounted = tmp_path / "mounted"
        mounted.mkdir()
        (mounted / "pseudonym.key").write_text(secrets.token_hex(32))
        home = tmp_path / "home"
        monkeypatch.setenv("WAYMARK_HOME", str(home))
        monkeypatch.setenv("WAYMARK_PSEUDONYM_KEY_PATH", str(mounted / "pseudonym.key"))
        monkeypatch.setenv("WAYMARK_OIDC_ISSUER", infra.issuer)
        s = Settings()
        token = mint_token(infra, sub="dr-who", roles=["clinician"], org="GP-1")
        assert (await verify_token(s, token)).user == "dr-who"
        assert pseudonymise("9434765919", s).startswith("pt_")
        assert not home.exists()  # nothing was generated: no key, no directory

    async def test_a_process_s_client_secret_is_read_from_its_file(
        self, infra: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "client-secret"
        path.write_text((infra.local_idp_dir / "secrets" / "waymark-notifications").read_text())
        s = infra.model_copy(
            update={"oauth_client_id": "waymark-notifications", "oauth_client_secret_path": path}
        )
        token = await service_token(s, "notifications")
        p = await verify_token(s, token)
        assert (p.user, p.client_id, p.org) == ("waymark-notifications",) * 2 + ("WAYMARK",)
        assert p.is_client and "message_context.read" in (p.scopes or ())
        path.write_text(f"rotated-{uuid.uuid4().hex}\n")  # a secret the provider does not know
        monkeypatch.setattr(oidc, "_client_tokens", {})  # the cached token aside
        with pytest.raises(Unauthenticated, match="invalid_client"):
            await service_token(s, "notifications")
