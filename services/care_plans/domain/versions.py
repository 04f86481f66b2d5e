"""What changed between two versions of a plan: pure and synchronous."""

from __future__ import annotations

from typing import Any


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level differences between two plan documents, as JSON Pointer paths (RFC 6901):
    each change is {op: added|removed|changed, path, before, after}."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after)):
            p = f"{path}/{_escape(str(key))}"
            if key not in before:
                out.append({"op": "added", "path": p, "before": None, "after": after[key]})
            elif key not in after:
                out.append({"op": "removed", "path": p, "before": before[key], "after": None})
            else:
                out.extend(diff(before[key], after[key], p))
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i in range(max(len(before), len(after))):
            p = f"{path}/{i}"
            if i >= len(before):
                out.append({"op": "added", "path": p, "before": None, "after": after[i]})
            elif i >= len(after):
                out.append({"op": "removed", "path": p, "before": before[i], "after": None})
            else:
                out.extend(diff(before[i], after[i], p))
        return out
    if before == after and type(before) is type(after):
        return []
    return [{"op": "changed", "path": path or "/", "before": before, "after": after}]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
