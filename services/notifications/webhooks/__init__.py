"""Partner webhooks: organisations subscribe to the events that concern them and receive
them signed (Standard Webhooks), with retries, a delivery log and resends.

- `domain`: the rules (signing, secrets and their rotation, retry schedule, event types and
  filters a subscription may ask for, the SSRF guard's checks); pure.
- `endpoints`: the SSRF guard's I/O half (resolving an endpoint's name).
- `schemas`: request and response bodies; `api`: the routes; `handlers`: the use cases.
- `repository`: every query of subscriptions, deliveries and attempts.
- `effects`: what the consumer queues for a referral event; `sender`: the dispatcher's
  sending of what is due.
"""
