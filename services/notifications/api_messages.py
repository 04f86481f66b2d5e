"""Routes of the notifications API: people's messages (included by api.py).

- `/preferences/me`: a staff user's own channels, work contact, quiet hours, language, form;
- `/inbox`: the caller's own in-app items and their organisation's team items;
- `/messages`: the delivery log, to staff of an organisation the referral concerns, the
  coordinators and admins of this deployment's ICS; every read audited.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications import messages as rules
from shared.access import Capability, Relationship, relationships_for, roles_with
from shared.audit import record_audit
from shared.auth import CurrentPrincipal, Principal
from shared.errors import Forbidden, NotFound, PreconditionFailed, ValidationFailed
from shared.web import PROBLEM_RESPONSES, SessionDep, client_ip, expected_version, weak_etag

router = APIRouter()
ERRORS = PROBLEM_RESPONSES

#: people with a Waymark login (machine clients have no inbox or preferences): the role table
STAFF_ROLES = tuple(sorted(roles_with(Capability.OWN_INBOX)))

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _staff(principal: Principal) -> Principal:
    if not principal.has(*STAFF_ROLES):
        raise Forbidden("preferences and inboxes belong to people with a Waymark login")
    return principal


async def _exec(session: AsyncSession, sql: str, **params: Any) -> Any:
    return await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]


# --- preferences --------------------------------------------------------------------------------


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: list[Literal["email", "sms", "in_app"]] = Field(
        min_length=1, max_length=3, description="the channels to use, first choice first"
    )
    email: str | None = Field(default=None, max_length=254, description="a work email")
    mobile: str | None = Field(default=None, max_length=20, description="a UK mobile number")
    quiet_start: str | None = Field(
        default=None,
        pattern=_HHMM,
        description="UK time HH:MM; email and SMS wait until "
        "quiet_end (the in-app inbox never waits)",
    )
    quiet_end: str | None = Field(default=None, pattern=_HHMM)
    language: str = Field(
        default="en", pattern=r"^[a-z]{2,3}$", description="ISO 639 code, e.g. en, cy"
    )
    variant: Literal["plain", "easy_read", "large_print"] = "plain"

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("name each channel once")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not rules.is_email(v):
            raise ValueError("must be an email address such as name@example.nhs.uk")
        return v.strip() if v else v

    @field_validator("mobile")
    @classmethod
    def _mobile(cls, v: str | None) -> str | None:
        if v is None:
            return v
        normalised = rules.uk_mobile(v)
        if normalised is None:
            raise ValueError("must be a UK mobile number such as 07700 900123")
        return normalised

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceIn:
        if "email" in self.channels and not self.email:
            raise ValueError("the email channel needs an email address")
        if "sms" in self.channels and not self.mobile:
            raise ValueError("the sms channel needs a mobile number")
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("give both quiet_start and quiet_end, or neither")
        if self.quiet_start is not None and self.quiet_start == self.quiet_end:
            raise ValueError("quiet_start and quiet_end must differ")
        return self


class PreferenceOut(BaseModel):
    user_id: str
    org: str
    channels: list[str]
    email: str | None
    mobile: str | None
    quiet_start: str | None
    quiet_end: str | None
    language: str
    variant: str
    version: int = Field(
        description='0: never set (the defaults); send If-Match: W/"0" to set them the first time'
    )


def _hhmm(t: time | None) -> str | None:
    return t.strftime("%H:%M") if t is not None else None


def _time(v: str | None) -> time | None:
    return time.fromisoformat(v) if v else None


async def _preference(session: AsyncSession, principal: Principal) -> PreferenceOut:
    row = (
        await _exec(
            session,
            "SELECT * FROM preference WHERE user_id = :u",
            u=rules.staff_key(principal.identity, principal.org),
        )
    ).first()
    if row is None:
        d = rules.DEFAULT_STAFF_PREFERENCE
        return PreferenceOut(
            user_id=principal.identity,
            org=principal.org,
            channels=list(d.channels),
            email=None,
            mobile=None,
            quiet_start=None,
            quiet_end=None,
            language=d.language,
            variant=d.variant,
            version=0,
        )
    return PreferenceOut(
        user_id=principal.identity,
        org=row.org,
        channels=list(row.channels),
        email=row.email,
        mobile=row.mobile,
        quiet_start=_hhmm(row.quiet_start),
        quiet_end=_hhmm(row.quiet_end),
        language=row.language,
        variant=row.variant,
        version=row.version,
    )


@router.get("/preferences/me", response_model=PreferenceOut, responses=ERRORS)
async def get_my_preferences(session: SessionDep, principal: CurrentPrincipal) -> Response:
    """Your own notification choices (the defaults, version 0, until you set them)."""
    out = await _preference(session, _staff(principal))
    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": weak_etag(out.version)})


@router.put("/preferences/me", response_model=PreferenceOut, responses=ERRORS)
async def put_my_preferences(
    body: PreferenceIn,
    session: SessionDep,
    principal: CurrentPrincipal,
    if_match: Annotated[str | None, Header(max_length=40)] = None,
) -> Response:
    """Set your own channels (first choice first), work email and mobile, quiet hours,
    language and form. Needs If-Match with the version you read (W/"0" the first time)."""
    _staff(principal)
    expected = expected_version(if_match)
    values = dict(
        u=rules.staff_key(principal.identity, principal.org),
        org=principal.org,
        ch=list(body.channels),
        em=body.email,
        mob=body.mobile,
        qs=_time(body.quiet_start),
        qe=_time(body.quiet_end),
        lang=body.language,
        var=body.variant,
    )
    if expected == 0:
        row = (
            await _exec(
                session,
                """
            INSERT INTO preference (user_id, org, channels, email, mobile, quiet_start,
                                    quiet_end, language, variant, version, updated_at)
            VALUES (:u, :org, :ch, :em, :mob, :qs, :qe, :lang, :var, 1, now())
            ON CONFLICT (user_id) DO NOTHING RETURNING version""",
                **values,
            )
        ).first()
    else:
        row = (
            await _exec(
                session,
                """
            UPDATE preference SET org = :org, channels = :ch, email = :em, mobile = :mob,
                quiet_start = :qs, quiet_end = :qe, language = :lang, variant = :var,
                version = version + 1, updated_at = now()
            WHERE user_id = :u AND version = :v RETURNING version""",
                v=expected,
                **values,
            )
        ).first()
    if row is None:
        current = await _preference(session, principal)
        raise PreconditionFailed(
            f"your preferences have changed since you read them (you "
            f"have version {expected}, they are at {current.version}); "
            "read them again",
            current_version=current.version,
        )
    out = await _preference(session, principal)
    return JSONResponse(out.model_dump(mode="json"), headers={"ETag": weak_etag(out.version)})


# --- the in-app inbox -----------------------------------------------------------------------------


class InboxItemOut(BaseModel):
    id: str
    owner: str = Field(description="user:<you> or org:<your organisation> (the team's)")
    org: str
    message_id: str | None
    referral_id: str | None
    subject: str
    body: str
    variant: str
    created_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    total: int = Field(description="items matching the filter")
    unread: int = Field(description="unread items in your inbox and your team's")
    limit: int
    offset: int


def _owners(principal: Principal) -> list[str]:
    """Your inbox (keyed by issuer + subject) and your team's."""
    return [f"user:{principal.identity}", f"org:{principal.org}"]


