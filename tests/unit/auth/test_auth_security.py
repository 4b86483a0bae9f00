import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type

from services.auth import security as sec

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def test_password_hashes_are_argon2id_with_the_owasp_parameters() -> None:
    stored = sec.hash_password("correct horse battery staple")
    params = sec.parse_argon2_hash(stored)
    assert (params.variant, params.memory_cost_kib, params.time_cost, params.parallelism) == (
        "argon2id", 19_456, 2, 1)
    assert sec.meets_password_hash_policy(stored)
    assert sec.verify_password(stored, "correct horse battery staple")
    assert not sec.verify_password(stored, "correct horse battery stapl")


def test_long_passwords_are_not_truncated_and_are_normalised_with_nfkc() -> None:
    base = "x" * 127
    stored = sec.hash_password(base + "a")
    assert not sec.verify_password(stored, base + "b")
    assert sec.verify_password(sec.hash_password("ﬁle ﬁle ﬁle"), "file file file")


def test_a_weaker_hash_needs_rehash_and_a_current_one_does_not() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8_192, parallelism=1, type=Type.ID)
    assert sec.password_needs_rehash(weak.hash("whatever words here"))
    assert not sec.meets_password_hash_policy(weak.hash("whatever words here"))
    assert not sec.password_needs_rehash(sec.hash_password("whatever words here"))


def test_one_time_codes_are_six_digits_and_stored_as_a_bound_hmac() -> None:
    codes = {sec.new_otp_code() for _ in range(200)}
    assert all(re.fullmatch(r"\d{6}", c) for c in codes) and len(codes) > 150
    mac = sec.otp_mac(b"pepper", account_id="a1", purpose="registration", code_id="c1",
                      code="123456")
    assert "123456" not in mac
    assert mac != sec.otp_mac(b"pepper", account_id="a2", purpose="registration",
                              code_id="c1", code="123456")
    assert mac != sec.otp_mac(b"other", account_id="a1", purpose="registration",
                              code_id="c1", code="123456")


def test_refresh_tokens_carry_at_least_128_bits_and_are_stored_hashed() -> None:
    token = sec.new_refresh_token()
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert sec.hash_token(token) != token and len(sec.hash_token(token)) == 64


def test_totp_matches_the_rfc_6238_sha1_test_vector() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    at_59 = datetime.fromtimestamp(59, UTC)
    assert sec.totp_code(secret, at_59, digits=8) == "94287082"
    at_1111111109 = datetime.fromtimestamp(1111111109, UTC)
    assert sec.totp_code(secret, at_1111111109, digits=8) == "07081804"


def test_totp_accepts_one_step_of_clock_drift_either_way_but_not_two() -> None:
    secret = sec.new_totp_secret()
    code = sec.totp_code(secret, T0)
    assert sec.match_totp(secret, code, T0 + timedelta(seconds=30)) == sec.totp_step(T0)
    assert sec.match_totp(secret, code, T0 - timedelta(seconds=30)) == sec.totp_step(T0)
    assert sec.match_totp(secret, code, T0 + timedelta(seconds=61)) is None


def test_the_provisioning_uri_carries_issuer_secret_and_the_parameters_apps_expect() -> None:
    secret = sec.new_totp_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20  # 160 bits
    uri = sec.totp_provisioning_uri(secret, "+79121234567")
    assert uri.startswith("otpauth://totp/SchoolCard:%2B79121234567?")
    for part in (f"secret={secret}", "issuer=SchoolCard", "digits=6", "period=30",
                 "algorithm=SHA1"):
        assert part in uri


def test_only_six_ascii_digits_can_match_a_totp_step() -> None:
    secret = sec.new_totp_secret()
    code = sec.totp_code(secret, T0)
    assert sec.match_totp(secret, code, T0) == sec.totp_step(T0)
    for bad in (code + "0", code[:5], f" {code[1:]}", "١٢٣٤٥٦", ""):
        assert sec.match_totp(secret, bad, T0) is None


def test_auth_has_no_token_code_of_its_own_and_shares_the_contract_roles() -> None:
    from contracts.auth import Role
    from contracts.types import GuardianRole

    assert not hasattr(sec, "issue_access_token") and not hasattr(sec, "verify_access_token")
    assert sec.AccessRole is Role and sec.ChildRole is GuardianRole
