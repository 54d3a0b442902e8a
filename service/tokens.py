"""The admin token check, shared by the guard in front of FastAPI, the admin routes and
the prediction path (naming a variant a client may not force)."""

from __future__ import annotations

import secrets

from pydantic import SecretStr

from service.payload import Reject

DISABLED = "admin endpoints are disabled: set PERFSERVE_ADMIN_TOKEN or --admin-token-file"


def admin_refusal(token: SecretStr | None, authorization: str | None) -> Reject | None:
    """Why `authorization` does not allow an admin change, or None when it does.
    The message never repeats what the client sent."""
    if token is None:
        return Reject(403, "unauthorized", DISABLED)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return Reject(401, "unauthorized", "missing admin token (Authorization: Bearer ...)")
    if not secrets.compare_digest(given.encode(), token.get_secret_value().encode()):
        return Reject(401, "unauthorized", "wrong admin token")
    return None
