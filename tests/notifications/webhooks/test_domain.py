"""The partner webhook rules, pure: Standard Webhooks signing (checked against the reference
library), secret rotation, the retry schedule and its jitter, disabling, event types and
filters, and the SSRF guard on endpoint URLs (with a stand-in resolver, no DNS)."""

from __future__ import annotations

import base64
import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notifications import audience
from services.notifications.webhooks import domain as webhooks
from services.notifications.webhooks.endpoints import guard_endpoint
from shared.errors import ValidationFailed
from shared.events.registry import load_all

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KNOWN = {m.EVENT_TYPE for m in load_all().all_models()}
SVIX = [5, 300, 1800, 7200, 18000, 36000, 36000]


def _headers(
    secret_list: list[str], body: bytes, msg_id: str = "msg_1", ts: int | None = None
) -> dict[str, str]:
    return webhooks.sign_headers(
        msg_id=msg_id,
        timestamp=ts or int(datetime.now(UTC).timestamp()),
        body=body,
        secrets=secret_list,
    )


class TestSecrets:
    def test_a_new_secret_is_whsec_and_32_random_bytes(self) -> None:
        s = webhooks.new_secret()
        assert s.startswith("whsec_")
        assert len(base64.b64decode(s[6:])) == 32
        assert webhooks.new_secret() != s

    @pytest.mark.parametrize("n", [24, 32, 64])
    def test_any_size_the_standard_allows(self, n: int) -> None:
        assert len(webhooks.secret_key(webhooks.new_secret(n))) == n

    @pytest.mark.parametrize("n", [0, 16, 23, 65])
    def test_sizes_outside_the_standard_are_refused(self, n: int) -> None:
        with pytest.raises(ValueError):
            webhooks.new_secret(n)

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "abc",
            "whsec_",
            "whsec_!!!notbase64",
            "whsec_" + base64.b64encode(b"short").decode(),
            "sk_" + base64.b64encode(b"x" * 32).decode(),
        ],
    )
    def test_malformed_secrets_are_refused(self, bad: str) -> None:
        with pytest.raises(ValueError):
            webhooks.secret_key(bad)


class TestSigning:
    def test_the_reference_library_verifies_our_signature(self) -> None:
        secret = webhooks.new_secret()
        body = b'{"id":"e1","type":"uk.waymark.referral.accepted","data":{"x":"\xc3\xa9"}}'
        headers = _headers([secret], body)
        assert Webhook(secret).verify(body, headers)["id"] == "e1"

    def test_the_signature_covers_id_timestamp_and_body(self) -> None:
        secret = webhooks.new_secret()
        body = b'{"a":1}'
        headers = _headers([secret], body, msg_id="msg_a")
        wh = Webhook(secret)
        for changed in (
            {**headers, "webhook-id": "msg_b"},
            {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 1)},
        ):
            with pytest.raises(WebhookVerificationError):
                wh.verify(body, changed)
        with pytest.raises(WebhookVerificationError):
            wh.verify(b'{"a":2}', headers)

    def test_another_secret_does_not_verify(self) -> None:
        body = b"{}"
        headers = _headers([webhooks.new_secret()], body)
        with pytest.raises(WebhookVerificationError):
            Webhook(webhooks.new_secret()).verify(body, headers)

    def test_known_vector(self) -> None:
        # HMAC-SHA256 computed independently of the code under test
        import hashlib
        import hmac

        key = bytes(range(32))
        secret = "whsec_" + base64.b64encode(key).decode()
        expected = base64.b64encode(
            hmac.new(key, b"msg_x.1700000000.hello", hashlib.sha256).digest()
        ).decode()
        assert (
            webhooks.signature(secret, msg_id="msg_x", timestamp=1700000000, body=b"hello")
            == f"v1,{expected}"
        )

    def test_two_secrets_give_two_space_separated_signatures_each_verifying(self) -> None:
        old, new = webhooks.new_secret(), webhooks.new_secret()
        body = b'{"k":"v"}'
        headers = _headers([new, old], body)
        sigs = headers["webhook-signature"].split(" ")
        assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs)
        assert Webhook(new).verify(body, headers) == {"k": "v"}
        assert Webhook(old).verify(body, headers) == {"k": "v"}

    def test_no_secret_no_signature(self) -> None:
        with pytest.raises(ValueError):
            webhooks.sign_headers(msg_id="m", timestamp=1, body=b"", secrets=[])


