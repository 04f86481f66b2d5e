"""OpenTelemetry set up in one call, and the helpers that carry `traceparent` across
HTTP -> outbox row -> Kafka headers -> consumer -> Temporal."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.settings import Settings

logger = logging.getLogger(__name__)
_configured = False


def setup_telemetry(
    service_name: str, settings: Settings, extra_processors: Iterable[SpanProcessor] = ()
) -> None:
    """Install the global tracer and meter providers once per process.

    With `WAYMARK_OTLP_ENDPOINT` set, spans and metrics go there over OTLP/HTTP; without it
    spans are still created (so trace ids flow through headers) but not exported.
    """
    global _configured
    if _configured:
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            for p in extra_processors:
                provider.add_span_processor(p)
        return
    resource = Resource.create({"service.name": service_name, "service.namespace": "waymark"})
    provider = TracerProvider(resource=resource)
    readers = []
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint}/v1/traces"))
        )
        readers.append(
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{settings.otlp_endpoint}/v1/metrics")
            )
        )
    for p in extra_processors:
        provider.add_span_processor(p)
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    _configured = True


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def kafka_headers_from_context() -> list[tuple[str, bytes]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


def context_from_kafka_headers(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {
        k: v.decode(errors="replace")
        for k, v in (headers or ())
        if k in ("traceparent", "tracestate")
    }
    return propagate.extract(carrier)


@contextmanager
def attached(ctx: otel_context.Context) -> Any:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


class TracingMiddleware:
    """Server span per HTTP request, continuing an incoming `traceparent`.

    A small ASGI middleware instead of opentelemetry-instrumentation-fastapi (pre-release
    only) keeps the dependency list to stable packages.
    """

    def __init__(self, app: ASGIApp, service_name: str) -> None:
        self.app = app
        self.tracer = trace.get_tracer(service_name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: Mapping[str, str] = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])
        }
        ctx = propagate.extract(carrier)
        route = scope.get("path", "")
        with self.tracer.start_as_current_span(
            f"{scope['method']} {route}", context=ctx, kind=SpanKind.SERVER
        ) as span:
            span.set_attribute("http.request.method", scope["method"])
            span.set_attribute("url.path", route)

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    tp = current_traceparent()
                    if tp:
                        message.setdefault("headers", [])
                        message["headers"] = list(message["headers"]) + [
                            (b"traceparent", tp.encode())
                        ]
                await send(message)

            await self.app(scope, receive, send_wrapper)


async def traced(
    name: str,
    ctx: otel_context.Context,
    fn: Callable[[], Awaitable[Any]],
    kind: SpanKind = SpanKind.CONSUMER,
) -> Any:
    with trace.get_tracer("waymark").start_as_current_span(name, context=ctx, kind=kind):
        return await fn()