#: an item is yours when it is addressed to you or your team, *for your organisation*: the
#: same person signed in for another organisation does not see it
MINE = "owner = ANY(:owners) AND org = :my_org"


_ITEM_SELECT = """
    SELECT i.*, m.referral_id, m.patient_id FROM inbox_item i
    LEFT JOIN message m ON m.id = i.message_id"""


def _item_out(row: Any) -> InboxItemOut:
    return InboxItemOut(
        id=row.id,
        owner=row.owner,
        org=row.org,
        message_id=row.message_id,
        referral_id=row.referral_id,
        subject=row.subject,
        body=row.body,
        variant=row.variant,
        created_at=row.created_at,
        read_at=row.read_at,
    )


@router.get("/inbox", response_model=InboxPage, responses=ERRORS)
async def inbox(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    unread: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> InboxPage:
    """Your in-app messages and your organisation's team messages, newest first."""
    _staff(principal)
    owners = _owners(principal)
    cond = "i.owner = ANY(:owners) AND i.org = :my_org"
    if unread is True:
        cond += " AND i.read_at IS NULL"
    elif unread is False:
        cond += " AND i.read_at IS NOT NULL"
    rows = (
        await _exec(
            session,
            f"{_ITEM_SELECT} WHERE {cond} "  # noqa: S608 - fixed text
            "ORDER BY i.created_at DESC, i.id LIMIT :lim OFFSET :off",
            owners=owners,
            my_org=principal.org,
            lim=limit,
            off=offset,
        )
    ).all()
    total = (
        await _exec(
            session,
            f"SELECT count(*) FROM inbox_item i WHERE {cond}",
            owners=owners,
            my_org=principal.org,
        )
    ).scalar_one()
    unread_count = (
        await _exec(
            session,
            f"SELECT count(*) FROM inbox_item WHERE {MINE} AND read_at IS NULL",
            owners=owners,
            my_org=principal.org,
        )
    ).scalar_one()
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="InboxItem",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="inbox",
        )
    return InboxPage(
        items=[_item_out(r) for r in rows],
        total=total,
        unread=unread_count,
        limit=limit,
        offset=offset,
    )


