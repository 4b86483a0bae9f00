from datetime import UTC, datetime, timedelta

import pytest

from services.auth.domain import (
    Account,
    AccountKind,
    AccountStatus,
    AuthRejected,
    CodePurpose,
    Reason,
    create_staff_account,
    tombstone,
)
from services.auth.domain.events import AccountClosed
from services.auth.security import AccessRole, ChildClaim, ChildRole, new_totp_secret, totp_code
from services.auth.store import identify

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def parent() -> Account:
    return Account(account_id="acc-1", kind=AccountKind.PARENT, role=AccessRole.PARENT,
                   status=AccountStatus.ACTIVE, created_at=T0, phone="+79161112233",
                   email="mum@example.org", claimed_contract="40817810", password_hash="HASH")


def test_staff_accounts_have_a_staff_role_a_school_and_must_change_the_initial_password() -> None:
    staff = Account.create_staff(account_id="st-1", email="Cook@School.example",
                                 role=AccessRole.CANTEEN_OPERATOR, school_id="sch-1",
                                 initial_password_hash="H", now=T0)
    assert staff.must_change_password and staff.email == "cook@school.example"
    session = staff.login(password_ok=True, now=T0, session_id="s", refresh_token_hash="r",
                          device="POS", ip_hash="i").session
    assert session is not None
    staff.change_password(current_password_ok=True, new_password="steamed dumplings day",
                          new_password_hash="H2", new_password_matches_current=False,
                          session=session, now=T0)
    claims = staff.access_claims(session=session, children=(), now=T0)
    assert (claims.role, claims.school_id) == (AccessRole.CANTEEN_OPERATOR, "sch-1")
    with pytest.raises(AuthRejected) as caught:
        Account.create_staff(account_id="st-2", email="x@school.example",
                             role=AccessRole.PARENT, school_id="sch-1",
                             initial_password_hash="H", now=T0)
    assert caught.value.reason is Reason.INVALID_ROLE
    with pytest.raises(AuthRejected):
        Account.create_staff(account_id="st-3", email="x@school.example",
                             role=AccessRole.SCHOOL_ADMIN, school_id=None,
                             initial_password_hash="H", now=T0)


def test_integrator_tokens_carry_the_integrator_role_its_operator_and_no_children() -> None:
    bank = Account.create_integrator(account_id="int-1", name="Bank", client_secret_hash="H",
                                     scopes=["topups", "topups"], operator_id="izhevsk-gortrans",
                                     now=T0)
    session = bank.login(password_ok=True, now=T0, session_id="s", refresh_token_hash="r",
                         device="svc", ip_hash="i").session
    assert session is not None and bank.scopes == ("topups",)
    claims = bank.access_claims(session=session,
                                children=(ChildClaim("40817810", ChildRole.PRIMARY),), now=T0)
    assert claims.role is AccessRole.INTEGRATOR and claims.children == ()
    assert claims.operator_id == "izhevsk-gortrans"
    assert Account.from_doc(bank.to_doc()).operator_id == "izhevsk-gortrans"


def test_closing_an_account_ends_sessions_and_minimises_personal_data() -> None:
    account = parent()
    session = account.login(password_ok=True, now=T0, session_id="s", refresh_token_hash="r",
                            device="Firefox", ip_hash="ip").session
    assert session is not None
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=b"p", now=T0)
    assert account.close(T0 + timedelta(minutes=1))
    assert not account.close(T0 + timedelta(minutes=2))
    assert account.phone == account.email == tombstone("acc-1")
    assert account.password_hash is None and account.claimed_contract is None
    assert account.login_history == [] and account.codes == {}
    assert not session.is_active(T0 + timedelta(minutes=1), account.session_epoch)
    doc = repr(account.to_doc())
    assert "79161112233" not in doc and "mum@" not in doc and "Firefox" not in doc
    assert sum(isinstance(e, AccountClosed) for e in account.pull_events()) == 1
    with pytest.raises(AuthRejected) as caught:
        account.log_out_everywhere(T0)
    assert caught.value.reason is Reason.ACCOUNT_CLOSED


def test_disabling_an_account_ends_its_sessions_and_enabling_does_not_revive_them() -> None:
    account = parent()
    session = account.login(password_ok=True, now=T0, session_id="s", refresh_token_hash="r",
                            device="D", ip_hash="i").session
    assert session is not None
    account.disable(T0)
    account.enable(T0)
    assert session.inactive_reason(T0, account.session_epoch) is Reason.SESSION_REVOKED
    assert account.status is AccountStatus.ACTIVE


def enrolled(now: datetime = T0) -> tuple[Account, str]:
    account = parent()
    session = account.login(password_ok=True, now=now, session_id="s0", refresh_token_hash="r0",
                            device="D", ip_hash="i").session
    assert session is not None
    secret = new_totp_secret()
    assert account.begin_totp_enrolment(session=session, current_password_ok=True,
                                        secret_b32=secret, now=now).ok
    assert account.confirm_totp(session=session, code=totp_code(secret, now), now=now).ok
    return account, secret


