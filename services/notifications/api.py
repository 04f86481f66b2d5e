"""The notifications service's HTTP API. Routes live in one module per area, each a router
included here: partner webhook subscriptions (`webhooks.api`), people's messages, inboxes,
preferences and the delivery log (`messages.api`), the coordinators' alert inbox and its live
stream (`alerts.api`), partner onboarding: partner systems' OAuth clients (`clients.api`). The
coordinators' dashboard is an app of its own, mounted at /dashboard
(`dashboard.app`)."""

from __future__ import annotations

from services.notifications.alerts import api as alerts_api
from services.notifications.clients import api as clients_api
from services.notifications.dashboard.app import mount_dashboard
from services.notifications.messages import api as messages_api
from services.notifications.webhooks import api as webhooks_api
from shared.web import create_app

app = create_app(
    "notifications",
    title="Waymark notifications",
    description="The right message to the right person in the form they can use; "
    "signed webhooks for partner organisations; the coordinators' "
    "alert inbox with a live stream.",
)

app.include_router(webhooks_api.router, tags=["webhooks"])
app.include_router(messages_api.router, tags=["messages"])
app.include_router(alerts_api.router, tags=["alerts"])
app.include_router(clients_api.router, tags=["partner clients"])
mount_dashboard(app)  # the coordinators' dashboard: its own app, its own error pages
