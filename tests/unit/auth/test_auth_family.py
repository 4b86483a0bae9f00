"""auth's family and account functions over the in-memory fakes (issue 17, "Accounts and
family"): registration with a proof links the child, a phone added by a code to it,
invitations the invitee accepts, roles and the primary handed over, one session ended, and
re-authentication (password, code word, authenticator code) for sensitive changes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from contracts import auth as cmd
from contracts.notify import OneTimeCodeRequested
from services.auth.domain import (
    Account,
    AuthRejected,
    Child,
    CodePurpose,
    GuardianRole,
    PendingLink,
    ReauthProof,
    Session,
    activation_code_digest,
    confirm_registration_and_link,
    phone_hint,
    registration_proof,
)
from services.auth.domain.accounts import AccountKind, AccountStatus
from services.auth.domain.guardians import activation_digest_mac
from services.auth.security import AccessRole, totp_code
from tests.unit.auth.test_auth_handlers import (
    BORN,
    CONTRACT,
    NOW,
    PASSWORD,
    PHONE,
    REAUTH,
    _account,
    _auth,
    _card,
    _code,
    _forget,
    _last_error,
    _registered,
    _req,
    _tokens,
)

pytestmark = pytest.mark.unit

PEPPER = b"unit-test-pepper"


def _child(**kw: object) -> Child:
    child = Child.register(child_id="stu-1", contract_number=CONTRACT, school_id="s-1",
                           birth_date=BORN, now=NOW, **kw)  # type: ignore[arg-type]
    child.pull_events()
    return child


def _pending(link: PendingLink | None) -> Account:
    account = Account(account_id="acc_pending00001", kind=AccountKind.PARENT,
                      role=AccessRole.PARENT, status=AccountStatus.PENDING, created_at=NOW,
                      phone=PHONE, pending_registration_id="reg-1", pending_link=link)
    account.issue_code(purpose=CodePurpose.REGISTRATION, code_id="c-1", code="123456",
                       pepper=PEPPER, now=NOW)
    return account


# --- the domain ---------------------------------------------------------------------------------

def test_a_confirmed_registration_with_the_birth_date_makes_the_parent_primary():
    child = _child()
    account = _pending(registration_proof(child=child, contract_number=CONTRACT,
                                          birth_date=BORN, activation_code=None, pepper=PEPPER))
    outcome, linked = confirm_registration_and_link(account=account, child=child,
                                                    code="123456", pepper=PEPPER, now=NOW)
    assert outcome.ok and linked is not None and linked.rejection is None
    assert child.role_of(account.account_id) is not None and child.primary == account.account_id
    assert account.pending_link is None


def test_a_wrong_code_links_nothing_and_keeps_the_proof_for_the_right_one():
    child = _child()
    account = _pending(PendingLink(CONTRACT, birth_date=BORN))
    outcome, linked = confirm_registration_and_link(account=account, child=child,
                                                    code="000000", pepper=PEPPER, now=NOW)
    assert not outcome.ok and linked is None and child.guardians == {}
    assert account.pending_link is not None


def test_a_claimed_child_answers_the_right_and_a_wrong_birth_date_alike_and_counts_them():
    answers = []
    for born in (BORN, date(2014, 3, 9)):
        child = _child()
        child.link_issued_login(account_id="acc_primary00001", now=NOW)
        account = _pending(PendingLink(CONTRACT, birth_date=born))
        outcome, linked = confirm_registration_and_link(account=account, child=child,
                                                        code="123456", pepper=PEPPER, now=NOW)
        assert outcome.ok and linked is not None  # the account is confirmed either way
        answers.append(linked.rejection)
        assert child.birth_date_failures == 1 and account.account_id not in child.guardians
    assert answers[0] == answers[1] is not None


def test_the_activation_code_is_kept_only_as_its_keyed_mac_and_links_a_coded_child():
    child = _child(activation_code_mac=activation_digest_mac(
        PEPPER, "stu-1", activation_code_digest("stu-1", "K7P2-Q9XM")))
    link = registration_proof(child=child, contract_number=CONTRACT, birth_date=None,
                              activation_code="k7p2q9xm", pepper=PEPPER)
    assert link is not None and "K7P2" not in str(link.to_doc()).upper()
    account = _pending(link)
    _, linked = confirm_registration_and_link(account=account, child=child, code="123456",
                                              pepper=PEPPER, now=NOW)
    assert linked is not None and linked.rejection is None


def _live(account: Account) -> Session:
    return Session.start(session_id="ses-1", account_id=account.account_id,
                         epoch=account.session_epoch, refresh_token_hash="h", device="d",
                         ip_hash="i", now=NOW)


def _active() -> Account:
    return Account(account_id="acc_active000001", kind=AccountKind.PARENT,
                   role=AccessRole.PARENT, status=AccountStatus.ACTIVE, created_at=NOW,
                   phone=PHONE, password_hash="x")


def test_reauthentication_needs_a_proof_and_counts_a_wrong_one():
    account = _active()
    session = _live(account)
    with pytest.raises(AuthRejected) as refused:
        account.reauthenticate(session=session, proof=ReauthProof(), now=NOW)
    assert refused.value.reason.value == "reauthentication_required"
    wrong = account.reauthenticate(session=session, now=NOW,
                                   proof=ReauthProof(password_given=True))
    assert wrong.rejection is not None and wrong.rejection.value == "invalid_credentials"
    assert account.password_failures.count(NOW) == 1
    # a code word matches only once one is set
    assert not account.reauthenticate(session=session, now=NOW, proof=ReauthProof(
        code_word_given=True, code_word_ok=True)).ok
    account.code_word_hash = "argon2-of-the-word"
    assert account.reauthenticate(session=session, now=NOW, proof=ReauthProof(
        code_word_given=True, code_word_ok=True)).ok


def test_a_fresh_authenticator_code_reauthenticates_once():
    account = _active()
    account.totp_secret, account.totp_enabled = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", True
    session = _live(account)
    code = totp_code(account.totp_secret, NOW)
    assert account.reauthenticate(session=session, proof=ReauthProof(totp=code), now=NOW).ok
    again = account.reauthenticate(session=session, proof=ReauthProof(totp=code), now=NOW)
    assert not again.ok  # the step is spent


def test_the_phone_hint_shows_the_country_and_the_last_four_digits():
    assert phone_hint("+79121234567") == "+7******4567"
    assert phone_hint(None) == ""


# --- the handlers -------------------------------------------------------------------------------

async def test_registering_with_the_contract_and_birth_date_links_the_child_at_confirmation():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(), key=CONTRACT))
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-1", phone=PHONE, contract=CONTRACT, password=PASSWORD, consent=True,
        birth_date=BORN.isoformat()), key=PHONE))
    stored = await _account(rt, phone=PHONE)
    assert stored["pending_link"]["contract_number"] == CONTRACT
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id="conf-1", phone=PHONE, code=_code(rt, PHONE)), key=PHONE))
    reply = rt.replies()[-1]
    assert isinstance(reply, cmd.CommandCompleted) and reply.child_linked is True
    [linked] = rt.emitted(cmd.GuardianLinked)
    assert (linked.contract, linked.role) == (CONTRACT, "primary")


async def test_a_registration_naming_a_claimed_child_is_confirmed_but_links_nothing():
    rt, h = _auth()
    await _registered(rt, h)  # the primary
    tel = "+79120000002"
    await h.on_start_registration(_req(rt, cmd.StartRegistration(
        request_id="reg-2", phone=tel, contract=CONTRACT, password=PASSWORD, consent=True,
        birth_date=BORN.isoformat()), key=tel))
    await h.on_confirm_registration(_req(rt, cmd.ConfirmRegistration(
        request_id="conf-2", phone=tel, code=_code(rt, tel)), key=tel))
    reply = rt.replies()[-1]
    assert isinstance(reply, cmd.CommandCompleted) and reply.child_linked is False
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None and child["birth_date_failures"] == 1
    assert len(child["guardian_ids"]) == 1


async def test_a_contract_login_adds_a_phone_with_a_code_sent_to_it():
    rt, h = _auth()
    await h.on_card_issued(rt.inbound(_card(birth_date_password=True), key=CONTRACT))
    born = BORN.strftime("%d%m%Y")
    await h.on_login(_req(rt, cmd.Login(request_id="l-1", login=CONTRACT, password=born),
                          key=CONTRACT))
    first = _tokens(rt)
    assert first.access_token is not None
    await h.on_change_password(_req(rt, cmd.ChangePassword(
        request_id="p-1", current_password=born, new_password=PASSWORD), key=CONTRACT,
        token=first.access_token.get_secret_value()))
    token = _tokens(rt).access_token
    assert token is not None
    _forget(rt)
    await h.on_start_phone_change(_req(rt, cmd.StartPhoneChange(
        request_id="ph-1", phone=PHONE), key=CONTRACT, token=token.get_secret_value()))
    assert isinstance(rt.replies()[-1], cmd.RegistrationStarted)
    [sms] = rt.emitted(OneTimeCodeRequested)
    assert (sms.phone, sms.purpose) == (PHONE, "phone_confirmation")
    await h.on_confirm_phone_change(_req(rt, cmd.ConfirmPhoneChange(
        request_id="ph-2", code=_code(rt, PHONE)), key=CONTRACT,
        token=token.get_secret_value()))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted), rt.replies()[-1]
    assert (await _account(rt, login_contract=CONTRACT))["phone"] == PHONE
    [contacts] = rt.emitted(cmd.GuardianContacts)
    assert contacts.phone == PHONE


async def test_changing_a_phone_needs_reauthentication_and_a_taken_phone_is_refused_after_the_code():  # noqa: E501
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    await h.on_start_phone_change(_req(rt, cmd.StartPhoneChange(
        request_id="ph-1", phone=dad.phone), key=mum.phone, token=mum.token))
    assert _last_error(rt) == "reauthentication_required"
    await h.on_start_phone_change(_req(rt, cmd.StartPhoneChange(
        request_id="ph-2", phone=dad.phone, reauth=REAUTH), key=mum.phone, token=mum.token))
    await h.on_confirm_phone_change(_req(rt, cmd.ConfirmPhoneChange(
        request_id="ph-3", code=_code(rt, dad.phone)), key=mum.phone, token=mum.token))
    assert _last_error(rt) == "phone_taken"
    assert (await _account(rt, _id=mum.account_id))["phone"] == mum.phone


async def test_an_invitation_waits_for_the_invitee_who_lists_and_accepts_it_and_may_be_revoked():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    gran = await _registered(rt, h, "+79120000003", link=False)
    for rid, who in (("i-1", dad), ("i-2", gran)):
        await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
            request_id=rid, contract=CONTRACT, phone=who.phone, role="viewer", reauth=REAUTH),
            key=mum.phone, token=mum.token))
    await h.on_list_invitations(_req(rt, cmd.ListInvitations(), key=dad.phone, token=dad.token))
    listed = rt.replies()[-1]
    assert isinstance(listed, cmd.InvitationsReply)
    assert [(i.invitation_id, i.role) for i in listed.invitations] == [("inv_i-1", "viewer")]
    # gran cannot take up dad's invitation
    await h.on_accept_invitation(_req(rt, cmd.AcceptInvitation(
        request_id="a-0", contract=CONTRACT, invitation_id="inv_i-1"), key=gran.phone,
        token=gran.token))
    assert _last_error(rt) == "invitation_invalid"
    await h.on_revoke_invitation(_req(rt, cmd.RevokeInvitation(
        request_id="v-1", contract=CONTRACT, invitation_id="inv_i-2"), key=mum.phone,
        token=mum.token))
    await h.on_accept_invitation(_req(rt, cmd.AcceptInvitation(
        request_id="a-1", contract=CONTRACT, invitation_id="inv_i-2"), key=gran.phone,
        token=gran.token))
    assert _last_error(rt) == "invitation_invalid"
    await h.on_accept_invitation(_req(rt, cmd.AcceptInvitation(
        request_id="a-2", contract=CONTRACT, invitation_id="inv_i-1"), key=dad.phone,
        token=dad.token))
    assert _tokens(rt).access_token is not None
    await h.on_list_guardians(_req(rt, cmd.ListGuardians(contract=CONTRACT), key=mum.phone,
                                   token=mum.token))
    guardians = rt.replies()[-1]
    assert isinstance(guardians, cmd.GuardiansReply)
    assert [(g.account_id, g.role, g.you) for g in guardians.guardians] == [
        (mum.account_id, "primary", True), (dad.account_id, "viewer", False)]
    assert guardians.guardians[1].phone_hint == "+7******0002"
    assert guardians.invitations == []


async def test_the_primary_hands_over_and_becomes_a_co_guardian():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    await h.on_invite_guardian(_req(rt, cmd.InviteGuardian(
        request_id="i-1", contract=CONTRACT, phone=dad.phone, role="viewer", reauth=REAUTH),
        key=mum.phone, token=mum.token))
    await h.on_accept_invitation(_req(rt, cmd.AcceptInvitation(
        request_id="a-1", contract=CONTRACT, invitation_id="inv_i-1"), key=dad.phone,
        token=dad.token))
    await h.on_change_guardian_role(_req(rt, cmd.ChangeGuardianRole(
        request_id="g-1", contract=CONTRACT, account_id=dad.account_id, role="primary"),
        key=mum.phone, token=mum.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted), rt.replies()[-1]
    child = await rt.db.auth_children.find_one({"contract_number": CONTRACT})
    assert child is not None
    assert {g["account_id"]: g["role"] for g in child["guardians"]} == {
        mum.account_id: "co_guardian", dad.account_id: "primary"}


async def test_ending_one_session_keeps_the_others():
    rt, h = _auth()
    p = await _registered(rt, h, link=False)
    await h.on_login(_req(rt, cmd.Login(request_id="l-2", login=PHONE, password=PASSWORD,
                                        device="iPad"), key=PHONE))
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=p.token))
    listed = rt.replies()[-1]
    assert isinstance(listed, cmd.SessionsReply) and len(listed.sessions) == 2
    [other] = [s for s in listed.sessions if not s.current]
    await h.on_end_session(_req(rt, cmd.EndSession(request_id="e-1", session_id=other.session_id),
                                key=PHONE, token=p.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    [ended] = rt.emitted(cmd.SessionEnded)
    assert (ended.session_id, ended.reason) == (other.session_id, "ended_by_owner")
    await h.on_list_sessions(_req(rt, cmd.ListSessions(), key=PHONE, token=p.token))
    after = rt.replies()[-1]
    assert isinstance(after, cmd.SessionsReply)
    assert [s.session_id for s in after.sessions] == [p.session_id]
    await h.on_end_session(_req(rt, cmd.EndSession(request_id="e-2", session_id="ses_nobody"),
                                key=PHONE, token=p.token))
    assert _last_error(rt) == "session_not_found"


async def test_a_code_word_set_with_the_password_then_reauthenticates_closing():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_set_code_word(_req(rt, cmd.SetCodeWord(
        request_id="w-0", code_word="blue heron"), key=PHONE, token=p.token))
    assert _last_error(rt) == "reauthentication_required"
    await h.on_set_code_word(_req(rt, cmd.SetCodeWord(
        request_id="w-1", code_word="blue heron", reauth=REAUTH), key=PHONE, token=p.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted), rt.replies()[-1]
    stored = await _account(rt, _id=p.account_id)
    assert stored["code_word_hash"].startswith("$argon2id$")
    await h.on_close_account(_req(rt, cmd.CloseAccount(
        request_id="c-1", reauth=cmd.Reauthentication(code_word="red heron")), key=PHONE,
        token=p.token))
    assert _last_error(rt) == "invalid_credentials"
    assert (await _account(rt, _id=p.account_id))["status"] == "active"
    await h.on_close_account(_req(rt, cmd.CloseAccount(
        request_id="c-2", reauth=cmd.Reauthentication(code_word="blue heron")), key=PHONE,
        token=p.token))
    assert (await _account(rt, _id=p.account_id))["status"] == "closed"


def test_an_invitation_expires_after_seven_days():
    child = _child()
    child.link_issued_login(account_id="acc_primary00001", now=NOW)
    child.invite(by_account_id="acc_primary00001", role=GuardianRole.VIEWER,
                 invitation_id="inv-1", token_hash="t", now=NOW, account_id="acc_invitee00001")
    assert len(child.open_invitations(NOW, for_account="acc_invitee00001")) == 1
    late = NOW + timedelta(days=7)
    assert child.open_invitations(late) == []
    with pytest.raises(AuthRejected):
        child.accept_addressed_invitation(invitation_id="inv-1",
                                          account_id="acc_invitee00001", now=late)


async def test_the_profile_reads_back_the_language_time_zone_and_the_familys_name_for_a_child():
    rt, h = _auth()
    p = await _registered(rt, h)
    await h.on_update_profile(_req(rt, cmd.UpdateProfile(
        request_id="u-1", locale="en", time_zone="Asia/Yekaterinburg"), key=PHONE,
        token=p.token))
    [contacts] = rt.emitted(cmd.GuardianContacts)
    assert (contacts.locale, contacts.time_zone) == ("en", "Asia/Yekaterinburg")
    await h.on_set_child_name(_req(rt, cmd.SetChildName(
        request_id="n-1", contract=CONTRACT, display_name="  Маша   Петрова "), key=PHONE,
        token=p.token))
    assert isinstance(rt.replies()[-1], cmd.CommandCompleted)
    assert not [m for m in rt.emitted() if "Маша" in m.model_dump_json()]  # not on any topic
    await h.on_get_profile(_req(rt, cmd.GetProfile(), key=PHONE, token=p.token))
    profile = rt.replies()[-1]
    assert isinstance(profile, cmd.ProfileReply)
    assert (profile.phone, profile.locale, profile.time_zone) == (
        PHONE, "en", "Asia/Yekaterinburg")
    assert [(c.contract, c.role, c.display_name) for c in profile.children] == [
        (CONTRACT, "primary", "Маша Петрова")]
    assert not profile.code_word_set and not profile.second_factor


def test_a_viewer_reads_the_childs_name_but_does_not_set_it():
    child = _child()
    child.link_issued_login(account_id="acc_primary00001", now=NOW)
    child.guardians["acc_viewer000001"] = GuardianRole.VIEWER
    assert child.rename(by_account_id="acc_primary00001", display_name="Маша")
    with pytest.raises(AuthRejected):
        child.rename(by_account_id="acc_viewer000001", display_name="Мария")
    assert child.display_name == "Маша"
    assert not child.rename(by_account_id="acc_primary00001", display_name="Маша")


def test_accepting_never_changes_the_role_of_someone_already_guarding_the_child():
    child = _child()
    child.link_issued_login(account_id="acc_primary00001", now=NOW)
    child.invite(by_account_id="acc_primary00001", role=GuardianRole.VIEWER,
                 invitation_id="inv-1", token_hash="t", now=NOW, account_id="acc_invitee00001")
    child.guardians["acc_invitee00001"] = GuardianRole.CO_GUARDIAN  # joined another way
    with pytest.raises(AuthRejected) as refused:
        child.accept_addressed_invitation(invitation_id="inv-1",
                                          account_id="acc_invitee00001", now=NOW)
    assert refused.value.reason.value == "already_guardian"
    assert child.guardians["acc_invitee00001"] is GuardianRole.CO_GUARDIAN


async def test_the_invitee_is_told_of_an_invitation_by_ids_alone_and_once():
    rt, h = _auth()
    mum = await _registered(rt, h)
    dad = await _registered(rt, h, "+79120000002", link=False)
    invite = cmd.InviteGuardian(request_id="i-1", contract=CONTRACT, phone=dad.phone,
                                role="co_guardian", reauth=REAUTH)
    await h.on_invite_guardian(_req(rt, invite, key=mum.phone, token=mum.token))
    await h.on_invite_guardian(_req(rt, invite, key=mum.phone, token=mum.token))  # a retry
    records = [p for p in rt.emitted_records() if isinstance(p.message, cmd.GuardianInvited)]
    assert len({p.envelope.id for p in records}) == 1
    sent = records[0]
    assert (sent.topic, sent.key) == ("auth.events.v1", dad.account_id)
    assert sent.message.model_dump(exclude={"at", "expires_at"}) == {
        "account_id": dad.account_id, "contract": CONTRACT, "role": "co_guardian",
        "invitation_id": "inv_i-1", "invited_by": mum.account_id}
    assert sent.message.expires_at - sent.message.at == timedelta(days=7)
    assert mum.phone not in sent.message.model_dump_json()
