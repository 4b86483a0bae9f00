"""The one authorization rule set (services.runtime.authorization): guardian roles per child,
staff roles' actions (service-specific commands included), and the own-school rule.

The expectations below are written out by hand (the policy as the services need it), not
derived from the tables under test, so a change of a table shows up here."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from contracts.auth import AccessTokenClaims, ChildGrant, Role
from contracts.envelope import Envelope
from contracts.types import GuardianRole
from services.runtime.authorization import PERMISSIONS, STAFF_ACTIONS, authorize
from services.runtime.consumer import Inbound
from services.runtime.service import Runtime
from services.runtime.settings import InfraSettings
from services.runtime.tokens import TokenError, generate_keypair, issue_access_token

pytestmark = pytest.mark.unit

CHILD = "40012345"
OTHER_CHILD = "49999999"
SCHOOL = "school-1"
OTHER_SCHOOL = "school-2"
OPERATOR = "izhevsk-gortrans"
OTHER_OPERATOR = "moscow-transport"


def parent(*grants: tuple[str, GuardianRole]) -> AccessTokenClaims:
    return AccessTokenClaims(sub="acc_parent0001", sid="s", role=Role.PARENT, iat=0, exp=300,
                             jti="j", children=[ChildGrant(contract=c, role=r)
                                                for c, r in grants])


def staff(role: Role, school_id: str | None = None,
          operator_id: str | None = None) -> AccessTokenClaims:
    """A staff token; an integrator's is bound to OPERATOR unless ``operator_id`` says."""
    if role is Role.INTEGRATOR and operator_id is None:
        operator_id = OPERATOR
    return AccessTokenClaims(sub="acc_staff00001", sid="s", role=role, school_id=school_id,
                             operator_id=operator_id, iat=0, exp=300, jti="j")


def refusal(claims: AccessTokenClaims, action: str, **where: str | None) -> str | None:
    """None when allowed, else the refusal's message (its code is always ``forbidden``)."""
    try:
        authorize(claims, action, **where)
    except TokenError as exc:
        assert exc.code == "forbidden"
        return str(exc)
    return None


# --- parents ------------------------------------------------------------------------------------

GUARDIAN_ALLOWED = {
    GuardianRole.PRIMARY: {"view", "top_up", "dispute", "annotate", "change_limits",
                           "block_card", "move_money", "manage_guardians",
                           "receive_notifications"},
    GuardianRole.CO_GUARDIAN: {"view", "top_up", "dispute", "annotate", "block_card",
                               "receive_notifications"},
    GuardianRole.VIEWER: {"receive_notifications"},
}


@pytest.mark.parametrize("role", list(GuardianRole))
@pytest.mark.parametrize("action", sorted(PERMISSIONS))
def test_a_guardian_may_do_exactly_what_their_role_grants_for_that_child(role, action):
    claims = parent((CHILD, role))
    expected = action in GUARDIAN_ALLOWED[role]
    assert (refusal(claims, action, contract=CHILD) is None) is expected
    # The same grant says nothing about another child, nor about no child at all.
    assert refusal(claims, action, contract=OTHER_CHILD) == f"not allowed to {action}"
    assert refusal(claims, action) == f"not allowed to {action}"


def test_a_parent_without_a_grant_may_do_nothing():
    for action in PERMISSIONS:
        assert refusal(parent(), action, contract=CHILD) == f"not allowed to {action}"


@pytest.mark.parametrize("action", ["refund", "resolve_dispute", "manage_staff", "view_sales",
                                    "view_attendance", "school_settings", "manual_entry",
                                    "reset_second_factor", "unlock_account", "set_fare_rules",
                                    "set_concession"])
def test_a_primary_guardian_has_no_staff_action(action):
    assert refusal(parent((CHILD, GuardianRole.PRIMARY)), action, contract=CHILD) is not None


def test_a_parent_is_not_bound_to_a_school():
    claims = parent((CHILD, GuardianRole.PRIMARY))
    assert refusal(claims, "top_up", contract=CHILD, school_id=SCHOOL) is None
    assert refusal(claims, "top_up", contract=CHILD, school_id="") is None


