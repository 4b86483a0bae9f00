"""Who may change transit's data: fare rules are the transport operator's (its integrator
account) or platform support's; student concessions are granted by school admins or support.
Ride history follows the shared guardian table (``view``)."""

from __future__ import annotations

from contracts.auth import AccessTokenClaims, Role
from services.runtime.tokens import TokenError

SET_FARE_RULES = frozenset({Role.INTEGRATOR, Role.SUPPORT})
SET_CONCESSION = frozenset({Role.SCHOOL_ADMIN, Role.SUPPORT})


def require_role(claims: AccessTokenClaims, allowed: frozenset[Role], action: str) -> None:
    if claims.role not in allowed:
        raise TokenError("forbidden", f"not allowed to {action}")
