"""People's messages: what an event owes the referrer, the receiving team, the person and
their carers (and an alert its addressees), sent by email, SMS or the in-app inbox in the
form each can use, with a delivery log.

- `domain`: the rules (channels and reach, forms and languages, quiet hours, retries, a
  message's status); pure.
- `schemas`: request and response bodies; `api`: the routes; `handlers`: the use cases
  (preferences, the inbox, the delivery log).
- `repository`: every query of messages, deliveries, inbox items and preferences.
- `effects`: what the consumer queues for an event.
- `sender`: the dispatcher's sending of what is due, with `recipients` (who, how, in which
  form), `contacts` (personal details from the owning services), `templates` (+ templates/),
  `channels` (email, SMS, in-app) and `delivery_log`.
"""
