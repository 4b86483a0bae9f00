import base64
import re
from datetime import UTC, datetime, timedelta

import jwt
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


KEYS = sec.generate_signing_keys()
CLAIMS = sec.AccessClaims(
    sub="acc-1", sid="ses-1", role=sec.AccessRole.PARENT,
    children=(sec.ChildClaim("40817810", sec.ChildRole.PRIMARY),
              sec.ChildClaim("40817811", sec.ChildRole.VIEWER)),
)


def test_an_access_token_round_trips_with_every_claim() -> None:
    token = sec.issue_access_token(CLAIMS, KEYS[0], T0, jti="j-1")
    access = sec.verify_access_token(token, KEYS[1], T0 + timedelta(minutes=4, seconds=59))
    assert (access.sub, access.sid, access.role, access.jti) == (
        "acc-1", "ses-1", sec.AccessRole.PARENT, "j-1")
    assert access.children == CLAIMS.children
    assert access.child_role("40817811") is sec.ChildRole.VIEWER
    assert access.expires_at - access.issued_at == timedelta(minutes=5)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    assert access.raw["iss"] == "schoolcard-auth" and access.school_id is None
    staff = sec.AccessClaims(sub="st", sid="s", role=sec.AccessRole.SCHOOL_ADMIN,
                             school_id="sch-1")
    verified = sec.verify_access_token(sec.issue_access_token(staff, KEYS[0], T0), KEYS[1], T0)
    assert verified.school_id == "sch-1" and len(verified.jti) >= 22


def test_an_access_token_is_refused_from_its_fifth_minute_on() -> None:
    token = sec.issue_access_token(CLAIMS, KEYS[0], T0)
    with pytest.raises(sec.AccessTokenError) as caught:
        sec.verify_access_token(token, KEYS[1], T0 + timedelta(minutes=5))
    assert caught.value.code is sec.AccessTokenErrorCode.EXPIRED


def test_an_access_token_signed_by_another_key_is_refused() -> None:
    other_private, _ = sec.generate_signing_keys()
    token = sec.issue_access_token(CLAIMS, other_private, T0)
    with pytest.raises(sec.AccessTokenError) as caught:
        sec.verify_access_token(token, KEYS[1], T0)
    assert caught.value.code is sec.AccessTokenErrorCode.BAD_SIGNATURE


def test_unsigned_and_garbled_tokens_are_refused() -> None:
    unsigned = jwt.encode({"iss": "schoolcard-auth", "sub": "x"}, None, algorithm="none")
    for token in (unsigned, "not.a.token", ""):
        with pytest.raises(sec.AccessTokenError) as caught:
            sec.verify_access_token(token, KEYS[1], T0)
        assert caught.value.code is sec.AccessTokenErrorCode.MALFORMED


def test_a_token_from_another_issuer_is_refused() -> None:
    private = sec._private_key(KEYS[0])
    token = jwt.encode({"iss": "evil", "sub": "a", "sid": "s", "role": "parent", "iat": 0,
                        "exp": 2**40, "jti": "j"}, private, algorithm="EdDSA")
    with pytest.raises(sec.AccessTokenError) as caught:
        sec.verify_access_token(token, KEYS[1], T0)
    assert caught.value.code is sec.AccessTokenErrorCode.WRONG_ISSUER
