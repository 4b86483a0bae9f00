"""The rules against malicious lockout and guessing (no fixtures, no I/O): login throttles
per source with an account ceiling that known sources pass, one-time codes limited per code,
the lifetime budget of a birth-date password, support's unlock, repeated registrations."""

from datetime import UTC, datetime, timedelta

import pytest

from services.auth.domain import (
    LIFETIME_FAILURE_LIMIT,
    Account,
    AccountKind,
    AccountStatus,
    AuthRejected,
    CodePurpose,
    DeviceProof,
    LoginThrottle,
    Reason,
    login_unknown,
    request_password_reset,
    start_registration,
)
from services.auth.domain.events import AccountUnlocked
from services.auth.security import AccessRole

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
PEPPER = b"pepper-for-tests"
OWNER, ATTACKER = "src-owner-phone", "src-attacker"


def parent() -> Account:
    return Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79120000001",
                   password_hash="HASH")


def login(account: Account, ok: bool, now: datetime, source: str) -> Reason | None:
    """A login from ``source`` whose device keeps the token its first success got
    (``tok-<source>``): it is trusted from then on."""
    device = DeviceProof(presented_hash=f"tok-{source}", new_device_id=f"dev-{source}",
                         new_token_hash=f"tok-{source}")
    outcome = account.login(password_ok=ok, now=now, session_id=f"s-{now.timestamp()}",
                            refresh_token_hash="rt", device="d", ip_hash="ip", source=source,
                            device_proof=device)
    return outcome.reply.reason


def test_an_attacker_at_one_guess_a_second_never_keeps_the_owner_out() -> None:
    account = parent()
    assert login(account, True, T0, OWNER) is None  # the owner's phone becomes known
    owner_ok = owner_tries = 0
    for second in range(1, 3601):
        now = T0 + timedelta(seconds=second)
        login(account, False, now, ATTACKER)
        if second % 10 == 0:
            owner_tries += 1
            owner_ok += login(account, True, now, OWNER) is None
    assert owner_ok == owner_tries == 360
    # The attacker's guesses were throttled at its own source: 20 an hour.
    assert account.password_failures.count(T0 + timedelta(seconds=3600)) <= 20


def test_guesses_spread_over_many_addresses_meet_the_account_ceiling_known_devices_pass_it(
) -> None:
    account = parent()
    login(account, True, T0, OWNER)
    for i in range(150):
        login(account, False, T0 + timedelta(seconds=i), f"src-{i}")
    now = T0 + timedelta(seconds=150)
    assert account.password_failures.count(now) == 100  # at most 100 processed an hour
    assert login(account, True, now, "src-new-laptop") is Reason.LOGIN_RATE_LIMITED
    assert login(account, True, now, OWNER) is None


def test_one_source_is_delayed_after_five_failures_and_refused_after_twenty() -> None:
    throttle = LoginThrottle()
    for i in range(5):
        assert throttle.gate(ATTACKER, T0 + timedelta(seconds=i)).allowed
        throttle.record_failure(ATTACKER, T0 + timedelta(seconds=i))
    assert throttle.gate(ATTACKER, T0 + timedelta(seconds=4.5)).reason is Reason.LOGIN_DELAYED
    assert throttle.gate(OWNER, T0 + timedelta(seconds=4.5)).allowed  # another source
    now = T0 + timedelta(seconds=10)
    for _ in range(15):
        throttle.record_failure(ATTACKER, now)
        now += timedelta(seconds=31)
    assert throttle.gate(ATTACKER, now).reason is Reason.LOGIN_RATE_LIMITED
    assert throttle.gate(ATTACKER, T0 + timedelta(hours=1, seconds=11)).allowed


def test_the_windows_of_quiet_or_too_many_sources_are_forgotten() -> None:
    throttle = LoginThrottle()
    throttle.record_failure("old", T0)
    throttle.record_failure("new", T0 + timedelta(hours=2))
    assert set(throttle.sources) == {"new"}
    for i in range(100):
        throttle.record_failure(f"s-{i}", T0 + timedelta(hours=2, seconds=i))
    assert len(throttle.sources) == 64 and "s-99" in throttle.sources


def test_a_throttle_round_trips_through_its_document() -> None:
    throttle = LoginThrottle()
    throttle.record_failure(ATTACKER, T0)
    throttle.succeeded(OWNER)
    again = LoginThrottle.from_doc(throttle.to_doc())
    assert again == throttle


def test_guesses_at_a_code_never_sent_do_not_count_against_the_next_code() -> None:
    account = parent()
    for i in range(100):
        outcome = account.reset_password(code=f"{i:06d}", pepper=PEPPER,
                                         new_password="new tidy phrase", new_password_hash="H2",
                                         now=T0 + timedelta(seconds=i))
        assert outcome.rejection is Reason.CODE_INVALID
    later = T0 + timedelta(seconds=101)
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=PEPPER, now=later)
    assert account.reset_password(code="482913", pepper=PEPPER, new_password="new tidy phrase",
                                  new_password_hash="H2", now=later + timedelta(seconds=5)).ok


