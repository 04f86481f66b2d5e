"""Partner onboarding: an organisation's administrator registers its partner systems' OAuth
clients (client credentials) at the ICS's OpenID provider, sees them and their scopes, rotates
their secrets and revokes them; every change audited.

- `domain.py`: which scopes a partner's client may hold, the registration's metadata (pure);
- `provider.py`: the provider's dynamic client registration (RFC 7591) and its management
  (RFC 7592), reached through the discovery document's `registration_endpoint`;
- `sealing.py`: the registration access token sealed at rest;
- `handlers.py`, `repository.py`, `schemas.py`, `api.py`: the usual rooms.
"""
