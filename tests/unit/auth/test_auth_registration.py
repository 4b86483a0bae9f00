from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.auth.domain import (
    Account,
    AccountStatus,
    AuthRejected,
    CodePurpose,
    CodeSentReply,
    OneTimeCode,
    Reason,
    RegistrationEffect,
    confirm_registration,
    public_code_reply,
    request_password_reset,
    resend_registration_code,
    reset_password,
    start_registration,
)
from services.auth.domain.events import (
    AccountActivated,
    OneTimeCodeIssued,
    RegistrationAttemptedForExistingAccount,
)

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
PEPPER = b"test-pepper"
PHONE = "+79161112233"
CONTRACT = "40817810"
BORN = date(2015, 5, 12)


def start(existing: Account | None = None, *, known: bool = True, now: datetime = T0,
          code: str = "123456", password: str = "blue otter paddles",
          reg: str = "reg-1", code_id: str = "code-1", phone: str = PHONE) -> Any:
    return start_registration(
        existing=existing, contract_known=known, contract_birth_dates=(BORN,) if known else (),
        phone=phone, contract_number=CONTRACT, password=password, password_hash="HASH",
        consent=True, registration_id=reg, new_account_id="acc-1", code_id=code_id, code=code,
        pepper=PEPPER, now=now,
    )


def registered(now: datetime = T0) -> Account:
    result = start(now=now)
    assert result.account is not None
    return result.account


def active() -> Account:
    account = registered()
    assert confirm_registration(account=account, registration_id="reg-1", code="123456",
                                pepper=PEPPER, now=T0 + timedelta(minutes=1)).ok
    account.pull_events()
    return account


def test_starting_registration_creates_a_pending_account_and_issues_a_code() -> None:
    result = start()
    assert result.effect is RegistrationEffect.PENDING_CREATED
    assert result.account is not None and result.account.status is AccountStatus.PENDING
    issued = [e for e in result.events if isinstance(e, OneTimeCodeIssued)]
    assert len(issued) == 1 and issued[0].phone == PHONE
    assert issued[0].expires_at == T0 + timedelta(minutes=5)
    stored = repr(result.account.to_doc()) + repr(result.events)
    assert "123456" not in PHONE and "123456" not in stored


def test_the_start_reply_is_identical_for_unknown_contract_known_phone_and_new_phone() -> None:
    new = start(reg="r").reply
    unknown_contract = start(known=False, reg="r").reply
    existing = start(existing=active(), reg="r").reply
    pending = start(existing=registered(), reg="r").reply
    assert new == unknown_contract == existing == pending == CodeSentReply(request_id="r")


def test_an_existing_owner_is_alerted_at_most_hourly_and_nothing_else_changes() -> None:
    owner = active()
    first = start(existing=owner, now=T0 + timedelta(minutes=2))
    again = start(existing=owner, now=T0 + timedelta(minutes=3))
    assert first.effect is RegistrationEffect.EXISTING_ACCOUNT_ALERTED
    assert [type(e) for e in first.events] == [RegistrationAttemptedForExistingAccount]
    assert again.effect is RegistrationEffect.EXISTING_ACCOUNT_ALERT_SUPPRESSED
    assert owner.status is AccountStatus.ACTIVE and owner.password_hash == "HASH"


def test_input_faults_are_the_only_visible_rejections() -> None:
    for kwargs, reason in [({"phone": "89123456789"}, Reason.INVALID_PHONE),
                           ({"password": "short"}, Reason.PASSWORD_TOO_SHORT),
                           ({"password": "my79161112233x"}, Reason.PASSWORD_CONTAINS_PHONE)]:
        for known in (True, False):
            with pytest.raises(AuthRejected) as caught:
                start(known=known, **kwargs)
            assert caught.value.reason is reason
    with pytest.raises(AuthRejected) as caught:
        start_registration(existing=None, contract_known=True, contract_birth_dates=(),
                           phone=PHONE, contract_number="123", password="blue otter paddles",
                           password_hash="H", consent=True, registration_id="r",
                           new_account_id="a", code_id="c", code="123456", pepper=PEPPER, now=T0)
    assert caught.value.reason is Reason.INVALID_CONTRACT_NUMBER


def test_consent_is_required() -> None:
    with pytest.raises(AuthRejected) as caught:
        start_registration(existing=None, contract_known=True, contract_birth_dates=(),
                           phone=PHONE, contract_number=CONTRACT, password="blue otter paddles",
                           password_hash="H", consent=False, registration_id="r",
                           new_account_id="a", code_id="c", code="123456", pepper=PEPPER, now=T0)
    assert caught.value.reason is Reason.CONSENT_REQUIRED


def test_a_birth_date_password_is_not_revealed_at_start_but_forces_a_change_later() -> None:
    result = start(password="Masha 12.05.2015")
    assert result.reply == start(known=False, password="Masha 12.05.2015").reply
    account = result.account
    assert account is not None
    outcome = confirm_registration(account=account, registration_id="reg-1", code="123456",
                                   pepper=PEPPER, now=T0)
    assert outcome.ok and account.must_change_password


def test_confirming_with_the_right_code_activates_the_account() -> None:
    account = registered()
    outcome = confirm_registration(account=account, registration_id="reg-1", code="123456",
                                   pepper=PEPPER, now=T0 + timedelta(minutes=4, seconds=59))
    assert outcome.ok and account.status is AccountStatus.ACTIVE
    assert not account.must_change_password
    assert any(isinstance(e, AccountActivated) for e in account.pull_events())


