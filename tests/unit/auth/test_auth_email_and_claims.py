"""The parents' cabinet, two rows of issue 17: the e-mail is added or changed with a code sent
to the new address; a contract login that never confirmed a phone gives the child up to the
parent who proves it with the issuer's activation code."""

from __future__ import annotations

from datetime import timedelta

import pytest

from contracts import auth as cmd
from contracts import integrations as integ
from contracts.notify import OneTimeCodeRequested
from services.auth import outbound
from services.auth.domain import (
    Account,
    ActivationCodeProof,
    AuthRejected,
    Child,
    ContractProof,
    GuardianRole,
    ReauthProof,
    Session,
    activation_code_digest,
)
from services.auth.domain import events as ev
from services.auth.domain.accounts import AccountKind, AccountStatus
from services.auth.domain.guardians import activation_digest_mac
from services.auth.security import AccessRole
from tests.unit.auth.test_auth_handlers import (
    BORN,
    CONTRACT,
    NOW,
    PASSWORD,
    PHONE,
    REAUTH,
    SCHOOL,
    _account,
    _auth,
    _code,
    _forget,
    _last_error,
    _registered,
    _req,
    _tokens,
)

pytestmark = pytest.mark.unit

PEPPER = b"unit-test-pepper"
ACTIVATION = "K7P2-Q9XM"
NEW_EMAIL = "Mum@Example.ru"


def _parent(*, email: str | None = None) -> Account:
    return Account(account_id="acc_parent000001", kind=AccountKind.PARENT,
                   role=AccessRole.PARENT, status=AccountStatus.ACTIVE, created_at=NOW,
                   phone=PHONE, email=email, password_hash="x")


def _live(account: Account) -> Session:
    return Session.start(session_id="ses-1", account_id=account.account_id,
                         epoch=account.session_epoch, refresh_token_hash="h", device="d",
                         ip_hash="i", now=NOW)


def _started(account: Account, email: str = NEW_EMAIL, code: str = "123456") -> None:
    outcome = account.start_email_change(session=_live(account), proof=ReauthProof(),
                                         email=email, code_id="c-1", code=code, pepper=PEPPER,
                                         now=NOW)
    assert outcome.ok


# --- e-mail change: the domain ------------------------------------------------------------------

def test_an_e_mail_is_added_with_the_code_sent_to_the_new_address_only():
    account = _parent()
    _started(account)
    [issued] = [e for e in account.pull_events() if isinstance(e, ev.OneTimeCodeIssued)]
    assert (issued.email, issued.phone, issued.purpose) == (
        "mum@example.ru", None, "email_confirmation")
    assert account.email is None  # nothing changes before the code
    outcome = account.confirm_email_change(code="123456", pepper=PEPPER, now=NOW,
                                           email_taken=False)
    assert outcome.ok and account.email == "mum@example.ru" and account.pending_email is None
    assert [type(e) for e in account.pull_events()] == [ev.EmailChanged]


def test_a_wrong_code_changes_nothing_and_the_code_dies_after_five_wrong_tries():
    account = _parent()
    _started(account)
    for _ in range(5):
        wrong = account.confirm_email_change(code="000000", pepper=PEPPER, now=NOW,
                                             email_taken=False)
        assert wrong.rejection is not None and wrong.rejection.value == "code_invalid"
    late = account.confirm_email_change(code="123456", pepper=PEPPER, now=NOW,
                                        email_taken=False)
    assert not late.ok and account.email is None


def test_an_e_mail_code_expires_after_five_minutes():
    account = _parent()
    _started(account)
    late = account.confirm_email_change(code="123456", pepper=PEPPER,
                                        now=NOW + timedelta(minutes=5, seconds=1),
                                        email_taken=False)
    assert not late.ok and account.email is None


def test_replacing_an_e_mail_needs_reauthentication():
    account = _parent(email="old@example.ru")
    with pytest.raises(AuthRejected) as refused:
        _started(account)
    assert refused.value.reason.value == "reauthentication_required"
    wrong = account.start_email_change(
        session=_live(account), proof=ReauthProof(password_given=True), email=NEW_EMAIL,
        code_id="c-1", code="123456", pepper=PEPPER, now=NOW)
    assert wrong.rejection is not None and wrong.rejection.value == "invalid_credentials"
    assert account.pending_email is None and not account.codes
    right = account.start_email_change(
        session=_live(account), proof=ReauthProof(password_given=True, password_ok=True),
        email=NEW_EMAIL, code_id="c-2", code="123456", pepper=PEPPER, now=NOW)
    assert right.ok and account.pending_email == "mum@example.ru"


