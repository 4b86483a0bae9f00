"""One-time codes: 6 digits, stored only as an HMAC, 5-minute expiry, 5 attempts, single use,
60 s resend cooldown, bound to one account and one purpose."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..security import OTP_DIGITS, otp_mac
from .common import Reason, dt_from_doc, opt_dt_from_doc, require_aware

CODE_TTL = timedelta(minutes=5)
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_COOLDOWN = timedelta(seconds=60)


class CodePurpose(StrEnum):
    REGISTRATION = "registration"
    PASSWORD_RESET = "password_reset"
    LOGIN_2FA = "login_2fa"
    PHONE_CONFIRMATION = "phone_confirmation"
    EMAIL_CONFIRMATION = "email_confirmation"


@dataclass
class OneTimeCode:
    """One issued code. ``code_mac`` is the only trace of the code that is ever stored."""

    code_id: str
    account_id: str
    purpose: CodePurpose
    code_mac: str
    issued_at: datetime
    expires_at: datetime
    attempts: int = 0
    used_at: datetime | None = None

    @classmethod
    def issue(
        cls,
        *,
        code_id: str,
        account_id: str,
        purpose: CodePurpose,
        code: str,
        pepper: bytes,
        now: datetime,
    ) -> OneTimeCode:
        if len(code) != OTP_DIGITS or not code.isdigit():
            raise ValueError("a one-time code is exactly six decimal digits")
        now = require_aware(now)
        return cls(
            code_id=code_id,
            account_id=account_id,
            purpose=purpose,
            code_mac=otp_mac(pepper, account_id=account_id, purpose=purpose.value,
                             code_id=code_id, code=code),
            issued_at=now,
            expires_at=now + CODE_TTL,
        )

    def resend_available_at(self) -> datetime:
        return self.issued_at + CODE_RESEND_COOLDOWN

    def check(self, code: str, pepper: bytes, now: datetime, *, consume: bool) -> Reason | None:
        """None if ``code`` is right (and then, with ``consume``, it is spent); otherwise the
        reason. A wrong guess counts one attempt; a used, expired or exhausted code is refused
        without looking at the guess, so the count cannot be bypassed."""
        now = require_aware(now)
        if self.used_at is not None:
            return Reason.CODE_USED
        if now >= self.expires_at:
            return Reason.CODE_EXPIRED
        if self.attempts >= CODE_MAX_ATTEMPTS:
            return Reason.CODE_ATTEMPTS_EXHAUSTED
        expected = otp_mac(pepper, account_id=self.account_id, purpose=self.purpose.value,
                           code_id=self.code_id, code=code)
        if not hmac.compare_digest(expected, self.code_mac):
            self.attempts += 1
            return Reason.CODE_INVALID
        if consume:
            self.used_at = now
        return None

    def to_doc(self) -> dict[str, Any]:
        return {
            "code_id": self.code_id,
            "account_id": self.account_id,
            "purpose": self.purpose.value,
            "code_mac": self.code_mac,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "attempts": self.attempts,
            "used_at": self.used_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> OneTimeCode:
        return cls(
            code_id=str(doc["code_id"]),
            account_id=str(doc["account_id"]),
            purpose=CodePurpose(doc["purpose"]),
            code_mac=str(doc["code_mac"]),
            issued_at=dt_from_doc(doc["issued_at"]),
            expires_at=dt_from_doc(doc["expires_at"]),
            attempts=int(doc["attempts"]),
            used_at=opt_dt_from_doc(doc.get("used_at")),
        )
