"""Structural validation of what a FHIR source sends, with `fhir.resources` (its R4B models:
Encounter, Appointment, Bundle, Patient, Organization, Condition and Parameters are the same in
R4 4.0.1 and R4B 4.3.0). Every problem is an issue naming its FHIRPath, as a validator does
(`Encounter.period.start`, `Bundle.entry[1].resource.status`). Pure: no I/O.

fhir.resources checks types, cardinality and unknown elements, not value sets: the codes of the
required bindings Waymark relies on (Encounter.status, Appointment.status, Bundle.type) are
checked where they are mapped (services/integration/fhir/mapping.py), with the same FHIRPaths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.errors import ValidationFailed, WaymarkError

MAX_ISSUES = 20
#: the codes of the required bindings Waymark reads (FHIR R4 4.0.1 value sets)
REQUIRED_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    # http://hl7.org/fhir/ValueSet/encounter-status
    ("Encounter", "status"): (
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
        "entered-in-error", "unknown",
    ),
    # http://hl7.org/fhir/ValueSet/appointmentstatus
    ("Appointment", "status"): (
        "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
        "entered-in-error", "checked-in", "waitlist",
    ),
    # http://hl7.org/fhir/ValueSet/bundle-type
    ("Bundle", "type"): (
        "document", "message", "transaction", "transaction-response", "batch", "batch-response",
        "history", "searchset", "collection",
    ),
}  # fmt: skip
VALUE_SET = {
    "Encounter": "an R4 Encounter status (encounter-status)",
    "Appointment": "an R4 Appointment status (appointmentstatus)",
    "Bundle": "an R4 Bundle type (bundle-type)",
}
#: Bundle types whose entries each need a request (invariant bdl-3)
WITH_REQUESTS = ("batch", "transaction", "history")


@dataclass(frozen=True)
class Issue:
    path: str  # FHIRPath of the problem
    message: str

    def as_error(self) -> dict[str, Any]:
        # shared.fhir.operation_outcome renders each as an issue with this expression
        return {"message": self.message, "location": [self.path]}


class FhirInvalid(ValidationFailed):
    """A resource that is not valid FHIR, or not one Waymark can take (422 OperationOutcome,
    one issue per problem, each with its FHIRPath)."""

    def __init__(self, summary: str, issues: list[Issue] | None = None) -> None:
        issues = issues or []
        super().__init__(summary, errors=[i.as_error() for i in issues[:MAX_ISSUES]])
        self.issues = issues


class NotJson(WaymarkError):
    status, title, slug = 400, "Bad request", "bad-request"


def loads(body: bytes) -> Any:
    """The request body as JSON, or 400 saying why it is not."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotJson("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise NotJson(
            f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as FHIRPath: ('entry', 0, 'resource', 'class') ->
    Bundle.entry[0].resource.class."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("resource_type", "resourceType"):
            out += ".resourceType"
        else:
            out += f".{part}"
    return out


def _issues(root: str, exc: ValidationError) -> list[Issue]:
    out = []
    for e in exc.errors():
        message = str(e["msg"]).split("\n")[0].strip()
        if e["type"] == "extra_forbidden":
            message = "this element is not part of FHIR R4"
        elif e["type"] == "missing":
            message = "this element is required"
        out.append(Issue(fhirpath(root, tuple(e["loc"])), message))
    return out


def model_class(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, KeyError):
        return None


def resource_problems(raw: Any, path: str, *, expect: tuple[str, ...] = ()) -> list[Issue]:
    """What is structurally wrong with `raw` as a FHIR resource at `path` ([] when nothing)."""
    if not isinstance(raw, dict):
        return [Issue(path, "a FHIR resource is a JSON object")]
    kind = raw.get("resourceType")
    if not isinstance(kind, str) or not kind:
        return [Issue(f"{path}.resourceType", "a FHIR resource names its resourceType")]
    if expect and kind not in expect:
        return [Issue(f"{path}.resourceType", f"expected {' or '.join(expect)}, not {kind}")]
    klass = model_class(kind)
    if klass is None:
        return [Issue(f"{path}.resourceType", f"{kind!r} is not a FHIR R4 resource type")]
    try:
        klass.model_validate(raw)
    except ValidationError as exc:
        return _issues(path if path != kind else kind, exc)
    except (ValueError, TypeError, KeyError) as exc:  # a nested resource of an unknown type
        return [Issue(path, f"not a valid {kind}: {exc}")]
    return binding_problems(raw, path)


def binding_problems(raw: dict[str, Any], path: str) -> list[Issue]:
    """Codes outside the required value sets Waymark reads (fhir.resources does not check
    value sets; the reference validator does)."""
    out = []
    kind = raw.get("resourceType", "")
    for (of, element), codes in REQUIRED_CODES.items():
        value = raw.get(element)
        if of == kind and value is not None and value not in codes:
            out.append(Issue(f"{path}.{element}", f"{value!r} is not {VALUE_SET[of]}"))
    return out


def entry_problems(raw: dict[str, Any]) -> list[list[Issue]]:
    """Each entry's own problems: its request (bdl-3), and its resource's."""
    out: list[list[Issue]] = []
    for i, entry in enumerate(raw.get("entry") or []):
        path = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            out.append([])  # a Bundle problem (bundle_shell_problems)
            continue
        problems = []
        request = entry.get("request") or {}
        if raw.get("type") in WITH_REQUESTS and not (request.get("method") and request.get("url")):
            problems.append(
                Issue(f"{path}.request", f"each entry of a {raw.get('type')} needs its request")
            )
        problems += resource_problems(entry.get("resource"), f"{path}.resource")
        out.append(problems)
    return out


def problems(raw: Any) -> list[Issue]:
    """Waymark's verdict on whether `raw` is valid FHIR R4: every problem, [] when none. (Not
    whether it can become a contact: that is mapping's.)"""
    if isinstance(raw, dict) and raw.get("resourceType") == "Bundle":
        shell = bundle_shell_problems(raw)
        return shell + [p for ps in entry_problems(raw) for p in ps]
    root = raw.get("resourceType") if isinstance(raw, dict) else None
    return resource_problems(raw, str(root or "Resource"))


def parsed(raw: Any, *expect: str) -> Any:
    """`raw` as its fhir.resources model, or FhirInvalid with every problem's FHIRPath."""
    root = raw.get("resourceType") if isinstance(raw, dict) else None
    problems = resource_problems(raw, str(root or "Resource"), expect=expect)
    if problems:
        what = " or ".join(expect) if expect else "FHIR resource"
        raise FhirInvalid(f"not a valid R4 {what}: {_summary(problems)}", problems)
    return model_class(raw["resourceType"]).model_validate(raw)


def bundle_shell_problems(raw: dict[str, Any]) -> list[Issue]:
    """The Bundle's own problems, its entries' resources left out (each entry is checked on
    its own, so a batch can answer per entry)."""
    shell = dict(raw)
    entries = raw.get("entry")
    if entries is not None and not isinstance(entries, list):
        return [Issue("Bundle.entry", "entry is a list")]
    shell["entry"] = [
        {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
        for e in entries or []
    ]
    if not shell["entry"]:
        del shell["entry"]
    odd = [i for i, e in enumerate(shell.get("entry", [])) if not isinstance(e, dict)]
    if odd:
        return [Issue(f"Bundle.entry[{i}]", "an entry is a JSON object") for i in odd]
    return resource_problems(shell, "Bundle", expect=("Bundle",))


def _summary(problems: list[Issue]) -> str:
    shown = "; ".join(f"{p.path}: {p.message}" for p in problems[:5])
    more = len(problems) - 5
    return shown + (f" (and {more} more)" if more > 0 else "")


def summary(problems: list[Issue]) -> str:
    return _summary(problems)
