"""Test session set-up: the real stack, started once per session through the same code as
`waymark up`, and reused when it is already running.

Tests run as the `test` instance: database `waymark_test` (recreated each session), topics
prefixed `test.`, Temporal namespace `waymark-test`, API ports from 18201. A developer's running
`dev` stack shares the PostgreSQL, Kafka and Temporal processes but none of their data.
"""

from __future__ import annotations

import os

# must happen before anything reads settings (get_settings() is cached per process); set them
# yourself to run a second test session beside this one (another instance, db, prefix, ports)
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _name, _value in {
    "WAYMARK_INSTANCE": "test",
    "WAYMARK_DB_NAME": "waymark_test",
    "WAYMARK_TOPIC_PREFIX": "test.",
    "WAYMARK_TEMPORAL_NAMESPACE": "waymark-test",
    "WAYMARK_API_PORT_BASE": "18200",
    "WAYMARK_CONSUMER_BACKOFF_SECONDS": "0.05",
    "WAYMARK_CONSUMER_MAX_ATTEMPTS": "3",
    # the stack's dispatcher retries in seconds, not hours; a subscription failing with no
    # success for 20 s is disabled (the production window is 24 h, its retries ~27.5 h)
    "WAYMARK_WEBHOOK_RETRY_SECONDS": "[0.3, 0.6, 1.2, 2.4, 4.8, 9.6]",
    "WAYMARK_WEBHOOK_DISABLE_AFTER_SECONDS": "20",
    "WAYMARK_WEBHOOK_TIMEOUT_SECONDS": "3",
    "WAYMARK_MESSAGE_RETRY_SECONDS": "[0.3, 0.6, 1.2]",
    "WAYMARK_DISPATCHER_POLL_SECONDS": "0.5",
    # the fuzzers and the load smoke test send far more writes per user than a person could;
    # the write rate limit is tested with a low-limit app of its own (tests/security)
    # the key-rotation test asks for a new kid moments after the APIs first fetched the keys
    "WAYMARK_OIDC_JWKS_MIN_REFRESH_SECONDS": "0.2",
    "WAYMARK_RATE_LIMIT_PER_MINUTE": "1000000",
    "WAYMARK_RATE_LIMIT_BURST": "100000",
    # the default journey rules, plus one test-only category of service that must triage
    # within a minute (the browser tests watch a real stall happen; no other test refers to it)
    "WAYMARK_JOURNEY_RULES": os.pathsep.join(
        os.path.join(_REPO, *parts)
        for parts in (
            ("workflows", "journeys", "rules.toml"),
            ("tests", "dashboard", "fast_triage_rules.toml"),
        )
    ),
}.items():
    os.environ.setdefault(_name, _value)
# the instance's own Temporal payload keyring: the key rotation test rotates it, never the
# keyring of a developer's stack sharing the same home
os.environ.setdefault(
    "WAYMARK_TEMPORAL_CODEC_KEYS_PATH",
    os.path.join(
        os.environ.get("WAYMARK_HOME") or os.path.join(os.getcwd(), ".waymark"),
        "keys",
        f"temporal-codec-{os.environ['WAYMARK_INSTANCE']}.json",
    ),
)

import asyncio  # noqa: E402
import contextlib  # noqa: E402
import uuid  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from devtools import stack  # noqa: E402
from shared.auth import mint_token  # noqa: E402
from shared.db import make_engine, make_sessionmaker  # noqa: E402
from shared.kafka_security import client_options  # noqa: E402
from shared.settings import Settings, get_settings  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    get_settings.cache_clear()
    s = get_settings()
    # never let a test session touch a developer's data
    assert s.instance != "dev" and s.db_name != "waymark" and s.topic_prefix
    return s


