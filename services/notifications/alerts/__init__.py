"""The coordinators' alert inbox: the journey's alerts as a read model, the coordinators'
actions on them, and their live stream.

- `domain`: the rules (which action in which status, filters, how a journey event
  reconciles with the row); pure.
- `schemas`: request and response bodies; `crisis_plans`: the person's crisis plan on a
  PHQ-9 item 9 alert (read from the care plans API).
- `repository`: every query of the `alert` and `alert_history` tables.
- `handlers`: the use cases (a coordinator's action; a journey alert event), and the reads
  the API and the dashboard make.
- `explainer`: the journey's plain-English explanation, asked of Temporal.
- `reports`: the figures for ICS leads (loops and stalls per 1,000 referrals, waits), which
  the dashboard's overview shows.
- `api`: the routes; `live`: the live stream's fan-out.
- `effects`: what the consumer does with a journey alert event; `recipients`: who an alert
  message reaches (the dispatcher's side).
"""
