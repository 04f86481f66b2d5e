"""What notifications knows of a person's contacts with care outside referrals: A&E, NHS 111,
out-of-hours, crisis team, GP, admissions and outpatients, as the integration service reports
them on `waymark.encounters.v1` (codes only; the subject is the person's pseudonym).

- `domain`: the rules (which contacts happened, which were unplanned, which the timeline
  leaves out); pure.
- `effects`: what the consumer does with an `EncounterRecorded` event (the contact index, the
  highest revision wins).
- `repository`: one person's contacts, for the dashboard's timeline.
- `reports`: unplanned contacts per 1,000 people, for the ICS leads' overview.
"""