async def _reset_test_database(s: Settings) -> None:
    # the cluster's bootstrap superuser, over its private socket: `prepare` then creates the
    # database again, owned by the migration owner, and migrates and grants as the owner
    conn = await stack.admin_connect(s)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{s.db_name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _end_earlier_journeys(s: Settings) -> None:
    """Terminate the journeys earlier sessions left running in the test namespace: replaying
    thousands of them (some recorded by other branches' code) would keep the worker from this
    session's own."""
    from temporalio.api.batch.v1 import BatchOperationTermination
    from temporalio.api.workflowservice.v1 import StartBatchOperationRequest
    from temporalio.service import RPCError

    from shared.temporal_client import connect

    client = await connect(s)
    running = 'ExecutionStatus="Running"'
    if (await client.count_workflows(running)).count == 0:
        return
    with contextlib.suppress(RPCError):  # one batch at a time: an earlier one still runs
        await client.workflow_service.start_batch_operation(
            StartBatchOperationRequest(
                namespace=s.temporal_namespace,
                visibility_query=running,
                job_id=str(uuid.uuid4()),
                reason="a new test session",
                max_operations_per_second=1000,
                termination_operation=BatchOperationTermination(identity="tests/conftest"),
            )
        )
    deadline = asyncio.get_running_loop().time() + 300
    while (await client.count_workflows(running)).count and (
        asyncio.get_running_loop().time() < deadline
    ):
        await asyncio.sleep(0.5)


@pytest.fixture(scope="session")
async def infra(settings: Settings) -> AsyncIterator[Settings]:
    """PostgreSQL, Kafka and Temporal up (reused if running); a fresh test database and no
    journeys left running by earlier sessions."""
    await stack.up(settings, infra_only=True)
    stack.down(settings, infra=False)  # test processes left over from an interrupted run
    await _reset_test_database(settings)
    await stack.prepare(settings)
    await _end_earlier_journeys(settings)
    yield settings


@pytest.fixture(scope="session")
async def running_apps(infra: Settings, known_services) -> AsyncIterator[Settings]:  # type: ignore[no-untyped-def]
    """Every Waymark process of the test instance, started as `waymark up` starts them."""
    await stack.up(infra)
    yield infra
    stack.down(infra, infra=False)


@pytest.fixture(scope="session")
async def referrals_engine(infra: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(infra, "referrals")
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def referrals_sessions(referrals_engine):  # type: ignore[no-untyped-def]
    return make_sessionmaker(referrals_engine)


@pytest.fixture(scope="session")
async def journey_sessions(infra: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(infra, "journeys")
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
async def new_topic(infra: Settings) -> AsyncIterator[str]:
    """A topic of its own for one test (and its .dlq), deleted afterwards."""
    name = infra.topic(f"it-{uuid.uuid4().hex[:12]}")
    admin = AIOKafkaAdminClient(**client_options(infra))
    await admin.start()
    await admin.create_topics([NewTopic(name, 3, 1), NewTopic(f"{name}.dlq", 1, 1)])
    # created is not yet visible: a relay or producer asking the broker at once may be told it
    # does not exist (seen on a loaded CI machine); wait until the broker lists both
    deadline = asyncio.get_running_loop().time() + 30
    while not {name, f"{name}.dlq"} <= set(await admin.list_topics()):
        assert asyncio.get_running_loop().time() < deadline, f"topic {name} never appeared"
        await asyncio.sleep(0.1)
    try:
        yield name
    finally:
        await admin.delete_topics([name, f"{name}.dlq"])
        await admin.close()


def token(
    s: Settings, *, role: str | list[str], org: str, ics: str = "ICS-1", sub: str | None = None
) -> str:
    roles = [role] if isinstance(role, str) else role
    return mint_token(s, sub=sub or f"user-{uuid.uuid4().hex[:6]}", roles=roles, org=org, ics=ics)


def auth(s: Settings, **kw: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(s, **kw)}"}  # type: ignore[arg-type]


#: directory services the referrals tests refer to: (service id, org code, category, status)
KNOWN_SERVICES = [
    ("svc-pain-mgmt", "PAIN-1", "pain_management_programme", "active"),
    ("svc-pain-mgmt-programme", "PAIN-RTH", "pain_management_programme", "active"),
    ("svc-talking-therapies-ltc", "TT-TALK1", "talking_therapies_ltc", "active"),
    ("svc-msk-physio", "PHYSIO-1", "msk_physiotherapy", "active"),
    ("svc-social-prescribing", "SP-LINK1", "social_prescribing", "active"),
    ("svc-closed-yoga", "YOGA-1", "exercise_yoga", "temporarily closed"),
]


async def publish_directory_state(s: Settings, sessions, services) -> None:  # type: ignore[no-untyped-def]
    """Put services into the referrals service's directory replica through the same handler
    its Kafka consumer calls (the consumer itself is tested in tests/referrals)."""
    from services.referrals.handlers import apply_directory_event
    from shared.db import unit_of_work
    from shared.events.directory import ServicePublished
    from shared.events.envelope import make_event

    async with unit_of_work(sessions) as session:
        for service_id, org, category, status in services:
            data = ServicePublished(
                service_id=service_id,
                organization_id=f"org-{org}",
                org_code=org,
                category=category,
                status=status,
                conditions=["persistent_pain"],
            )
            await apply_directory_event(
                session=session, event=make_event(data, subject=service_id), data=data, settings=s
            )


@pytest.fixture(scope="session")
async def known_services(infra: Settings, referrals_sessions) -> list[tuple[str, str, str, str]]:  # type: ignore[no-untyped-def]
    await publish_directory_state(infra, referrals_sessions, KNOWN_SERVICES)
    return KNOWN_SERVICES


@pytest.fixture(scope="session")
async def referrals_client(infra: Settings, known_services) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    """The referrals app in-process (real database), lifespan included."""
    from services.referrals.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://referrals") as c:
            yield c


@pytest.fixture(scope="session")
async def care_plans_client(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The care plans app in-process (real database), lifespan included."""
    from services.care_plans.api import app

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://care-plans") as c:
            yield c


# --- leaving the interpreter ------------------------------------------------------------------
# The Temporal client's native (Rust) runtime threads can abort a finalising interpreter
# ("PyGILState_Release ... finalizing"), which would turn a passing run into exit code 134.
# After pytest has reported everything, exit with its own status without finalisation.


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    import sys

    status = config.stash.get(_EXIT, None)
    if status is None or os.environ.get("WAYMARK_PYTEST_NORMAL_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


_EXIT = pytest.StashKey[int]()