class TestRotation:
    def test_the_previous_secret_signs_during_the_grace_period_only(self) -> None:
        new, prev, until = webhooks.rotation(current="whsec_old", now=NOW, grace_seconds=3600)
        assert prev == "whsec_old" and new.startswith("whsec_") and new != prev
        assert until == NOW + timedelta(hours=1)
        kw = {"secret": new, "previous_secret": prev, "previous_secret_until": until}
        assert webhooks.signing_secrets(**kw, now=NOW) == [new, prev]
        assert webhooks.signing_secrets(**kw, now=until - timedelta(seconds=1)) == [new, prev]
        assert webhooks.signing_secrets(**kw, now=until) == [new]
        assert webhooks.signing_secrets(**kw, now=until + timedelta(days=1)) == [new]

    def test_without_a_rotation_only_the_secret_signs(self) -> None:
        assert webhooks.signing_secrets(
            secret="whsec_a", previous_secret=None, previous_secret_until=None, now=NOW
        ) == ["whsec_a"]
        assert webhooks.signing_secrets(
            secret="whsec_a", previous_secret="whsec_b", previous_secret_until=None, now=NOW
        ) == ["whsec_a"]

    def test_a_second_rotation_drops_the_oldest_secret(self) -> None:
        s2, p1, _ = webhooks.rotation(current="whsec_s1", now=NOW, grace_seconds=60)
        s3, p2, _ = webhooks.rotation(current=s2, now=NOW, grace_seconds=60)
        assert p1 == "whsec_s1" and p2 == s2 and s3 not in (s2, "whsec_s1")


class TestRetrySchedule:
    def test_the_delays_follow_the_schedule_then_stop(self) -> None:
        rng = random.Random(7)
        delays = [webhooks.retry_delay(n, SVIX, rng) for n in range(1, 9)]
        assert delays[-1] is None
        for base, d in zip(SVIX, delays[:-1], strict=True):
            assert d is not None and base <= d <= base * 1.2

    def test_the_whole_schedule_lasts_at_least_24_hours_whatever_the_jitter(self) -> None:
        for seed in range(200):
            rng = random.Random(seed)
            total = sum(webhooks.retry_delay(n, SVIX, rng) or 0 for n in range(1, 8))
            assert 24 * 3600 <= total <= sum(SVIX) * 1.2

    def test_jitter_spreads_retries_of_deliveries_that_failed_together(self) -> None:
        rng = random.Random(1)
        values = {round(webhooks.retry_delay(2, SVIX, rng) or 0, 3) for _ in range(50)}
        assert len(values) > 40

    def test_no_jitter_is_exactly_the_schedule(self) -> None:
        assert [webhooks.retry_delay(n, [1, 2], jitter=0) for n in (1, 2, 3)] == [1, 2, None]

    def test_growing_gaps_with_the_test_schedule(self) -> None:
        sched = [0.3, 0.6, 1.2, 2.4, 4.8, 9.6]
        for seed in range(50):
            rng = random.Random(seed)
            d = [webhooks.retry_delay(n, sched, rng) or 0 for n in range(1, 7)]
            assert all(a < b for a, b in zip(d, d[1:], strict=False))

    @pytest.mark.parametrize("failures", [0, -1])
    def test_failures_count_from_one(self, failures: int) -> None:
        with pytest.raises(ValueError):
            webhooks.retry_delay(failures, SVIX)


class TestDisabling:
    @pytest.mark.parametrize(
        "failing_for,window,expected",
        [
            (None, 86400, False),
            (0, 86400, False),
            (86399, 86400, False),
            (86400, 86400, True),
            (90000, 86400, True),
            (19.9, 20, False),
            (20, 20, True),
        ],
    )
    def test_disabled_after_failing_for_the_whole_window(
        self, failing_for: float | None, window: float, expected: bool
    ) -> None:
        since = None if failing_for is None else NOW - timedelta(seconds=failing_for)
        assert (
            webhooks.should_disable(failing_since=since, now=NOW, window_seconds=window) is expected
        )

    def test_the_owner_is_told_what_happened_and_what_to_do(self) -> None:
        subject, body = webhooks.disabled_notice(
            subscription_id="whs_1",
            url="https://p.example/h",
            failing_since=NOW,
            last_error="HTTP 500",
        )
        assert "disabled" in subject
        assert "https://p.example/h" in body and "HTTP 500" in body
        assert "/webhook-subscriptions/whs_1/resume" in body and "resend" in body


