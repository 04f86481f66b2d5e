"""HL7 v2 over MLLP: the integration service's door for hospital PAS and ED systems.

`domain.py` reads ADT/SIU messages into contact reports (pure), `handlers.py` applies one
message and builds its ACK (and registers the HL7 v2 re-drive), `listener.py` is the MLLP
server, run as the part `integration-mllp` (`python -m services.integration.hl7`).
docs/integration-hl7.md says what is read and what each ACK means.
"""
