"""Every Temporal client Waymark makes, in one place: the worker, the bridge, the renewal
tool, the alert explainer, the health probes, the benches and the tests all connect here, so
each one encrypts and decrypts payloads with the keyring (shared/temporal_codec.py) and speaks
TLS where the settings say so."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.service import TLSConfig

from shared import oidc
from shared.settings import Settings
from shared.temporal_codec import EncryptionCodec, KeyringFile


def data_converter(settings: Settings) -> DataConverter:
    """Temporal's default converter with Waymark's payload encryption. Failures' messages and
    stack traces go into an encrypted payload too (Temporal keeps them in plain text by
    default, and an activity's error could name what it was handling). Reading the keyring
    now makes a process without one fail at start, not at its first payload."""
    keys = KeyringFile(settings.temporal_codec_keys_file())
    keys.load()
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to the frontend when any TLS setting is given (mTLS with a client certificate)."""
    if not settings.temporal_tls:
        return False

    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_ca_path),
        domain=settings.temporal_tls_server_name or None,
        client_cert=_read(settings.temporal_tls_cert_path),
        client_private_key=_read(settings.temporal_tls_key_path),
    )


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


logger = logging.getLogger(__name__)
#: the tasks keeping each authorised client's token fresh (held so they are not collected)
_refreshers: set[asyncio.Task[None]] = set()


async def _temporal_token(settings: Settings) -> tuple[dict[str, str], int]:
    """The process's own client credentials token for Temporal's authorizer, as gRPC metadata,
    and its lifetime in seconds (the secret file is re-read each time)."""
    assert settings.oauth_client_secret_path is not None  # the settings check it
    secret = settings.oauth_client_secret_path.read_text().strip()
    token, ttl = await oidc.client_credentials(
        settings, settings.oauth_client_id, secret, settings.temporal_oauth_scope
    )
    return {"authorization": f"Bearer {token}"}, ttl


async def _keep_fresh(client: Client, settings: Settings, ttl: int) -> None:
    while True:
        await asyncio.sleep(max(10, ttl - 60))
        try:
            client.rpc_metadata, ttl = await _temporal_token(settings)
        except Exception as exc:  # noqa: BLE001 - keep the old token and try again soon
            logger.warning("Temporal token not refreshed (%s); retrying", exc)
            ttl = 70


async def connect(
    settings: Settings,
    *,
    namespace: str | None = None,
    interceptors: Sequence[Interceptor] = (),
    encrypted: bool = True,
) -> Client:
    """A client of the instance's namespace (or `namespace`). `encrypted=False` is for what
    never carries a payload of a journey (health checks, namespace set-up) and for the test
    that reads a history as Temporal stores it. With `temporal_oauth_scope` set, every call
    carries the process's bearer token for Temporal's authorizer, refreshed before it expires."""
    metadata: dict[str, str] = {}
    ttl = 0
    if settings.temporal_oauth_scope:
        metadata, ttl = await _temporal_token(settings)
    client = await Client.connect(
        settings.temporal_target,
        namespace=namespace or settings.temporal_namespace,
        data_converter=data_converter(settings) if encrypted else DataConverter.default,
        interceptors=interceptors,
        tls=tls_config(settings),
        rpc_metadata=metadata,
    )
    if settings.temporal_oauth_scope:
        task = asyncio.create_task(_keep_fresh(client, settings, ttl))
        _refreshers.add(task)
        task.add_done_callback(_refreshers.discard)
    return client