class TestEventTypes:
    def test_referral_events_can_be_subscribed_to(self) -> None:
        types = [
            "uk.waymark.referral.accepted",
            "uk.waymark.referral.submitted",
            "uk.waymark.referral.accepted",
        ]
        assert (
            webhooks.check_event_types(types, known=KNOWN, prefix=audience.SUBSCRIBABLE_PREFIX)
            == types[:2]
        )

    @pytest.mark.parametrize(
        "bad", ["uk.waymark.referral.nope", "accepted", "", "uk.waymark.referral.*"]
    )
    def test_unknown_types_are_refused(self, bad: str) -> None:
        with pytest.raises(ValidationFailed, match="unknown event type"):
            webhooks.check_event_types([bad], known=KNOWN, prefix=audience.SUBSCRIBABLE_PREFIX)

    def test_registered_but_not_referral_events_are_refused(self) -> None:
        other = sorted(t for t in KNOWN if not t.startswith(audience.SUBSCRIBABLE_PREFIX))
        assert other, "the registry has non-referral events"
        for t in other:
            with pytest.raises(ValidationFailed, match="cannot be subscribed"):
                webhooks.check_event_types([t], known=KNOWN, prefix=audience.SUBSCRIBABLE_PREFIX)

    def test_every_registered_referral_event_is_subscribable(self) -> None:
        referral = sorted(t for t in KNOWN if t.startswith(audience.SUBSCRIBABLE_PREFIX))
        assert len(referral) >= 12
        assert (
            webhooks.check_event_types(referral, known=KNOWN, prefix=audience.SUBSCRIBABLE_PREFIX)
            == referral
        )

    def test_at_least_one(self) -> None:
        with pytest.raises(ValidationFailed):
            webhooks.check_event_types([], known=KNOWN, prefix=audience.SUBSCRIBABLE_PREFIX)


class TestFilters:
    def test_valid_filters_are_kept_and_normalised(self) -> None:
        assert webhooks.check_filters(
            {
                "service_categories": ["b_cat", "a_cat", "a_cat"],
                "priorities": ["urgent"],
                "role": "receiver",
            }
        ) == {
            "service_categories": ["a_cat", "b_cat"],
            "priorities": ["urgent"],
            "role": "receiver",
        }

    def test_empty_filters_are_dropped(self) -> None:
        assert webhooks.check_filters(None) == {}
        assert (
            webhooks.check_filters({"service_categories": [], "priorities": None, "role": None})
            == {}
        )

    @pytest.mark.parametrize(
        "bad",
        [
            {"colour": "red"},
            {"role": "both"},
            {"priorities": ["soon"]},
            {"priorities": "urgent"},
            {"service_categories": "pain"},
            {"service_categories": ["Pain Management"]},
            {"service_categories": [1]},
        ],
    )
    def test_invalid_filters_are_refused(self, bad: dict) -> None:  # type: ignore[type-arg]
        with pytest.raises(ValidationFailed):
            webhooks.check_filters(bad)

    def test_filters_mean_what_routing_does_with_them(self) -> None:
        data = {
            "from_org": "GP-1",
            "to_org": "PAIN-1",
            "priority": "urgent",
            "service_category": "pain_management_programme",
        }
        f = webhooks.check_filters({"role": "receiver", "priorities": ["urgent"]})
        t = "uk.waymark.referral.accepted"
        assert audience.subscription_matches(
            org="PAIN-1", event_types=[t], filters=f, event_type=t, data=data
        )
        assert not audience.subscription_matches(
            org="GP-1", event_types=[t], filters=f, event_type=t, data=data
        )


class TestEndpointUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "https://partner.example/hooks",
            "https://partner.example:8443/h?x=1",
            "https://93.184.216.34/hook",
            "https://[2606:4700:4700::1111]/h",
            "https://xn--bcher-kva.example/",
            "https://bücher.example/h",
        ],
    )
    def test_production_accepts_public_https_endpoints(self, url: str) -> None:
        e = webhooks.check_endpoint(url, mode="production")
        assert e.scheme == "https" and e.port in (443, 8443)

    @pytest.mark.parametrize(
        "url,why",
        [
            ("http://partner.example/h", "only https"),
            ("ftp://partner.example/h", "https"),
            ("https://user:pw@partner.example/h", "credentials"),
            ("https://user@partner.example/h", "credentials"),
            ("https://partner.example/h#frag", "fragment"),
            ("https:///nohost", "no host"),
            ("partner.example/h", "https"),
            ("https://partner.example:99999/", "cannot be parsed"),
            ("https://[::1/", "cannot be parsed"),
            ("https://partner.example/a b", "spaces"),
            ("https://partner.example/\x00", "control"),
            ("https://" + "a" * 2001 + ".example/", "longer"),
            ("", "empty"),
            ("https://localhost/h", "local name"),
            ("https://api.localhost/h", "local name"),
            ("https://printer.local/h", "local name"),
            ("https://db.internal/h", "local name"),
            ("https://127.0.0.1/h", "loopback"),
            ("https://127.1.2.3:8443/h", "loopback"),
            ("https://10.0.0.5/h", "private"),
            ("https://172.16.0.1/h", "private"),
            ("https://192.168.1.1/h", "private"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://100.64.0.1/h", "carrier-grade"),
            ("https://0.0.0.0/h", "unspecified"),
            ("https://224.0.0.1/h", "multicast"),
            ("https://240.0.0.1/h", "reserved"),
            ("https://255.255.255.255/h", "reserved"),
            ("https://192.0.0.8/h", "IETF"),
            ("https://[::1]/h", "loopback"),
            ("https://[::]/h", "unspecified"),
            ("https://[fe80::1]/h", "link-local"),
            ("https://[fd00::1]/h", "unique local"),
            ("https://[fec0::1]/h", "site-local"),
            ("https://[ff02::1]/h", "multicast"),
            ("https://[::ffff:127.0.0.1]/h", "loopback"),
            ("https://[::ffff:10.1.2.3]/h", "private"),
            ("https://[::ffff:169.254.169.254]/h", "link-local"),
            ("https://[2002:a00:1::]/h", "private"),  # 6to4 of 10.0.0.1
            ("https://[64:ff9b::7f00:1]/h", "loopback"),  # NAT64 of 127.0.0.1
            ("https://2130706433/h", "dotted form"),  # 127.0.0.1 as one number
            ("https://0x7f.1/h", "dotted form"),
            ("https://127.1/h", "dotted form"),
            ("https://0177.0.0.1/h", "dotted form"),
            ("https://bad_host!.example/h", "domain name"),
        ],
    )
    def test_production_refuses(self, url: str, why: str) -> None:
        with pytest.raises(ValidationFailed, match=why) as exc:
            webhooks.check_endpoint(url, mode="production")
        assert exc.value.status == 422

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/h",
            "http://localhost:9000/h",
            "https://10.0.0.5/h",
            "http://[::1]:8000/",
        ],
    )
    def test_local_mode_allows_http_and_loopback(self, url: str) -> None:
        assert webhooks.check_endpoint(url, mode="local").host

    @pytest.mark.parametrize("url", ["ftp://127.0.0.1/h", "http://u:p@127.0.0.1/h", "http:///h"])
    def test_local_mode_still_wants_a_plain_http_url(self, url: str) -> None:
        with pytest.raises(ValidationFailed):
            webhooks.check_endpoint(url, mode="local")

    def test_every_resolved_address_must_be_public(self) -> None:
        e = webhooks.check_endpoint("https://partner.example/h", mode="production")
        assert webhooks.check_resolved(e, ["93.184.216.34", "2606:2800:220:1::"], mode="production")
        for mixed in (
            ["93.184.216.34", "10.0.0.1"],
            ["169.254.169.254"],
            ["::1"],
            ["fe80::1%eth0"],
            ["100.100.100.100"],
        ):
            with pytest.raises(ValidationFailed, match="resolves to"):
                webhooks.check_resolved(e, mixed, mode="production")

    def test_nothing_resolved_or_garbage_is_refused(self) -> None:
        e = webhooks.check_endpoint("https://partner.example/h", mode="production")
        with pytest.raises(ValidationFailed, match="does not resolve"):
            webhooks.check_resolved(e, [], mode="production")
        with pytest.raises(ValidationFailed, match="not an address"):
            webhooks.check_resolved(e, ["not-an-ip"], mode="production")

    def test_local_mode_accepts_private_resolution(self) -> None:
        e = webhooks.check_endpoint("http://receiver.test/h", mode="local")
        assert webhooks.check_resolved(e, ["127.0.0.1"], mode="local") == [
            ipaddress.ip_address("127.0.0.1")
        ]

    @pytest.mark.parametrize(
        "addr,problem",
        [
            ("8.8.8.8", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:8.8.8.8", None),
            ("198.18.0.1", "private"),
            ("192.0.2.1", "private"),
            ("2001:db8::1", "private"),
        ],
    )
    def test_address_problems(self, addr: str, problem: str | None) -> None:
        got = webhooks.address_problem(ipaddress.ip_address(addr))
        assert (got is None) if problem is None else (problem in (got or ""))


class TestPinnedRequest:
    def test_the_request_goes_to_the_checked_address_with_the_name_for_tls(self) -> None:
        e = webhooks.check_endpoint("https://partner.example/hooks?a=1", mode="production")
        url, headers, ext = webhooks.pinned_url(e, ipaddress.ip_address("93.184.216.34"))
        assert url == "https://93.184.216.34:443/hooks?a=1"
        assert headers == {"Host": "partner.example"}
        assert ext == {"sni_hostname": "partner.example"}

    def test_ipv6_and_ports(self) -> None:
        e = webhooks.check_endpoint("https://partner.example:8443", mode="production")
        url, headers, _ = webhooks.pinned_url(e, ipaddress.ip_address("2606:2800:220:1::"))
        assert url == "https://[2606:2800:220:1::]:8443/"
        assert headers == {"Host": "partner.example:8443"}

    def test_a_literal_address_needs_no_server_name(self) -> None:
        e = webhooks.check_endpoint("https://93.184.216.34/h", mode="production")
        _, headers, ext = webhooks.pinned_url(e, e.address)  # type: ignore[arg-type]
        assert ext == {} and headers == {"Host": "93.184.216.34"}


class TestGuardWithResolver:
    """The guard's resolving half, with a stand-in resolver instead of DNS."""

    @staticmethod
    def resolver(answers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
        async def resolve(host: str, port: int) -> list[str]:
            if host not in answers:
                raise OSError(f"no such host {host}")
            return answers[host]

        return resolve

    async def test_a_name_resolving_to_public_addresses_passes(self) -> None:
        e, addrs = await guard_endpoint(
            "https://partner.example/h",
            mode="production",
            resolve=self.resolver({"partner.example": ["93.184.216.34"]}),
        )
        assert e.host == "partner.example" and [str(a) for a in addrs] == ["93.184.216.34"]

    @pytest.mark.parametrize(
        "answer", [["10.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["169.254.169.254"], ["fd12::1"]]
    )
    async def test_a_name_resolving_to_an_internal_address_is_refused(
        self, answer: list[str]
    ) -> None:
        with pytest.raises(ValidationFailed, match="resolves to"):
            await guard_endpoint(
                "https://rebind.example/h",
                mode="production",
                resolve=self.resolver({"rebind.example": answer}),
            )

    async def test_a_name_that_does_not_resolve_is_refused(self) -> None:
        with pytest.raises(ValidationFailed, match="cannot be resolved"):
            await guard_endpoint(
                "https://nowhere.example/h", mode="production", resolve=self.resolver({})
            )

    async def test_local_mode_does_not_resolve_at_all(self) -> None:
        async def boom(host: str, port: int) -> list[str]:
            raise AssertionError("resolved in local mode")

        e, addrs = await guard_endpoint("http://127.0.0.1:9/h", mode="local", resolve=boom)
        assert addrs == [] and e.port == 9

    async def test_literal_addresses_are_not_resolved(self) -> None:
        async def boom(host: str, port: int) -> list[str]:
            raise AssertionError("resolved a literal")

        _, addrs = await guard_endpoint("https://93.184.216.34/h", mode="production", resolve=boom)
        assert [str(a) for a in addrs] == ["93.184.216.34"]