# --- staff roles ------------------------------------------------------------------------------

STAFF_ALLOWED = {
    Role.SUPPORT: {"view", "view_attendance", "resolve_dispute", "refund", "block_card",
                   "manage_staff", "reset_second_factor", "unlock_account", "set_fare_rules",
                   "set_concession", "answer_support"},
    Role.SCHOOL_ADMIN: {"view", "view_attendance", "resolve_dispute", "school_settings",
                        "manual_entry", "view_sales", "set_concession", "answer_support"},
    Role.CANTEEN_OPERATOR: {"view_sales"},
    Role.TEACHER: {"view_attendance"},
    Role.INTEGRATOR: {"set_fare_rules"},
}
ACTIONS = sorted(set(PERMISSIONS) | {a for actions in STAFF_ACTIONS.values() for a in actions})
WORDS = {"reset_second_factor": "reset a second factor", "unlock_account": "unlock an account",
         "set_fare_rules": "set fare rules",
         "set_concession": "set concessions", "answer_support": "answer support requests"}


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.PARENT])
@pytest.mark.parametrize("action", ACTIONS)
def test_each_staff_role_may_do_exactly_its_actions(role, action):
    expected = action in STAFF_ALLOWED[role]
    got = refusal(staff(role), action, operator_id=OPERATOR)
    assert (got is None) is expected
    if not expected:
        assert got == f"not allowed to {WORDS.get(action, action)}"
    # A contract changes nothing for staff: they act by role, not by a child grant.
    assert (refusal(staff(role), action, contract=CHILD, operator_id=OPERATOR) is None) \
        is expected


def test_every_staff_role_is_in_the_table():
    assert set(STAFF_ACTIONS) == set(Role) - {Role.PARENT}


@pytest.mark.parametrize(("action", "roles", "words"), [
    ("reset_second_factor", {Role.SUPPORT}, "reset a second factor"),  # auth
    ("unlock_account", {Role.SUPPORT}, "unlock an account"),  # auth
    ("set_fare_rules", {Role.INTEGRATOR, Role.SUPPORT}, "set fare rules"),  # transit
    ("set_concession", {Role.SCHOOL_ADMIN, Role.SUPPORT}, "set concessions"),  # transit
])
def test_service_specific_commands_follow_their_role_rule_with_the_old_wording(action, roles,
                                                                               words):
    for role in Role:
        claims = parent((CHILD, GuardianRole.PRIMARY)) if role is Role.PARENT else staff(role)
        got = refusal(claims, action, operator_id=OPERATOR)
        assert got is None if role in roles else got == f"not allowed to {words}", role


# --- own school -------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "action"), [(Role.SCHOOL_ADMIN, "school_settings"),
                                              (Role.CANTEEN_OPERATOR, "view_sales"),
                                              (Role.TEACHER, "view_attendance")])
def test_school_staff_act_only_on_their_own_school(role, action):
    assert refusal(staff(role, SCHOOL), action, school_id=SCHOOL) is None
    assert refusal(staff(role, SCHOOL), action, school_id=OTHER_SCHOOL) == \
        "staff of another school"
    assert refusal(staff(role, SCHOOL), action, school_id="") == "staff of another school"
    # Never without a school of their own.
    assert refusal(staff(role), action, school_id=SCHOOL) == "staff of another school"
    # No school named: nothing to compare.
    assert refusal(staff(role, SCHOOL), action) is None


@pytest.mark.parametrize(("role", "action"), [(Role.SUPPORT, "view_attendance"),
                                              (Role.SUPPORT, "refund"),
                                              (Role.INTEGRATOR, "set_fare_rules")])
def test_platform_staff_without_a_school_act_on_every_school_and_with_one_only_there(role,
                                                                                      action):
    at = {"operator_id": OPERATOR}
    assert refusal(staff(role), action, school_id=SCHOOL, **at) is None
    assert refusal(staff(role), action, school_id=OTHER_SCHOOL, **at) is None
    assert refusal(staff(role, SCHOOL), action, school_id=SCHOOL, **at) is None
    assert refusal(staff(role, SCHOOL), action, school_id=OTHER_SCHOOL, **at) == \
        "staff of another school"


