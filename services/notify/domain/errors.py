"""Rejection codes of the notify domain: machine-readable, stable, safe to log."""

from __future__ import annotations

from enum import StrEnum


class NotifyRejection(StrEnum):
    """Why the notify domain refused an operation (the ``reason`` of :class:`NotifyError`)."""

    INVALID_PHONE = "invalid_phone"
    INVALID_EMAIL = "invalid_email"
    INVALID_TIME_ZONE = "invalid_time_zone"
    INVALID_QUIET_HOURS = "invalid_quiet_hours"
    NAIVE_DATETIME = "naive_datetime"
    FACTS_KIND_MISMATCH = "facts_kind_mismatch"
    CHANNEL_NOT_APPLICABLE = "channel_not_applicable"
    DEDUPE_KEY_CONFLICT = "dedupe_key_conflict"
    ALREADY_TERMINAL = "already_terminal"
    NOT_DUE = "not_due"
    NOT_HELD_FOR_DIGEST = "not_held_for_digest"
    NOT_A_PUSH_MESSAGE = "not_a_push_message"
    PUSH_NOT_FAILED = "push_not_failed"
    SMS_NOT_ALLOWED = "sms_not_allowed"
    NO_PHONE = "no_phone"
    WRONG_GUARDIAN = "wrong_guardian"
    EMPTY_DIGEST = "empty_digest"
    WRONG_DAY = "wrong_day"
    EVENT_CONFLICT = "event_conflict"
    SESSION_ENDED = "session_ended"
    UNKNOWN_PUSH_TOKEN = "unknown_push_token"
    UNKNOWN_SUPPORT_REQUEST = "unknown_support_request"
    SUPPORT_REQUEST_CLOSED = "support_request_closed"
    SUPPORT_REQUEST_CONFLICT = "support_request_conflict"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"


class NotifyError(Exception):
    """An explicit domain rejection; ``reason`` is the code a handler logs or replies with."""

    def __init__(self, reason: NotifyRejection, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class SkipReason(StrEnum):
    """Why routing produced no message for a guardian on a channel (normal outcomes, not errors)."""

    MUTED = "muted"
    NO_PUSH_TOKEN = "no_push_token"
    NO_PHONE = "no_phone"
    NO_EMAIL = "no_email"
    ROLE_EXCLUDED = "role_excluded"