def test_wrong_codes_count_per_code_and_a_new_code_starts_again() -> None:
    account = parent()
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c1", code="111111",
                       pepper=PEPPER, now=T0)
    for _ in range(5):
        account.reset_password(code="999999", pepper=PEPPER, new_password="new tidy phrase",
                               new_password_hash="H2", now=T0)
    exhausted = account.reset_password(code="111111", pepper=PEPPER,
                                       new_password="new tidy phrase", new_password_hash="H2",
                                       now=T0)
    assert exhausted.rejection is Reason.CODE_ATTEMPTS_EXHAUSTED
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c2", code="222222",
                       pepper=PEPPER, now=T0 + timedelta(seconds=61))
    assert account.reset_password(code="222222", pepper=PEPPER, new_password="new tidy phrase",
                                  new_password_hash="H2", now=T0 + timedelta(seconds=62)).ok


def birth_date_login() -> Account:
    return Account.provision_for_contract(account_id="acc-c", contract_number="40817810",
                                          initial_password_hash="HASH", now=T0)


def test_a_birth_date_password_takes_ten_wrong_tries_in_total_then_only_support_unlocks() -> None:
    account = birth_date_login()
    for day in range(LIFETIME_FAILURE_LIMIT):  # one a day: no window helps the guesser
        assert login(account, False, T0 + timedelta(days=day), f"src-{day}") is (
            Reason.INVALID_CREDENTIALS)
    late = T0 + timedelta(days=400)
    assert login(account, True, late, "src-right") is Reason.LOGIN_LOCKED
    with pytest.raises(AuthRejected):
        account.unlock(by_account_id="acc-support", reason="too short", now=late)
    assert account.unlock(by_account_id="acc-support", reason="Called back on the contract "
                          "phone, ticket SUP-1", now=late, idempotency_key="u-1").ok
    [event] = [e for e in account.pull_events() if isinstance(e, AccountUnlocked)]
    assert event.failures_cleared == LIFETIME_FAILURE_LIMIT
    assert [u.by_account_id for u in account.unlocks] == ["acc-support"]
    assert login(account, True, late, "src-right") is None


def test_the_budget_ends_once_the_birth_date_password_is_changed() -> None:
    account = birth_date_login()
    account.must_change_password = False  # the owner set a password of their own
    for i in range(15):
        login(account, False, T0 + timedelta(hours=i), f"src-{i}")
    assert login(account, True, T0 + timedelta(hours=20), "src-x") is None


def test_an_unknown_contract_number_is_locked_after_ten_tries_too() -> None:
    ghost = LoginThrottle()
    replies = [login_unknown(ghost, f"src-{i}", T0 + timedelta(days=i), by_contract=True).reason
               for i in range(LIFETIME_FAILURE_LIMIT + 1)]
    assert replies == [Reason.INVALID_CREDENTIALS] * LIFETIME_FAILURE_LIMIT + [
        Reason.LOGIN_LOCKED]


def test_support_unlock_clears_a_ceiling_reached_by_many_addresses() -> None:
    account = parent()
    for i in range(100):
        login(account, False, T0 + timedelta(seconds=i), f"src-{i}")
    now = T0 + timedelta(seconds=100)
    assert login(account, True, now, "src-new") is Reason.LOGIN_RATE_LIMITED
    account.unlock(by_account_id="acc-support", reason="Identity checked by call-back", now=now)
    assert login(account, True, now, "src-new") is None


def register(existing: Account | None, password: str, *, same: bool = False,
             phone: str = "+79120000009", now: datetime = T0):
    return start_registration(
        existing=existing, contract_known=True, contract_birth_dates=[], phone=phone,
        contract_number="40817810", password=password, password_hash=f"hash:{password}",
        consent=True, registration_id=f"r-{password}", new_account_id="acc-new",
        code_id=f"c-{now.timestamp()}", code="123456", pepper=PEPPER, now=now,
        same_password_as_pending=same)


def test_a_repeated_registration_for_a_pending_phone_never_sets_its_own_password() -> None:
    first = register(None, "victim chose this")
    pending = first.account
    assert pending is not None and pending.password_hash == "hash:victim chose this"
    same = register(pending, "victim chose this", same=True, now=T0 + timedelta(seconds=61))
    assert same.account is pending and pending.password_hash == "hash:victim chose this"
    other = register(pending, "attacker chose this", now=T0 + timedelta(seconds=122))
    assert other.reply == first.reply.__class__(request_id="r-attacker chose this")
    # Neither the attacker's password nor the first one (it may be the attacker's) survives:
    # the phone's holder confirms, then sets a password by a reset code.
    assert pending.password_hash is None
    assert pending.claimed_contract == "40817810" and pending.status is AccountStatus.PENDING


def test_phones_outside_the_served_countries_are_refused_with_a_clear_code() -> None:
    with pytest.raises(AuthRejected) as caught:
        register(None, "any good phrase", phone="+12025550123")
    assert caught.value.reason is Reason.PHONE_COUNTRY_NOT_SERVED
    with pytest.raises(AuthRejected) as caught:
        request_password_reset(account=None, request_id="q", code_id="c", code="123456",
                               pepper=PEPPER, now=T0, phone="+4915112345678",
                               served_countries=("+7",))
    assert caught.value.reason is Reason.PHONE_COUNTRY_NOT_SERVED
    assert request_password_reset(account=None, request_id="q", code_id="c", code="123456",
                                  pepper=PEPPER, now=T0, phone="+79120000001",
                                  served_countries=("+7",)).account is None
