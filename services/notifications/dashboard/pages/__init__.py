"""The dashboard's pages, one module per area: sign-in (`signin`), the alert inbox (`alerts`),
referrals and the triage worklist (`referrals`), the directory of services (`directory`) and
the ICS leads' figures (`overview`). Each is a router of paths relative to /dashboard, included
in the dashboard's app (app.py)."""
