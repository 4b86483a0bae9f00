"""The guardian projection: who a parent is to notify, built from auth events.

It is a projection, so every update is "set to this value" and re-applying one is a no-op that
does not bump the version; ``version`` serves optimistic concurrency in the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .clock import format_hhmm, local_datetime, parse_hhmm, require_aware, zone
from .errors import NotifyError, NotifyRejection
from .kinds import (
    SECURITY_KINDS,
    SMS_BY_DEFAULT,
    Channel,
    GuardianRole,
    Locale,
    NotificationKind,
)

_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_TIME_ZONE = "Europe/Moscow"


def validate_phone(phone: str) -> str:
    if not _E164.match(phone):
        raise NotifyError(NotifyRejection.INVALID_PHONE)
    return phone


def validate_email(email: str) -> str:
    if len(email) > 254 or not _EMAIL.match(email):
        raise NotifyError(NotifyRejection.INVALID_EMAIL)
    return email


def default_enabled(kind: NotificationKind, channel: Channel) -> bool:
    """Defaults: push and in-app for everything (they are free), SMS only for codes,
    security and invitations (it costs money), e-mail only for receipts."""
    if channel in (Channel.PUSH, Channel.IN_APP):
        return True
    if channel is Channel.SMS:
        return kind in SECURITY_KINDS or kind in SMS_BY_DEFAULT
    return kind is NotificationKind.RECEIPT


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A local wall-clock window, e.g. 22:00-07:00; it may span midnight; start == end is none."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, at: datetime, tz: ZoneInfo) -> datetime:
        """The UTC instant at which the quiet window containing ``at`` ends."""
        local = at.astimezone(tz)
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)
        return local_datetime(day, self.end, tz)

    def to_doc(self) -> dict[str, Any]:
        return {"start": format_hhmm(self.start), "end": format_hhmm(self.end)}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> QuietHours:
        return cls(parse_hhmm(doc["start"]), parse_hhmm(doc["end"]))

    @classmethod
    def parse(cls, start: str, end: str) -> QuietHours:
        return cls(parse_hhmm(start), parse_hhmm(end))


DEFAULT_QUIET_HOURS = QuietHours(time(22, 0), time(7, 0))
DEFAULT_DIGEST_TIME = time(20, 0)


@dataclass(frozen=True, slots=True)
class ChildLink:
    contract: str
    role: GuardianRole
    display_name: str | None = None  # first name as the parent typed it; never on child topics


@dataclass(slots=True)
class Guardian:
    """A guardian account as notify sees it.

    ``overrides`` stores only what the parent changed, so defaults can evolve without a
    migration: ``overrides[kind][channel] = enabled``.
    ``digest_kinds`` are delivered only inside the daily digest when ``digest_enabled``.
    ``sms_informer`` / ``push_service`` are the account's service switches (Izhcombank's
    "services on/off"): off, no SMS / push goes for any kind but the security ones.
    """

    account_id: str
    locale: Locale = Locale.RU
    time_zone: str = DEFAULT_TIME_ZONE
    phone: str | None = None
    email: str | None = None
    has_push_token: bool = False
    children: dict[str, ChildLink] = field(default_factory=dict)
    overrides: dict[NotificationKind, dict[Channel, bool]] = field(default_factory=dict)
    quiet_hours: QuietHours | None = DEFAULT_QUIET_HOURS
    digest_enabled: bool = False
    digest_time: time = DEFAULT_DIGEST_TIME
    digest_kinds: frozenset[NotificationKind] = frozenset()
    sms_informer: bool = True
    push_service: bool = True
    version: int = 0

    def __post_init__(self) -> None:
        zone(self.time_zone)
        if self.phone is not None:
            validate_phone(self.phone)
        if self.email is not None:
            validate_email(self.email)

    def __repr__(self) -> str:
        # Contacts are personal data: the repr (and so any log line) shows only their presence.
        return (
            f"Guardian(account_id={self.account_id!r}, locale={self.locale.value!r}, "
            f"phone={'set' if self.phone else None}, email={'set' if self.email else None}, "
            f"has_push_token={self.has_push_token}, children={sorted(self.children)!r}, "
            f"version={self.version})"
        )

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)

    def _changed(self) -> bool:
        self.version += 1
        return True

    # -- updates from auth events; each returns whether anything changed ---------------------

    def set_contacts(
        self, *, phone: str | None, email: str | None, has_push_token: bool
    ) -> bool:
        if phone is not None:
            validate_phone(phone)
        if email is not None:
            validate_email(email)
        if (self.phone, self.email, self.has_push_token) == (phone, email, has_push_token):
            return False
        self.phone, self.email, self.has_push_token = phone, email, has_push_token
        return self._changed()

    def set_has_push_token(self, present: bool) -> bool:
        """Whether the guardian has a device to push to (routing's push-or-SMS choice)."""
        if self.has_push_token == present:
            return False
        self.has_push_token = present
        return self._changed()

    def set_locale(self, locale: Locale, time_zone: str) -> bool:
        zone(time_zone)
        if (self.locale, self.time_zone) == (locale, time_zone):
            return False
        self.locale, self.time_zone = locale, time_zone
        return self._changed()

    def link_child(
        self, contract: str, role: GuardianRole, display_name: str | None = None
    ) -> bool:
        link = ChildLink(contract, role, display_name)
        if self.children.get(contract) == link:
            return False
        self.children[contract] = link
        return self._changed()

    def unlink_child(self, contract: str) -> bool:
        if self.children.pop(contract, None) is None:
            return False
        return self._changed()

    def relink_child(self, old_contract: str, new_contract: str) -> bool:
        """Card reissue: the child keeps role and name under the new contract number."""
        link = self.children.get(old_contract)
        if link is None:
            return False
        del self.children[old_contract]
        self.children[new_contract] = replace(link, contract=new_contract)
        return self._changed()

    def set_preference(self, kind: NotificationKind, channel: Channel, enabled: bool) -> bool:
        if self.overrides.get(kind, {}).get(channel) == enabled:
            return False
        self.overrides.setdefault(kind, {})[channel] = enabled
        return self._changed()

    def set_quiet_hours(self, quiet_hours: QuietHours | None) -> bool:
        if self.quiet_hours == quiet_hours:
            return False
        self.quiet_hours = quiet_hours
        return self._changed()

    def set_digest(
        self, *, enabled: bool, at: time = DEFAULT_DIGEST_TIME,
        kinds: frozenset[NotificationKind] = frozenset(),
    ) -> bool:
        kinds = kinds - SECURITY_KINDS - {NotificationKind.DAILY_DIGEST}
        if (self.digest_enabled, self.digest_time, self.digest_kinds) == (enabled, at, kinds):
            return False
        self.digest_enabled, self.digest_time, self.digest_kinds = enabled, at, kinds
        return self._changed()

    def set_services(self, *, sms_informer: bool | None = None,
                     push: bool | None = None) -> bool:
        """Switch the SMS informer and push services (None: unchanged)."""
        sms = self.sms_informer if sms_informer is None else sms_informer
        on_push = self.push_service if push is None else push
        if (sms, on_push) == (self.sms_informer, self.push_service):
            return False
        self.sms_informer, self.push_service = sms, on_push
        return self._changed()

    def service_on(self, channel: Channel) -> bool:
        """Whether the account's switch lets ``channel`` carry news (e-mail has none)."""
        if channel is Channel.SMS:
            return self.sms_informer
        if channel is Channel.PUSH:
            return self.push_service
        return True

    # -- questions routing asks ---------------------------------------------------------------

    def wants(self, kind: NotificationKind, channel: Channel) -> bool:
        """Whether the parent enabled ``kind`` on ``channel``; security kinds cannot be muted on
        push and SMS (an attacker who got in must not be able to silence the alert)."""
        if kind in SECURITY_KINDS and channel is not Channel.EMAIL:
            return True
        if not self.service_on(channel):
            return False
        return self.overrides.get(kind, {}).get(channel, default_enabled(kind, channel))

    def role_for(self, contract: str) -> GuardianRole | None:
        link = self.children.get(contract)
        return None if link is None else link.role

    def child_label(self, contract: str | None) -> str | None:
        if contract is None:
            return None
        link = self.children.get(contract)
        return link.display_name if link is not None and link.display_name else None

    def in_quiet_hours(self, at: datetime) -> bool:
        if self.quiet_hours is None:
            return False
        return self.quiet_hours.contains(require_aware(at).astimezone(self.tz).time())

    def quiet_hours_end(self, at: datetime) -> datetime:
        if self.quiet_hours is None:
            return require_aware(at)
        return self.quiet_hours.end_after(require_aware(at), self.tz)

    def digest_day_for(self, at: datetime) -> date:
        """The local day whose digest will carry something held at ``at``: today's, or
        tomorrow's once today's digest time has passed."""
        local = require_aware(at).astimezone(self.tz)
        if local.time() >= self.digest_time:
            return local.date() + timedelta(days=1)
        return local.date()

    def digest_due_at(self, day: date) -> datetime:
        return local_datetime(day, self.digest_time, self.tz)

    # -- persistence --------------------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "locale": self.locale.value,
            "time_zone": self.time_zone,
            "phone": self.phone,
            "email": self.email,
            "has_push_token": self.has_push_token,
            "children": [
                {"contract": c.contract, "role": c.role.value, "display_name": c.display_name}
                for c in sorted(self.children.values(), key=lambda c: c.contract)
            ],
            "overrides": {
                kind.value: {ch.value: on for ch, on in sorted(chs.items())}
                for kind, chs in sorted(self.overrides.items())
            },
            "quiet_hours": None if self.quiet_hours is None else self.quiet_hours.to_doc(),
            "digest": {
                "enabled": self.digest_enabled,
                "time": format_hhmm(self.digest_time),
                "kinds": sorted(k.value for k in self.digest_kinds),
            },
            "services": {"sms_informer": self.sms_informer, "push": self.push_service},
            "version": self.version,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Guardian:
        digest = doc["digest"]
        return cls(
            account_id=doc["account_id"],
            locale=Locale(doc["locale"]),
            time_zone=doc["time_zone"],
            phone=doc["phone"],
            email=doc["email"],
            has_push_token=doc["has_push_token"],
            children={
                c["contract"]: ChildLink(c["contract"], GuardianRole(c["role"]), c["display_name"])
                for c in doc["children"]
            },
            overrides={
                NotificationKind(kind): {Channel(ch): bool(on) for ch, on in chs.items()}
                for kind, chs in doc["overrides"].items()
            },
            quiet_hours=None if doc["quiet_hours"] is None
            else QuietHours.from_doc(doc["quiet_hours"]),
            digest_enabled=digest["enabled"],
            digest_time=parse_hhmm(digest["time"]),
            digest_kinds=frozenset(NotificationKind(k) for k in digest["kinds"]),
            # stored before the switches existed: both on
            sms_informer=bool(doc.get("services", {}).get("sms_informer", True)),
            push_service=bool(doc.get("services", {}).get("push", True)),
            version=doc["version"],
        )

