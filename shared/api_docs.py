"""The API's docs pages (Swagger UI and ReDoc) every service's app serves, with their scripts
and styles served by the app itself, never a CDN's; off in production unless turned on."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from shared.errors import NotFound
from shared.input_limits import app_settings

#: where the docs pages' scripts and styles are served from: the copies the fastapi-offline
#: package ships (Swagger UI and ReDoc), so no page of this origin runs a CDN's script
DOCS_ASSETS = "/docs-assets"
_DOCS_CSP = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _docs_enabled(request: Request) -> bool:
    s = app_settings(request.scope)
    return s.api_docs if s.api_docs is not None else s.deployment_mode == "local"


def _docs_page(request: Request, html: HTMLResponse) -> HTMLResponse:
    if not _docs_enabled(request):
        raise NotFound(
            "the API's docs are off in this deployment (set WAYMARK_API_DOCS=true "
            "to serve them); its description is at /openapi.json"
        )
    # the page's one inline script (Swagger UI's set-up) is allowed by its hash, not by
    # allowing inline scripts
    body = bytes(html.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1).encode()).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(body)
    )
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": _DOCS_CSP.format(hashes=hashes).replace("  ", " "),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        },
    )


def add_docs(app: FastAPI, *, title: str) -> None:
    """/docs (Swagger UI) and /redoc with their assets served by this app, never a CDN's;
    off in production unless `api_docs` turns them on (a 404 then)."""
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _docs_page(
            request,
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{title} – API",
                oauth2_redirect_url=redirect,
                swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            ),
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return _docs_page(request, get_swagger_ui_oauth2_redirect_html())

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _docs_page(
            request,
            get_redoc_html(
                openapi_url="/openapi.json",
                title=f"{title} – API",
                redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            ),
        )

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = as_openapi_31(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def as_openapi_31(spec: dict[str, Any]) -> dict[str, Any]:
    """The document FastAPI generates, made valid OpenAPI 3.1 (what it declares): FastAPI
    describes a streamed response's items with OpenAPI 3.2's `itemSchema`, which a 3.1 validator
    or code generator refuses. In 3.1 the body is a string; the item schema stays, as the
    extension `x-itemSchema`, for readers who know it."""
    for item in spec.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                for media_type, content in response.get("content", {}).items():
                    if "itemSchema" in content:
                        content["x-itemSchema"] = content.pop("itemSchema")
                        content.setdefault(
                            "schema",
                            {"type": "string", "description": f"a stream of {media_type} items"},
                        )
    return spec