def test_a_taken_e_mail_is_refused_only_after_the_right_code():
    account = _parent()
    _started(account)
    wrong = account.confirm_email_change(code="000000", pepper=PEPPER, now=NOW,
                                         email_taken=True)
    assert wrong.rejection is not None and wrong.rejection.value == "code_invalid"
    right = account.confirm_email_change(code="123456", pepper=PEPPER, now=NOW,
                                         email_taken=True)
    assert right.rejection is not None and right.rejection.value == "email_taken"
    assert account.email is None and account.pending_email is None


def test_the_code_request_for_an_e_mail_goes_to_that_address_and_names_no_phone():
    account = _parent()
    _started(account)
    [issued] = [e for e in account.pull_events() if isinstance(e, ev.OneTimeCodeIssued)]
    wired = outbound.code_request(issued, code="123456", request_id="r-1", locale="ru")
    assert wired is not None
    topic, key, message, _ = wired
    assert isinstance(message, OneTimeCodeRequested)
    assert (topic, key, message.email, message.phone) == (
        "notify.otp-requests.v1", "mum@example.ru", "mum@example.ru", None)


# --- the activation code against a provisional contract login: the domain --------------------

def _provisional() -> Account:
    account = Account.provision_for_contract(account_id="acc_contract00001",
                                             contract_number=CONTRACT,
                                             initial_password_hash="x", now=NOW)
    account.pull_events()
    return account


def _coded_child(primary: Account) -> Child:
    child = Child.register(child_id="stu-1", contract_number=CONTRACT, school_id="s-1",
                           birth_date=BORN, now=NOW, activation_code_mac=activation_digest_mac(
                               PEPPER, "stu-1", activation_code_digest("stu-1", ACTIVATION)))
    child.link_issued_login(account_id=primary.account_id, now=NOW)
    child.pull_events()
    return child


def _claim(child: Child, provisional: Account, proof: object) -> object:
    return child.link_with_proof(
        account_id="acc_realparent01", proof=proof, pepper=PEPPER, now=NOW,  # type: ignore[arg-type]
        provisional=provisional.account_id if provisional.holds_contract_provisionally
        else None)


def test_the_activation_code_takes_the_child_from_a_contract_login_without_a_phone():
    login = _provisional()
    child = _coded_child(login)
    linked = _claim(child, login, ActivationCodeProof(ACTIVATION))
    assert linked.rejection is None and linked.displaced == login.account_id  # type: ignore[attr-defined]
    assert child.guardians == {"acc_realparent01": GuardianRole.PRIMARY}
    events = child.pull_events()
    [removed] = [e for e in events if isinstance(e, ev.GuardianRemoved)]
    [added] = [e for e in events if isinstance(e, ev.GuardianLinked)]
    assert (removed.account_id, removed.role) == (login.account_id, "primary")
    assert (added.account_id, added.role, added.via) == (
        "acc_realparent01", "primary", "activation_code")
    assert login.give_way_to_activation_code(NOW)
    assert login.status is AccountStatus.CLOSED and login.login_contract is None
    assert any(isinstance(e, ev.AccountClosed) for e in login.pull_events())


def test_a_birth_date_never_takes_the_child_from_the_contract_login():
    login = _provisional()
    child = _coded_child(login)
    refused = _claim(child, login, ContractProof(CONTRACT, BORN))
    assert refused.rejection is not None and refused.rejection.value == "child_proof_invalid"  # type: ignore[attr-defined]
    assert child.guardians == {login.account_id: GuardianRole.PRIMARY}


def test_a_wrong_activation_code_takes_nothing():
    login = _provisional()
    child = _coded_child(login)
    refused = _claim(child, login, ActivationCodeProof("WRONG-CODE"))
    assert refused.rejection is not None and refused.displaced is None  # type: ignore[attr-defined]
    assert child.guardians == {login.account_id: GuardianRole.PRIMARY}


