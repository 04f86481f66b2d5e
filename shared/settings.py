"""Waymark's one settings model: every process reads it from `WAYMARK_*` environment variables.

The defaults describe the local, no-Docker stack started by `waymark up`. Ports default to
values that do not clash with a system install of PostgreSQL (5432), Kafka (9092) or Temporal
(7233). Docker Compose and Kubernetes override the host/address variables.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The Postgres schema each part owns. A part never reads another part's schema. The first four
#: are services with an HTTP API (api_port); `journeys` is the journey workflows' read model.
SERVICE_SCHEMAS: tuple[str, ...] = ("referrals", "directory", "care_plans", "notifications",
                                    "journeys")
#: the services with an HTTP API, in port order (api_port_base + 1, + 2, ...)
API_SERVICES: tuple[str, ...] = SERVICE_SCHEMAS[:4]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYMARK_", extra="ignore", frozen=True)

    # where `waymark up` keeps every piece of local state (data, logs, pid files, keys)
    home: Path = Field(default_factory=lambda: Path.cwd() / ".waymark")
    # name of this run of the Waymark processes; tests use "test" so they never touch a
    # developer's running stack (their pid files live under <home>/run/<instance>/)
    instance: str = "dev"

    # PostgreSQL
    pg_host: str = "127.0.0.1"
    pg_port: int = 54329
    pg_user: str = "waymark"
    pg_password: str = "waymark-local"
    db_name: str = "waymark"
    db_pool_size: int = 5

    # Apache Kafka
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_bootstrap: str = ""  # empty: 127.0.0.1:<kafka_port>
    kafka_heap: str = "512m"
    # prefixed onto every topic name; tests use "test." so they never share a developer's topics
    topic_prefix: str = ""

    # Temporal
    temporal_port: int = 17233
    temporal_ui_port: int = 18233
    temporal_address: str = ""  # empty: 127.0.0.1:<temporal_port>
    temporal_namespace: str = "waymark"

    # HTTP APIs: service n listens on api_port_base + n (referrals 1, directory 2, ...)
    api_host: str = "127.0.0.1"
    api_port_base: int = 18100

    # where one service reaches another's API (reads only), e.g.
    # {"referrals": "http://referrals-api:8000"}; a service not named is http://127.0.0.1:<port>
    api_urls: dict[str, str] = {}

    # input limits on every API (shared/web.py). A request body larger than this is refused
    # with 413 before it is parsed, whether it declares a Content-Length or streams in chunks.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # writes (POST, PUT, PATCH, DELETE) with a valid bearer token: a token bucket per principal
    # (organisation + user) holding `rate_limit_burst` requests and refilled at
    # `rate_limit_per_minute`; an empty bucket answers 429 with Retry-After. 0 turns it off.
    # The buckets live in each API process's memory, so with n replicas a caller may get up
    # to n times the rate: it is a guard against runaway clients, not a quota.
    rate_limit_per_minute: int = Field(default=300, ge=0)
    rate_limit_burst: int = Field(default=60, ge=1)
    # the API docs pages (/docs, /redoc; their scripts are served by the API itself, never a
    # CDN). None: on in local mode, off in production (404) unless set to true
    api_docs: bool | None = None
    # the live alert stream (GET /alerts/stream): open streams a user (issuer + subject) may
    # hold at once (a coordinator with a few tabs), and in all per API process; beyond either
    # a new stream is refused with 429 and Retry-After. Each holds a connection and a queue.
    alert_stream_max_per_user: int = Field(default=5, ge=1)
    alert_stream_max_total: int = Field(default=500, ge=1)
    # dashboard sessions (server-side, revocable): a session unused this long ends (idle
    # timeout, 30 min), and every session ends this long after sign-in (absolute, 8 h)
    dashboard_session_idle_seconds: int = Field(default=30 * 60, ge=10)
    dashboard_session_max_seconds: int = Field(default=8 * 3600, ge=60)

    # consumers
    consumer_max_attempts: int = 5
    consumer_backoff_seconds: float = 0.2
    # a message bigger than this is dead-lettered unread, before JSON decoding: an event
    # carries ids and codes (a few KiB at most), so a huge one is a bug or an attack, and
    # decoding it would cost every consumer of the topic memory and time. Below Kafka's own
    # 1 MiB message limit, so an oversized message still reaches the consumers and the DLQ.
    event_max_bytes: int = Field(default=256 * 1024, ge=1024)
    relay_poll_seconds: float = 2.0
    relay_batch_size: int = 200
    # publishing attempts before an outbox row is parked for an operator
    relay_max_attempts: int = 10

    # auth: tokens are verified with the public key; the private key exists only where
    # `waymark token` mints local tokens (never committed; generated under <home>/keys)
    jwt_issuer: str = "waymark-local"
    jwt_audience: str = "waymark"
    jwt_public_key_path: Path | None = None
    jwt_private_key_path: Path | None = None
    # key for keyed pseudonymisation (HMAC-SHA256) of NHS numbers into patient ids
    pseudonym_key_path: Path | None = None

    # the integrated care system this deployment serves: coordinators of this ICS see its alerts
    ics: str = "ICS-1"
    # how long a clinician's break-glass (emergency) read of a care plan lasts. Local policy,
    # after NHS Summary Care Record emergency access: short, reviewed by information governance
    break_glass_minutes: int = Field(default=60, ge=5, le=24 * 60)
    # the organisation code of the ICS's information governance team: its team inbox hears of
    # every break-glass read (empty: "<ics>-IG")
    information_governance_org: str = Field(default="", pattern=r"^[A-Za-z0-9-]{0,20}$")
    # "production" makes partner webhooks https-only and refuses private/loopback addresses
    # (SSRF guard); "local" allows http://127.0.0.1 receivers for development and tests
    deployment_mode: Literal["local", "production"] = "local"
    # a service credential (a bearer token file from the identity provider) the notifications
    # service reads personal details with; empty: minted locally with the private key
    service_token_path: Path | None = None

    # notifications: email over SMTP; empty host means the local SMTP sink `waymark up` runs
    # (127.0.0.1:<api_port_base + 25>)
    smtp_host: str = ""
    smtp_port: int = 0
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_from: str = "Waymark <no-reply@waymark.invalid>"
    # SMS through a GOV.UK Notify-shaped HTTP API; empty base URL means the local sink
    # (http://127.0.0.1:<api_port_base + 26>); the API key "name-<service uuid>-<secret uuid>"
    # is read from sms_api_key_path (generated locally under <home>/keys)
    sms_api_base: str = ""
    sms_api_key_path: Path | None = None
    # the Notify template holding one ((body)) placeholder: Waymark renders the text itself
    sms_template_id: str = "f33517ff-2a88-4f6e-b855-c550268ce08a"
    # delays between a message's attempts before it shows as failed in the delivery log
    message_retry_seconds: list[float] = [10, 60, 300, 1800, 7200]
    # quiet hours are a person's local (UK) time
    quiet_hours_timezone: str = "Europe/London"
    # partner webhooks: delays between attempts (Svix's published schedule: 5 s, 5 min, 30 min,
    # 2 h, 5 h, 10 h, 10 h, about 27.5 h in all), each with up to 20% jitter
    webhook_retry_seconds: list[float] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    # a subscription failing with no success for this long is disabled and its owner told
    webhook_disable_after_seconds: float = 86400
    # after a secret rotation the old secret keeps signing (alongside the new) this long
    webhook_secret_grace_seconds: float = 86400
    webhook_timeout_seconds: float = 10.0
    # one partner's deliveries in flight at once: a slow partner cannot take every sender
    webhook_max_in_flight_per_subscription: int = 4
    webhook_concurrency: int = 64
    # the dispatcher's fallback poll when no NOTIFY wakes it
    dispatcher_poll_seconds: float = 1.0

    # telemetry: OTLP/HTTP endpoint, e.g. http://collector:4318; empty means no exporter
    otlp_endpoint: str = ""

    @field_validator("pg_port", "kafka_port", "kafka_controller_port", "temporal_port",
                     "temporal_ui_port", "api_port_base")
    @classmethod
    def _port_in_range(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"port {v} is out of range 1..65535")
        return v

    @field_validator("message_retry_seconds", "webhook_retry_seconds")
    @classmethod
    def _delays(cls, v: list[float]) -> list[float]:
        if not v or any(d < 0 for d in v):
            raise ValueError("retry delays must be a non-empty list of seconds >= 0")
        return v

    @field_validator("quiet_hours_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("instance")
    @classmethod
    def _instance_is_a_name(cls, v: str) -> str:
        if not v.replace("-", "").isalnum():
            raise ValueError("instance must be letters, digits and '-'")
        return v

    @model_validator(mode="after")
    def _ports_distinct(self) -> Settings:
        ports = [self.pg_port, self.kafka_port, self.kafka_controller_port, self.temporal_port,
                 self.temporal_ui_port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"infrastructure ports must differ, got {ports}")
        api = {self.api_port_base + 1 + i for i in range(len(API_SERVICES))}
        if api & set(ports) or max(api) > 65535:
            raise ValueError(f"API ports {sorted(api)} clash with infrastructure ports {ports} "
                             "or exceed 65535")
        return self

    # --- derived values -------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def ig_org(self) -> str:
        """The ICS's information governance team (its team inbox hears of break-glass)."""
        return self.information_governance_org or f"{self.ics}-IG"[:20]

    @property
    def database_url(self) -> str:
        return (f"postgresql+asyncpg://{self.pg_user}:{self.pg_password}"
                f"@{self.pg_host}:{self.pg_port}/{self.db_name}")

    @property
    def run_dir(self) -> Path:
        return self.home / "run" / self.instance

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def api_port(self, service: str) -> int:
        return self.api_port_base + 1 + API_SERVICES.index(service)

    def api_url(self, service: str) -> str:
        return self.api_urls.get(service) or f"http://127.0.0.1:{self.api_port(service)}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def public_key_path(self) -> Path:
        return self.jwt_public_key_path or self.home / "keys" / "jwt-public.pem"

    def private_key_path(self) -> Path:
        return self.jwt_private_key_path or self.home / "keys" / "jwt-private.pem"

    @property
    def smtp_target(self) -> tuple[str, int]:
        if self.smtp_host:
            return self.smtp_host, self.smtp_port or 25
        return "127.0.0.1", self.api_port_base + 25

    @property
    def sms_base_url(self) -> str:
        return self.sms_api_base or f"http://127.0.0.1:{self.api_port_base + 26}"

    def sms_api_key_file(self) -> Path:
        return self.sms_api_key_path or self.home / "keys" / "notify-api.key"

    def pseudonym_key_file(self) -> Path:
        return self.pseudonym_key_path or self.home / "keys" / "pseudonym.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process needs to see the same settings as `settings`."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        key = f"WAYMARK_{name.upper()}"
        if value is None:
            env.pop(key, None)  # unset here means unset there, whatever the parent has
        elif isinstance(value, dict | list):
            env[key] = json.dumps(value)  # what the settings source parses back
        else:
            env[key] = str(value)
    return env
