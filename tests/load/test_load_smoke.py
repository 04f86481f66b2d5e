"""The load bench's engine (bench/load.py `run_load`) held briefly on the test session's
running stack: every request of the mix succeeds, every endpoint of the mix is called, and the
consumer lag and outbox backlog the load leaves drain to 0.

No timings are asserted (speed is measured by `python bench/load.py`, not by tests); the
deadlines only stop a hang. The run uses organisations, services and people of its own and
acts only on alerts of its own referrals, so it leaves other tests' data alone.
"""

from __future__ import annotations

from bench.load import expected_endpoints, format_report, run_load, total_lag
from shared.settings import Settings


class TestMixedLoad:
    async def test_a_short_mixed_load_has_no_errors_and_what_it_leaves_behind_drains(
        self, running_apps: Settings
    ) -> None:
        # a run id and people of its own each time (journeys outlive the test database)
        report = await run_load(
            running_apps,
            duration=20,
            concurrency=4,
            alert_scope="org",
            baseline_seconds=2,
            drain_timeout=300,
            prepare_timeout=180,
        )
        table = format_report(report)
        print(table)

        assert report.errors == 0, table
        called = {name for name, e in report.endpoints.items() if e["count"] > 0}
        assert expected_endpoints() <= called, f"not called: {expected_endpoints() - called}"

        assert report.drained, table
        assert total_lag(report.lag_after_drain) == 0
        assert sum(report.outbox_backlog_after_drain.values()) == 0
        assert report.baseline["GET /health"]["count"] > 0
        assert report.baseline["raw asyncpg INSERT"]["count"] > 0
