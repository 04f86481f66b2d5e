"""Fixtures of the dashboard's browser tests (in browser_support.py), and the accessibility
summary at the end of the run."""

from __future__ import annotations

import pytest

from tests.dashboard.browser_support import (  # noqa: F401 - fixtures
    AXE_RESULTS,
    axe_summary_lines,
    browser,
    coordinator,
    dashboard,
    fast_triage_service,
    page,
    service_staff,
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not AXE_RESULTS:
        return
    terminalreporter.section("axe-core: violations by impact (WCAG 2.x A/AA, 2.2 AA)")
    for line in axe_summary_lines():
        terminalreporter.write_line(line)
