"""Plain builders for notify unit tests (no fixtures: each test states what it needs)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from services.notify.domain import (
    CanteenPurchaseFacts,
    GateFacts,
    Guardian,
    GuardianRole,
    Locale,
    NotificationEvent,
    NotificationKind,
    PurchaseLine,
    TopUpFacts,
)

CONTRACT = "12345678"
MSK = "Europe/Moscow"  # UTC+3 all year


def msk(hour: int, minute: int = 0, day: int = 10) -> datetime:
    """An instant given as Moscow wall time on 2025-09-<day>, returned in UTC."""
    return datetime(2025, 9, day, hour, minute, tzinfo=ZoneInfo(MSK)).astimezone(UTC)


def guardian(
    account_id: str = "g-1",
    *,
    role: GuardianRole = GuardianRole.PRIMARY,
    push: bool = True,
    phone: str | None = "+79991234567",
    email: str | None = "parent@example.org",
    locale: Locale = Locale.RU,
    contract: str = CONTRACT,
    name: str | None = "Маша",
) -> Guardian:
    g = Guardian(account_id, locale=locale, time_zone=MSK, phone=phone, email=email,
                 has_push_token=push)
    g.link_child(contract, role, name)
    return g


def entered(event_id: str = "ev-1", at: datetime | None = None) -> NotificationEvent:
    at = at or msk(8, 5)
    return NotificationEvent(event_id, NotificationKind.CHILD_ENTERED, at,
                             GateFacts(at, "Школа № 5"), contract=CONTRACT)


def purchase(event_id: str = "ev-sale", at: datetime | None = None) -> NotificationEvent:
    at = at or msk(12, 30)
    facts = CanteenPurchaseFacts(
        at,
        (PurchaseLine("Котлета", 1, 8_500), PurchaseLine("Компот", 2, 2_500)),
        total=13_500,
        balance_after=123_450,
        place="Столовая",
    )
    return NotificationEvent(event_id, NotificationKind.CANTEEN_PURCHASE, at, facts,
                             contract=CONTRACT)


def top_up(event_id: str = "ev-top", at: datetime | None = None) -> NotificationEvent:
    at = at or msk(10, 0)
    facts = TopUpFacts(at, 50_000, 123_450, "pay-777", "Сбербанк Онлайн")
    return NotificationEvent(event_id, NotificationKind.TOP_UP, at, facts, contract=CONTRACT)