def test_once_the_contract_login_confirmed_a_phone_the_code_is_answered_as_for_any_claimed_child():
    login = _provisional()
    login.phone = "+79120000009"  # confirmed through StartPhoneChange/ConfirmPhoneChange
    assert not login.holds_contract_provisionally
    answers = []
    for code in (ACTIVATION, "WRONG-CODE"):
        child = _coded_child(login)
        answers.append(_claim(child, login, ActivationCodeProof(code)).rejection)  # type: ignore[attr-defined]
        assert child.guardians == {login.account_id: GuardianRole.PRIMARY}
    assert answers[0] == answers[1] is not None  # no oracle: right and wrong read the same
    assert not login.give_way_to_activation_code(NOW) and login.status is AccountStatus.ACTIVE


# --- the handlers -------------------------------------------------------------------------------

async def test_the_e_mail_is_added_through_the_handlers_and_reaches_the_guardians_contacts():
    rt, h = _auth()
    mum = await _registered(rt, h)
    _forget(rt)
    await h.on_start_email_change(_req(rt, cmd.StartEmailChange(
        request_id="em-1", email=NEW_EMAIL), key=mum.phone, token=mum.token))
    assert isinstance(rt.replies()[-1], cmd.RegistrationStarted), rt.replies()[-1]
    [mail] = rt.emitted(OneTimeCodeRequested)
    assert (mail.email, mail.phone, mail.purpose) == (
        "mum@example.ru", None, "email_confirmation")
    await h.on_confirm_email_change(_req(rt, cmd.ConfirmEmailChange(
        request_id="em-2", code="000000"), key=mum.phone, token=mum.token))
    assert _last_error(rt) == "code_invalid"
    await h.on_confirm_email_change(_req(rt, cmd.ConfirmEmailChange(
        request_id="em-3", code=mail.code.get_secret_value()), key=mum.phone, token=mum.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted), rt.replies()[-1]
    assert (await _account(rt, _id=mum.account_id))["email"] == "mum@example.ru"
    [contacts] = rt.emitted(cmd.GuardianContacts)
    assert (contacts.email, contacts.phone) == ("mum@example.ru", mum.phone)
    # replacing it now needs re-authentication
    await h.on_start_email_change(_req(rt, cmd.StartEmailChange(
        request_id="em-4", email="other@example.ru"), key=mum.phone, token=mum.token))
    assert _last_error(rt) == "reauthentication_required"


async def test_an_e_mail_held_by_another_account_is_refused_after_the_right_code():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    for who, rid in ((mum, "a"), (dad, "b")):
        _forget(rt)
        await h.on_start_email_change(_req(rt, cmd.StartEmailChange(
            request_id=f"em-{rid}1", email=NEW_EMAIL), key=who.phone, token=who.token))
        [mail] = rt.emitted(OneTimeCodeRequested)
        await h.on_confirm_email_change(_req(rt, cmd.ConfirmEmailChange(
            request_id=f"em-{rid}2", code=mail.code.get_secret_value()), key=who.phone,
            token=who.token))
    assert _last_error(rt) == "email_taken"
    assert (await _account(rt, _id=dad.account_id)).get("email") is None


def _coded_card(*, birth_date_password: bool) -> integ.CardIssued:
    return integ.CardIssued(
        contract=CONTRACT, card_uid="04A2B3C4D5E6F7", school_id=SCHOOL,
        school_tz="Europe/Samara", student_id="stu-000451", class_name="5Б", birth_date=BORN,
        initial_password_is_birth_date=birth_date_password,
        activation_code_hash=activation_code_digest("stu-000451", ACTIVATION),
        issued_at=NOW - timedelta(days=1))


async def _register_with_code(rt: object, h: object, tel: str) -> cmd.CommandCompleted:
    await h.on_start_registration(_req(rt, cmd.StartRegistration(  # type: ignore[attr-defined]
        request_id=f"reg-{tel[-4:]}", phone=tel, contract=CONTRACT, password=PASSWORD,
        consent=True, activation_code=ACTIVATION), key=tel))
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(  # type: ignore[attr-defined]
        request_id=f"conf-{tel[-4:]}", phone=tel, code=_code(rt, tel)), key=tel))  # type: ignore[arg-type]
    reply = rt.replies()[-1]  # type: ignore[attr-defined]
    assert isinstance(reply, cmd.CommandCompleted), reply
    return reply


