from __future__ import annotations

import time

import pytest

from contracts.auth import ChildGrant, Role
from contracts.money import format_rub, parse_rub, percent_of
from contracts.types import GuardianRole
from services.runtime.authorization import authorize
from services.runtime.logs import MASK, redact
from services.runtime.tokens import (
    TokenError,
    generate_keypair,
    issue_access_token,
    verify_access_token,
)

pytestmark = pytest.mark.unit

PRIVATE, PUBLIC = generate_keypair()


def test_secret_keys_and_code_like_text_are_masked_in_log_records():
    out = redact({"password": "blue-river-42", "nested": {"otp_code": "123456"},
                  "event": "code 493817 sent", "authorization": "Bearer abc.def.ghi",
                  "contract": "40012345"})
    assert out["password"] == MASK
    assert out["nested"]["otp_code"] == MASK
    assert "493817" not in out["event"]
    assert out["authorization"] == MASK
    assert out["contract"] == "40012345"  # 8-digit contracts are ids, not codes


def test_money_is_formatted_the_russian_way_and_parsed_exactly():
    assert format_rub(123_450) == "1\u00a0234,50\u00a0₽"
    assert format_rub(-8_500) == "-85,00\u00a0₽"
    assert format_rub(123_450, locale="en") == "RUB\u00a01,234.50"
    assert parse_rub("1 234,5") == 123_450
    assert percent_of(999, 100) == 9  # 1 % rounded down: never give away a kopeck
    with pytest.raises(ValueError):
        parse_rub("12.345")


def test_an_access_token_verifies_with_the_public_key_and_carries_the_children():
    token = issue_access_token(PRIVATE, account_id="acc_12345678", session_id="s1",
                               role=Role.PARENT,
                               children=[ChildGrant(contract="40012345",
                                                    role=GuardianRole.PRIMARY)])
    claims = verify_access_token(f"Bearer {token}", PUBLIC, audience="wallet")
    assert claims.sub == "acc_12345678"
    authorize(claims, "change_limits", contract="40012345")


def test_expired_forged_and_missing_tokens_are_refused_with_a_code():
    now = time.time()
    token = issue_access_token(PRIVATE, account_id="acc_12345678", session_id="s1",
                               role=Role.PARENT, now=now)
    with pytest.raises(TokenError) as expired:
        verify_access_token(token, PUBLIC, audience="wallet", now=now + 301)
    assert expired.value.code == "token_expired"
    other_private, _ = generate_keypair()
    forged = issue_access_token(other_private, account_id="acc_12345678", session_id="s1",
                                role=Role.SUPPORT)
    with pytest.raises(TokenError) as bad:
        verify_access_token(forged, PUBLIC, audience="wallet")
    assert bad.value.code == "unknown_key"
    with pytest.raises(TokenError) as missing:
        verify_access_token(None, PUBLIC, audience="wallet")
    assert missing.value.code == "unauthenticated"


@pytest.mark.parametrize(("role", "action", "allowed"), [
    (GuardianRole.PRIMARY, "change_limits", True),
    (GuardianRole.CO_GUARDIAN, "change_limits", False),
    (GuardianRole.CO_GUARDIAN, "top_up", True),
    (GuardianRole.CO_GUARDIAN, "view", True),
    (GuardianRole.VIEWER, "view", False),
    (GuardianRole.VIEWER, "receive_notifications", True),
])
def test_guardian_roles_grant_exactly_their_actions(role, action, allowed):
    token = issue_access_token(PRIVATE, account_id="acc_12345678", session_id="s1",
                               role=Role.PARENT,
                               children=[ChildGrant(contract="40012345", role=role)])
    claims = verify_access_token(token, PUBLIC, audience="wallet")
    if allowed:
        authorize(claims, action, contract="40012345")
    else:
        with pytest.raises(TokenError):
            authorize(claims, action, contract="40012345")


def test_a_parent_cannot_act_for_a_child_they_are_not_a_guardian_of():
    token = issue_access_token(PRIVATE, account_id="acc_12345678", session_id="s1",
                               role=Role.PARENT,
                               children=[ChildGrant(contract="40012345",
                                                    role=GuardianRole.PRIMARY)])
    with pytest.raises(TokenError) as err:
        authorize(verify_access_token(token, PUBLIC, audience="wallet"), "view",
                  contract="49999999")
    assert err.value.code == "forbidden"