def test_a_code_fails_after_five_wrong_attempts_even_with_the_right_code() -> None:
    account = registered()
    for _ in range(5):
        assert confirm_registration(account=account, registration_id="reg-1", code="000000",
                                    pepper=PEPPER, now=T0).rejection is Reason.CODE_INVALID
    final = confirm_registration(account=account, registration_id="reg-1", code="123456",
                                 pepper=PEPPER, now=T0)
    assert final.rejection is Reason.CODE_ATTEMPTS_EXHAUSTED
    assert account.status is AccountStatus.PENDING


def test_a_code_fails_after_five_minutes() -> None:
    account = registered()
    outcome = confirm_registration(account=account, registration_id="reg-1", code="123456",
                                   pepper=PEPPER, now=T0 + timedelta(minutes=5))
    assert outcome.rejection is Reason.CODE_EXPIRED
    assert account.status is AccountStatus.PENDING


def test_a_used_code_is_refused() -> None:
    code = OneTimeCode.issue(code_id="c", account_id="a", purpose=CodePurpose.PASSWORD_RESET,
                             code="482913", pepper=PEPPER, now=T0)
    assert code.check("482913", PEPPER, T0, consume=True) is None
    assert code.check("482913", PEPPER, T0, consume=True) is Reason.CODE_USED
    account = active()
    again = confirm_registration(account=account, registration_id="reg-1", code="123456",
                                 pepper=PEPPER, now=T0 + timedelta(minutes=2))
    assert again.rejection is Reason.CODE_INVALID and account.status is AccountStatus.ACTIVE


def test_a_code_is_bound_to_its_purpose_and_registration() -> None:
    account = registered()
    wrong_reg = confirm_registration(account=account, registration_id="reg-X", code="123456",
                                     pepper=PEPPER, now=T0)
    assert wrong_reg.rejection is Reason.CODE_INVALID
    reset = account.reset_password(code="123456", pepper=PEPPER, new_password="x" * 9,
                                   new_password_hash="H2", now=T0)
    assert reset.rejection is Reason.CODE_INVALID


def test_resend_waits_60_seconds_and_a_new_code_replaces_the_old_one() -> None:
    account = registered()
    early = resend_registration_code(account=account, registration_id="reg-1", code_id="c2",
                                     code="222222", pepper=PEPPER,
                                     now=T0 + timedelta(seconds=59))
    assert early.effect is RegistrationEffect.COOLDOWN_NOTHING_SENT
    later = resend_registration_code(account=account, registration_id="reg-1", code_id="c2",
                                     code="222222", pepper=PEPPER,
                                     now=T0 + timedelta(seconds=60))
    assert later.effect is RegistrationEffect.CODE_ISSUED and early.reply == later.reply
    old = confirm_registration(account=account, registration_id="reg-1", code="123456",
                               pepper=PEPPER, now=T0 + timedelta(seconds=61))
    assert old.rejection is Reason.CODE_INVALID
    assert confirm_registration(account=account, registration_id="reg-1", code="222222",
                                pepper=PEPPER, now=T0 + timedelta(seconds=62)).ok


def test_resend_for_an_unknown_registration_replies_the_same() -> None:
    unknown = resend_registration_code(account=None, registration_id="reg-1", code_id="c2",
                                       code="222222", pepper=PEPPER, now=T0)
    assert unknown.reply == CodeSentReply(request_id="reg-1") and unknown.account is None


def test_a_repeated_confirmation_with_the_same_key_does_not_count_twice() -> None:
    account = registered()
    first = account.confirm_registration(registration_id="reg-1", code="000000", pepper=PEPPER,
                                         now=T0, idempotency_key="k1")
    again = account.confirm_registration(registration_id="reg-1", code="000000", pepper=PEPPER,
                                         now=T0, idempotency_key="k1")
    assert first.rejection is again.rejection is Reason.CODE_INVALID and again.replayed
    assert account.codes[next(iter(account.codes))].attempts == 1
    with pytest.raises(AuthRejected) as caught:
        account.confirm_registration(registration_id="reg-1", code="111111", pepper=PEPPER,
                                     now=T0, idempotency_key="k1")
    assert caught.value.reason is Reason.IDEMPOTENCY_KEY_REUSED


def test_confirmation_replies_are_identical_for_unknown_and_exhausted_known_phones() -> None:
    account = registered()
    for _ in range(6):
        known = confirm_registration(account=account, registration_id="reg-1", code="000000",
                                     pepper=PEPPER, now=T0)
    unknown = confirm_registration(account=None, registration_id="reg-1", code="000000",
                                   pepper=PEPPER, now=T0)
    assert known.rejection is Reason.CODE_ATTEMPTS_EXHAUSTED
    assert public_code_reply(known) == public_code_reply(unknown)


def test_password_reset_replies_are_identical_for_known_and_unknown_phones() -> None:
    account = active()
    known = request_password_reset(account=account, request_id="r", code_id="c", code="654321",
                                   pepper=PEPPER, now=T0 + timedelta(minutes=2))
    unknown = request_password_reset(account=None, request_id="r", code_id="c", code="654321",
                                     pepper=PEPPER, now=T0 + timedelta(minutes=2))
    assert known.reply == unknown.reply
    assert known.effect is RegistrationEffect.CODE_ISSUED and unknown.account is None
    later = T0 + timedelta(minutes=3)
    wrong_known = reset_password(account=account, code="000000", pepper=PEPPER,
                                 new_password="a brand new secret", new_password_hash="H2",
                                 now=later)
    wrong_unknown = reset_password(account=None, code="000000", pepper=PEPPER,
                                   new_password="a brand new secret", new_password_hash="H2",
                                   now=later)
    assert public_code_reply(wrong_known) == public_code_reply(wrong_unknown)
