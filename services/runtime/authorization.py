"""Who may do what: the one rule set every service applies to a verified access token.

- Parents act for a child only through the guardian role their token grants them under that
  child's contract (``PERMISSIONS``); a parent is never bound to a school.
- Staff act by their role (``STAFF_ACTIONS``): the actions on children's accounts that several
  services check, and the commands one service alone has (auth's second-factor reset,
  transit's fare rules and concessions).
- Own school, when the target belongs to one (``school_id`` given): school staff (admins,
  canteen operators, teachers) act only on their own school, never without one; other staff
  (support, integrators) named with a school only on that school, and without one on every
  school (platform support works across schools).
- Own operator: an integrator acts only for the transport operator its account is bound to
  (the token's ``operator_id``, set when support created the account), and only on a request
  that names it (``operator_id``: transit's fare rules) — another operator, or none named, is
  refused, and so is an integrator token without a binding. Support, whose token names no
  operator, acts for every operator.

- Audience: a token is accepted only by the services named in its ``aud``
  (``audience(role)``): auth, where every account manages its own session, plus the services
  that check an action the role may do (``ACTION_SERVICES``). A teacher's token is refused by
  wallet before any action is looked at; a leaked integrator token reaches only auth and
  transit.

A refusal is ``TokenError('forbidden', ...)``: "not allowed to <action>" for the role,
"staff of another school" for the school, "integrator of another operator" for the
operator.
"""

from __future__ import annotations

from contracts.auth import AccessTokenClaims, Role
from contracts.types import GuardianRole