@router.post("/inbox/{item_id}/read", response_model=InboxItemOut, responses=ERRORS)
async def mark_read(
    item_id: Annotated[str, Path(max_length=80)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> InboxItemOut:
    """Mark one of your (or your team's) items read; reading it again changes nothing."""
    _staff(principal)
    await _exec(
        session,
        f"UPDATE inbox_item SET read_at = now() WHERE id = :id AND {MINE} AND read_at IS NULL",
        id=item_id,
        owners=_owners(principal),
        my_org=principal.org,
    )
    row = (
        await _exec(
            session,
            f"{_ITEM_SELECT} WHERE i.id = :id AND i.owner = ANY(:owners) AND i.org = :my_org",
            id=item_id,
            owners=_owners(principal),
            my_org=principal.org,
        )
    ).first()
    if row is None:
        raise NotFound(f"no inbox item {item_id} of yours or your team's")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="InboxItem",
        resource_id=row.id,
        patient_id=row.patient_id,
        client_ip=client_ip(request),
        detail="marked read",
    )
    return _item_out(row)


# --- the delivery log ---------------------------------------------------------------------------


class DeliveryOut(BaseModel):
    id: str
    recipient: str = Field(
        description="user:<id>, org:<code> (a team's inbox), "
        "service:<id> (its mailbox), person, carer:<id>"
    )
    channel: str = Field(description="email, sms, in_app, or none (nothing could be tried)")
    variant: str
    language: str
    attempt: int
    status: str = Field(description="sent, failed (final for this recipient), retrying, held")
    provider_ref: str | None
    error: str | None
    note: str | None
    at: datetime


class MessageOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    audience: str
    template: str
    referral_id: str | None
    patient_id: str | None
    org: str | None
    context: dict[str, Any]
    status: str = Field(description="pending, held, sent, partly_sent, failed, skipped")
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    deliveries: list[DeliveryOut]


def _scope(principal: Principal, settings: Any) -> tuple[str, dict[str, Any]]:
    """The messages a caller may see, as a condition on `m` (message) and `ri` (index)."""
    through = relationships_for(principal, Capability.MESSAGE_LOG_READ)
    if Relationship.ICS_COORDINATION in through and principal.ics == settings.ics:
        return "TRUE", {}
    if Relationship.REFERRAL in through:
        return "(ri.from_org = :my_org OR ri.to_org = :my_org)", {"my_org": principal.org}
    raise Forbidden(
        "the delivery log is for staff of the organisations a referral concerns "
        f"and the coordinators of {settings.ics}"
    )


_MESSAGE_SELECT = """
    SELECT m.* FROM message m LEFT JOIN referral_index ri ON ri.referral_id = m.referral_id"""


async def _with_deliveries(session: AsyncSession, rows: list[Any]) -> list[MessageOut]:
    ids = [r.id for r in rows]
    by_message: dict[str, list[DeliveryOut]] = {i: [] for i in ids}
    if ids:
        for d in (
            await _exec(
                session,
                "SELECT * FROM message_delivery WHERE message_id = ANY(:ids) ORDER BY at, id",
                ids=ids,
            )
        ).all():
            by_message[d.message_id].append(DeliveryOut.model_validate(d, from_attributes=True))
    out = []
    for r in rows:
        ctx = r.context if isinstance(r.context, dict) else json.loads(r.context or "{}")
        out.append(
            MessageOut(
                id=r.id,
                event_id=r.event_id,
                event_type=r.event_type,
                audience=r.audience,
                template=r.template,
                referral_id=r.referral_id,
                patient_id=r.patient_id,
                org=r.org,
                context=ctx,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at,
                last_error=r.last_error,
                created_at=r.created_at,
                updated_at=r.updated_at,
                deliveries=by_message[r.id],
            )
        )
    return out


_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@router.get("/messages", response_model=list[MessageOut], responses=ERRORS)
async def list_messages(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    referral_id: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9-]+$")] = None,
    status: Annotated[
        list[Literal["pending", "held", "sent", "partly_sent", "failed", "skipped"]] | None, Query()
    ] = None,
    since: Annotated[AwareDatetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Response:
    """The delivery log: messages owed (newest first) with every attempt; the referral's
    organisations see theirs, this ICS's coordinators and admins see all."""
    cond, params = _scope(principal, request.app.state.settings)
    conds = [cond]
    if referral_id is not None:
        conds.append("m.referral_id = :rid")
        params["rid"] = referral_id
    if status:
        conds.append("m.status = ANY(:statuses)")
        params["statuses"] = list(status)
    if since is not None:
        if not 1900 <= since.year <= 9998:
            raise ValidationFailed("since must be between the years 1900 and 9998")
        conds.append("m.created_at >= :since")
        params["since"] = since
    where = " AND ".join(conds)
    rows = (
        await _exec(
            session,
            f"{_MESSAGE_SELECT} WHERE {where} "  # noqa: S608 - fixed text
            "ORDER BY m.created_at DESC, m.id LIMIT :lim OFFSET :off",
            lim=limit,
            off=offset,
            **params,
        )
    ).all()
    total = (
        await _exec(
            session,
            "SELECT count(*) FROM message m LEFT JOIN referral_index ri "
            f"ON ri.referral_id = m.referral_id WHERE {where}",
            **params,
        )
    ).scalar_one()
    for r in rows:
        record_audit(
            session,
            principal=principal,
            action="read",
            resource_type="Message",
            resource_id=r.id,
            patient_id=r.patient_id,
            client_ip=client_ip(request),
            detail="delivery log",
        )
    out = await _with_deliveries(session, list(rows))
    return JSONResponse(
        [m.model_dump(mode="json") for m in out], headers={"X-Total-Count": str(total)}
    )


@router.get("/messages/{message_id}", response_model=MessageOut, responses=ERRORS)
async def get_message(
    message_id: Annotated[str, Path(max_length=80)],
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> MessageOut:
    """One message with each attempt to reach each recipient."""
    cond, params = _scope(principal, request.app.state.settings)
    row = None
    if _ID.match(message_id):
        row = (
            await _exec(
                session, f"{_MESSAGE_SELECT} WHERE m.id = :id AND {cond}", id=message_id, **params
            )
        ).first()
    if row is None:
        # the same answer for "absent" and "not yours", so ids cannot be probed
        raise NotFound(f"no message {message_id} that you may see")
    record_audit(
        session,
        principal=principal,
        action="read",
        resource_type="Message",
        resource_id=row.id,
        patient_id=row.patient_id,
        client_ip=client_ip(request),
        detail="delivery log",
    )
    return (await _with_deliveries(session, [row]))[0]
