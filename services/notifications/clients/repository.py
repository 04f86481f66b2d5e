"""Every query of partner onboarding."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.models import PartnerClient

MAX_LISTED = 500


async def by_org(session: AsyncSession, org: str) -> list[PartnerClient]:
    """An organisation's clients, newest first (active and revoked)."""
    rows = await session.exec(
        select(PartnerClient)
        .where(PartnerClient.org == org)
        .order_by(col(PartnerClient.created_at).desc(), col(PartnerClient.id))
        .limit(MAX_LISTED)
    )
    return list(rows.all())


async def get(
    session: AsyncSession, client_key: str, *, for_update: bool = False
) -> PartnerClient | None:
    query = select(PartnerClient).where(PartnerClient.id == client_key)
    if for_update:
        query = query.with_for_update()
    return (await session.exec(query)).first()


async def by_client_id(session: AsyncSession, client_id: str) -> PartnerClient | None:
    rows = await session.exec(select(PartnerClient).where(PartnerClient.client_id == client_id))
    return rows.first()


async def count_active(session: AsyncSession, org: str) -> int:
    rows = await session.exec(
        select(PartnerClient.id).where(PartnerClient.org == org, PartnerClient.status == "active")
    )
    return len(rows.all())
