"""Every query of the referrals service."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.referrals.models import Referral, ReferralTransition


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, referral: Referral) -> None:
        self.session.add(referral)

    def add_transition(self, transition: ReferralTransition) -> None:
        self.session.add(transition)

    async def get(self, referral_id: str) -> Referral | None:
        return await self.session.get(Referral, referral_id)

    async def history(self, referral_id: str) -> list[ReferralTransition]:
        rows = await self.session.exec(select(ReferralTransition)
                                       .where(ReferralTransition.referral_id == referral_id)
                                       .order_by(ReferralTransition.id))  # type: ignore[arg-type]
        return list(rows.all())
