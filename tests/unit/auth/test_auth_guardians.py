from datetime import UTC, date, datetime, timedelta

import pytest

from contracts import auth as wire
from contracts.auth import AccessTokenClaims, ChildGrant, Role
from contracts.envelope import encode
from services.auth import outbound
from services.auth.domain import (
    ActivationCodeProof,
    AuthRejected,
    Child,
    ContractProof,
    GuardianRole,
    LinkOutcome,
    Reason,
    activation_code_mac,
)
from services.auth.domain.events import (
    ChildLinkRefused,
    ContractReissued,
    GuardianInvited,
    GuardianLinked,
    GuardianRemoved,
    GuardianRoleChanged,
)
from services.auth.security import ChildClaim
from services.runtime.authorization import PERMISSIONS, authorize
from services.runtime.tokens import TokenError

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
PEPPER = b"pepper"
BORN = date(2015, 5, 12)
PROOF = ContractProof("40817810", BORN)


def child(*, coded: bool = False) -> Child:
    """A child; ``coded``: its card issuer sent an activation code (then the only proof)."""
    return Child.register(child_id="ch-1", contract_number="40817810", school_id="sch-1",
                          birth_date=BORN, now=T0,
                          activation_code_mac=(activation_code_mac(PEPPER, "ch-1", "ABCD-2345")
                                               if coded else None))


def with_primary() -> Child:
    c = child()
    outcome = c.link_with_proof(account_id="mum", proof=PROOF, pepper=PEPPER, now=T0)
    assert outcome.role is GuardianRole.PRIMARY
    return c


def invite_and_accept(c: Child, account: str, role: GuardianRole) -> None:
    c.invite(by_account_id="mum", role=role, invitation_id=f"inv-{account}",
             token_hash=f"tok-{account}", now=T0)
    c.accept_invitation(invitation_id=f"inv-{account}", token_hash=f"tok-{account}",
                        account_id=account, now=T0 + timedelta(hours=1))


def allowed(c: Child, account: str, action: str) -> bool:
    """The runtime's permission table (the one every service uses) applied to the claim this
    child gives ``account`` in its access token."""
    claim = c.claim_for(account)
    claims = AccessTokenClaims(sub="acc_00000000", sid="s", role=Role.PARENT, iat=0, exp=1,
                               jti="j", children=[ChildGrant(contract=claim.contract,
                                                             role=claim.role)] if claim else [])
    try:
        authorize(claims, action, contract=c.contract_number)
    except TokenError:
        return False
    return True


def test_permissions_per_role_follow_the_runtime_table() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.CO_GUARDIAN)
    invite_and_accept(c, "granny", GuardianRole.VIEWER)
    assert all(allowed(c, "mum", a) for a in PERMISSIONS)
    assert allowed(c, "dad", "top_up") and allowed(c, "dad", "view")
    assert not allowed(c, "dad", "change_limits") and not allowed(c, "dad", "manage_guardians")
    assert [a for a in PERMISSIONS if allowed(c, "granny", a)] == ["receive_notifications"]
    assert not any(allowed(c, "stranger", a) for a in PERMISSIONS)


def test_the_first_parent_linking_with_contract_and_birth_date_becomes_primary() -> None:
    c = child()
    outcome = c.link_with_proof(account_id="mum", proof=PROOF, pepper=PEPPER, now=T0)
    assert outcome.role is GuardianRole.PRIMARY and c.primary == "mum"
    linked = [e for e in c.pull_events() if isinstance(e, GuardianLinked)]
    assert linked[0].via == "contract_and_birth_date" and linked[0].contract_number == "40817810"
    assert c.claim_for("mum") == ChildClaim("40817810", GuardianRole.PRIMARY)


def test_where_the_issuer_sent_an_activation_code_only_the_code_links_the_child() -> None:
    c = child(coded=True)
    by_birth_date = c.link_with_proof(account_id="eve", proof=PROOF, pepper=PEPPER, now=T0)
    assert by_birth_date.rejection is Reason.CHILD_PROOF_INVALID and c.guardians == {}
    outcome = c.link_with_proof(account_id="dad", proof=ActivationCodeProof("abcd 2345"),
                                pepper=PEPPER, now=T0)
    assert outcome.role is GuardianRole.PRIMARY


def test_a_parent_cannot_link_without_the_proof() -> None:
    c = child()
    wrong = c.link_with_proof(account_id="eve", proof=ContractProof("40817810", date(2015, 5, 13)),
                              pepper=PEPPER, now=T0)
    assert wrong.rejection is Reason.CHILD_PROOF_INVALID and c.guardians == {}
    code = child(coded=True).link_with_proof(account_id="eve",
                                             proof=ActivationCodeProof("WRONG-0000"),
                                             pepper=PEPPER, now=T0)
    assert code.rejection is Reason.CHILD_PROOF_INVALID and c.role_of("eve") is None


