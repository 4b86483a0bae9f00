"""Message texts in Russian (default) and English, for every notification kind.

Times and dates are shown in the guardian's time zone; money goes through
``contracts.money.format_rub`` so "1 234,50 ₽" is spelt the same everywhere. Russian phrases are
built as "<child>: <noun phrase>" so they read correctly whatever the child's name and gender
(no verb agreement or declension is needed).

Each rendering has a ``short`` line (the journal and digest line) that never contains a secret:
the one-time code appears only in the body of the one_time_code message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts.money import format_rub

from .facts import (
    AbsentFacts,
    AccountLockedFacts,
    AccountUnlockedFacts,
    ApplicationFacts,
    ApplicationOf,
    ApplicationOutcome,
    ArrivedSafelyFacts,
    AutoTopUpFailedFacts,
    CanteenPurchaseFacts,
    CardBlockedFacts,
    ChildLinkRefusedFacts,
    CodePurpose,
    ConcessionExpiringFacts,
    DebtSettledFacts,
    DeclineReason,
    DigestFacts,
    DisputeOpenedFacts,
    DisputeResolvedFacts,
    Facts,
    FareExplanation,
    GateFacts,
    GraceMealFacts,
    GuardianInvitedFacts,
    LateFacts,
    LowBalanceFacts,
    ManualEntryFacts,
    NewLoginFacts,
    NotArrivedFacts,
    OneTimeCodeFacts,
    PasswordChangedFacts,
    PaymentDeclinedFacts,
    RefundFacts,
    RefundOf,
    RegistrationAttemptFacts,
    RideFacts,
    SecondFactorDisabledFacts,
    SessionRevokedFacts,
    SupportAnsweredFacts,
    TopUpFacts,
    TopUpRejectedFacts,
    TopUpRejection,
    check_facts,
)
from .journey import JourneyDay, TimelineKind
from .kinds import GuardianRole, Locale, NotificationKind

PRODUCT = "SchoolCard"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered text. ``secret`` bodies (one-time codes) are hidden from ``repr``."""

    subject: str
    body: str = field(repr=False)
    short: str
    secret: bool = False

    def __repr__(self) -> str:
        body = "<secret>" if self.secret else repr(self.body)
        return f"Rendered(subject={self.subject!r}, body={body}, short={self.short!r})"


@dataclass(frozen=True, slots=True)
class RenderContext:
    locale: Locale
    tz: ZoneInfo
    child_name: str | None = None
    contract: str | None = None

    @property
    def ru(self) -> bool:
        return self.locale is Locale.RU

    @property
    def child(self) -> str:
        if self.child_name:
            return self.child_name
        if self.contract:
            return f"Карта {self.contract}" if self.ru else f"Card {self.contract}"
        return "Ребёнок" if self.ru else "Your child"

    def money(self, kopecks: int) -> str:
        return format_rub(kopecks, locale=self.locale.value)

    def time(self, at: datetime) -> str:
        return at.astimezone(self.tz).strftime("%H:%M")

    def date(self, day: date) -> str:
        if self.ru:
            return day.strftime("%d.%m.%Y")
        return f"{day.day} {_EN_MONTHS[day.month - 1]} {day.year}"

    def day_of(self, at: datetime) -> str:
        return self.date(at.astimezone(self.tz).date())


