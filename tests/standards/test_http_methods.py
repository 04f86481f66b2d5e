"""RFC 9110 15.5.6: a 405 carries an `Allow` header listing EVERY method the target resource
supports. FastAPI makes one route per method on a path, and the router used to answer with the
methods of the first of them only (`DELETE /referrals` said `Allow: POST` though GET works)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from tests.security.conftest import Api
from tests.security.support import HTTP_METHODS, operations

SERVICES = ("referrals", "directory", "care_plans", "notifications", "integration")


def _by_path(api: Api) -> dict[str, set[str]]:
    served: dict[str, set[str]] = defaultdict(set)
    for op in operations(api.name, api.app):
        served[op.path].add(op.method)
    return served


def _allow(value: str) -> set[str]:
    return {m.strip() for m in value.split(",") if m.strip()}


@pytest.mark.parametrize("service", SERVICES)
async def test_a_405_lists_every_method_the_resource_supports(
    service: str, apis: dict[str, Api]
) -> None:
    api = apis[service]
    checked = 0
    for path, methods in _by_path(api).items():
        if "{rest:path}" in path or path.startswith("/dashboard/"):
            continue  # catch-alls answer every address themselves
        url = next(o.url() for o in operations(api.name, api.app) if o.path == path)
        # another route with a more general template may serve the concrete address as well
        others = {
            m
            for p, ms in _by_path(api).items()
            if p != path and re.fullmatch(_regex(p), url)
            for m in ms
        }
        missing = sorted(set(HTTP_METHODS) - methods - others)
        if not missing:
            continue
        r = await api.client.request(missing[0], url)
        assert r.status_code == 405, (service, missing[0], url, r.status_code, r.text[:200])
        allowed = _allow(r.headers.get("allow", ""))
        expected = methods | others
        if "GET" in expected:
            expected |= {"HEAD"} & allowed  # HEAD may be listed where GET is served
        assert allowed == expected, (service, url, allowed, expected)
        checked += 1
    assert checked, f"no path of {service} refused a method"


def _regex(template: str) -> str:
    template = re.sub(r"{\w+:path}", "§P§", template)
    template = re.sub(r"{\w+(?::\w+)?}", "§S§", template)
    return re.escape(template).replace("§P§", ".*").replace("§S§", "[^/]+")


async def test_the_example_the_issue_found(apis: dict[str, Api]) -> None:
    r = await apis["referrals"].client.delete("/referrals")
    assert r.status_code == 405
    assert {"GET", "POST"} <= _allow(r.headers["allow"])
    assert r.headers["content-type"].startswith("application/problem+json")