async def test_a_parent_with_the_activation_code_claims_the_child_and_the_contract_login_closes():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_coded_card(birth_date_password=True), key=CONTRACT))
    login_id = outbound.new_account_id("contract", CONTRACT)
    _forget(rt)
    reply = await _register_with_code(rt, h, PHONE)
    assert reply.child_linked is True
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    parent = await _account(rt, phone=PHONE)
    assert child["guardian_ids"] == [parent["_id"]]
    [removed] = rt.emitted(cmd.GuardianRemoved)
    assert (removed.account_id, removed.contract) == (login_id, CONTRACT)
    [linked] = rt.emitted(cmd.GuardianLinked)
    assert (linked.account_id, linked.role) == (parent["_id"], "primary")
    assert [c.account_id for c in rt.emitted(cmd.AccountClosed)] == [login_id]
    closed = await _account(rt, _id=login_id)
    assert closed["status"] == "closed" and closed.get("login_contract") is None
    # the contract login is gone: the contract number and the birth date log in no more
    await h.on_login(_req(rt, cmd.Login(request_id="l-old", login=CONTRACT,
                                        password=BORN.strftime("%d%m%Y")), key=CONTRACT))
    assert _last_error(rt) == "invalid_credentials"


async def test_a_contract_login_that_confirmed_a_phone_keeps_the_child():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_coded_card(birth_date_password=True), key=CONTRACT))
    born = BORN.strftime("%d%m%Y")
    await h.on_login(_req(rt, cmd.Login(request_id="l-1", login=CONTRACT, password=born),
                          key=CONTRACT))
    first = _tokens(rt).access_token
    assert first is not None
    await h.on_change_password(_req(rt, cmd.ChangePassword(
        request_id="p-1", current_password=born, new_password=PASSWORD), key=CONTRACT,
        token=first.get_secret_value()))
    token = _tokens(rt).access_token
    assert token is not None
    tel = "+79120000007"
    await h.on_start_phone_change(_req(rt, cmd.StartPhoneChange(
        request_id="ph-1", phone=tel), key=CONTRACT, token=token.get_secret_value()))
    await h.on_confirm_phone_change(_req(rt, cmd.ConfirmPhoneChange(
        request_id="ph-2", code=_code(rt, tel)), key=CONTRACT, token=token.get_secret_value()))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    _forget(rt)
    reply = await _register_with_code(rt, h, PHONE)
    assert reply.child_linked is False  # as for any claimed child
    login_id = outbound.new_account_id("contract", CONTRACT)
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child["guardian_ids"] == [login_id]
    assert rt.emitted(cmd.GuardianRemoved) == [] and rt.emitted(cmd.AccountClosed) == []
    assert (await _account(rt, _id=login_id))["status"] == "active"


async def test_linking_with_the_activation_code_takes_the_child_from_the_contract_login():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_coded_card(birth_date_password=True), key=CONTRACT))
    mum = await _registered(rt, h, link=False)
    _forget(rt)
    await h.on_link_child(_req(rt, cmd.LinkChild(request_id="lk-1", contract=CONTRACT,
                                                 activation_code=ACTIVATION),
                               key=mum.phone, token=mum.token))
    assert isinstance(rt.replies()[-1], cmd.SessionTokens), rt.replies()[-1]
    login_id = outbound.new_account_id("contract", CONTRACT)
    assert [r.account_id for r in rt.emitted(cmd.GuardianRemoved)] == [login_id]
    assert (await _account(rt, _id=login_id))["status"] == "closed"
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child["guardian_ids"] == [mum.account_id]


async def test_replacing_an_e_mail_with_reauthentication_sends_a_new_code():
    rt, h = _auth()
    mum = await _registered(rt, h)
    await h.on_start_email_change(_req(rt, cmd.StartEmailChange(
        request_id="em-1", email=NEW_EMAIL), key=mum.phone, token=mum.token))
    [mail] = rt.emitted(OneTimeCodeRequested)
    await h.on_confirm_email_change(_req(rt, cmd.ConfirmEmailChange(
        request_id="em-2", code=mail.code.get_secret_value()), key=mum.phone, token=mum.token))
    _forget(rt)
    await h.on_start_email_change(_req(rt, cmd.StartEmailChange(
        request_id="em-3", email="second@example.ru", reauth=REAUTH), key=mum.phone,
        token=mum.token))
    [again] = rt.emitted(OneTimeCodeRequested)
    assert again.email == "second@example.ru"
