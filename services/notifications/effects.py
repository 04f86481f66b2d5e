"""What the notifications consumer does with each event, in the consumer's transaction (the
inbox row and every effect commit together, so a redelivered event changes nothing). Each
capability's effects are its own; this is where an event meets them:

- referral events: the referral index and the referral history (referral_index.py); one
  message row per (event, audience) the audience rules name (messages/effects.py); one
  webhook delivery row per matching partner subscription (webhooks/effects.py); none of the
  last two for the demo's synthetic population, whose referrals exist only as events: nobody
  to tell;
- journey alert events: the coordinators' alert inbox and the alert's addressees
  (alerts/effects.py);
- encounter events (a contact with care the EHRs reported): the contact index, the highest
  revision of each encounter winning (encounters/effects.py), which the timeline and the
  overview read; nobody is told of a contact;
- a break-glass read: a notice to the ICS's information governance team (messages/effects.py);
- everything else is read and recorded in the inbox but owes nothing (yet).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services.notifications.alerts.effects import apply_alert_event
from services.notifications.encounters.effects import index_encounter
from services.notifications.messages.effects import (
    queue_referral_messages,
    tell_information_governance,
)
from services.notifications.referral_index import index_referral, record_history
from services.notifications.webhooks.effects import queue_referral_deliveries
from shared.events.care_plans import BreakGlassUsed
from shared.events.encounters import EncounterRecorded
from shared.events.envelope import CloudEvent
from shared.events.journeys import AlertEventData
from shared.events.referrals import HISTORY_SOURCE, SYNTHETIC_SOURCE, ReferralEventData
from shared.settings import Settings

logger = logging.getLogger(__name__)


async def apply_event(
    *, session: AsyncSession, event: CloudEvent, data: Any, settings: Settings
) -> None:
    if isinstance(data, ReferralEventData):
        await index_referral(session, event, data)
        await record_history(session, event, data)
        if event.source in (SYNTHETIC_SOURCE, HISTORY_SOURCE):
            # made-up people and referrals (`waymark seed`), or history imported at go-live
            # (a referral step of months ago, already handled where it happened): indexed for
            # the dashboard and the figures, but nobody is messaged and no partner is sent it
            return
        await queue_referral_messages(session, event, data)
        await queue_referral_deliveries(session, event, data)
    elif isinstance(data, AlertEventData):
        await apply_alert_event(session, event, data, settings)
    elif isinstance(data, EncounterRecorded):
        await index_encounter(session, event, data)
    elif isinstance(data, BreakGlassUsed):
        await tell_information_governance(session, event, data, settings)