def test_the_primary_guardian_is_told_of_the_first_wrong_proof_of_an_hour_only() -> None:
    mum, eve = "acc_mum00001", "acc_eve00001"
    c = child()
    c.link_with_proof(account_id=mum, proof=PROOF, pepper=PEPPER, now=T0)
    c.pull_events()
    for minute in range(3):
        c.link_with_proof(account_id=eve, proof=ContractProof("40817810", date(2015, 1, 1)),
                          pepper=PEPPER, now=T0 + timedelta(minutes=minute))
    refused = [e for e in c.pull_events() if isinstance(e, ChildLinkRefused)]
    assert [(e.failures_in_window, e.alert_account_id) for e in refused] == [
        (1, mum), (2, None), (3, None)]
    wired = outbound.to_wire(refused)
    assert [(t, k) for t, k, _m, _id in wired] == [("auth.events.v1", mum)]
    message = wired[0][2]
    assert isinstance(message, wire.ChildLinkRefused)
    assert (message.account_id, message.contract) == (mum, "40817810")
    # Neither who tried nor what they typed reaches the wire.
    assert eve not in encode(message).decode() and "2015-01-01" not in encode(message).decode()
    c.link_with_proof(account_id=eve, proof=ContractProof("40817810", date(2015, 1, 2)),
                      pepper=PEPPER, now=T0 + timedelta(hours=2))
    [later] = [e for e in c.pull_events() if isinstance(e, ChildLinkRefused)]
    assert later.alert_account_id == mum  # a new hour of failures: told again


def test_a_wrong_proof_for_a_child_without_a_primary_tells_nobody() -> None:
    c = child()
    c.link_with_proof(account_id="eve", proof=ContractProof("40817810", date(2015, 1, 1)),
                      pepper=PEPPER, now=T0)
    [refused] = [e for e in c.pull_events() if isinstance(e, ChildLinkRefused)]
    assert refused.alert_account_id is None and outbound.to_wire([refused]) == []


def test_guessing_the_birth_date_is_limited_to_ten_tries_for_good_then_support_unlocks() -> None:
    c = child()
    for day in range(1, 11):
        c.link_with_proof(account_id="eve", proof=ContractProof("40817810", date(2015, 1, day)),
                          pepper=PEPPER, now=T0 + timedelta(days=day))  # no hourly window
    for later in (T0 + timedelta(days=11), T0 + timedelta(days=400)):
        right = c.link_with_proof(account_id="eve", proof=PROOF, pepper=PEPPER, now=later)
        assert right.rejection is Reason.CHILD_PROOF_INVALID and c.guardians == {}
    with pytest.raises(AuthRejected):
        c.unlock_proofs(by_account_id="acc-support", reason="short", now=T0)
    c.unlock_proofs(by_account_id="acc-support", reason="Identity checked by call-back",
                    now=T0 + timedelta(days=401))
    assert c.link_with_proof(account_id="mum", proof=PROOF, pepper=PEPPER,
                             now=T0 + timedelta(days=401)).role is GuardianRole.PRIMARY


def test_activation_codes_are_limited_to_ten_wrong_tries_an_hour() -> None:
    c = child(coded=True)
    for i in range(10):
        c.link_with_proof(account_id="eve", proof=ActivationCodeProof(f"WRONG-{i:04d}"),
                          pepper=PEPPER, now=T0)
    with pytest.raises(AuthRejected) as caught:
        c.link_with_proof(account_id="mum", proof=ActivationCodeProof("ABCD-2345"),
                          pepper=PEPPER, now=T0)
    assert caught.value.reason is Reason.CHILD_PROOF_RATE_LIMITED
    later = c.link_with_proof(account_id="mum", proof=ActivationCodeProof("ABCD-2345"),
                              pepper=PEPPER, now=T0 + timedelta(hours=1, seconds=1))
    assert later.role is GuardianRole.PRIMARY


def test_a_claimed_child_answers_a_right_proof_as_a_wrong_one_and_counts_both() -> None:
    c = with_primary()
    c.pull_events()
    right = c.link_with_proof(account_id="dad", proof=PROOF, pepper=PEPPER, now=T0)
    wrong = c.link_with_proof(account_id="eve", proof=ContractProof("40817810", date(2015, 1, 1)),
                              pepper=PEPPER, now=T0)
    assert right == wrong == LinkOutcome(Reason.CHILD_PROOF_INVALID)
    assert c.role_of("dad") is None and c.birth_date_failures == 2
    refused = [e for e in c.pull_events() if isinstance(e, ChildLinkRefused)]
    assert [e.account_id for e in refused] == ["dad", "eve"]


def test_the_primary_invites_a_co_guardian_and_a_viewer_who_join_with_the_token() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.CO_GUARDIAN)
    invite_and_accept(c, "granny", GuardianRole.VIEWER)
    assert c.guardians == {"mum": GuardianRole.PRIMARY, "dad": GuardianRole.CO_GUARDIAN,
                           "granny": GuardianRole.VIEWER}
    assert allowed(c, "dad", "top_up") and not allowed(c, "dad", "change_limits")
    assert not allowed(c, "granny", "view")
    events = c.pull_events()
    assert sum(isinstance(e, GuardianInvited) for e in events) == 2
    assert [e.via for e in events if isinstance(e, GuardianLinked)][-2:] == ["invitation"] * 2