def test_an_account_document_holds_only_bson_friendly_types() -> None:
    account, _ = enrolled()
    account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id="c", code="482913",
                       pepper=b"p", now=T0)
    account.login(password_ok=False, now=T0, session_id="s", refresh_token_hash="r",
                  device="D", ip_hash="i")

    def check(value: object) -> None:
        if isinstance(value, dict):
            assert all(isinstance(k, str) for k in value)
            for v in value.values():
                check(v)
        elif isinstance(value, list):
            for v in value:
                check(v)
        elif isinstance(value, datetime):
            assert value.tzinfo is not None
        else:
            assert value is None or type(value) in (str, int, bool)

    doc = account.to_doc()
    check(doc)
    assert "482913" not in repr(doc)
    assert Account.from_doc(doc).to_doc() == doc


def new_staff(role: AccessRole = AccessRole.CANTEEN_OPERATOR, *, login: str = "Cook@School.example",
              field: str = "email", value: str = "cook@school.example",
              already_created: bool = False, login_taken: bool = False,
              password: str = "steamed dumplings day",
              operator_id: str | None = None) -> Account | None:
    return create_staff_account(
        already_created=already_created, account_id="staff-1", role=role, login=login,
        login_field=field, login_value=value, login_taken=login_taken, school_id="sch-1",
        password=password, password_hash="H", now=T0, operator_id=operator_id)


def test_a_staff_account_created_again_by_the_same_request_changes_nothing() -> None:
    assert new_staff(already_created=True, login_taken=True, password="x") is None


def test_a_staff_member_logs_in_with_the_e_mail_or_login_name_and_must_change_the_password(
) -> None:
    by_email = new_staff()
    assert by_email is not None
    assert (by_email.kind, by_email.role) == (AccountKind.STAFF, AccessRole.CANTEEN_OPERATOR)
    assert by_email.email == "cook@school.example" and by_email.username is None
    assert by_email.must_change_password and by_email.school_id == "sch-1"
    by_name = new_staff(AccessRole.TEACHER, login="Teacher.Anna", field="username",
                        value="teacher.anna")
    assert by_name is not None and (by_name.username, by_name.email) == ("teacher.anna", None)


def test_an_integrator_is_a_service_account_named_by_its_login() -> None:
    integrator = new_staff(AccessRole.INTEGRATOR, login="Bank-Gate", field="username",
                           value="bank-gate", operator_id="izhevsk-gortrans")
    assert integrator is not None
    assert (integrator.kind, integrator.role) == (AccountKind.INTEGRATOR, AccessRole.INTEGRATOR)
    assert (integrator.display_name, integrator.username) == ("Bank-Gate", "bank-gate")
    assert not integrator.must_change_password and integrator.school_id is None
    assert integrator.operator_id == "izhevsk-gortrans"


def test_an_integrator_must_name_its_operator_and_nobody_else_may() -> None:
    with pytest.raises(AuthRejected) as unbound:
        new_staff(AccessRole.INTEGRATOR, login="Bank-Gate", field="username", value="bank-gate")
    assert unbound.value.reason is Reason.INVALID_ROLE
    for role in (AccessRole.CANTEEN_OPERATOR, AccessRole.SUPPORT):
        with pytest.raises(AuthRejected) as staff_bound:
            new_staff(role, operator_id="izhevsk-gortrans")
        assert staff_bound.value.reason is Reason.INVALID_ROLE
    with pytest.raises(AuthRejected):
        Account.create_integrator(account_id="int-1", name="bank", client_secret_hash="H",
                                  scopes=(), operator_id="", now=T0)


def test_a_staff_account_needs_an_acceptable_password_then_a_free_login() -> None:
    with pytest.raises(AuthRejected) as weak:
        new_staff(password="123", login_taken=True)
    assert weak.value.reason is not Reason.IDEMPOTENCY_KEY_REUSED
    with pytest.raises(AuthRejected) as taken:
        new_staff(login_taken=True)
    assert taken.value.reason is Reason.IDEMPOTENCY_KEY_REUSED
    with pytest.raises(AuthRejected) as parent_role:
        new_staff(AccessRole.PARENT)
    assert parent_role.value.reason is Reason.INVALID_ROLE


@pytest.mark.parametrize("login", ["staff-ed7789fa6ca7", "integrator-bd7789fa6ca7", "call-me-now"])
def test_a_login_name_with_letters_is_never_read_as_a_phone_number(login):
    # phonenumbers reads letters as a keypad's digits: "staff-ed7789fa6ca7" parsed as
    # +77789326227, and that staff member's first login was answered invalid_credentials.
    assert identify(login) == ("username", login)


@pytest.mark.parametrize("typed", ["+7 912 345-67-89", "8 (912) 345-67-89", "89123456789"])
def test_a_typed_phone_number_is_read_as_one_in_e164(typed):
    assert identify(typed) == ("phone", "+79123456789")
