"""Domain events -> wire events (one small function each), access tokens, and the public text
of refusals. The only translation point between the auth domain and the contracts.

Message ids are uuid5 of what the event is about, so re-emitting a recorded result keeps its
id and downstream inboxes drop the copy. Codes reach the wire only in
:func:`code_request` (``notify.otp-requests.v1``); no other function here sees one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from contracts import auth as wire
from contracts.catalog import topic_for
from contracts.envelope import ContractModel
from contracts.notify import OneTimeCodeRequested
from contracts.types import GuardianRole
from services.auth.domain import (
    Account,
    AuthRejected,
    DomainEvent,
    Reason,
    SessionView,
    TrustedDevice,
)
from services.auth.domain import events as d
from services.auth.security import (
    TOTP_DIGITS,
    TOTP_STEP_SECONDS,
    AccessClaims,
    totp_provisioning_uri,
)
from services.runtime.tokens import ACCESS_TOKEN_TTL_S, issue_access_token
from services.runtime.usecase import explain_refusal

NAMESPACE = uuid.UUID("0b7e4f1c-52a9-4d3e-8f60-3c9a2d1e7b45")

Wired = tuple[str, str, ContractModel, str]


def message_id(kind: str, *parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join([kind, *map(str, parts)])))


def new_account_id(*stable: object) -> str:
    """``acc_`` + 32 hex: random, or derived from a business key so that a replay finds the
    account it created before."""
    raw = uuid.uuid5(NAMESPACE, ":".join(map(str, stable))) if stable else uuid.uuid4()
    return f"acc_{raw.hex}"


def new_session_id() -> str:
    return f"ses_{uuid.uuid4().hex}"


def _on(topic_of: type[ContractModel], key: str, message: ContractModel, mid: str) -> Wired:
    return topic_for(topic_of).name, key, message, mid


def _contacts(account: Account, at: datetime, *, closed: bool = False) -> Wired:
    message = wire.GuardianContacts(
        account_id=account.account_id, phone=None if closed else account.phone,
        email=None if closed else account.email, locale=account.locale,
        time_zone=account.time_zone, updated_at=at)
    return _on(wire.GuardianContacts, account.account_id, message,
               message_id("contacts", account.account_id, at.isoformat(), closed))


def _activated(e: d.AccountActivated, account: Account | None) -> list[Wired]:
    out = [_on(wire.ParentRegistered, e.account_id,
               wire.ParentRegistered(account_id=e.account_id, registered_at=e.occurred_at),
               message_id("registered", e.account_id))]
    if account is not None and account.phone:
        out.append(_contacts(account, e.occurred_at))
    return out


def _login(e: d.NewLoginDetected, _: Account | None) -> list[Wired]:
    """The new-login alert, for a device not trusted before only (``domain.devices``)."""
    if not e.new_device:
        return []
    return [_on(wire.LoginSucceeded, e.account_id,
                wire.LoginSucceeded(account_id=e.account_id, session_id=e.session_id,
                                    device=e.device, at=e.occurred_at),
                message_id("login", e.session_id))]


def _locked(e: d.AccountLocked, _: Account | None) -> list[Wired]:
    return [_on(wire.AccountLocked, e.account_id,
                wire.AccountLocked(account_id=e.account_id, until=e.until, at=e.occurred_at),
                message_id("locked", e.account_id, e.occurred_at.isoformat()))]


def _unlocked(e: d.AccountUnlocked, _: Account | None) -> list[Wired]:
    return [_on(wire.AccountUnlocked, e.account_id,
                wire.AccountUnlocked(account_id=e.account_id, at=e.occurred_at),
                message_id("unlocked", e.account_id, e.occurred_at.isoformat()))]


def _password(e: d.PasswordChanged, _: Account | None) -> list[Wired]:
    return [_on(wire.PasswordChanged, e.account_id,
                wire.PasswordChanged(account_id=e.account_id, reset=e.via == "reset",
                                     at=e.occurred_at),
                message_id("password", e.account_id, e.occurred_at.isoformat(), e.via))]


def _second_factor_disabled(e: d.SecondFactorDisabled, _: Account | None) -> list[Wired]:
    return [_on(wire.SecondFactorDisabled, e.account_id,
                wire.SecondFactorDisabled(account_id=e.account_id, by_support=e.via == "support",
                                          at=e.occurred_at),
                message_id("second-factor-off", e.account_id, e.occurred_at.isoformat(), e.via))]


def _registration_attempted(e: d.RegistrationAttemptedForExistingAccount,
                            _: Account | None) -> list[Wired]:
    return [_on(wire.RegistrationAttemptedForExistingAccount, e.account_id,
                wire.RegistrationAttemptedForExistingAccount(account_id=e.account_id,
                                                             at=e.occurred_at),
                message_id("registration-attempt", e.account_id, e.occurred_at.isoformat()))]


def _refresh_reused(e: d.RefreshTokenReuseDetected, _: Account | None) -> list[Wired]:
    return [_on(wire.RefreshTokenReused, e.account_id,
                wire.RefreshTokenReused(account_id=e.account_id, session_id=e.session_id,
                                        at=e.occurred_at),
                message_id("refresh-reused", e.session_id))]


def _session_revoked(e: d.SessionRevoked, _: Account | None) -> list[Wired]:
    return [_on(wire.SessionEnded, e.account_id,
                wire.SessionEnded(account_id=e.account_id, session_id=e.session_id,
                                  reason=e.reason, at=e.occurred_at),
                message_id("session-ended", e.session_id))]


def _sessions_invalidated(e: d.SessionsInvalidated, _: Account | None) -> list[Wired]:
    return [_on(wire.SessionEnded, e.account_id,
                wire.SessionEnded(account_id=e.account_id, kept_session_id=e.kept_session_id,
                                  reason=e.reason, at=e.occurred_at),
                message_id("sessions-ended", e.account_id, e.epoch))]


def _link_refused(e: d.ChildLinkRefused, _: Account | None) -> list[Wired]:
    """Only the refusals the domain chose to tell the primary guardian about reach the wire
    (who tried, and with what, never do)."""
    if e.alert_account_id is None:
        return []
    return [_on(wire.ChildLinkRefused, e.alert_account_id,
                wire.ChildLinkRefused(account_id=e.alert_account_id, contract=e.contract_number,
                                      failures_in_window=e.failures_in_window, at=e.occurred_at),
                message_id("link-refused", e.child_id, e.occurred_at.isoformat()))]


def _linked(account_id: str, contract: str, role: str, at: datetime) -> Wired:
    return _on(wire.GuardianLinked, account_id,
               wire.GuardianLinked(account_id=account_id, contract=contract,
                                   role=GuardianRole(role), at=at),
               message_id("linked", account_id, contract, role, at.isoformat()))


def _removed(account_id: str, contract: str, at: datetime) -> Wired:
    return _on(wire.GuardianRemoved, account_id,
               wire.GuardianRemoved(account_id=account_id, contract=contract, at=at),
               message_id("removed", account_id, contract, at.isoformat()))


def _guardian_linked(e: d.GuardianLinked, _: Account | None) -> list[Wired]:
    return [_linked(e.account_id, e.contract_number, e.role, e.occurred_at)]


def _role_changed(e: d.GuardianRoleChanged, _: Account | None) -> list[Wired]:
    # Consumers project the latest GuardianLinked per (account, contract) as the role.
    return [_linked(e.account_id, e.contract_number, e.new_role, e.occurred_at)]


def _guardian_removed(e: d.GuardianRemoved, _: Account | None) -> list[Wired]:
    return [_removed(e.account_id, e.contract_number, e.occurred_at)]


def _invited(e: d.GuardianInvited, _: Account | None) -> list[Wired]:
    """Only an invitation addressed to an account has someone to tell (the invitee)."""
    if e.account_id is None:
        return []
    return [_on(wire.GuardianInvited, e.account_id,
                wire.GuardianInvited(account_id=e.account_id, contract=e.contract_number,
                                     role=GuardianRole(e.role), invitation_id=e.invitation_id,
                                     invited_by=e.invited_by, expires_at=e.expires_at,
                                     at=e.occurred_at),
                message_id("invited", e.invitation_id, e.account_id))]


def _reissued(e: d.ContractReissued, _: Account | None) -> list[Wired]:
    """Guardians move to the new contract: removed from the old, linked to the new."""
    out: list[Wired] = []
    for account_id, role in e.guardians:
        out.append(_removed(account_id, e.old_contract_number, e.occurred_at))
        out.append(_linked(account_id, e.new_contract_number, role, e.occurred_at))
    return out


def _closed(e: d.AccountClosed, account: Account | None) -> list[Wired]:
    out = [_on(wire.AccountClosed, e.account_id,
               wire.AccountClosed(account_id=e.account_id, at=e.occurred_at),
               message_id("closed", e.account_id))]
    if account is not None and account.kind.value == "parent":
        out.append(_contacts(account, e.occurred_at, closed=True))  # tombstone
    return out


def _contacts_changed(e: d.PhoneChanged | d.EmailChanged | d.ProfileChanged,
                      account: Account | None) -> list[Wired]:
    """notify writes to the new phone or e-mail, in the new language and time zone, from now
    on (the contacts it keeps per guardian)."""
    return [] if account is None else [_contacts(account, e.occurred_at)]


OUTBOUND: dict[type[Any], Callable[[Any, Account | None], list[Wired]]] = {
    d.PhoneChanged: _contacts_changed,
    d.EmailChanged: _contacts_changed,
    d.ProfileChanged: _contacts_changed,
    d.AccountActivated: _activated,
    d.NewLoginDetected: _login,
    d.AccountLocked: _locked,
    d.AccountUnlocked: _unlocked,
    d.PasswordChanged: _password,
    d.SecondFactorDisabled: _second_factor_disabled,
    d.RegistrationAttemptedForExistingAccount: _registration_attempted,
    d.RefreshTokenReuseDetected: _refresh_reused,
    d.SessionRevoked: _session_revoked,
    d.SessionsInvalidated: _sessions_invalidated,
    d.ChildLinkRefused: _link_refused,
    d.GuardianLinked: _guardian_linked,
    d.GuardianRoleChanged: _role_changed,
    d.GuardianRemoved: _guardian_removed,
    d.GuardianInvited: _invited,
    d.ContractReissued: _reissued,
    d.AccountClosed: _closed,
}


def to_wire(events: Iterable[DomainEvent], account: Account | None = None) -> list[Wired]:
    """Wire messages for domain events; internal-only events (sessions started or refreshed,
    throttles, codes issued — codes go through :func:`code_request`) map to nothing."""
    out: list[Wired] = []
    for event in events:
        convert = OUTBOUND.get(type(event))
        if convert is not None:
            out.extend(convert(event, account))
    return out


def code_request(event: DomainEvent, *, code: str, request_id: str,
                 locale: str) -> Wired | None:
    """The SMS (or, for an e-mail being confirmed, the e-mail) request for a code just issued
    (only for ``OneTimeCodeIssued`` with a phone or an e-mail)."""
    if not isinstance(event, d.OneTimeCodeIssued) or (event.phone or event.email) is None:
        return None
    message = OneTimeCodeRequested(request_id=request_id, phone=event.phone, email=event.email,
                                   code=code, purpose=event.purpose, locale=locale,
                                   expires_at=event.expires_at)
    return _on(OneTimeCodeRequested, event.phone or event.email or "", message,
               message_id("otp", event.code_id))


def access_token(private_key_pem: str, claims: AccessClaims, now: datetime) -> str:
    """Sign the domain's claims with the runtime's one token implementation."""
    return issue_access_token(
        private_key_pem, account_id=claims.sub, session_id=claims.sid,
        role=wire.Role(claims.role),
        children=[wire.ChildGrant(contract=c.contract, role=GuardianRole(c.role))
                  for c in claims.children],
        school_id=claims.school_id, operator_id=claims.operator_id, now=now.timestamp())


def session_tokens(request_id: str, *, access: str, refresh: str | None,
                   must_change_password: bool = False,
                   device_token: str | None = None) -> wire.SessionTokens:
    return wire.SessionTokens(request_id=request_id, access_token=access,
                              refresh_token=refresh, expires_in_s=ACCESS_TOKEN_TTL_S,
                              must_change_password=must_change_password,
                              device_token=device_token)


def new_device_id() -> str:
    return "dev-" + uuid.uuid4().hex[:16]


def trusted_devices(devices: list[TrustedDevice]) -> wire.TrustedDevicesReply:
    return wire.TrustedDevicesReply(devices=[
        wire.TrustedDeviceInfo(device_id=v.device_id, name=v.name,
                               first_seen_at=v.first_seen_at, last_seen_at=v.last_seen_at)
        for v in devices])


def sessions(views: list[SessionView], *, current: str) -> wire.SessionsReply:
    """The owner's active sessions; ``current`` is the session asking."""
    return wire.SessionsReply(sessions=[
        wire.SessionInfo(session_id=v.session_id, device=v.device, device_id=v.device_id,
                         device_name=v.device_name, started_at=v.created_at,
                         last_seen_at=v.last_used_at, current=v.session_id == current)
        for v in views])


