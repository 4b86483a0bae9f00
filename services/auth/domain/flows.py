"""Unauthenticated flows where the caller may name an account that does not exist, and the
card issuer's registration of a child.

Each function takes the account found for the identifier, or None, and returns a public
*reply* (what goes back to the caller) apart from the *internal effects* (the account to save,
the events to publish). The reply is built only from the caller's own input and from values
the caller supplied, never from whether the phone or contract is known, so known and unknown
identifiers get equal replies. The handler must also spend equal work in both cases (for a
login with an unknown identifier: ``security.dummy_verify``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from ..security import AccessRole
from .accounts import (
    EXISTING_ACCOUNT_ALERT_COOLDOWN,
    Account,
    AccountKind,
    AccountStatus,
    LoginOutcome,
    LoginReply,
    Outcome,
    PendingLink,
    require_contract_number,
    require_email,
    require_phone,
)
from .codes import CODE_RESEND_COOLDOWN, CODE_TTL, CodePurpose
from .common import AuthRejected, DomainEvent, LoginThrottle, Reason, require_aware
from .devices import DeviceProof
from .events import RegistrationAttemptedForExistingAccount
from .guardians import (
    ActivationMacProof,
    Child,
    ContractProof,
    LinkOutcome,
    activation_code_mac,
    activation_digest_mac,
)
from .passwords import PasswordContext, check_password


@dataclass(frozen=True)
class CodeSentReply:
    """"If the details are right, a code is on its way." Identical for every identifier."""

    request_id: str
    code_ttl: timedelta = CODE_TTL
    resend_after: timedelta = CODE_RESEND_COOLDOWN


class RegistrationEffect(StrEnum):
    """What actually happened (internal: logs, metrics, tests; never in the reply)."""

    PENDING_CREATED = "pending_created"
    PENDING_RESTARTED = "pending_restarted"
    PENDING_PASSWORD_DROPPED = "pending_password_dropped"
    COOLDOWN_NOTHING_SENT = "cooldown_nothing_sent"
    EXISTING_ACCOUNT_ALERTED = "existing_account_alerted"
    EXISTING_ACCOUNT_ALERT_SUPPRESSED = "existing_account_alert_suppressed"
    CONTRACT_UNKNOWN = "contract_unknown"
    CODE_ISSUED = "code_issued"
    ACCOUNT_NOT_ELIGIBLE = "account_not_eligible"


@dataclass
class FlowResult:
    reply: CodeSentReply
    effect: RegistrationEffect
    account: Account | None = None
    events: list[DomainEvent] = field(default_factory=list)


@dataclass
class CardRegistration:
    child: Child
    account: Account | None = None


def register_card(
    *, child_id: str, contract_number: str, school_id: str, birth_date: date,
    initial_password_hash: str | None, account_id: str, pepper: bytes, now: datetime,
    activation_code_hash: str | None = None,
) -> CardRegistration:
    """A new child from the card issuer. A contract whose initial password is the child's
    birth date (``initial_password_hash``, the hash of DDMMYYYY) also gets a parent login by
    contract number, the child's primary guardian, that must change the password first (10
    wrong tries in total close it: ``Account.password_is_guessable``). An issuer that handed
    the family an activation code sends its digest (``activation_code_hash``): the code is
    then the only proof that links the child."""
    child = Child.register(
        child_id=child_id, contract_number=contract_number, school_id=school_id,
        birth_date=birth_date, now=now,
        activation_code_mac=(None if activation_code_hash is None
                             else activation_digest_mac(pepper, child_id, activation_code_hash)))
    if initial_password_hash is None:
        return CardRegistration(child)
    account = Account.provision_for_contract(
        account_id=account_id, contract_number=contract_number,
        initial_password_hash=initial_password_hash, now=now)
    child.link_issued_login(account_id=account.account_id, now=now)
    return CardRegistration(child, account)


def require_served_phone(phone: str, countries: Sequence[str]) -> str:
    """A phone whose country code is one auth sends codes to (``AUTH_PHONE_COUNTRIES``, as
    notify's ``NOTIFY_SMS_CODE_COUNTRIES``); refused on the caller's own input, before
    anything is looked up, so it tells nothing about accounts."""
    if not any(phone.startswith(prefix) for prefix in countries):
        raise AuthRejected(Reason.PHONE_COUNTRY_NOT_SERVED)
    return phone


def start_registration(
    *,
    existing: Account | None,
    contract_known: bool,
    contract_birth_dates: Sequence[date],
    phone: str,
    contract_number: str,
    password: str,
    password_hash: str,
    consent: bool,
    registration_id: str,
    new_account_id: str,
    code_id: str,
    code: str,
    pepper: bytes,
    now: datetime,
    email: str | None = None,
    locale: str = "ru",
    served_countries: Sequence[str] = ("+7",),
    same_password_as_pending: bool = False,
    link: PendingLink | None = None,
) -> FlowResult:
    """Start a parent registration (phone E.164, 8-digit contract, password, consent).

    Raises :class:`AuthRejected` only for faults visible in the caller's own input (format,
    consent, a password that is short, common, or built from the phone or contract typed in
    the same form). Everything else gives the same :class:`CodeSentReply`:

    * new phone, known contract: a pending account with a registration code;
    * pending account for this phone: a new code (unless the resend cooldown holds, then
      nothing is sent); the details of the first start stay. The password is never replaced:
      whoever repeats the start with the victim's phone must not choose the password the
      victim's code then activates. Nor may the first start's password survive a repeat with
      another one (``same_password_as_pending`` False: the first could be the attacker's), so
      the pending password is dropped and the account, once confirmed, gets a password only
      through a reset by SMS code: only the phone's holder chooses it;
    * active account for this phone: its owner is told someone tried (at most hourly);
    * unknown contract: nothing happens.

    A proof of the child (``link``: :func:`registration_proof`) is kept on a new pending
    account, unchecked: it links the child once the phone is confirmed
    (:func:`confirm_registration_and_link`), so the reply tells nothing about it.

    A password containing the child's birth date cannot be refused here without telling the
    caller that the contract exists and what the birth date is; it is accepted and flagged, and
    the confirmed account must change it at first login.
    """
    now = require_aware(now)
    require_phone(phone)
    require_served_phone(phone, served_countries)
    require_contract_number(contract_number)
    if not consent:
        raise AuthRejected(Reason.CONSENT_REQUIRED)
    public_ctx = PasswordContext(phone=phone, contract_numbers=(contract_number,))
    reasons = check_password(password, public_ctx)
    if reasons:
        raise AuthRejected(reasons[0], reasons=tuple(reasons))
    reply = CodeSentReply(request_id=registration_id)
    private_ctx = PasswordContext(birth_dates=tuple(contract_birth_dates))
    flagged = None
    if contract_known and Reason.PASSWORD_CONTAINS_BIRTH_DATE in check_password(password,
                                                                                private_ctx):
        flagged = Reason.PASSWORD_CONTAINS_BIRTH_DATE

    if existing is not None and existing.status is not AccountStatus.PENDING:
        last = existing.existing_account_alert_at
        if existing.status is AccountStatus.CLOSED or (
            last is not None and now < last + EXISTING_ACCOUNT_ALERT_COOLDOWN
        ):
            return FlowResult(reply, RegistrationEffect.EXISTING_ACCOUNT_ALERT_SUPPRESSED)
        existing.existing_account_alert_at = now
        existing.pending_events.append(
            RegistrationAttemptedForExistingAccount(occurred_at=now,
                                                    account_id=existing.account_id)
        )
        return FlowResult(reply, RegistrationEffect.EXISTING_ACCOUNT_ALERTED, existing,
                          existing.pull_events())
    if not contract_known:
        return FlowResult(reply, RegistrationEffect.CONTRACT_UNKNOWN)

    if existing is not None:
        return _restart_pending(existing, reply, same_password_as_pending, code_id=code_id,
                                code=code, pepper=pepper, now=now)
    account = Account(
        account_id=new_account_id, kind=AccountKind.PARENT, role=AccessRole.PARENT,
        status=AccountStatus.PENDING, created_at=now, phone=phone,
    )
    if not account.issue_code(purpose=CodePurpose.REGISTRATION, code_id=code_id, code=code,
                              pepper=pepper, now=now):
        return FlowResult(reply, RegistrationEffect.COOLDOWN_NOTHING_SENT)
    account.pending_registration_id = registration_id
    account.password_hash = password_hash
    account.claimed_contract = contract_number
    account.consent_at = now
    account.flagged_password_reason = flagged
    account.email = require_email(email) if email is not None else None
    account.locale = locale
    account.pending_link = link
    return FlowResult(reply, RegistrationEffect.PENDING_CREATED, account, account.pull_events())


def _restart_pending(account: Account, reply: CodeSentReply, same_password: bool, *,
                     code_id: str, code: str, pepper: bytes, now: datetime) -> FlowResult:
    """A repeated start for a pending phone: its details stay; another password drops the
    pending one (see :func:`start_registration`)."""
    dropped = not same_password and account.password_hash is not None
    if dropped:
        account.password_hash = None
        account.flagged_password_reason = None
    sent = account.issue_code(purpose=CodePurpose.REGISTRATION, code_id=code_id, code=code,
                              pepper=pepper, now=now)
    if not sent and not dropped:
        return FlowResult(reply, RegistrationEffect.COOLDOWN_NOTHING_SENT)
    effect = (RegistrationEffect.PENDING_PASSWORD_DROPPED if dropped
              else RegistrationEffect.PENDING_RESTARTED)
    return FlowResult(reply, effect, account, account.pull_events())


def resend_registration_code(
    *, account: Account | None, registration_id: str, code_id: str, code: str, pepper: bytes,
    now: datetime,
) -> FlowResult:
    """Send a new registration code if the registration exists and 60 s have passed; the reply
    is the same in every case (clients show the countdown themselves)."""
    reply = CodeSentReply(request_id=registration_id)
    if (account is None or account.status is not AccountStatus.PENDING
            or account.pending_registration_id != registration_id):
        return FlowResult(reply, RegistrationEffect.ACCOUNT_NOT_ELIGIBLE)
    if not account.issue_code(purpose=CodePurpose.REGISTRATION, code_id=code_id, code=code,
                              pepper=pepper, now=now):
        return FlowResult(reply, RegistrationEffect.COOLDOWN_NOTHING_SENT)
    return FlowResult(reply, RegistrationEffect.CODE_ISSUED, account, account.pull_events())


_CODE_FAILURES = frozenset({Reason.CODE_INVALID, Reason.CODE_EXPIRED, Reason.CODE_USED,
                            Reason.CODE_ATTEMPTS_EXHAUSTED, Reason.CODE_RATE_LIMITED})


def public_code_reply(outcome: Outcome) -> Outcome:
    """The reply for a code check in a flow that may name an unknown account: every code
    failure reads ``CODE_INVALID`` ("wrong or expired code, ask for a new one"), because
    "expired", "used" or "too many attempts" would prove the account exists."""
    if outcome.rejection in _CODE_FAILURES:
        return Outcome(Reason.CODE_INVALID, replayed=outcome.replayed)
    return outcome


def confirm_registration(
    *, account: Account | None, registration_id: str, code: str, pepper: bytes, now: datetime,
    idempotency_key: str | None = None,
) -> Outcome:
    """``CODE_INVALID`` for an unknown phone, exactly as for a wrong code. The outcome keeps
    the precise reason; reply with :func:`public_code_reply`."""
    if account is None:
        return Outcome(Reason.CODE_INVALID)
    return account.confirm_registration(registration_id=registration_id, code=code,
                                        pepper=pepper, now=now,
                                        idempotency_key=idempotency_key)


def registration_proof(*, child: Child | None, contract_number: str,
                       birth_date: date | None, activation_code: str | None,
                       pepper: bytes) -> PendingLink | None:
    """What a registration keeps of the proof it was given for the contract's child: the
    activation code only as its keyed MAC for that child, else the birth date. None when no
    proof was given or the contract names no child (then no account is created either)."""
    if child is None or (birth_date is None and not activation_code):
        return None
    if activation_code:
        return PendingLink(contract_number,
                           activation_mac=activation_code_mac(pepper, child.child_id,
                                                              activation_code))
    return PendingLink(contract_number, birth_date=birth_date)


def confirm_registration_and_link(
    *, account: Account | None, child: Child | None, code: str, pepper: bytes, now: datetime,
    idempotency_key: str | None = None, provisional: str | None = None,
) -> tuple[Outcome, LinkOutcome | None]:
    """Confirm the registration (:func:`confirm_registration`); once confirmed, the proof
    the start kept links the child (:meth:`Child.link_with_proof`: the parent becomes primary
    of an unclaimed child; a claimed child answers every proof as a wrong one and counts it,
    birth dates against their lifetime budget). The link's outcome (None without a proof) never
    fails the confirmation; a refused link is answered like a wrong proof whatever its cause.
    ``provisional``: the child's primary when it is a provisional contract login, which an
    activation code displaces (:meth:`Child.link_with_proof`)."""
    outcome = confirm_registration(
        account=account, registration_id=(account.pending_registration_id or "")
        if account else "", code=code, pepper=pepper, now=now,
        idempotency_key=idempotency_key)
    if account is None or not outcome.ok or outcome.replayed or account.pending_link is None:
        return outcome, None
    link, account.pending_link = account.pending_link, None
    if child is None or child.contract_number != link.contract_number:
        return outcome, LinkOutcome(Reason.CHILD_PROOF_INVALID)
    proof = (ActivationMacProof(link.activation_mac) if link.activation_mac
             else ContractProof(link.contract_number, link.birth_date or date.min))
    try:
        linked = child.link_with_proof(account_id=account.account_id, proof=proof,
                                       pepper=pepper, now=now, idempotency_key=idempotency_key,
                                       provisional=provisional)
    except AuthRejected:
        linked = LinkOutcome(Reason.CHILD_PROOF_INVALID)  # rate limited: answered alike
    return outcome, linked


def request_password_reset(
    *, account: Account | None, request_id: str, code_id: str, code: str, pepper: bytes,
    now: datetime, phone: str = "", served_countries: Sequence[str] = (),
) -> FlowResult:
    """Send a reset code to an active account's phone; same reply for any phone of a served
    country (``served_countries``: others are refused ``PHONE_COUNTRY_NOT_SERVED`` on the
    caller's input alone; empty: not checked)."""
    if served_countries:
        require_served_phone(phone, served_countries)
    reply = CodeSentReply(request_id=request_id)
    if account is None or account.status is not AccountStatus.ACTIVE or account.phone is None:
        return FlowResult(reply, RegistrationEffect.ACCOUNT_NOT_ELIGIBLE)
    if not account.issue_code(purpose=CodePurpose.PASSWORD_RESET, code_id=code_id, code=code,
                              pepper=pepper, now=now):
        return FlowResult(reply, RegistrationEffect.COOLDOWN_NOTHING_SENT)
    return FlowResult(reply, RegistrationEffect.CODE_ISSUED, account, account.pull_events())


def reset_password(
    *, account: Account | None, code: str, pepper: bytes, new_password: str,
    new_password_hash: str, now: datetime, birth_dates: Sequence[date] = (),
    idempotency_key: str | None = None,
) -> Outcome:
    """``CODE_INVALID`` for an unknown phone, exactly as for a wrong code (reply with
    :func:`public_code_reply`). Policy checks that need only the caller's input run first so
    they answer alike too."""
    reasons = check_password(new_password)
    if reasons:
        raise AuthRejected(reasons[0], reasons=tuple(reasons))
    if account is None:
        return Outcome(Reason.CODE_INVALID)
    return account.reset_password(code=code, pepper=pepper, new_password=new_password,
                                  new_password_hash=new_password_hash, now=now,
                                  birth_dates=birth_dates, idempotency_key=idempotency_key)


def login_gate_for_unknown(throttle: LoginThrottle, source: str, now: datetime, *,
                           by_contract: bool = False) -> LoginReply | None:
    """Throttle gate for an identifier with no account, kept by the handler per identifier
    hash with the same limits as an account, so that throttling cannot reveal existence. A
    contract number (``by_contract``) is limited for good after 10 wrong tries, as a contract
    whose initial password is the birth date is."""
    gate = throttle.gate(source, now, lifetime_limited=by_contract)
    if gate.allowed:
        return None
    return LoginReply(ok=False, reason=gate.reason, retry_after=gate.retry_after)


def login_unknown(throttle: LoginThrottle, source: str, now: datetime, *,
                  by_contract: bool = False) -> LoginReply:
    """A login for an identifier with no account: the same reply, and the same failure
    counting, as a wrong password for an existing account."""
    refused = login_gate_for_unknown(throttle, source, now, by_contract=by_contract)
    if refused is not None:
        return refused
    throttle.record_failure(source, now)
    return LoginReply(ok=False, reason=Reason.INVALID_CREDENTIALS)


def login_gate_for_identifier(account: Account | None, unknown_throttle: LoginThrottle | None,
                              now: datetime, *, source: str = "", by_contract: bool = False,
                              device: DeviceProof | None = None) -> LoginReply | None:
    """The refusal to give *before* the password is verified (the identifier is throttled
    for this ``source``), else None: the account's own gate, or for an identifier with no
    account the gate of its ``unknown_throttle``. Refused attempts then cost no password
    verification, known account or not."""
    if account is None:
        return login_gate_for_unknown(_required(unknown_throttle), source, now,
                                      by_contract=by_contract)
    return account.login_gate(now, source, device=device)


def log_in(
    *, account: Account | None, unknown_throttle: LoginThrottle | None, password_ok: bool,
    now: datetime, session_id: str, refresh_token_hash: str, device: str, ip_hash: str,
    totp_code: str | None = None, source: str = "", by_contract: bool = False,
    device_proof: DeviceProof | None = None,
) -> LoginOutcome:
    """A login naming ``account``, or an identifier with no account (then ``unknown_throttle``,
    kept per identifier hash, must be given), from ``source`` (keyed hash of device and
    address: :class:`~.common.LoginThrottle`).

    An unknown identifier is throttled and refused exactly as a wrong password for an existing
    account (:func:`login_unknown`: its failure is counted in ``unknown_throttle``); a known
    one goes through :meth:`Account.login`. The outcome has a session only on success; the
    caller persists whichever of the account and the throttle it passed.
    """
    if account is None:
        return LoginOutcome(login_unknown(_required(unknown_throttle), source, now,
                                          by_contract=by_contract))
    return account.login(password_ok=password_ok, now=now, session_id=session_id,
                         refresh_token_hash=refresh_token_hash, device=device, ip_hash=ip_hash,
                         totp_code=totp_code, source=source, device_proof=device_proof)


def _required(unknown_throttle: LoginThrottle | None) -> LoginThrottle:
    if unknown_throttle is None:
        raise ValueError("an identifier with no account needs its throttle")
    return unknown_throttle