_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    """Russian plural form for ``n``: 1 день, 2 дня, 5 дней, 11 дней, 21 день."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def _plural_en(n: int, one: str, many: str) -> str:
    return one if abs(n) == 1 else many


def _where(place: str | None) -> str:
    return f" ({place})" if place else ""


_T = tuple[str, str, str]  # subject, body, short


def _gate(kind: NotificationKind) -> Callable[[GateFacts, RenderContext], _T]:
    entered = kind is NotificationKind.CHILD_ENTERED

    def render(f: GateFacts, c: RenderContext) -> _T:
        t = c.time(f.at)
        if c.ru:
            what = "вход в школу" if entered else "выход из школы"
            subject = "Вход в школу" if entered else "Выход из школы"
            return subject, f"{c.child}: {what} в {t}{_where(f.school)}.", f"{subject}, {t}"
        verb = "entered" if entered else "left"
        subject = "Entered school" if entered else "Left school"
        return subject, f"{c.child} {verb} school at {t}{_where(f.school)}.", f"{subject}, {t}"

    return render


def _late(f: LateFacts, c: RenderContext) -> _T:
    minutes = max(0, int((f.at - f.lesson_start).total_seconds() // 60))
    t, ls = c.time(f.at), c.time(f.lesson_start)
    if c.ru:
        unit = plural_ru(minutes, "минуту", "минуты", "минут")
        return (
            "Опоздание",
            f"{c.child}: опоздание на {minutes} {unit} — вход в {t}, уроки начались в {ls}"
            f"{_where(f.school)}.",
            f"Опоздание на {minutes} мин, вход в {t}",
        )
    unit = _plural_en(minutes, "minute", "minutes")
    return (
        "Late for school",
        f"{c.child} was {minutes} {unit} late: entered at {t}, lessons started at {ls}"
        f"{_where(f.school)}.",
        f"Late by {minutes} min, entered at {t}",
    )


def _absent(f: AbsentFacts, c: RenderContext) -> _T:
    d = c.date(f.day)
    if c.ru:
        return (
            "Нет в школе",
            f"{c.child}: нет отметки входа в школу {d}{_where(f.school)}.",
            f"Нет отметки входа {d}",
        )
    return (
        "Absent from school",
        f"{c.child} has not entered school on {d}{_where(f.school)}.",
        f"No school entry on {d}",
    )


def _manual(f: ManualEntryFacts, c: RenderContext) -> _T:
    t = c.time(f.at)
    note = f" — {f.note}" if f.note else ""
    if c.ru:
        what = "вход" if f.entering else "выход"
        return (
            "Отметка охранника",
            f"{c.child}: охранник вручную отметил {what} в {t}{_where(f.school)}{note}.",
            f"Ручная отметка: {what}, {t}",
        )
    what = "entry" if f.entering else "exit"
    return (
        "Recorded by a guard",
        f"A guard recorded {c.child}'s {what} by hand at {t}{_where(f.school)}{note}.",
        f"Manual {what}, {t}",
    )


def _lines(f: CanteenPurchaseFacts, c: RenderContext) -> str:
    unit = "шт." if c.ru else "pcs"
    return ", ".join(f"{ln.name}, {ln.quantity} {unit} — {c.money(ln.amount)}" for ln in f.lines)


def _purchase(f: CanteenPurchaseFacts, c: RenderContext) -> _T:
    t, total, bal = c.time(f.at), c.money(f.total), c.money(f.balance_after)
    if c.ru:
        return (
            "Покупка в столовой",
            f"{c.child}: покупка в столовой на {total} в {t}{_where(f.place)}: {_lines(f, c)}. "
            f"Остаток: {bal}.",
            f"Столовая: {total}, остаток {bal}",
        )
    return (
        "Canteen purchase",
        f"{c.child} bought {total} in the canteen at {t}{_where(f.place)}: {_lines(f, c)}. "
        f"Balance: {bal}.",
        f"Canteen: {total}, balance {bal}",
    )


_DECLINE_RU = {
    DeclineReason.INSUFFICIENT_FUNDS: "недостаточно средств",
    DeclineReason.DAILY_LIMIT: "превышен дневной лимит",
    DeclineReason.BLOCKED_CATEGORY: "запрещённая категория",
    DeclineReason.BLOCKED_ITEM: "запрещённый товар",
    DeclineReason.ALLERGEN: "содержит аллерген",
    DeclineReason.CARD_BLOCKED: "карта заблокирована",
    DeclineReason.OTHER: "платёж отклонён",
}
_DECLINE_EN = {
    DeclineReason.INSUFFICIENT_FUNDS: "insufficient funds",
    DeclineReason.DAILY_LIMIT: "daily limit exceeded",
    DeclineReason.BLOCKED_CATEGORY: "blocked category",
    DeclineReason.BLOCKED_ITEM: "blocked item",
    DeclineReason.ALLERGEN: "contains an allergen",
    DeclineReason.CARD_BLOCKED: "card blocked",
    DeclineReason.OTHER: "payment declined",
}


def _declined(f: PaymentDeclinedFacts, c: RenderContext) -> _T:
    t, amount = c.time(f.at), c.money(f.amount)
    item = f" «{f.item}»" if f.item and c.ru else (f" '{f.item}'" if f.item else "")
    if c.ru:
        reason = _DECLINE_RU[f.reason] + item
        return (
            "Отказ в оплате",
            f"{c.child}: отказ в оплате {amount} в {t}{_where(f.place)} — {reason}.",
            f"Отказ: {amount}, {reason}",
        )
    reason = _DECLINE_EN[f.reason] + item
    return (
        "Payment declined",
        f"{c.child}'s payment of {amount} at {t}{_where(f.place)} was declined: {reason}.",
        f"Declined: {amount}, {reason}",
    )


_FARE_RU = {
    FareExplanation.FULL_FARE: "полный тариф",
    FareExplanation.CONCESSION: "льготный тариф",
    FareExplanation.TRANSFER_FREE: "пересадка, бесплатно",
    FareExplanation.CAPPED: "достигнут лимит поездок, бесплатно",
    FareExplanation.CORRECTED: "пересчитано после поздней выгрузки",
}
_FARE_EN = {
    FareExplanation.FULL_FARE: "full fare",
    FareExplanation.CONCESSION: "student fare",
    FareExplanation.TRANSFER_FREE: "transfer, free",
    FareExplanation.CAPPED: "fare cap reached, free",
    FareExplanation.CORRECTED: "corrected after a late upload",
}


def _ride(f: RideFacts, c: RenderContext) -> _T:
    t, fare = c.time(f.at), c.money(f.fare)
    if c.ru:
        route = f", маршрут {f.route}" if f.route else ""
        stop = f", остановка «{f.stop}»" if f.stop else ""
        refund = f" Возврат: {c.money(f.refund)}." if f.refund else ""
        bal = f" Остаток: {c.money(f.balance_after)}." if f.balance_after is not None else ""
        expl = _FARE_RU[f.explanation]
        return (
            "Поездка",
            f"{c.child}: поездка в {t}{route}{stop} — {fare} ({expl}).{refund}{bal}",
            f"Поездка{route}: {fare}, {expl}",
        )
    route = f", route {f.route}" if f.route else ""
    stop = f", stop '{f.stop}'" if f.stop else ""
    refund = f" Refund: {c.money(f.refund)}." if f.refund else ""
    bal = f" Balance: {c.money(f.balance_after)}." if f.balance_after is not None else ""
    expl = _FARE_EN[f.explanation]
    return (
        "Ride",
        f"{c.child}: ride at {t}{route}{stop} — {fare} ({expl}).{refund}{bal}",
        f"Ride{route}: {fare}, {expl}",
    )


def _top_up(f: TopUpFacts, c: RenderContext) -> _T:
    t, amount = c.time(f.at), c.money(f.amount)
    bal = None if f.balance_after is None else c.money(f.balance_after)
    if c.ru:
        via = f" через {f.source}" if f.source else ""
        return (
            "Пополнение",
            f"{c.child}: пополнение на {amount} в {t}{via}." + (f" Баланс: {bal}." if bal else ""),
            f"Пополнение: {amount}" + (f", баланс {bal}" if bal else ""),
        )
    via = f" via {f.source}" if f.source else ""
    return (
        "Top-up",
        f"{c.child}: topped up with {amount} at {t}{via}." + (f" Balance: {bal}." if bal else ""),
        f"Top-up: {amount}" + (f", balance {bal}" if bal else ""),
    )


def _receipt(f: TopUpFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    card = c.contract or "—"
    if c.ru:
        rows = [
            f"Квитанция {PRODUCT}: пополнение счёта",
            f"Дата и время: {when}",
            f"Получатель: {c.child}, договор {card}",
            f"Сумма: {c.money(f.amount)}",
            f"Способ оплаты: {f.source or '—'}",
            f"Счёт: {f.sub_balance or 'основной'}",
            f"Номер платежа: {f.payment_id}",
        ]
        if f.balance_after is not None:
            rows.append(f"Баланс после пополнения: {c.money(f.balance_after)}")
        return (
            f"Квитанция: пополнение на {c.money(f.amount)}",
            "\n".join(rows),
            f"Квитанция: {c.money(f.amount)}",
        )
    rows = [
        f"{PRODUCT} top-up receipt",
        f"Date and time: {when}",
        f"Recipient: {c.child}, contract {card}",
        f"Amount: {c.money(f.amount)}",
        f"Paid via: {f.source or '—'}",
        f"Account: {f.sub_balance or 'general'}",
        f"Payment id: {f.payment_id}",
    ]
    if f.balance_after is not None:
        rows.append(f"Balance after top-up: {c.money(f.balance_after)}")
    return f"Receipt for a top-up of {c.money(f.amount)}", "\n".join(rows), (
        f"Receipt: {c.money(f.amount)}"
    )


def _low_balance(f: LowBalanceFacts, c: RenderContext) -> _T:
    bal = c.money(f.balance)
    if c.ru:
        days = (
            f" — примерно на {f.days_left} {plural_ru(f.days_left, 'день', 'дня', 'дней')} обедов"
            if f.days_left is not None
            else ""
        )
        return (
            "Заканчиваются деньги",
            f"{c.child}: на балансе {bal}{days}. Пополните счёт.",
            f"Низкий баланс: {bal}",
        )
    days = (
        f" — about {f.days_left} {_plural_en(f.days_left, 'day', 'days')} of lunches left"
        if f.days_left is not None
        else ""
    )
    return "Low balance", f"{c.child}: balance is {bal}{days}. Please top up.", (
        f"Low balance: {bal}"
    )


def _card_blocked(f: CardBlockedFacts, c: RenderContext) -> _T:
    t = c.time(f.at)
    if c.ru:
        why = f" ({f.reason})" if f.reason else ""
        return (
            "Карта заблокирована",
            f"{c.child}: карта заблокирована в {t}{why}. Деньги на балансе сохранены.",
            f"Карта заблокирована, {t}",
        )
    why = f" ({f.reason})" if f.reason else ""
    return (
        "Card blocked",
        f"{c.child}: the card was blocked at {t}{why}. The balance is kept.",
        f"Card blocked, {t}",
    )


def _grace_meal(f: GraceMealFacts, c: RenderContext) -> _T:
    t, debt = c.time(f.at), c.money(f.debt)
    if c.ru:
        return (
            "Обед в долг",
            f"{c.child}: обед в долг в {t} по правилу школы. Долг: {debt}. Следующее "
            "пополнение погасит его.",
            f"Обед в долг, долг {debt}",
        )
    return (
        "Meal on credit",
        f"{c.child} got a meal on credit at {t} under the school's rule. Owed: {debt}. "
        "The next top-up pays it.",
        f"Meal on credit, owed {debt}",
    )


def _operation(f: DisputeOpenedFacts, c: RenderContext) -> str:
    if f.line is None:
        return f"«{f.operation_id}»" if c.ru else f"'{f.operation_id}'"
    if c.ru:
        return f"«{f.operation_id}», строка {f.line + 1}"
    return f"'{f.operation_id}', line {f.line + 1}"


def _dispute_opened(f: DisputeOpenedFacts, c: RenderContext) -> _T:
    when, op = f"{c.day_of(f.at)} {c.time(f.at)}", _operation(f, c)
    if c.ru:
        return (
            "Спор открыт",
            f"{c.child}: открыт спор по операции {op} ({when}). Решение придёт отдельным "
            "сообщением.",
            f"Спор открыт: {op}",
        )
    return (
        "Dispute opened",
        f"{c.child}: a dispute was opened for operation {op} ({when}). You will be told "
        "the decision.",
        f"Dispute opened: {op}",
    )


def _dispute_resolved(f: DisputeResolvedFacts, c: RenderContext) -> _T:
    amount = c.money(f.refunded)
    if c.ru:
        if f.approved:
            back = f" Возвращено: {amount}." if f.refunded else ""
            return ("Спор решён в вашу пользу", f"{c.child}: спор одобрен.{back}",
                    f"Спор одобрен, возврат {amount}")
        return ("Спор отклонён", f"{c.child}: спор рассмотрен и отклонён, деньги не "
                "возвращены. Подробности — в школе или в поддержке.", "Спор отклонён")
    if f.approved:
        back = f" Refunded: {amount}." if f.refunded else ""
        return ("Dispute approved", f"{c.child}: the dispute was approved.{back}",
                f"Dispute approved, refund {amount}")
    return ("Dispute rejected", f"{c.child}: the dispute was reviewed and rejected; nothing "
            "was refunded. Ask the school or support for details.", "Dispute rejected")


def _refund(f: RefundFacts, c: RenderContext) -> _T:
    t, amount = c.time(f.at), c.money(f.amount)
    bal = "" if f.balance_after is None else c.money(f.balance_after)
    if c.ru:
        what = ("за позицию покупки в столовой" + (" по спору" if f.dispute else "")
                if f.of is RefundOf.SALE_LINE else "за поездку — тариф пересчитан")
        return (
            "Возврат денег",
            f"{c.child}: возврат {amount} {what}, {t}." + (f" Остаток: {bal}." if bal else ""),
            f"Возврат: {amount}" + (f", остаток {bal}" if bal else ""),
        )
    what = ("for a canteen purchase line" + (" after a dispute" if f.dispute else "")
            if f.of is RefundOf.SALE_LINE else "for a ride (the fare was recalculated)")
    return (
        "Refund",
        f"{c.child}: {amount} refunded {what} at {t}." + (f" Balance: {bal}." if bal else ""),
        f"Refund: {amount}" + (f", balance {bal}" if bal else ""),
    )


def _debt_settled(f: DebtSettledFacts, c: RenderContext) -> _T:
    total = c.money(f.fares_total)
    if c.ru:
        fares = (f" Оплачено {f.fares} {plural_ru(f.fares, 'поездка', 'поездки', 'поездок')} "
                 f"на {total}; карту снова принимают в транспорте." if f.fares else "")
        return ("Долг погашен", f"{c.child}: долг погашен пополнением.{fares}",
                "Долг погашен" + (f", поездки {total}" if f.fares else ""))
    fares = (f" {f.fares} {_plural_en(f.fares, 'ride', 'rides')} paid ({total}); the card "
             "works on transport again." if f.fares else "")
    return ("Debt paid", f"{c.child}: what was owed is paid by the top-up.{fares}",
            "Debt paid" + (f", rides {total}" if f.fares else ""))


_TOP_UP_REJECTED_RU = {
    TopUpRejection.UNKNOWN_CONTRACT: "договор не найден",
    TopUpRejection.ACCOUNT_CLOSED: "счёт карты закрыт",
    TopUpRejection.PAYMENT_ID_CONFLICT: "платёж с таким номером уже был с другими данными",
    TopUpRejection.OTHER: "платёж не принят",
}
_TOP_UP_REJECTED_EN = {
    TopUpRejection.UNKNOWN_CONTRACT: "the contract is unknown",
    TopUpRejection.ACCOUNT_CLOSED: "the card's account is closed",
    TopUpRejection.PAYMENT_ID_CONFLICT: "a payment with this id came before with other details",
    TopUpRejection.OTHER: "the payment was not accepted",
}


def _top_up_rejected(f: TopUpRejectedFacts, c: RenderContext) -> _T:
    amount = c.money(f.amount)
    if c.ru:
        why = _TOP_UP_REJECTED_RU[f.reason]
        return (
            "Пополнение не зачислено",
            f"{c.child}: пополнение на {amount} не зачислено — {why}. Деньги остались у банка "
            f"или платёжной системы, они вернут их плательщику. Номер платежа: {f.payment_id}.",
            f"Пополнение не зачислено: {amount}",
        )
    why = _TOP_UP_REJECTED_EN[f.reason]
    return (
        "Top-up not credited",
        f"{c.child}: the top-up of {amount} was not credited — {why}. The money stayed with "
        f"the bank or payment service, which returns it to the payer. Payment id: "
        f"{f.payment_id}.",
        f"Top-up not credited: {amount}",
    )


def _auto_top_up_failed(f: AutoTopUpFailedFacts, c: RenderContext) -> _T:
    amount, t = c.money(f.amount), c.time(f.at)
    if c.ru:
        return (
            "Автопополнение не прошло",
            f"{c.child}: автопополнение на {amount} не прошло в {t} (причина: {f.reason}). "
            "Деньги не списаны. Проверьте привязанную карту; следующая попытка — когда баланс "
            "снова опустится ниже порога.",
            f"Автопополнение не прошло: {amount}",
        )
    return (
        "Auto top-up failed",
        f"{c.child}: the auto top-up of {amount} failed at {t} (reason: {f.reason}). Nothing "
        "was charged. Check the linked bank card; it is tried again when the balance next "
        "falls below the threshold.",
        f"Auto top-up failed: {amount}",
    )


def _concession_expiring(f: ConcessionExpiringFacts, c: RenderContext) -> _T:
    d, n = c.date(f.valid_until), max(0, f.days_left)
    if c.ru:
        left = (f"осталось {n} {plural_ru(n, 'день', 'дня', 'дней')}" if n else
                "сегодня последний день")
        return (
            "Заканчивается льготный проезд",
            f"{c.child}: льготный проезд действует до {d} ({left}). Продлите льготу в школе, "
            "иначе поездки будут по полному тарифу.",
            f"Льгота до {d}",
        )
    left = f"{n} {_plural_en(n, 'day', 'days')} left" if n else "today is the last day"
    return (
        "Student fare ends soon",
        f"{c.child}: the student fare is valid until {d} ({left}). Renew it at school, "
        "or rides will cost the full fare.",
        f"Student fare until {d}",
    )


def _registration_attempt(f: RegistrationAttemptFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        return (
            f"Попытка регистрации в {PRODUCT} с вашим номером",
            f"{when} кто-то начал регистрацию в {PRODUCT} с номером телефона вашего аккаунта. "
            "Аккаунт не изменён, код никому не отправлен. Если это были вы — войдите или "
            "восстановите пароль; если нет — ничего делать не нужно.",
            f"Попытка регистрации с вашим номером, {when}",
        )
    return (
        f"Someone tried to register with your {PRODUCT} phone number",
        f"On {when} someone started a {PRODUCT} registration with your account's phone number. "
        "Your account is unchanged and no code was sent. If it was you, sign in or reset your "
        "password; if not, there is nothing to do.",
        f"Registration attempt with your number, {when}",
    )


def _session_revoked(f: SessionRevokedFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        return (
            f"Сеанс {PRODUCT} завершён для защиты",
            f"{when} сеанс вашего аккаунта {PRODUCT} завершён: его ключ входа был использован "
            "повторно, возможно, с чужого устройства. Войдите снова. Если это повторится, "
            "смените пароль.",
            f"Сеанс завершён для защиты, {when}",
        )
    return (
        f"{PRODUCT} session ended for your safety",
        f"On {when} a session of your {PRODUCT} account was ended: its sign-in key was used "
        "twice, possibly from another device. Sign in again. If it happens again, change your "
        "password.",
        f"Session ended for safety, {when}",
    )


def _child_link_refused(f: ChildLinkRefusedFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        return (
            "Попытка привязать карту ребёнка",
            f"{when} кто-то пытался привязать к своему аккаунту карту ребёнка ({c.child}) и "
            "указал неверную дату рождения или код активации. Доступ не выдан. Если это не "
            "член семьи, сообщите в школу или в поддержку.",
            f"Неудачная попытка привязать карту, {when}",
        )
    return (
        "Someone tried to link your child's card",
        f"On {when} someone tried to link your child's card ({c.child}) to their account with "
        "a wrong birth date or activation code. No access was given. If it was not a family "
        "member, tell the school or support.",
        f"Failed attempt to link the card, {when}",
    )


def _new_login(f: NewLoginFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    extra = ", ".join(x for x in (f.device, f.place) if x)
    extra = f" ({extra})" if extra else ""
    if c.ru:
        return (
            f"Новый вход в {PRODUCT}",
            f"Новый вход в аккаунт {PRODUCT} {when}{extra}. Если это были не вы, смените пароль.",
            f"Новый вход, {when}",
        )
    return (
        f"New sign-in to {PRODUCT}",
        f"New sign-in to your {PRODUCT} account on {when}{extra}. "
        "If it was not you, change your password.",
        f"New sign-in, {when}",
    )


def _account_locked(f: AccountLockedFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        if f.until is None:
            return (
                f"Вход в {PRODUCT} заблокирован",
                f"{when} вход в аккаунт {PRODUCT} заблокирован: слишком много неверных "
                "паролей. Чтобы открыть его, обратитесь в поддержку. Если пароль вводили не "
                "вы, смените его после разблокировки.",
                f"Вход заблокирован, {when}",
            )
        return (
            f"Вход в {PRODUCT} временно закрыт",
            f"{when} вход в аккаунт {PRODUCT} временно закрыт: слишком много неверных паролей. "
            f"Он откроется сам в {c.time(f.until)}; с ваших доверенных устройств вход "
            "работает. Если пароль вводили не вы, смените его.",
            f"Вход закрыт до {c.time(f.until)}",
        )
    if f.until is None:
        return (
            f"{PRODUCT} sign-in locked",
            f"On {when} sign-in to your {PRODUCT} account was locked after too many wrong "
            "passwords. Contact support to open it. If it was not you, change your password "
            "once it is open.",
            f"Sign-in locked, {when}",
        )
    return (
        f"{PRODUCT} sign-in paused",
        f"On {when} sign-in to your {PRODUCT} account was paused after too many wrong "
        f"passwords. It opens by itself at {c.time(f.until)}; your trusted devices can still "
        "sign in. If it was not you, change your password.",
        f"Sign-in paused until {c.time(f.until)}",
    )


def _account_unlocked(f: AccountUnlockedFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        return (
            f"Вход в {PRODUCT} разблокирован",
            f"{when} служба поддержки {PRODUCT} по вашему обращению разблокировала вход в "
            "аккаунт. Если вы не обращались в поддержку, срочно смените пароль и свяжитесь с "
            "нами.",
            f"Вход разблокирован поддержкой, {when}",
        )
    return (
        f"{PRODUCT} sign-in unlocked",
        f"On {when} {PRODUCT} support unlocked sign-in to your account at your request. If "
        "you did not contact support, change your password now and let us know.",
        f"Sign-in unlocked by support, {when}",
    )


def _password_changed(f: PasswordChangedFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        return (
            f"Пароль {PRODUCT} изменён",
            f"Пароль аккаунта {PRODUCT} изменён {when}. Все сеансы завершены. "
            "Если это были не вы, обратитесь в поддержку.",
            f"Пароль изменён, {when}",
        )
    return (
        f"{PRODUCT} password changed",
        f"Your {PRODUCT} password was changed on {when}. All sessions were signed out. "
        "If it was not you, contact support.",
        f"Password changed, {when}",
    )


def _second_factor_disabled(f: SecondFactorDisabledFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        if f.by_support:
            return (
                f"Код из приложения для входа в {PRODUCT} отключён",
                f"{when} служба поддержки {PRODUCT} по вашему обращению отключила вход по коду "
                "из приложения-аутентификатора. Все сеансы завершены, войдите снова с паролем "
                "и подключите приложение заново. Если вы не обращались в поддержку, срочно "
                "смените пароль и свяжитесь с нами.",
                f"Код из приложения отключён поддержкой, {when}",
            )
        return (
            f"Код из приложения для входа в {PRODUCT} отключён",
            f"Вход в аккаунт {PRODUCT} по коду из приложения-аутентификатора отключён {when}. "
            "Теперь для входа достаточно пароля. Если это были не вы, смените пароль и "
            "обратитесь в поддержку.",
            f"Код из приложения отключён, {when}",
        )
    if f.by_support:
        return (
            f"{PRODUCT} authenticator code switched off",
            f"On {when} {PRODUCT} support switched off the authenticator-app code for your "
            "account at your request. All sessions were signed out: sign in with your password "
            "and set up the app again. If you did not contact support, change your password "
            "and contact us at once.",
            f"Authenticator code switched off by support, {when}",
        )
    return (
        f"{PRODUCT} authenticator code switched off",
        f"The authenticator-app code for your {PRODUCT} account was switched off on {when}. "
        "Your password alone now signs in. If it was not you, change your password and "
        "contact support.",
        f"Authenticator code switched off, {when}",
    )


_PURPOSE_RU = {
    CodePurpose.REGISTRATION: "регистрации",
    CodePurpose.LOGIN: "входа",
    CodePurpose.PASSWORD_RESET: "сброса пароля",
    CodePurpose.SECOND_FACTOR: "подтверждения входа",
    CodePurpose.PHONE_CONFIRMATION: "подтверждения телефона",
    CodePurpose.EMAIL_CONFIRMATION: "подтверждения e-mail",
}
_PURPOSE_EN = {
    CodePurpose.REGISTRATION: "registration",
    CodePurpose.LOGIN: "sign-in",
    CodePurpose.PASSWORD_RESET: "password reset",
    CodePurpose.SECOND_FACTOR: "sign-in confirmation",
    CodePurpose.PHONE_CONFIRMATION: "phone confirmation",
    CodePurpose.EMAIL_CONFIRMATION: "e-mail confirmation",
}


def _code(f: OneTimeCodeFacts, c: RenderContext) -> _T:
    n = f.ttl_minutes
    if c.ru:
        unit = plural_ru(n, "минуту", "минуты", "минут")
        purpose = _PURPOSE_RU[f.purpose]
        return (
            f"Код {PRODUCT}",
            f"{f.code} — код {purpose} в {PRODUCT}. Действует {n} {unit}. Никому его не сообщайте.",
            f"Код {purpose} отправлен",
        )
    unit = _plural_en(n, "minute", "minutes")
    purpose = _PURPOSE_EN[f.purpose]
    return (
        f"{PRODUCT} code",
        f"{f.code} is your {PRODUCT} {purpose} code. Valid for {n} {unit}. Never share it.",
        f"{purpose.capitalize()} code sent",
    )


def _arrived(f: ArrivedSafelyFacts, c: RenderContext) -> _T:
    t = c.time(f.at)
    if c.ru:
        ride = ""
        if f.ride_at is not None:
            route = f" маршрутом {f.ride_route}" if f.ride_route else ""
            ride = f" Утром — поездка{route} в {c.time(f.ride_at)}."
        return (
            "Прибытие в школу",
            f"{c.child}: благополучно в школе, вход в {t}{_where(f.school)}.{ride}",
            f"Прибытие в школу, {t}",
        )
    ride = ""
    if f.ride_at is not None:
        route = f" on route {f.ride_route}" if f.ride_route else ""
        ride = f" Morning ride{route} at {c.time(f.ride_at)}."
    return (
        "Arrived at school",
        f"{c.child} arrived safely at school at {t}{_where(f.school)}.{ride}",
        f"At school since {t}",
    )


def _not_arrived(f: NotArrivedFacts, c: RenderContext) -> _T:
    rt, ls = c.time(f.last_ride_at), c.time(f.lesson_start)
    if c.ru:
        route = f" маршрутом {f.route}" if f.route else ""
        return (
            "Нет входа в школу",
            f"{c.child}: утром поездка{route} в {rt}, но к началу уроков ({ls}) входа в школу"
            f"{_where(f.school)} нет.",
            f"Поездка в {rt}, нет входа к {ls}",
        )
    route = f" on route {f.route}" if f.route else ""
    return (
        "Not at school",
        f"{c.child} rode{route} at {rt} but has not entered school{_where(f.school)} "
        f"by the start of lessons ({ls}).",
        f"Rode at {rt}, no entry by {ls}",
    )


def _digest(f: DigestFacts, c: RenderContext) -> _T:
    d, n = c.date(f.day), len(f.items)
    lines = [f"{c.time(i.at)} {i.text}" for i in sorted(f.items, key=lambda i: i.at)]
    if c.ru:
        word = plural_ru(n, "событие", "события", "событий")
        return f"Сводка за {d}", "\n".join([f"Сводка за {d}:", *lines]), f"Сводка: {n} {word}"
    word = _plural_en(n, "event", "events")
    return f"Digest for {d}", "\n".join([f"Digest for {d}:", *lines]), f"Digest: {n} {word}"


_SUPPORT_TOPICS_RU = {
    "login": "вход в кабинет", "balance": "баланс", "top_up": "пополнение", "card": "карта",
    "canteen": "столовая", "transit": "проезд", "school_access": "проход в школу",
    "notifications": "уведомления", "other": "другое",
}


def _support_answered(f: SupportAnsweredFacts, c: RenderContext) -> _T:
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    if c.ru:
        topic = _SUPPORT_TOPICS_RU.get(f.topic, f.topic)
        closed = " Обращение закрыто." if f.closed else ""
        return (
            "Ответ службы поддержки",
            f"Служба поддержки {PRODUCT} ответила на ваше обращение «{topic}» {when}."
            f"{closed} Ответ — в разделе «Помощь» приложения.",
            f"Ответ поддержки: {topic}",
        )
    topic = f.topic.replace("_", " ")
    closed = " The request is closed." if f.closed else ""
    return (
        "Support answered",
        f"{PRODUCT} support answered your request \"{topic}\" on {when}.{closed} "
        "Read it under Help in the app.",
        f"Support answered: {topic}",
    )


_ROLE_RU = {GuardianRole.PRIMARY: "основной опекун", GuardianRole.CO_GUARDIAN: "опекун",
            GuardianRole.VIEWER: "наблюдатель"}
_ROLE_EN = {GuardianRole.PRIMARY: "primary guardian", GuardianRole.CO_GUARDIAN: "co-guardian",
            GuardianRole.VIEWER: "viewer"}


def _guardian_invited(f: GuardianInvitedFacts, c: RenderContext) -> _T:
    """To the invitee, who does not guard the child yet: the child is named by its card
    (the cabinet shows the rest once the invitation is accepted)."""
    until = c.day_of(f.expires_at)
    if c.ru:
        return (
            "Приглашение следить за ребёнком",
            f"Вас пригласили следить за ребёнком ({c.child}) в {PRODUCT} с ролью "
            f"«{_ROLE_RU[f.role]}». Примите приглашение в личном кабинете до {until}.",
            f"Приглашение: {c.child}",
        )
    return (
        "Invitation to follow a child",
        f"You were invited to follow a child ({c.child}) in {PRODUCT} as a "
        f"{_ROLE_EN[f.role]}. Accept it in the cabinet by {until}.",
        f"Invitation: {c.child}",
    )


_APPLICATION_RU = {ApplicationOf.NEW_CARD: "заявление на новую карту",
                   ApplicationOf.REFUND: "заявление на возврат остатка"}
_APPLICATION_EN = {ApplicationOf.NEW_CARD: "application for a new card",
                   ApplicationOf.REFUND: "application for the refund of the balance"}


def _application(f: ApplicationFacts, c: RenderContext) -> _T:
    """Accepted, refused (with the staff's comment) or done (a refund with the amount paid
    out)."""
    when = f"{c.day_of(f.at)} {c.time(f.at)}"
    paid = None if f.refunded is None else c.money(f.refunded)
    if c.ru:
        what = _APPLICATION_RU[f.of]
        note = f" Комментарий школы: {f.comment}." if f.comment else ""
        if f.outcome is ApplicationOutcome.ACCEPTED:
            return ("Заявление принято",
                    f"{c.child}: {what} принято школой {when}.{note}",
                    f"Заявление принято: {what}")
        if f.outcome is ApplicationOutcome.REFUSED:
            return ("Заявление отклонено",
                    f"{c.child}: {what} отклонено {when}.{note}",
                    f"Заявление отклонено: {what}")
        done = f" Выплачено: {paid}." if paid else ""
        return ("Заявление выполнено",
                f"{c.child}: {what} выполнено {when}.{done}{note}",
                f"Заявление выполнено: {what}" + (f", {paid}" if paid else ""))
    what = _APPLICATION_EN[f.of]
    note = f" The school's comment: {f.comment}." if f.comment else ""
    if f.outcome is ApplicationOutcome.ACCEPTED:
        return ("Application accepted",
                f"{c.child}: the {what} was accepted by the school on {when}.{note}",
                f"Application accepted: {what}")
    if f.outcome is ApplicationOutcome.REFUSED:
        return ("Application refused",
                f"{c.child}: the {what} was refused on {when}.{note}",
                f"Application refused: {what}")
    done = f" Paid out: {paid}." if paid else ""
    return ("Application done",
            f"{c.child}: the {what} was completed on {when}.{done}{note}",
            f"Application done: {what}" + (f", {paid}" if paid else ""))


# Any is safe here: render() checks the facts type against the kind before dispatching.
_RENDERERS: dict[NotificationKind, Callable[[Any, RenderContext], _T]] = {
    NotificationKind.CHILD_ENTERED: _gate(NotificationKind.CHILD_ENTERED),
    NotificationKind.CHILD_LEFT: _gate(NotificationKind.CHILD_LEFT),
    NotificationKind.LATE: _late,
    NotificationKind.ABSENT: _absent,
    NotificationKind.MANUAL_ENTRY: _manual,
    NotificationKind.CANTEEN_PURCHASE: _purchase,
    NotificationKind.PAYMENT_DECLINED: _declined,
    NotificationKind.RIDE: _ride,
    NotificationKind.TOP_UP: _top_up,
    NotificationKind.RECEIPT: _receipt,
    NotificationKind.LOW_BALANCE: _low_balance,
    NotificationKind.CARD_BLOCKED: _card_blocked,
    NotificationKind.GRACE_MEAL: _grace_meal,
    NotificationKind.DISPUTE_OPENED: _dispute_opened,
    NotificationKind.DISPUTE_RESOLVED: _dispute_resolved,
    NotificationKind.REFUND: _refund,
    NotificationKind.DEBT_SETTLED: _debt_settled,
    NotificationKind.TOP_UP_REJECTED: _top_up_rejected,
    NotificationKind.AUTO_TOP_UP_FAILED: _auto_top_up_failed,
    NotificationKind.CONCESSION_EXPIRING: _concession_expiring,
    NotificationKind.REGISTRATION_ATTEMPT: _registration_attempt,
    NotificationKind.SESSION_REVOKED: _session_revoked,
    NotificationKind.CHILD_LINK_REFUSED: _child_link_refused,
    NotificationKind.NEW_LOGIN: _new_login,
    NotificationKind.PASSWORD_CHANGED: _password_changed,
    NotificationKind.SECOND_FACTOR_DISABLED: _second_factor_disabled,
    NotificationKind.ACCOUNT_LOCKED: _account_locked,
    NotificationKind.ACCOUNT_UNLOCKED: _account_unlocked,
    NotificationKind.ONE_TIME_CODE: _code,
    NotificationKind.ARRIVED_SAFELY: _arrived,
    NotificationKind.NOT_ARRIVED_ALERT: _not_arrived,
    NotificationKind.DAILY_DIGEST: _digest,
    NotificationKind.SUPPORT_ANSWERED: _support_answered,
    NotificationKind.GUARDIAN_INVITED: _guardian_invited,
    NotificationKind.APPLICATION_STATUS: _application,
}


def render(kind: NotificationKind, facts: Facts, ctx: RenderContext) -> Rendered:
    """Render ``facts`` as ``kind`` in ``ctx.locale``; the facts type must match the kind."""
    check_facts(kind, facts)
    subject, body, short = _RENDERERS[kind](facts, ctx)
    return Rendered(subject, body, short, secret=kind is NotificationKind.ONE_TIME_CODE)


_TIMELINE_RU = {
    TimelineKind.RIDE: "Поездка",
    TimelineKind.ENTRY: "Вход в школу",
    TimelineKind.EXIT: "Выход из школы",
    TimelineKind.PURCHASE: "Столовая",
}
_TIMELINE_EN = {
    TimelineKind.RIDE: "Ride",
    TimelineKind.ENTRY: "Entered school",
    TimelineKind.EXIT: "Left school",
    TimelineKind.PURCHASE: "Canteen",
}


def render_timeline(journey: JourneyDay, ctx: RenderContext) -> list[str]:
    """The child's day as the parent reads it: one line per step, in time order."""
    names = _TIMELINE_RU if ctx.ru else _TIMELINE_EN
    lines = []
    for e in journey.timeline:
        place = ""
        if e.place:
            if e.kind is TimelineKind.RIDE:
                place = f", маршрут {e.place}" if ctx.ru else f", route {e.place}"
            else:
                place = f" ({e.place})"
        amount = f" — {ctx.money(e.amount)}" if e.amount is not None else ""
        detail = f"; {e.detail}" if e.detail else ""
        lines.append(f"{ctx.time(e.at)} {names[e.kind]}{place}{amount}{detail}")
    return lines
