"""The integration service: the door for the EHRs an ICS already runs.

HL7 v2 ADT/SIU over MLLP (hospital PAS and ED systems), FHIR R4 REST and Subscription
notifications (shared care records), and bulk history at go-live. Every contact is validated and
pseudonymised here: raw identifiers and free text never leave this service; what it publishes on
`waymark.encounters.v1` is codes (shared/events/encounters.py).
"""
