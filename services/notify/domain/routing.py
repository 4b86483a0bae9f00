"""Routing: from one domain event to the messages each guardian should get.

Rules, in order, per guardian of the child (or the one account, for account kinds):
1. Role: a viewer gets no payment receipts.
2. Mobile channel: push when the parent wants it and has the app (a push token); otherwise SMS
   when the parent wants SMS and has a phone. SMS is never sent beside a push: it costs money,
   so it is only the fallback (see :func:`fall_back_to_sms`).
3. E-mail, independently, when wanted and an address is known (a top-up's e-mail is its receipt).
   In-app (the cabinet and the app): :func:`route_in_app`, on by default, never held or
   deferred; :func:`messages_for` gives both.
4. Scheduling: security kinds go at once. Kinds the parent put into the daily digest are held
   for it. Push and SMS inside quiet hours are deferred to the end of quiet hours, never dropped;
   e-mail is silent, so quiet hours do not delay it.

Routing is a pure function of (event, guardians, now): redelivery produces the same dedupe keys,
and the store's unique index plus :func:`~.message.admit` turn the copy into a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .clock import require_aware
from .errors import NotifyError, NotifyRejection, SkipReason
from .facts import NotificationEvent, OneTimeCodeFacts, OneTimeCodeRequest
from .guardian import DEFAULT_TIME_ZONE, Guardian, validate_email, validate_phone
from .kinds import (
    ACCOUNT_KINDS,
    EMAIL_COMPANION,
    ROLE_EXCLUDED_KINDS,
    SECURITY_KINDS,
    Channel,
    Locale,
    NotificationKind,
    channels_for,
)
from .message import DeliveryStatus, Message, MessageQueued, dedupe_key
from .templates import RenderContext, Rendered, render

_UTC = ZoneInfo("UTC")
_DEFAULT_TZ = ZoneInfo(DEFAULT_TIME_ZONE)


@dataclass(frozen=True, slots=True)
class Skip:
    """A guardian and channel that got no message, and why (a normal outcome, for metrics)."""

    guardian_id: str
    kind: NotificationKind
    channel: Channel
    reason: SkipReason


@dataclass(frozen=True, slots=True)
class RoutingPlan:
    messages: tuple[Message, ...]
    skipped: tuple[Skip, ...]

    def queued_events(self) -> list[MessageQueued]:
        return [m.queued_event() for m in self.messages]


def recipients(event: NotificationEvent, guardians: Iterable[Guardian]) -> list[Guardian]:
    """The guardians an event is for, in a stable order (by account id)."""
    if event.kind in ACCOUNT_KINDS:
        chosen = [g for g in guardians if g.account_id == event.account_id]
    else:
        contract = event.contract or ""
        chosen = [g for g in guardians if contract in g.children]
    return sorted({g.account_id: g for g in chosen}.values(), key=lambda g: g.account_id)


def route(event: NotificationEvent, guardians: Iterable[Guardian], now: datetime) -> RoutingPlan:
    """Messages for ``event``: at most one per guardian and channel (see the module rules)."""
    now = require_aware(now)
    messages: list[Message] = []
    skipped: list[Skip] = []
    for guardian in recipients(event, guardians):
        mobile = _mobile(event, guardian, now)
        if isinstance(mobile, Message):
            messages.append(mobile)
        elif mobile is not None:
            skipped.append(mobile)
        email = _email(event, guardian, now)
        if isinstance(email, Message):
            messages.append(email)
        elif email is not None:
            skipped.append(email)
    return RoutingPlan(tuple(messages), tuple(skipped))


def route_in_app(event: NotificationEvent, guardians: Iterable[Guardian],
                 now: datetime) -> tuple[Message, ...]:
    """The in-app copies of ``event``: one per guardian who has the kind on in-app (on by
    default), besides push/SMS and e-mail, never instead of them; due at once."""
    now = require_aware(now)
    found = (_in_app(event, guardian, now) for guardian in recipients(event, guardians))
    return tuple(m for m in found if m is not None)


def messages_for(event: NotificationEvent, guardians: Iterable[Guardian],
                 now: datetime) -> list[Message]:
    """Every message of ``event``: the routed ones (:func:`route`) and the in-app copies."""
    guardians = list(guardians)
    return [*route(event, guardians, now).messages, *route_in_app(event, guardians, now)]


def _role_allows(event: NotificationEvent, kind: NotificationKind, guardian: Guardian) -> bool:
    if event.contract is None or event.kind in ACCOUNT_KINDS:
        return True
    role = guardian.role_for(event.contract)
    return role is None or kind not in ROLE_EXCLUDED_KINDS.get(role, frozenset())


def _mobile(event: NotificationEvent, guardian: Guardian, now: datetime) -> Message | Skip | None:
    kind = event.kind
    allowed = channels_for(kind)
    if not allowed & {Channel.PUSH, Channel.SMS}:
        return None
    if not _role_allows(event, kind, guardian):
        return Skip(guardian.account_id, kind, Channel.PUSH, SkipReason.ROLE_EXCLUDED)
    wants_push = Channel.PUSH in allowed and guardian.wants(kind, Channel.PUSH)
    wants_sms = Channel.SMS in allowed and guardian.wants(kind, Channel.SMS)
    if wants_push and guardian.has_push_token:
        return _build(event, kind, guardian, Channel.PUSH, guardian.account_id, now)
    if wants_sms and guardian.phone:
        return _build(event, kind, guardian, Channel.SMS, guardian.phone, now)
    if wants_push:
        return Skip(guardian.account_id, kind, Channel.PUSH, SkipReason.NO_PUSH_TOKEN)
    if wants_sms:
        return Skip(guardian.account_id, kind, Channel.SMS, SkipReason.NO_PHONE)
    return Skip(guardian.account_id, kind, Channel.PUSH, SkipReason.MUTED)


def _email(event: NotificationEvent, guardian: Guardian, now: datetime) -> Message | Skip | None:
    kind = EMAIL_COMPANION.get(event.kind, event.kind)
    if Channel.EMAIL not in channels_for(kind) or not guardian.wants(kind, Channel.EMAIL):
        return None
    if not _role_allows(event, kind, guardian):
        return Skip(guardian.account_id, kind, Channel.EMAIL, SkipReason.ROLE_EXCLUDED)
    if not guardian.email:
        return Skip(guardian.account_id, kind, Channel.EMAIL, SkipReason.NO_EMAIL)
    return _build(event, kind, guardian, Channel.EMAIL, guardian.email, now)


def _in_app(event: NotificationEvent, guardian: Guardian, now: datetime) -> Message | None:
    kind = event.kind
    if Channel.IN_APP not in channels_for(kind) or not guardian.wants(kind, Channel.IN_APP):
        return None
    if not _role_allows(event, kind, guardian):
        return None
    return _build(event, kind, guardian, Channel.IN_APP, guardian.account_id, now)


def _build(
    event: NotificationEvent,
    kind: NotificationKind,
    guardian: Guardian,
    channel: Channel,
    address: str,
    now: datetime,
) -> Message:
    ctx = RenderContext(guardian.locale, guardian.tz, guardian.child_label(event.contract),
                        event.contract)
    text = render(kind, event.facts, ctx)
    message = _message(
        key=dedupe_key(event.event_id, guardian.account_id, channel),
        event=event, kind=kind, channel=channel, guardian_id=guardian.account_id,
        address=address, locale=guardian.locale, text=text, now=now,
    )
    _schedule(message, guardian, now)
    return message


def _message(
    *,
    key: str,
    event: NotificationEvent | None,
    kind: NotificationKind,
    channel: Channel,
    guardian_id: str | None,
    address: str,
    locale: Locale,
    text: Rendered,
    now: datetime,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> Message:
    return Message(
        dedupe_key=key,
        event_id=event.event_id if event is not None else (event_id or key),
        kind=kind,
        channel=channel,
        guardian_id=guardian_id,
        contract=event.contract if event is not None else None,
        address=address,
        locale=locale,
        subject=text.subject,
        body=text.body,
        short=text.short,
        secret=text.secret,
        occurred_at=event.occurred_at if event is not None else (occurred_at or now),
        created_at=now,
    )


def _schedule(message: Message, guardian: Guardian, now: datetime) -> None:
    """Hold for the digest, defer past quiet hours, or leave due now (security always now)."""
    kind = message.kind
    if kind in SECURITY_KINDS or message.channel is Channel.IN_APP:
        return  # in-app makes no sound and is shown at once (in_app.py)
    if guardian.digest_enabled and kind in guardian.digest_kinds:
        message.status = DeliveryStatus.HELD
        # The day is taken from ``now``, not from the event time: a late event then lands in a
        # digest that has not been built yet instead of one already sent.
        message.digest_day = guardian.digest_day_for(now)
        return
    if message.channel is not Channel.EMAIL and guardian.in_quiet_hours(now):
        message.not_before = guardian.quiet_hours_end(now)


def route_one_time_code(request: OneTimeCodeRequest, now: datetime) -> Message:
    """The SMS carrying a one-time code, to the phone given in the request, or the e-mail to
    the address given instead (no guardian lookup).

    It is due at once (codes ignore quiet hours and preferences) and its body is secret.
    """
    now = require_aware(now)
    if request.email is not None:
        channel, address, to = Channel.EMAIL, validate_email(request.email), "email"
    else:
        channel, address, to = Channel.SMS, validate_phone(request.phone or ""), "phone"
    locale = Locale.EN if request.locale == Locale.EN.value else Locale.RU
    facts = OneTimeCodeFacts(request.code, request.purpose, request.ttl_minutes)
    ctx = RenderContext(locale, _UTC)  # the code text shows no time
    text = render(NotificationKind.ONE_TIME_CODE, facts, ctx)
    return _message(
        key=f"{request.request_id}:{to}:{channel.value}",
        event=None, kind=NotificationKind.ONE_TIME_CODE, channel=channel,
        guardian_id=None, address=address, locale=locale, text=text, now=now,
        event_id=request.request_id, occurred_at=require_aware(request.requested_at),
    )


def fall_back_to_sms(push: Message, guardian: Guardian, now: datetime) -> Message | Skip:
    """The SMS that replaces a push that could not be delivered.

    Only a dead push (retries exhausted or a permanent failure such as an unregistered token)
    falls back, so a parent never gets both. The SMS has the usual dedupe key for the event,
    guardian and SMS channel: calling this twice, or after routing already chose SMS, yields the
    same key and so at most one SMS. The parent must allow SMS for the kind (it costs money),
    except for security kinds; otherwise a :class:`Skip` is returned.
    """
    now = require_aware(now)
    if push.channel is not Channel.PUSH:
        raise NotifyError(NotifyRejection.NOT_A_PUSH_MESSAGE, push.channel.value)
    if push.status is not DeliveryStatus.DEAD:
        raise NotifyError(NotifyRejection.PUSH_NOT_FAILED, push.status.value)
    if push.guardian_id != guardian.account_id:
        raise NotifyError(NotifyRejection.WRONG_GUARDIAN)
    kind = push.kind
    if Channel.SMS not in channels_for(kind) or not guardian.wants(kind, Channel.SMS):
        return Skip(guardian.account_id, kind, Channel.SMS, SkipReason.MUTED)
    if not guardian.phone:
        return Skip(guardian.account_id, kind, Channel.SMS, SkipReason.NO_PHONE)
    sms = Message(
        dedupe_key=dedupe_key(push.event_id, guardian.account_id, Channel.SMS),
        event_id=push.event_id,
        kind=kind,
        channel=Channel.SMS,
        guardian_id=guardian.account_id,
        contract=push.contract,
        address=guardian.phone,
        locale=push.locale,
        subject=push.subject,
        body=push.body,
        short=push.short,
        secret=push.secret,
        occurred_at=push.occurred_at,
        created_at=now,
        fallback_of=push.dedupe_key,
    )
    if kind not in SECURITY_KINDS and guardian.in_quiet_hours(now):
        sms.not_before = guardian.quiet_hours_end(now)
    return sms


def route_receipt(
    event: NotificationEvent, email: str, guardians: Iterable[Guardian], now: datetime
) -> Message:
    """The e-mail receipt the payer asked for at ``email`` (a top-up's explicit receipt).

    When the address is that of a guardian of the child, the receipt is that guardian's
    e-mail message for the event (same dedupe key as the receipt routing gives a top-up), so a
    guardian never gets two receipts for one payment; otherwise it goes to the bare address,
    keyed by event and address. A receipt asked for explicitly is sent whatever the
    preferences say, and e-mail ignores quiet hours.
    """
    now = require_aware(now)
    validate_email(email)
    owner = next((g for g in recipients(event, guardians) if g.email == email), None)
    kind = EMAIL_COMPANION.get(event.kind, event.kind)
    if owner is not None:
        ctx = RenderContext(owner.locale, owner.tz, owner.child_label(event.contract),
                            event.contract)
        key = dedupe_key(event.event_id, owner.account_id, Channel.EMAIL)
    else:
        ctx = RenderContext(Locale.RU, _DEFAULT_TZ, None, event.contract)
        key = f"{event.event_id}:{hashlib.sha256(email.encode()).hexdigest()[:16]}:email"
    return _message(
        key=key, event=event, kind=kind, channel=Channel.EMAIL,
        guardian_id=owner.account_id if owner is not None else None, address=email,
        locale=ctx.locale, text=render(kind, event.facts, ctx), now=now,
    )