class TokenError(Exception):
    """Missing, malformed, expired, forged or misdirected token, or an action it does not
    allow; ``code`` goes into the error reply (``services.runtime.tokens`` lists the token's
    codes, ``forbidden`` is this module's)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# Actions on a child's account and the guardian roles allowed to do them.
PERMISSIONS: dict[str, frozenset[GuardianRole]] = {
    "view": frozenset({GuardianRole.PRIMARY, GuardianRole.CO_GUARDIAN}),
    "top_up": frozenset({GuardianRole.PRIMARY, GuardianRole.CO_GUARDIAN}),
    "dispute": frozenset({GuardianRole.PRIMARY, GuardianRole.CO_GUARDIAN}),
    "annotate": frozenset({GuardianRole.PRIMARY, GuardianRole.CO_GUARDIAN}),
    "change_limits": frozenset({GuardianRole.PRIMARY}),
    "block_card": frozenset({GuardianRole.PRIMARY, GuardianRole.CO_GUARDIAN}),
    "move_money": frozenset({GuardianRole.PRIMARY}),
    "manage_guardians": frozenset({GuardianRole.PRIMARY}),
    "receive_notifications": frozenset(GuardianRole),
}
# Staff roles and the actions they may do. The service-specific commands:
# auth ``reset_second_factor`` and ``unlock_account``; transit ``set_fare_rules`` (the
# transport operator's integrator account or support) and ``set_concession``; access reads
# attendance with ``view_attendance``.
STAFF_ACTIONS: dict[Role, frozenset[str]] = {
    Role.SUPPORT: frozenset({"view", "view_attendance", "resolve_dispute", "refund", "block_card",
                             "manage_staff", "reset_second_factor", "unlock_account",
                             "set_fare_rules",
                             "set_concession", "answer_support"}),
    Role.SCHOOL_ADMIN: frozenset({"view", "view_attendance", "resolve_dispute",
                                  "school_settings", "manual_entry", "view_sales",
                                  "set_concession", "answer_support"}),
    Role.CANTEEN_OPERATOR: frozenset({"view_sales"}),
    Role.TEACHER: frozenset({"view_attendance"}),
    Role.INTEGRATOR: frozenset({"set_fare_rules"}),
}
# The services that check each action (their handlers call ``authorize`` with it).
ACTION_SERVICES: dict[str, frozenset[str]] = {
    "view": frozenset({"wallet", "access", "transit", "notify"}),
    "view_attendance": frozenset({"access"}),
    "top_up": frozenset({"wallet"}),
    "dispute": frozenset({"wallet"}),
    "annotate": frozenset({"wallet"}),
    "change_limits": frozenset({"wallet"}),
    "block_card": frozenset({"wallet"}),
    "move_money": frozenset({"wallet"}),
    "manage_guardians": frozenset({"auth"}),
    "receive_notifications": frozenset({"notify"}),
    "answer_support": frozenset({"notify"}),
    "resolve_dispute": frozenset({"wallet"}),
    "refund": frozenset({"wallet"}),
    "manage_staff": frozenset({"auth"}),
    "reset_second_factor": frozenset({"auth"}),
    "unlock_account": frozenset({"auth"}),
    "set_fare_rules": frozenset({"transit"}),
    "set_concession": frozenset({"transit"}),
    "school_settings": frozenset({"wallet", "access"}),
    "manual_entry": frozenset({"access"}),
    "view_sales": frozenset({"wallet"}),
}
SERVICES = ("auth", "wallet", "access", "transit", "notify", "gateway")
# Staff who belong to one school and act only there.
SCHOOL_STAFF = frozenset({Role.SCHOOL_ADMIN, Role.CANTEEN_OPERATOR, Role.TEACHER})
# How a refusal names an action whose key is not already the words clients see.
WORDING: dict[str, str] = {
    "reset_second_factor": "reset a second factor",
    "unlock_account": "unlock an account",
    "set_fare_rules": "set fare rules",
    "set_concession": "set concessions",
    "answer_support": "answer support requests",
}


def _role_actions(role: Role) -> frozenset[str]:
    return frozenset(PERMISSIONS) if role is Role.PARENT else STAFF_ACTIONS.get(role, frozenset())


def _audience_of(role: Role) -> tuple[str, ...]:
    named = {"auth", "gateway"}.union(*(ACTION_SERVICES[action] for action in _role_actions(role)))
    return tuple(s for s in SERVICES if s in named)


# Computed once: an action missing from ACTION_SERVICES fails at import, not at a login.
AUDIENCES: dict[Role, tuple[str, ...]] = {role: _audience_of(role) for role in Role}


def audience(role: Role) -> tuple[str, ...]:
    """The services that accept a token of ``role`` (its ``aud`` claim), in SERVICES order."""
    return AUDIENCES[role]


def _guardian_role(claims: AccessTokenClaims, contract: str) -> GuardianRole | None:
    return next((g.role for g in claims.children if g.contract == contract), None)


def _may(claims: AccessTokenClaims, action: str, contract: str | None = None) -> bool:
    """Whether the token's role allows ``action`` (a parent: for the child under
    ``contract``), the school aside."""
    if claims.role is Role.PARENT:
        role = _guardian_role(claims, contract) if contract else None
        return role is not None and role in PERMISSIONS.get(action, frozenset())
    return action in STAFF_ACTIONS.get(claims.role, frozenset())


def _own_school(claims: AccessTokenClaims, school_id: str) -> bool:
    """Whether the token's holder may act on ``school_id`` (the own-school rule above)."""
    if claims.role is Role.PARENT:
        return True
    if claims.role in SCHOOL_STAFF:
        return claims.school_id == school_id
    return claims.school_id in (None, school_id)


def _own_operator(claims: AccessTokenClaims, operator_id: str | None) -> bool:
    """Whether the token's holder may act for the transport operator ``operator_id`` (the
    own-operator rule above; None: the request names no operator)."""
    if claims.role is Role.INTEGRATOR:
        return claims.operator_id is not None and claims.operator_id == operator_id
    return operator_id is None or claims.operator_id in (None, operator_id)


def authorize(claims: AccessTokenClaims, action: str, *, contract: str | None = None,
              school_id: str | None = None, operator_id: str | None = None) -> None:
    """Raise TokenError('forbidden') unless the token's holder may do ``action`` (for the
    child under ``contract``, on the school ``school_id``, for the transport operator
    ``operator_id`` when given)."""
    if not _may(claims, action, contract):
        raise TokenError("forbidden", f"not allowed to {WORDING.get(action, action)}")
    if school_id is not None and not _own_school(claims, school_id):
        raise TokenError("forbidden", "staff of another school")
    if not _own_operator(claims, operator_id):
        raise TokenError("forbidden", "integrator of another operator")
