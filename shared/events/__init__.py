"""Waymark's events: the CloudEvents 1.0 envelope and a registry of versioned event types."""

from shared.events.envelope import CloudEvent, EventData, make_event
from shared.events.registry import REGISTRY, EventRegistry, UnknownEventType

__all__ = ["CloudEvent", "EventData", "make_event", "REGISTRY", "EventRegistry", "UnknownEventType"]