def totp_enrolment(request_id: str, account: Account) -> wire.TotpEnrolmentStarted:
    """The candidate secret of ``account`` for its owner's authenticator app, labelled with
    the identifier the owner logs in with."""
    if account.totp_secret is None:
        raise ValueError("no TOTP enrolment was started")
    label = (account.phone or account.email or account.username or account.login_contract
             or account.account_id)
    return wire.TotpEnrolmentStarted(
        request_id=request_id, secret=account.totp_secret,
        otpauth_uri=totp_provisioning_uri(account.totp_secret, label), digits=TOTP_DIGITS,
        period_s=TOTP_STEP_SECONDS)


_TEXT: dict[Reason, str] = {
    Reason.INVALID_CREDENTIALS: "Wrong login or password.",
    Reason.LOGIN_DELAYED: "Too many failed attempts; wait before trying again.",
    Reason.LOGIN_RATE_LIMITED: "Too many failed attempts in the last hour; wait, or reset "
                               "the password by SMS code.",
    Reason.CODE_INVALID: "Wrong or expired code; ask for a new one.",
    Reason.SECOND_FACTOR_REQUIRED: "Enter the code from your authenticator app.",
    Reason.SECOND_FACTOR_INVALID: "Wrong or already used authenticator code; wait for the "
                                  "next one.",
    Reason.SECOND_FACTOR_NOT_ENABLED: "The account has no authenticator app switched on.",
    Reason.RESET_REASON_REQUIRED: "Give the reason for the reset and how the identity was "
                                  "checked (at least 10 characters).",
    Reason.ACCOUNT_NOT_FOUND: "No account has this login.",
    Reason.REFRESH_TOKEN_REUSED: "This refresh token was already used; the session has been "
                                 "ended for safety. Log in again.",
}


def error_text(reason: Reason, retry_after: timedelta | None = None) -> str:
    """Public text of a refusal: built from the reason and the wait only, never from account
    data, so equal refusals read the same for known and unknown identifiers."""
    text = _TEXT.get(reason) or reason.value.replace("_", " ").capitalize() + "."
    if retry_after is not None:
        text += f" Retry after {max(1, int(retry_after.total_seconds() + 0.999))} s."
    return text


def explain(refusal: Exception) -> tuple[str, str]:
    """The code and public text of a refusal (the use cases' ``explain``): auth's own read as
    :func:`error_text`; the runtime's (a token refused) as the runtime words them."""
    if isinstance(refusal, AuthRejected):
        return refusal.reason.value, error_text(refusal.reason, refusal.retry_after)
    return explain_refusal(refusal)
