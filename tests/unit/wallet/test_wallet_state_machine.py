"""Random sequences of wallet operations, duplicates included, against the ledger invariants.

The machine keeps its own model of the money (credits minus debits as reported by results),
of today's spending per local day and of refunds per line, so the checks do not rely on the
domain's own bookkeeping alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from services.wallet.domain import (
    Account,
    AutoTopUpSettings,
    DailyLimits,
    DeclineReason,
    DisputeStatus,
    HistoryRow,
    LedgerEntry,
    RejectionReason,
    SaleItem,
    SubBalance,
    TopUpChannel,
    WalletRejected,
    check_ledger,
)
from tests.unit.wallet.wallet_builders import NOW, TZ, new_account

pytestmark = pytest.mark.unit

STEPS_PER_EXAMPLE = 60
DEFAULT_EXAMPLES = 250
MONEY = (SubBalance.GENERAL, SubBalance.CANTEEN, SubBalance.TRANSIT)
CATALOG = (
    SaleItem("borsch", "Борщ", "hot_meal", ("celery",), 1, 85_00),
    SaleItem("bun", "Булочка", "bakery", ("gluten", "milk"), 1, 25_00),
    SaleItem("tea", "Чай", "drink", (), 1, 5_00),
    SaleItem("cake", "Пирожное", "sweets", ("nuts", "milk"), 1, 60_00),
    SaleItem("burger", "Бургер", "fast_food", ("gluten",), 1, 150_00),
)
ZONE = ZoneInfo(TZ)

# Invariant checks run once after the initial rule and once after every step.
RUNS = {"examples": 0, "checks": 0}

Replay = Callable[[Account], Any]


@dataclass
class Model:
    money: int = 0
    spent: defaultdict[str, defaultdict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    line_refunds: defaultdict[tuple[str, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    ride_refunds: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    owed_fares: list[tuple[str, int]] = field(default_factory=list)  # declined for funds


class WalletMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        RUNS["examples"] += 1
        self.account: Account = new_account()
        self.entries: list[LedgerEntry] = self.account.pull_entries()
        self.now: datetime = NOW
        self.model = Model()
        self.grace = 0
        self.counter = 0
        self.replays: list[tuple[Replay, Replay | None, Any]] = []
        self.charged_sales: list[tuple[str, int, int]] = []  # sale id, line, line total
        self.charged_rides: list[tuple[str, int]] = []

    @initialize(grace=st.sampled_from([0, 0, 100_00, 150_00]))
    def open_account(self, grace: int) -> None:
        self.grace = grace
        self.account = new_account(grace=grace)
        self.entries = self.account.pull_entries()
        self.account.pull_events()

    # --- helpers --------------------------------------------------------------------------------

    def _key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _collect(self) -> None:
        self.entries.extend(self.account.pull_entries())
        self.account.pull_events()

    def _expect_unchanged(self, call: Replay, reason: RejectionReason | None = None) -> Any:
        """Run ``call``; it must change nothing (a replay, or a rejection with ``reason``)."""
        before = self.account.to_doc()
        if reason is None:
            result = call(self.account)
        else:
            with pytest.raises(WalletRejected) as error:
                call(self.account)
            assert error.value.reason is reason
            result = None
        assert self.account.to_doc() == before
        assert self.account.pull_entries() == []
        assert self.account.pull_events() == []
        return result

    def _remember(self, call: Replay, conflicting: Replay | None, result: Any) -> None:
        self.replays.append((call, conflicting, result))

    # --- operations -----------------------------------------------------------------------------

    @rule(minutes=st.integers(1, 60 * 30))
    def clock_moves_on(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)

    @rule(amount=st.integers(1, 3000_00), sub=st.sampled_from(MONEY), auto=st.booleans())
    def top_up(self, amount: int, sub: SubBalance, auto: bool) -> None:
        key, now = self._key("pay"), self.now
        channel = TopUpChannel.AUTO_TOP_UP if auto else TopUpChannel.TERMINAL

        def call(a: Account) -> Any:
            return a.top_up(key, amount, sub_balance=sub, channel=channel, now=now)

        def other(a: Account) -> Any:
            return a.top_up(key, amount + 1, sub_balance=sub, channel=channel, now=now)

        before = self.account.balances
        result = call(self.account)
        self.model.money += amount
        # A declined fare is debt: the top-up pays the owed fares, oldest first, from transit
        # and general (what the grace meal took back stays in canteen), as far as it goes.
        settled = min(amount, max(0, -before.canteen))
        free = before.transit + before.general + (
            amount - settled if sub is not SubBalance.CANTEEN else 0)
        while self.model.owed_fares and self.model.owed_fares[0][1] <= free:
            ride_id, owed = self.model.owed_fares.pop(0)
            free -= owed
            self.model.money -= owed
            self.charged_rides.append((ride_id, owed))
        assert self.account.fares_unpaid == bool(self.model.owed_fares)
        self._collect()
        self._remember(call, other, result)

    @rule(
        lines=st.lists(st.tuples(st.sampled_from(CATALOG), st.integers(1, 3)), min_size=1,
                       max_size=3),
        points=st.sampled_from([0, 0, 0, 10_00, 10_000_00]),
    )
    def sale(self, lines: list[tuple[SaleItem, int]], points: int) -> None:
        items = [SaleItem(i.sku, i.name, i.category, i.allergens, q, i.unit_price)
                 for i, q in lines]
        key, now = self._key("sale"), self.now
        day = now.astimezone(ZONE).date().isoformat()
        spent = dict(self.model.spent[day])
        limits = self.account.limits
        canteen_before = self.account.balances.canteen

        def call(a: Account) -> Any:
            return a.sale(key, terminal_id="t1", items=items, bonus_points=points, now=now)

        def other(a: Account) -> Any:
            return a.sale(key, terminal_id="t2", items=items, bonus_points=points, now=now)

        result = call(self.account)
        if result.approved:
            paid = result.paid_money
            assert limits.total is None or spent.get("total", 0) + paid <= limits.total
            # A pocket's cap binds what the sale takes from it; a cap lowered below what was
            # already spent today stops further draws but cannot undo earlier ones.
            if limits.canteen is not None and result.paid_canteen:
                assert spent.get("canteen", 0) + result.paid_canteen <= limits.canteen
            if limits.general is not None and result.paid_general:
                assert spent.get("general", 0) + result.paid_general <= limits.general
            assert result.paid_money + result.bonus_used == result.total
            if canteen_before < 0:
                assert result.grace_credit == 0, "a second grace meal before settlement"
            self.model.spent[day]["total"] += paid
            self.model.spent[day]["canteen"] += result.paid_canteen
            self.model.spent[day]["general"] += result.paid_general
            self.model.money -= paid
            for n, item in enumerate(items):
                self.charged_sales.append((key, n, item.total))
        self._collect()
        self._remember(call, other, result)

    @rule(amount=st.integers(0, 120_00))
    def fare(self, amount: int) -> None:
        key, now = self._key("ride"), self.now

        def call(a: Account) -> Any:
            return a.debit_fare(key, amount, now=now)

        def other(a: Account) -> Any:
            return a.debit_fare(key, amount + 1, now=now)

        result = call(self.account)
        if result.approved:
            self.model.money -= amount
            self.charged_rides.append((key, amount))
        elif result.reason is DeclineReason.INSUFFICIENT_FUNDS and not result.replayed:
            self.model.owed_fares.append((key, amount))
        self._collect()
        self._remember(call, other, result)

    @precondition(lambda self: self.charged_rides)
    @rule(data=st.data(), fraction=st.integers(1, 120))
    def fare_correction(self, data: st.DataObject, fraction: int) -> None:
        ride_id, charged = data.draw(st.sampled_from(self.charged_rides))
        amount = max(1, charged * fraction // 100)
        key, now = self._key("corr"), self.now

        def call(a: Account) -> Any:
            return a.refund_fare(key, ride_id, amount, now=now)

        if self.model.ride_refunds[ride_id] + amount > charged:
            self._expect_unchanged(call, RejectionReason.REFUND_EXCEEDS_CHARGE)
            return
        result = call(self.account)
        self.model.ride_refunds[ride_id] += amount
        self.model.money += amount
        self._collect()
        self._remember(call, None, result)

    @precondition(lambda self: self.charged_sales)
    @rule(data=st.data(), fraction=st.integers(1, 130), via_dispute=st.booleans())
    def refund_sale_line(self, data: st.DataObject, fraction: int, via_dispute: bool) -> None:
        sale_id, line, charged = data.draw(st.sampled_from(self.charged_sales))
        amount = max(1, charged * fraction // 100)
        key, now = self._key("refund"), self.now
        already = self.model.line_refunds[(sale_id, line)]
        money_before = self.account.balances.money
        if via_dispute:
            if already >= charged:
                self._expect_unchanged(
                    lambda a: a.open_dispute(key, sale_id=sale_id, line_no=line, now=now),
                    RejectionReason.NOTHING_TO_REFUND,
                )
                return
            if any(d.status is DisputeStatus.OPEN for d in self.account.disputes.values()
                   if (d.sale_id, d.line_no) == (sale_id, line)):
                return
            self.account.open_dispute(key, sale_id=sale_id, line_no=line, now=now)
            self._collect()

            def call(a: Account) -> Any:
                return a.approve_dispute(key, refund_amount=amount, staff_id="staff", now=now)

            def other(a: Account) -> Any:
                return a.approve_dispute(key, refund_amount=amount + 1, staff_id="staff",
                                         now=now)
        else:

            def call(a: Account) -> Any:
                return a.refund_sale_line(key, sale_id, line, amount, staff_id="staff", now=now)

            def other(a: Account) -> Any:
                return a.refund_sale_line(key, sale_id, line, amount + 1, staff_id="staff",
                                          now=now)

        if already + amount > charged:
            self._expect_unchanged(call, RejectionReason.REFUND_EXCEEDS_CHARGE)
            if via_dispute:
                self.account.reject_dispute(key, staff_id="staff", now=now)
                self._collect()
            return
        result = call(self.account)
        self.model.line_refunds[(sale_id, line)] += amount
        self.model.money += self.account.balances.money - money_before
        self._collect()
        self._remember(call, other, result)

    @rule(
        total=st.none() | st.integers(0, 1000_00),
        canteen=st.none() | st.integers(0, 600_00),
        general=st.none() | st.integers(0, 600_00),
    )
    def parent_sets_limits(self, total: int | None, canteen: int | None,
                           general: int | None) -> None:
        self.account.set_daily_limits(DailyLimits(total, canteen, general), now=self.now)
        self._collect()

    @rule(
        categories=st.sets(st.sampled_from(["sweets", "fast_food", "drink"]), max_size=2),
        allergens=st.sets(st.sampled_from(["nuts", "milk", "celery"]), max_size=1),
    )
    def parent_sets_restrictions(self, categories: set[str], allergens: set[str]) -> None:
        self.account.set_blocked_categories(categories, now=self.now)
        self.account.set_allergens(allergens, now=self.now)
        self._collect()

    @rule(threshold=st.none() | st.integers(0, 300_00), auto=st.booleans())
    def parent_sets_thresholds(self, threshold: int | None, auto: bool) -> None:
        self.account.set_low_balance_threshold(threshold, now=self.now)
        self.account.set_auto_top_up(AutoTopUpSettings(auto, 200_00, 300_00), now=self.now)
        self._collect()

    @rule(block=st.sampled_from([True, False, False]))
    def parent_blocks_or_unblocks(self, block: bool) -> None:
        money = self.account.balances.money
        if block:
            self.account.block_card(now=self.now)
        else:
            self.account.unblock_card(now=self.now)
        assert self.account.balances.money == money
        self._collect()

    @rule(source=st.sampled_from(MONEY), destination=st.sampled_from(MONEY),
          amount=st.integers(1, 1000_00))
    def parent_moves_money(self, source: SubBalance, destination: SubBalance,
                           amount: int) -> None:
        key, now = self._key("move"), self.now

        def call(a: Account) -> Any:
            return a.move_money(key, source=source, target=destination, amount=amount, now=now)

        if source is destination:
            self._expect_unchanged(call, RejectionReason.INVALID_SUB_BALANCE)
            return
        if self.account.balances.of(source) < amount:
            self._expect_unchanged(call, RejectionReason.INSUFFICIENT_FUNDS)
            return
        result = call(self.account)
        self._collect()
        self._remember(call, None, result)

    @rule(days=st.integers(0, 400))
    def bonuses_expire(self, days: int) -> None:
        self.account.expire_bonuses(now=self.now + timedelta(days=days))
        self._collect()

    @rule()
    def account_is_reloaded_from_its_document(self) -> None:
        doc, history = self.account.to_doc(), self.account.history()
        self.account = Account.from_doc(doc, [(row.kind, row.plain) for row in history],
                                        complete=True)
        assert self.account.to_doc() == doc
        assert sorted(self.account.history(), key=_row) == sorted(history, key=_row)

    @precondition(lambda self: self.replays)
    @rule(data=st.data(), conflicting=st.booleans())
    def an_earlier_operation_is_delivered_again(self, data: st.DataObject,
                                                conflicting: bool) -> None:
        call, other, expected = data.draw(st.sampled_from(self.replays))
        if conflicting and other is not None:
            self._expect_unchanged(other, RejectionReason.IDEMPOTENCY_CONFLICT)
            return
        result = self._expect_unchanged(call)
        assert result == expected
        assert result.replayed

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def balances_equal_the_ledger_and_every_operation_is_balanced(self) -> None:
        RUNS["checks"] += 1
        assert check_ledger(self.account, self.entries) == []

    @invariant()
    def money_matches_the_model_of_credits_minus_debits(self) -> None:
        assert self.account.balances.money == self.model.money

    @invariant()
    def balances_never_go_below_zero_except_the_bounded_grace_meal(self) -> None:
        b = self.account.balances
        assert b.general >= 0 and b.transit >= 0 and b.bonus >= 0
        assert b.canteen >= -self.grace

    @invariant()
    def refunds_never_exceed_the_charge(self) -> None:
        for sale in self.account.sales.values():
            for n, item in enumerate(sale.items):
                assert 0 <= sale.line_refunded[n] <= item.total
                assert sale.line_refunded[n] == self.model.line_refunds[(sale.sale_id, n)]
        for ride in self.account.rides.values():
            assert ride.refunded <= ride.amount
            assert ride.refunded == self.model.ride_refunds[ride.ride_id]


def _run(examples: int) -> int:
    """Run the machine; returns the number of steps executed over all examples."""
    RUNS.update(examples=0, checks=0)
    run_state_machine_as_test(
        WalletMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    return RUNS["checks"] - RUNS["examples"]


def test_random_operation_sequences_with_duplicates_keep_every_ledger_invariant() -> None:
    assert _run(DEFAULT_EXAMPLES) >= 10_000


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_ten_times_longer_random_runs_keep_every_ledger_invariant(
    pytestconfig: pytest.Config,
) -> None:
    # About 90 s: it runs only when asked for by marker (-m slow), not in a plain run.
    requested = (pytestconfig.getoption("markexpr") or "").replace("not slow", "")
    if "slow" not in requested:
        pytest.skip("long property run: select it with -m slow")
    assert _run(DEFAULT_EXAMPLES * 10) >= 100_000


def _row(row: HistoryRow) -> tuple[str, str]:
    return row.kind, row.key
