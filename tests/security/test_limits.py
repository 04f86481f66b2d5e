"""Input limits every API shares (shared/input_limits.py): a request body over `max_body_bytes`
is a 413 before anything parses it, whether it declares its length or streams in chunks; writes
with a valid token are rate limited per principal (organisation + user) by a token bucket,
429 with Retry-After, while reads, other principals and requests without a valid token are
not affected.

The rate limit is exercised on a directory app of its own with low limits (the session's
apps have the limit set out of the suite's reach, tests/conftest.py); the body limit on that
app and on the session's real apps with the default limit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from shared.input_limits import TokenBuckets
from shared.settings import Settings
from tests.conftest import auth
from tests.security.support import FHIR_JSON, media_type, problem_of

BURST = 3
PER_MINUTE = 2  # one token every 30 s: nothing refills while a test runs
SMALL_BODY_LIMIT = 12 * 1024


@pytest.fixture(scope="module")
async def limited(infra: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A directory app of its own, with low limits, on the real database."""
    from services.directory.api import build_app

    low = infra.model_copy(
        update={
            "rate_limit_burst": BURST,
            "rate_limit_per_minute": PER_MINUTE,
            "max_body_bytes": SMALL_BODY_LIMIT,
        }
    )
    app = build_app(low)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limited") as c:
            yield c


def _org() -> str:
    return f"LIM-{uuid.uuid4().hex[:8].upper()}"


def _staff(s: Settings, org: str, user: str | None = None) -> dict[str, str]:
    return auth(s, role="service_staff", org=org, sub=user or f"staff-{uuid.uuid4().hex[:8]}")


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _organisation(description: str = "") -> bytes:
    return httpx.Request(
        "PUT", "http://x", json={"name": "Limits test provider", "description": description}
    ).content


