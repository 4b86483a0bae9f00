"""Which staff roles may use auth's own staff commands. The shared table
(``services.runtime.tokens.STAFF_ACTIONS``) covers actions on children's accounts that every
service checks; resetting a parent's second factor is auth's alone, so its rule lives here (the
same shape as ``services.transit.permissions``)."""

from __future__ import annotations

from contracts.auth import AccessTokenClaims, Role
from services.runtime.tokens import TokenError

RESET_SECOND_FACTOR = frozenset({Role.SUPPORT})


def require_role(claims: AccessTokenClaims, allowed: frozenset[Role], action: str) -> None:
    if claims.role not in allowed:
        raise TokenError("forbidden", f"not allowed to {action}")