def test_the_role_is_checked_before_the_school():
    # A canteen operator may not change school settings, at their own school or another.
    operator = staff(Role.CANTEEN_OPERATOR, SCHOOL)
    for school in (SCHOOL, OTHER_SCHOOL):
        assert refusal(operator, "school_settings", school_id=school) == \
            "not allowed to school_settings"
    assert refusal(staff(Role.TEACHER, OTHER_SCHOOL), "view_sales", school_id=SCHOOL) == \
        "not allowed to view_sales"


# --- own operator -----------------------------------------------------------------------------

def test_an_integrator_sets_fare_rules_only_for_the_operator_its_account_is_bound_to():
    integrator = staff(Role.INTEGRATOR, operator_id=OPERATOR)
    assert refusal(integrator, "set_fare_rules", operator_id=OPERATOR) is None
    assert refusal(integrator, "set_fare_rules", operator_id=OTHER_OPERATOR) == \
        "integrator of another operator"
    # A request that names no operator gives an integrator nothing to be bound by.
    assert refusal(integrator, "set_fare_rules") == "integrator of another operator"


def test_an_integrator_token_without_an_operator_acts_for_none():
    unbound = AccessTokenClaims(sub="acc_staff00001", sid="s", role=Role.INTEGRATOR, iat=0,
                                exp=300, jti="j")
    for operator in (OPERATOR, OTHER_OPERATOR, None):
        assert refusal(unbound, "set_fare_rules", operator_id=operator) == \
            "integrator of another operator"


def test_support_sets_fare_rules_for_every_operator_and_the_role_is_checked_first():
    for operator in (OPERATOR, OTHER_OPERATOR, None):
        assert refusal(staff(Role.SUPPORT), "set_fare_rules", operator_id=operator) is None
    # An integrator of the right operator still has only its role's actions.
    assert refusal(staff(Role.INTEGRATOR), "set_concession", operator_id=OPERATOR) == \
        "not allowed to set concessions"
    assert refusal(staff(Role.SCHOOL_ADMIN, SCHOOL), "set_fare_rules",
                   operator_id=OPERATOR) == "not allowed to set fare rules"


# --- through the runtime ------------------------------------------------------------------------

def test_runtime_authorize_verifies_the_token_and_applies_contract_and_school():
    private, public = generate_keypair()
    now = datetime(2025, 3, 3, 8, tzinfo=UTC)
    infra = InfraSettings(kafka_bootstrap="fake-broker:9092", mongo_uri="mongodb://fake-mongo",
                          auth_public_key=public)
    rt = Runtime("access", SimpleNamespace(infra=infra),  # type: ignore[arg-type]
                 None, None, None, clock=lambda: now)  # type: ignore[arg-type]

    def inbound(role: Role, school_id: str | None = None, **grants: GuardianRole) -> Inbound[None]:
        token = issue_access_token(private, account_id="acc_someone001", session_id="s",
                                   role=role, school_id=school_id, now=now.timestamp(),
                                   children=[ChildGrant(contract=c, role=r)
                                             for c, r in grants.items()])
        envelope = Envelope(id="m1", source="test", type="x", time=now, correlation_id="c1")
        return Inbound(None, envelope, "t", 0, 0, None, f"Bearer {token}")

    mum = inbound(Role.PARENT, **{CHILD: GuardianRole.PRIMARY})
    assert rt.authorize(mum, "change_limits", CHILD).sub == "acc_someone001"
    with pytest.raises(TokenError, match="not allowed to change_limits"):
        rt.authorize(mum, "change_limits", OTHER_CHILD)
    admin = inbound(Role.SCHOOL_ADMIN, SCHOOL)
    assert rt.authorize(admin, "manual_entry", school_id=SCHOOL).school_id == SCHOOL
    with pytest.raises(TokenError, match="staff of another school"):
        rt.authorize(admin, "manual_entry", school_id=OTHER_SCHOOL)
    with pytest.raises(TokenError) as unsigned:
        rt.authorize(Inbound(None, mum.envelope, "t", 0, 0, None, None), "view", CHILD)
    assert unsigned.value.code == "unauthenticated"