def test_only_the_primary_can_invite_and_invitations_expire() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.CO_GUARDIAN)
    with pytest.raises(AuthRejected) as caught:
        c.invite(by_account_id="dad", role=GuardianRole.VIEWER, invitation_id="i",
                 token_hash="t", now=T0)
    assert caught.value.reason is Reason.NOT_PERMITTED
    with pytest.raises(AuthRejected) as caught:
        c.invite(by_account_id="stranger", role=GuardianRole.VIEWER, invitation_id="i",
                 token_hash="t", now=T0)
    assert caught.value.reason is Reason.NOT_A_GUARDIAN
    c.invite(by_account_id="mum", role=GuardianRole.VIEWER, invitation_id="i", token_hash="t",
             now=T0)
    with pytest.raises(AuthRejected) as caught:
        c.accept_invitation(invitation_id="i", token_hash="t", account_id="granny",
                            now=T0 + timedelta(days=7))
    assert caught.value.reason is Reason.INVITATION_EXPIRED
    with pytest.raises(AuthRejected) as caught:
        c.accept_invitation(invitation_id="i", token_hash="guess", account_id="granny", now=T0)
    assert caught.value.reason is Reason.INVITATION_INVALID


def test_the_primary_removes_guardians_but_cannot_be_removed() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.CO_GUARDIAN)
    with pytest.raises(AuthRejected):
        c.remove_guardian(by_account_id="dad", account_id="mum", now=T0)
    assert c.remove_guardian(by_account_id="mum", account_id="dad", now=T0)
    assert not c.remove_guardian(by_account_id="mum", account_id="dad", now=T0)
    removed = [e for e in c.pull_events() if isinstance(e, GuardianRemoved)]
    assert len(removed) == 1 and removed[0].role == "co_guardian"
    with pytest.raises(AuthRejected) as caught:
        c.remove_guardian(by_account_id="mum", account_id="mum", now=T0)
    assert caught.value.reason is Reason.CANNOT_REMOVE_PRIMARY


def test_handing_over_the_primary_role_demotes_the_old_primary_to_co_guardian() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.VIEWER)
    assert c.change_role(by_account_id="mum", account_id="dad", role=GuardianRole.PRIMARY,
                         now=T0)
    assert c.primary == "dad" and c.role_of("mum") is GuardianRole.CO_GUARDIAN
    assert sum(isinstance(e, GuardianRoleChanged) for e in c.pull_events()) == 2


def test_a_card_reissue_keeps_guardians_under_the_new_contract_once() -> None:
    c = with_primary()
    assert c.reissue(new_contract_number="40817899", school_id="sch-2", now=T0)
    assert not c.reissue(new_contract_number="40817899", school_id="sch-2", now=T0)
    assert c.claim_for("mum") == ChildClaim("40817899", GuardianRole.PRIMARY)
    assert c.previous_contracts == ["40817810"]
    reissued = [e for e in c.pull_events() if isinstance(e, ContractReissued)]
    assert len(reissued) == 1 and reissued[0].guardians == (("mum", "primary"),)


def test_a_card_reissue_to_a_contract_another_child_holds_is_refused() -> None:
    c = with_primary()
    c.pull_events()
    with pytest.raises(AuthRejected) as caught:
        c.reissue(new_contract_number="40817899", school_id="sch-2", now=T0,
                  held_by="another-child")
    assert caught.value.reason is Reason.CONTRACT_IN_USE
    assert c.contract_number == "40817810" and c.pull_events() == []
    assert c.reissue(new_contract_number="40817899", school_id="sch-2", now=T0,
                     held_by=c.child_id)


def test_a_closed_account_is_dropped_and_the_child_can_be_claimed_again() -> None:
    c = with_primary()
    assert c.drop_closed_account(account_id="mum", now=T0)
    assert c.link_with_proof(account_id="dad", proof=PROOF, pepper=PEPPER,
                             now=T0).role is GuardianRole.PRIMARY


def test_a_repeated_link_with_the_same_key_is_a_no_op() -> None:
    c = child()
    first = c.link_with_proof(account_id="mum", proof=PROOF, pepper=PEPPER, now=T0,
                              idempotency_key="k")
    again = c.link_with_proof(account_id="mum", proof=PROOF, pepper=PEPPER, now=T0,
                              idempotency_key="k")
    assert again.replayed and again.role is first.role is GuardianRole.PRIMARY
    assert sum(isinstance(e, GuardianLinked) for e in c.pull_events()) == 1


def test_a_child_document_round_trips_without_the_activation_code_in_clear() -> None:
    c = with_primary()
    invite_and_accept(c, "dad", GuardianRole.CO_GUARDIAN)
    c.invite(by_account_id="mum", role=GuardianRole.VIEWER, invitation_id="i", token_hash="t",
             now=T0)
    doc = c.to_doc()
    assert "ABCD" not in repr(doc) and doc["birth_date"] == "2015-05-12"
    assert Child.from_doc(doc).to_doc() == doc
