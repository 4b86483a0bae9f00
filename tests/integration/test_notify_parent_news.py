"""The parent is told, end to end: each wallet, transit and auth event notify promises to
turn into a message reaches a guardian through the real broker as a push with its Russian
text (issue 11 §3). Child news goes to every guardian of the child; the security alerts go to
the one account they name, at once even inside quiet hours."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts import auth, transit, wallet
from contracts.envelope import ContractModel
from contracts.money import format_rub
from tests.integration.notify_support import (
    TZ,
    as_awaitable,
    contract,
    http_to,
    make_guardian,
    notify_stack,
)
from tests.support import eventually, uid

pytestmark = pytest.mark.integration



def rub(kopecks: int) -> str:
    """Money as the Russian templates spell it ("85,00 ₽", non-breaking spaces)."""
    return format_rub(kopecks, locale="ru")


def balances(general: int = 0, canteen: int = 0, transit_: int = 0) -> wallet.Balances:
    return wallet.Balances(general=general, canteen=canteen, transit=transit_, bonus_points=0)


@dataclass(frozen=True)
class Case:
    kind: str  # the notification kind the guardian's push carries
    build: Callable[[str, str, datetime], ContractModel]  # (contract, primary account, now)
    says: str  # part of the Russian push text
    account: bool = False  # addressed to the primary's account, not to every guardian

    def key(self, child: str, primary: str) -> str:
        return primary if self.account else child


CASES: dict[str, Case] = {
    "GraceMealGranted": Case(
        "grace_meal",
        lambda c, _a, now: wallet.GraceMealGranted(contract=c, sale_id=uid("sale"),
                                                   debt=85_00, granted_at=now),
        f"Долг: {rub(85_00)}"),
    "DisputeOpened": Case(
        "dispute_opened",
        lambda c, _a, now: wallet.DisputeOpened(contract=c, dispute_id=uid("dsp"),
                                                operation_id="till-7-000981", line=1,
                                                opened_at=now),
        "открыт спор по операции «till-7-000981», строка 2"),
    "DisputeResolved": Case(
        "dispute_resolved",
        lambda c, _a, now: wallet.DisputeResolved(contract=c, dispute_id=uid("dsp"),
                                                  approved=True, refunded=45_00,
                                                  resolved_at=now),
        f"спор одобрен. Возвращено: {rub(45_00)}"),
    "SaleLineRefunded": Case(
        "refund",
        lambda c, _a, now: wallet.SaleLineRefunded(
            contract=c, refund_id="dispute:req-1", sale_id=uid("sale"), line=0, amount=45_00,
            money=45_00, bonus_restored=0, bonus_clawed_back=45, dispute_id="req-1",
            balances=balances(general=1_000_00, canteen=234_50), refunded_at=now),
        f"возврат {rub(45_00)} за позицию покупки в столовой по спору"),
    "FareRefunded": Case(
        "refund",
        lambda c, _a, now: wallet.FareRefunded(contract=c, ride_id=uid("ride"),
                                               correction_id=uid("cor"), amount=17_50,
                                               balances=balances(transit_=52_50),
                                               refunded_at=now),
        f"возврат {rub(17_50)} за поездку — тариф пересчитан"),
    "DebtSettled": Case(
        "debt_settled",
        lambda c, _a, now: wallet.DebtSettled(contract=c, payment_id=uid("pay"),
                                              fares_collected=["val-1", "val-2"],
                                              fares_total=70_00, settled_at=now),
        f"Оплачено 2 поездки на {rub(70_00)}; карту снова принимают в транспорте"),
    "TopUpRejected": Case(
        "top_up_rejected",
        lambda c, _a, _now: wallet.TopUpRejected(contract=c, payment_id=uid("pay"),
                                                 amount=500_00, reason="account_closed"),
        f"пополнение на {rub(500_00)} не зачислено — счёт карты закрыт. Деньги остались "
        "у банка"),
    "AutoTopUpFailed": Case(
        "auto_top_up_failed",
        lambda c, _a, now: wallet.AutoTopUpFailed(contract=c, request_id=uid("auto"),
                                                  amount=500_00, reason="card_declined",
                                                  failed_at=now),
        f"автопополнение на {rub(500_00)} не прошло"),
    "ConcessionExpiring": Case(
        "concession_expiring",
        lambda c, _a, now: transit.ConcessionExpiring(
            contract=c, valid_until=(now.astimezone(ZoneInfo(TZ)).date()
                                     + timedelta(days=3)).isoformat(), days_left=3),
        "льготный проезд действует до"),
    "RegistrationAttemptedForExistingAccount": Case(
        "registration_attempt",
        lambda _c, a, now: auth.RegistrationAttemptedForExistingAccount(account_id=a, at=now),
        "кто-то начал регистрацию", account=True),
    "RefreshTokenReused": Case(
        "session_revoked",
        lambda _c, a, now: auth.RefreshTokenReused(account_id=a, session_id=uid("ses"), at=now),
        "сеанс вашего аккаунта SchoolCard завершён", account=True),
    "ChildLinkRefused": Case(
        "child_link_refused",
        lambda c, a, now: auth.ChildLinkRefused(account_id=a, contract=c, failures_in_window=1,
                                                at=now),
        "пытался привязать к своему аккаунту карту ребёнка", account=True),
}


@pytest.fixture(scope="module")
async def stack(service_runner, bootstrap, infra, tmp_path_factory) -> Any:
    async with notify_stack(service_runner, bootstrap, infra,
                            tmp_path_factory.mktemp("notify-news-sinks")) as running:
        yield running


def quiet_now(stack: dict[str, Any]) -> tuple[str, str]:
    """Quiet hours around the present moment (security alerts must not wait for their end)."""
    local = stack["clock"]().astimezone(ZoneInfo(TZ))
    return ((local - timedelta(hours=1)).strftime("%H:%M"),
            (local + timedelta(hours=1)).strftime("%H:%M"))


def pushes(stack: dict[str, Any], account_id: str, kind: str) -> list[dict[str, Any]]:
    return [p for p in http_to(stack, "/push", account_id=account_id)
            if p["body"]["kind"] == kind]


@pytest.mark.parametrize("event", list(CASES))
async def test_a_guardian_is_told_of(stack, event: str) -> None:
    case = CASES[event]
    child = contract()
    quiet = quiet_now(stack) if case.account else ("00:00", "00:00")
    primary, _ = await make_guardian(stack, child, push=True, quiet=quiet)
    other, _ = await make_guardian(stack, child, push=True, role="co_guardian")
    message = case.build(child, primary, datetime.now(UTC))
    await stack["pub"].publish(message, case.key(child, primary))

    [push] = await eventually(lambda: as_awaitable(pushes(stack, primary, case.kind)),
                              what=f"{case.kind} push to the primary guardian")
    assert case.says in push["body"]["body"], push["body"]["body"]
    if case.account:
        # Addressed to one account: the child's other guardian got nothing, not even held.
        stored = stack["svc"].runtime.db.notify_messages
        assert await stored.count_documents({"guardian_id": other, "kind": case.kind}) == 0
    else:
        await eventually(lambda: as_awaitable(pushes(stack, other, case.kind)),
                         what=f"{case.kind} push to the co-guardian")


async def test_a_top_up_for_an_unknown_contract_tells_nobody(stack) -> None:
    child = contract()
    acc, _ = await make_guardian(stack, child, push=True)
    unknown = wallet.TopUpRejected(contract=child, payment_id=uid("pay"), amount=300_00,
                                   reason="unknown_contract")
    closed = wallet.TopUpRejected(contract=child, payment_id=uid("pay"), amount=500_00,
                                  reason="account_closed")
    await stack["pub"].publish(unknown, child)
    await stack["pub"].publish(closed, child)  # same partition: handled after the first
    [push] = await eventually(lambda: as_awaitable(pushes(stack, acc, "top_up_rejected")),
                              what="the account-closed rejection")
    assert rub(500_00) in push["body"]["body"]
    stored = stack["svc"].runtime.db.notify_messages
    assert await stored.count_documents({"guardian_id": acc, "kind": "top_up_rejected",
                                         "channel": "push"}) == 1
