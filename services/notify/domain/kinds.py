"""Vocabulary of notify: what a message is about, how it travels, in which language."""

from __future__ import annotations

from enum import StrEnum


class NotificationKind(StrEnum):
    CHILD_ENTERED = "child_entered"
    CHILD_LEFT = "child_left"
    LATE = "late"
    ABSENT = "absent"
    MANUAL_ENTRY = "manual_entry"
    CANTEEN_PURCHASE = "canteen_purchase"
    PAYMENT_DECLINED = "payment_declined"
    RIDE = "ride"
    TOP_UP = "top_up"
    RECEIPT = "receipt"
    LOW_BALANCE = "low_balance"
    CARD_BLOCKED = "card_blocked"
    NEW_LOGIN = "new_login"
    PASSWORD_CHANGED = "password_changed"
    SECOND_FACTOR_DISABLED = "second_factor_disabled"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_UNLOCKED = "account_unlocked"
    ONE_TIME_CODE = "one_time_code"
    GRACE_MEAL = "grace_meal"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_RESOLVED = "dispute_resolved"
    REFUND = "refund"
    DEBT_SETTLED = "debt_settled"
    TOP_UP_REJECTED = "top_up_rejected"
    AUTO_TOP_UP_FAILED = "auto_top_up_failed"
    CONCESSION_EXPIRING = "concession_expiring"
    REGISTRATION_ATTEMPT = "registration_attempt"
    SESSION_REVOKED = "session_revoked"
    CHILD_LINK_REFUSED = "child_link_refused"
    ARRIVED_SAFELY = "arrived_safely"
    NOT_ARRIVED_ALERT = "not_arrived_alert"
    DAILY_DIGEST = "daily_digest"
    SUPPORT_ANSWERED = "support_answered"
    GUARDIAN_INVITED = "guardian_invited"
    APPLICATION_STATUS = "application_status"


class Channel(StrEnum):
    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"
    IN_APP = "in_app"  # the cabinet and app: delivered when stored (see in_app.py)


class Locale(StrEnum):
    RU = "ru"
    EN = "en"


class GuardianRole(StrEnum):
    PRIMARY = "primary"
    CO_GUARDIAN = "co_guardian"
    VIEWER = "viewer"


SECURITY_KINDS: frozenset[NotificationKind] = frozenset(
    {NotificationKind.ONE_TIME_CODE, NotificationKind.NEW_LOGIN, NotificationKind.PASSWORD_CHANGED,
     NotificationKind.SECOND_FACTOR_DISABLED, NotificationKind.REGISTRATION_ATTEMPT,
     NotificationKind.SESSION_REVOKED, NotificationKind.CHILD_LINK_REFUSED,
     NotificationKind.ACCOUNT_LOCKED, NotificationKind.ACCOUNT_UNLOCKED}
)
"""Kinds that ignore quiet hours and any preference that would mute them: someone may be
inside the account or trying to get in, and the owner must hear of it at once."""

ACCOUNT_KINDS: frozenset[NotificationKind] = frozenset(
    {NotificationKind.NEW_LOGIN, NotificationKind.PASSWORD_CHANGED,
     NotificationKind.SECOND_FACTOR_DISABLED, NotificationKind.REGISTRATION_ATTEMPT,
     NotificationKind.SESSION_REVOKED, NotificationKind.CHILD_LINK_REFUSED,
     NotificationKind.ACCOUNT_LOCKED, NotificationKind.ACCOUNT_UNLOCKED,
     NotificationKind.DAILY_DIGEST, NotificationKind.SUPPORT_ANSWERED,
     NotificationKind.GUARDIAN_INVITED}
)
"""Kinds addressed to one guardian account rather than to a child's guardians (a refused
child link goes to the child's primary guardian only, whom auth names; an invitation to
follow a child goes to the invitee, who does not guard that child yet)."""

SMS_BY_DEFAULT: frozenset[NotificationKind] = frozenset({NotificationKind.GUARDIAN_INVITED})
"""Kinds besides the security ones that go by SMS by default when there is no app: an
invitation comes once, and an invitee without the app would otherwise only see it if they
happened to open the cabinet (it can be muted like any other kind)."""

ALL_CHANNELS: frozenset[Channel] = frozenset(Channel)

_CHANNELS: dict[NotificationKind, frozenset[Channel]] = {
    # A receipt is a document: e-mail only. A one-time code goes by SMS to the phone that asked.
    NotificationKind.RECEIPT: frozenset({Channel.EMAIL}),
    NotificationKind.ONE_TIME_CODE: frozenset({Channel.SMS}),
    # A digest is long: never an SMS (it would cost several segments for low-value news).
    NotificationKind.DAILY_DIGEST: frozenset({Channel.PUSH, Channel.EMAIL}),
}


def channels_for(kind: NotificationKind) -> frozenset[Channel]:
    """Channels on which a kind may travel at all, whatever the preferences say."""
    return _CHANNELS.get(kind, ALL_CHANNELS)


ROLE_EXCLUDED_KINDS: dict[GuardianRole, frozenset[NotificationKind]] = {
    # A viewer (e.g. a grandparent) never pays, so a payment receipt is not theirs to keep.
    GuardianRole.VIEWER: frozenset({NotificationKind.RECEIPT}),
}

EMAIL_COMPANION: dict[NotificationKind, NotificationKind] = {
    # A top-up is announced by push/SMS; its e-mail form is the receipt.
    NotificationKind.TOP_UP: NotificationKind.RECEIPT,
}