class TestBodySize:
    async def test_an_oversized_body_with_a_content_length_is_413_before_it_is_read(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        body = _organisation("x" * (SMALL_BODY_LIMIT + 10))
        r = await limited.put(
            f"/organizations/{org}",
            content=body,
            headers={**_staff(settings, org), "Content-Type": "application/json"},
        )
        doc = problem_of(r, 413)
        assert str(SMALL_BODY_LIMIT) in doc["detail"]
        assert r.headers["connection"] == "close"
        # nothing was written
        assert (
            await limited.get(f"/organizations/{org}", headers=_staff(settings, org))
        ).status_code == 404

    async def test_an_oversized_chunked_body_without_a_content_length_is_413(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        body = _organisation("x" * (SMALL_BODY_LIMIT + 10))
        request = limited.build_request(
            "PUT",
            f"/organizations/{org}",
            content=_chunks(body),
            headers={**_staff(settings, org), "Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        problem_of(await limited.send(request), 413)
        assert (
            await limited.get(f"/organizations/{org}", headers=_staff(settings, org))
        ).status_code == 404

    async def test_a_body_that_understates_its_length_is_counted_as_it_arrives(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        body = _organisation("x" * (SMALL_BODY_LIMIT + 10))
        request = limited.build_request(
            "PUT",
            f"/organizations/{org}",
            content=_chunks(body),
            headers={
                **_staff(settings, org),
                "Content-Type": "application/json",
                "Content-Length": "100",
            },
        )
        problem_of(await limited.send(request), 413)

    async def test_a_content_length_that_is_not_a_number_is_400(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        request = limited.build_request(
            "PUT",
            f"/organizations/{org}",
            content=b"{}",
            headers={
                **_staff(settings, org),
                "Content-Type": "application/json",
                "Content-Length": "2; DROP",
            },
        )
        assert (
            "Content-Length must be a number"
            in problem_of(await limited.send(request), 400)["detail"]
        )

    async def test_a_chunked_body_under_the_limit_reaches_the_route_whole(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org, headers = _org(), {"Content-Type": "application/json"}
        description = "".join(f"{i:05d} " for i in range(1400))  # 8.4 KB in 1 KB chunks
        body = _organisation(description)
        assert SMALL_BODY_LIMIT // 2 < len(body) < SMALL_BODY_LIMIT
        request = limited.build_request(
            "PUT",
            f"/organizations/{org}",
            content=_chunks(body),
            headers={**_staff(settings, org), **headers},
        )
        r = await limited.send(request)
        assert r.status_code == 201, r.text
        assert r.json()["description"] == description

    async def test_the_size_is_checked_before_the_token_and_before_json_parsing(
        self, limited: httpx.AsyncClient
    ) -> None:
        big = b"{" + b"x" * (SMALL_BODY_LIMIT + 1)  # not JSON either
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            r = await limited.post(
                "/services", content=big, headers={**headers, "Content-Type": "application/json"}
            )
            problem_of(r, 413)

    async def test_the_default_limit_holds_on_the_real_apps(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        assert settings.max_body_bytes == 1024 * 1024  # the default: one MiB
        headers = {
            **auth(settings, role="clinician", org=_org()),
            "Content-Type": "application/json",
        }
        big = b'{"padding": "' + b"x" * settings.max_body_bytes + b'"}'
        problem_of(await referrals_client.post("/referrals", content=big, headers=headers), 413)
        request = referrals_client.build_request(
            "POST", "/referrals", content=_chunks(big, 65536), headers=headers
        )
        problem_of(await referrals_client.send(request), 413)
        # just under the limit, the route sees the body (and finds it is not a referral)
        fits = b'{"padding": "' + b"x" * (settings.max_body_bytes - 100) + b'"}'
        problem_of(await referrals_client.post("/referrals", content=fits, headers=headers), 422)

    async def test_the_oruk_import_takes_a_page_larger_than_the_limit(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        from services.directory.api import ORUK_IMPORT_MAX_BYTES
        from tests.directory.oruk.conftest import oruk_record

        org = _org()
        headers = _staff(settings, org)
        page = {"contents": [oruk_record(org) for _ in range(3)]}
        assert len(httpx.Request("POST", "http://x", json=page).content) > SMALL_BODY_LIMIT
        r = await limited.post("/imports/oruk", json=page, headers=headers)
        assert r.status_code == 200, r.text
        huge = b'{"contents": ["' + b"x" * ORUK_IMPORT_MAX_BYTES + b'"]}'
        problem_of(
            await limited.post(
                "/imports/oruk",
                content=huge,
                headers={**headers, "Content-Type": "application/json"},
            ),
            413,
        )

    async def test_fhir_routes_answer_413_as_an_operation_outcome(
        self, referrals_client: httpx.AsyncClient, settings: Settings
    ) -> None:
        big = (
            b'{"resourceType": "ServiceRequest", "note": "'
            + b"x" * (settings.max_body_bytes + 1)
            + b'"}'
        )
        r = await referrals_client.post(
            "/fhir/ServiceRequest",
            content=big,
            headers={**auth(settings, role="clinician", org=_org()), "Content-Type": FHIR_JSON},
        )
        assert r.status_code == 413 and media_type(r) == FHIR_JSON
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "larger than this API accepts" in r.json()["issue"][0]["diagnostics"]


class TestWriteRateLimit:
    async def _write(
        self,
        client: httpx.AsyncClient,
        org: str,
        headers: dict[str, str],
        name: str = "Rate limited provider",
    ) -> httpx.Response:
        return await client.put(f"/organizations/{org}", json={"name": name}, headers=headers)

    async def test_after_the_burst_a_write_is_429_with_retry_after_and_not_applied(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        me = _staff(settings, org)
        for i in range(BURST):
            r = await self._write(limited, org, me, name=f"Provider v{i}")
            assert r.status_code in (200, 201), r.text
        r = await self._write(limited, org, me, name="One too many")
        doc = problem_of(r, 429)
        assert doc["title"] == "Too many requests"
        assert f"{BURST} changes in a burst" in doc["detail"]
        retry_after = int(r.headers["retry-after"])
        assert 1 <= retry_after <= 60 // PER_MINUTE
        assert f"try again in {retry_after} s" in doc["detail"]
        got = await limited.get(f"/organizations/{org}", headers=me)
        assert got.json()["name"] == f"Provider v{BURST - 1}"
        # every write draws on the same bucket, whatever its method and route
        for method, path in (
            ("POST", "/services"),
            ("PATCH", "/services/svc-nope"),
            ("POST", "/imports/oruk"),
        ):
            problem_of(await limited.request(method, path, json={}, headers=me), 429)

    async def test_waymark_s_own_service_credentials_are_not_limited(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        from tests.helpers import process_token

        me = {"Authorization": f"Bearer {process_token(settings, 'integration')}"}
        for _ in range(BURST * 3):
            # the route refuses the write (no directory capability), but never as a 429
            r = await limited.put(f"/organizations/{_org()}", json={"name": "x"}, headers=me)
            assert r.status_code == 403, r.text

    async def test_reads_are_not_limited(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org = _org()
        me = _staff(settings, org)
        for _ in range(BURST):
            assert (await self._write(limited, org, me)).status_code in (200, 201)
        problem_of(await self._write(limited, org, me), 429)
        for _ in range(BURST * 4):
            r = await limited.get(f"/organizations/{org}", headers=me)
            assert r.status_code == 200, r.text

    async def test_another_principal_is_not_affected(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org, user = _org(), f"staff-{uuid.uuid4().hex[:8]}"
        me = _staff(settings, org, user)
        for _ in range(BURST):
            await self._write(limited, org, me)
        problem_of(await self._write(limited, org, me), 429)
        # a colleague in the same organisation, and the same user name in another
        # organisation, each have a bucket of their own
        colleague = _staff(settings, org)
        assert (await self._write(limited, org, colleague)).status_code == 200
        elsewhere = _org()
        assert (
            await self._write(limited, elsewhere, _staff(settings, elsewhere, user))
        ).status_code == 201
        # and my own bucket is still empty: a fresh token does not refill it
        problem_of(await self._write(limited, org, _staff(settings, org, user)), 429)

    async def test_without_a_valid_token_it_is_a_401_and_spends_nobody_s_allowance(
        self, limited: httpx.AsyncClient, settings: Settings
    ) -> None:
        org, user = _org(), f"staff-{uuid.uuid4().hex[:8]}"
        for headers in ({}, {"Authorization": "Bearer forged.token.here"}):
            for _ in range(BURST + 2):
                problem_of(await self._write(limited, org, headers), 401)
        me = _staff(settings, org, user)
        for _ in range(BURST):
            assert (await self._write(limited, org, me)).status_code in (200, 201)


class TestTokenBuckets:
    """The bucket's arithmetic, on a clock the test moves."""

    def test_burst_then_one_per_interval(self) -> None:
        now = [1000.0]
        buckets = TokenBuckets(per_minute=60, burst=5, clock=lambda: now[0])
        assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
        assert buckets.take("a") == pytest.approx(1.0)
        now[0] += 0.5
        assert buckets.take("a") == pytest.approx(0.5)
        now[0] += 0.5
        assert buckets.take("a") == 0.0
        assert buckets.take("a") == pytest.approx(1.0)
        assert buckets.take("b") == 0.0  # another key is untouched

    def test_an_idle_bucket_refills_to_the_burst_and_no_further(self) -> None:
        now = [0.0]
        buckets = TokenBuckets(per_minute=6, burst=2, clock=lambda: now[0])
        assert buckets.take("a") == 0.0 and buckets.take("a") == 0.0
        assert buckets.take("a") == pytest.approx(10.0)
        now[0] += 3600
        assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
        assert buckets.take("a") == pytest.approx(10.0)

    def test_full_buckets_are_forgotten_so_memory_stays_bounded(self) -> None:
        now = [0.0]
        buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: now[0])
        buckets.MAX_KEYS = 100
        for i in range(100):
            buckets.take(f"user-{i}")
        now[0] += 10  # every one of them has refilled
        buckets.take("busy")
        buckets.take("busy")  # over MAX_KEYS: the idle ones go, the busy one stays
        assert len(buckets._buckets) <= 2
        assert buckets.take("busy") > 0
