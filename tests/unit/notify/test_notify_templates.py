from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notify.domain import (
    FACTS_TYPE,
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
    DigestItem,
    DisputeOpenedFacts,
    DisputeResolvedFacts,
    Facts,
    FareExplanation,
    GateFacts,
    GraceMealFacts,
    GuardianInvitedFacts,
    GuardianRole,
    JourneyDay,
    LateFacts,
    Locale,
    LowBalanceFacts,
    ManualEntryFacts,
    NewLoginFacts,
    NotArrivedFacts,
    NotificationKind,
    NotifyError,
    NotifyRejection,
    OneTimeCodeFacts,
    PasswordChangedFacts,
    PaymentDeclinedFacts,
    PurchaseLine,
    RefundFacts,
    RefundOf,
    RegistrationAttemptFacts,
    RenderContext,
    RideFacts,
    SecondFactorDisabledFacts,
    SessionRevokedFacts,
    SupportAnsweredFacts,
    TimelineEntry,
    TimelineKind,
    TopUpFacts,
    TopUpRejectedFacts,
    TopUpRejection,
    plural_ru,
    rejection_reaches_guardians,
    render,
    render_timeline,
)

from .builders import CONTRACT, MSK, msk

pytestmark = pytest.mark.unit

NBSP = "\u00a0"
AT = msk(8, 5)
SAMPLES: dict[NotificationKind, Facts] = {
    NotificationKind.CHILD_ENTERED: GateFacts(AT, "Школа № 5"),
    NotificationKind.CHILD_LEFT: GateFacts(msk(14, 10)),
    NotificationKind.LATE: LateFacts(msk(8, 12), msk(8, 0), "Школа № 5"),
    NotificationKind.ABSENT: AbsentFacts(date(2025, 9, 10), "Школа № 5"),
    NotificationKind.MANUAL_ENTRY: ManualEntryFacts(AT, "Школа № 5", True, "забыла карту"),
    NotificationKind.CANTEEN_PURCHASE: CanteenPurchaseFacts(
        msk(12, 30), (PurchaseLine("Плов", 1, 123_450),), 123_450, 4_550
    ),
    NotificationKind.PAYMENT_DECLINED: PaymentDeclinedFacts(
        msk(12, 31), 123_450, DeclineReason.BLOCKED_CATEGORY, "Буфет", "сладкое"
    ),
    NotificationKind.RIDE: RideFacts(msk(7, 41), 123_450, FareExplanation.CORRECTED, "25",
                                     "Площадь", 10_000, refund=2_000),
    NotificationKind.TOP_UP: TopUpFacts(msk(10, 0), 123_450, 200_000, "pay-1", "Терминал"),
    NotificationKind.RECEIPT: TopUpFacts(msk(10, 0), 123_450, 200_000, "pay-1", "Терминал",
                                         "столовая"),
    NotificationKind.LOW_BALANCE: LowBalanceFacts(123_450, days_left=3, threshold=200_000),
    NotificationKind.CARD_BLOCKED: CardBlockedFacts(msk(9, 0), None),
    NotificationKind.NEW_LOGIN: NewLoginFacts(msk(9, 0), "iPhone", "Ижевск"),
    NotificationKind.PASSWORD_CHANGED: PasswordChangedFacts(msk(9, 0)),
    NotificationKind.SECOND_FACTOR_DISABLED: SecondFactorDisabledFacts(msk(9, 0), True),
    NotificationKind.ACCOUNT_LOCKED: AccountLockedFacts(msk(9, 0), msk(10, 0)),
    NotificationKind.ACCOUNT_UNLOCKED: AccountUnlockedFacts(msk(9, 30)),
    NotificationKind.ONE_TIME_CODE: OneTimeCodeFacts("482913", CodePurpose.LOGIN, 5),
    NotificationKind.GRACE_MEAL: GraceMealFacts(msk(12, 30), 123_450),
    NotificationKind.DISPUTE_OPENED: DisputeOpenedFacts(msk(13, 0), "till-7-000981", 0),
    NotificationKind.DISPUTE_RESOLVED: DisputeResolvedFacts(msk(15, 0), True, 123_450),
    NotificationKind.REFUND: RefundFacts(msk(15, 0), 123_450, RefundOf.SALE_LINE, 200_000, True),
    NotificationKind.DEBT_SETTLED: DebtSettledFacts(msk(10, 0), 2, 123_450),
    NotificationKind.TOP_UP_REJECTED: TopUpRejectedFacts(
        msk(10, 0), 123_450, TopUpRejection.ACCOUNT_CLOSED, "pay-1"),
    NotificationKind.AUTO_TOP_UP_FAILED: AutoTopUpFailedFacts(msk(10, 0), 123_450,
                                                              "card_declined"),
    NotificationKind.CONCESSION_EXPIRING: ConcessionExpiringFacts(date(2025, 9, 17), 7),
    NotificationKind.REGISTRATION_ATTEMPT: RegistrationAttemptFacts(msk(9, 0)),
    NotificationKind.SESSION_REVOKED: SessionRevokedFacts(msk(9, 0)),
    NotificationKind.CHILD_LINK_REFUSED: ChildLinkRefusedFacts(msk(9, 0), 1),
    NotificationKind.ARRIVED_SAFELY: ArrivedSafelyFacts(AT, "Школа № 5", msk(7, 41), "25"),
    NotificationKind.NOT_ARRIVED_ALERT: NotArrivedFacts(msk(7, 41), msk(8, 0), "25", "Школа № 5"),
    NotificationKind.DAILY_DIGEST: DigestFacts(
        date(2025, 9, 10), (DigestItem(msk(12, 30), "Столовая: 135,00 ₽"),)
    ),
    NotificationKind.SUPPORT_ANSWERED: SupportAnsweredFacts("sup_5b1c9e0a7d3f2468", "top_up",
                                                            msk(11, 0)),
    NotificationKind.GUARDIAN_INVITED: GuardianInvitedFacts(msk(9, 0), GuardianRole.VIEWER,
                                                            msk(9, 0) + timedelta(days=7)),
    NotificationKind.APPLICATION_STATUS: ApplicationFacts(
        msk(15, 0), ApplicationOf.REFUND, ApplicationOutcome.DONE, None, 123_450),
}
MONEY_KINDS = {
    NotificationKind.CANTEEN_PURCHASE,
    NotificationKind.PAYMENT_DECLINED,
    NotificationKind.RIDE,
    NotificationKind.TOP_UP,
    NotificationKind.RECEIPT,
    NotificationKind.LOW_BALANCE,
    NotificationKind.GRACE_MEAL,
    NotificationKind.DISPUTE_RESOLVED,
    NotificationKind.REFUND,
    NotificationKind.DEBT_SETTLED,
    NotificationKind.TOP_UP_REJECTED,
    NotificationKind.AUTO_TOP_UP_FAILED,
    NotificationKind.APPLICATION_STATUS,
}


def ctx(locale: Locale) -> RenderContext:
    return RenderContext(locale, ZoneInfo(MSK), "Маша" if locale is Locale.RU else "Masha",
                         CONTRACT)


def test_there_is_a_sample_for_every_kind() -> None:
    assert set(SAMPLES) == set(NotificationKind) == set(FACTS_TYPE)


@pytest.mark.parametrize("locale", list(Locale))
@pytest.mark.parametrize("kind", list(NotificationKind))
def test_every_kind_renders_a_subject_body_and_short_line_in_both_locales(
    kind: NotificationKind, locale: Locale
) -> None:
    text = render(kind, SAMPLES[kind], ctx(locale))
    assert text.subject and text.body and text.short
    assert "{" not in text.body and "None" not in text.body
    cyrillic = any("а" <= ch <= "я" for ch in text.subject.lower())
    assert cyrillic is (locale is Locale.RU)


@pytest.mark.parametrize("kind", sorted(MONEY_KINDS))
def test_money_is_formatted_with_non_breaking_spaces_in_russian(kind: NotificationKind) -> None:
    text = render(kind, SAMPLES[kind], ctx(Locale.RU))
    assert f"1{NBSP}234,50{NBSP}₽" in text.body


@pytest.mark.parametrize("kind", sorted(MONEY_KINDS))
def test_money_is_formatted_in_english_too(kind: NotificationKind) -> None:
    text = render(kind, SAMPLES[kind], ctx(Locale.EN))
    assert f"RUB{NBSP}1,234.50" in text.body


def test_times_are_shown_in_the_guardians_time_zone() -> None:
    facts = GateFacts(msk(8, 5))
    moscow = render(NotificationKind.CHILD_ENTERED, facts, ctx(Locale.RU))
    samara = render(NotificationKind.CHILD_ENTERED, facts,
                    RenderContext(Locale.RU, ZoneInfo("Europe/Samara"), "Маша"))
    assert "в 08:05" in moscow.body
    assert "в 09:05" in samara.body


def test_the_purchase_lists_items_and_the_remaining_balance() -> None:
    facts = CanteenPurchaseFacts(msk(12, 30), (PurchaseLine("Котлета", 1, 8_500),
                                               PurchaseLine("Компот", 2, 2_500)), 13_500, 4_550)
    body = render(NotificationKind.CANTEEN_PURCHASE, facts, ctx(Locale.RU)).body
    assert f"Котлета, 1 шт. — 85,00{NBSP}₽, Компот, 2 шт. — 50,00{NBSP}₽" in body
    assert body.endswith(f"Остаток: 45,50{NBSP}₽.")


def test_the_ride_explains_its_fare() -> None:
    facts = RideFacts(msk(7, 41), 0, FareExplanation.TRANSFER_FREE, "25")
    assert "пересадка, бесплатно" in render(NotificationKind.RIDE, facts, ctx(Locale.RU)).body
    assert "transfer, free" in render(NotificationKind.RIDE, facts, ctx(Locale.EN)).body


def test_low_balance_predicts_days_of_lunches_with_russian_plurals() -> None:
    def body(days: int) -> str:
        facts = LowBalanceFacts(10_000, days_left=days)
        return render(NotificationKind.LOW_BALANCE, facts, ctx(Locale.RU)).body

    assert "примерно на 1 день обедов" in body(1)
    assert "примерно на 3 дня обедов" in body(3)
    assert "примерно на 11 дней обедов" in body(11)


def test_russian_plurals_follow_the_usual_rules() -> None:
    forms = [plural_ru(n, "день", "дня", "дней") for n in (1, 2, 5, 11, 12, 21, 22, 25, 111)]
    assert forms == ["день", "дня", "дней", "дней", "дней", "день", "дня", "дней", "дней"]


def test_a_child_without_a_known_name_is_named_by_contract() -> None:
    anonymous = RenderContext(Locale.RU, ZoneInfo(MSK), None, CONTRACT)
    body = render(NotificationKind.CHILD_ENTERED, GateFacts(AT), anonymous).body
    assert body.startswith(f"Карта {CONTRACT}: вход в школу")


def test_the_receipt_has_an_email_subject_and_the_payment_id() -> None:
    text = render(NotificationKind.RECEIPT, SAMPLES[NotificationKind.RECEIPT], ctx(Locale.RU))
    assert text.subject == f"Квитанция: пополнение на 1{NBSP}234,50{NBSP}₽"
    assert "Номер платежа: pay-1" in text.body and CONTRACT in text.body


def test_facts_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(NotifyError) as err:
        render(NotificationKind.RIDE, GateFacts(AT), ctx(Locale.RU))
    assert err.value.reason is NotifyRejection.FACTS_KIND_MISMATCH


def test_the_one_time_code_is_only_in_the_body_of_its_own_message() -> None:
    text = render(NotificationKind.ONE_TIME_CODE, SAMPLES[NotificationKind.ONE_TIME_CODE],
                  ctx(Locale.RU))
    assert "482913" in text.body
    assert "482913" not in text.subject + text.short + repr(text) + str(text)
    assert "482913" not in repr(SAMPLES[NotificationKind.ONE_TIME_CODE])
    assert text.secret


def test_the_timeline_reads_as_the_childs_day_in_time_order() -> None:
    day = JourneyDay.open(CONTRACT, msk(7, 0), MSK, school="Школа № 5")
    day.record(TimelineEntry("lunch", TimelineKind.PURCHASE, msk(12, 30), "Столовая", 13_500))
    day.record(TimelineEntry("ride", TimelineKind.RIDE, msk(7, 41), "25", 3_500, "полный тариф"))
    day.record(TimelineEntry("in", TimelineKind.ENTRY, msk(8, 2), "Школа № 5"))
    lines = render_timeline(day, ctx(Locale.RU))
    assert lines == [
        f"07:41 Поездка, маршрут 25 — 35,00{NBSP}₽; полный тариф",
        "08:02 Вход в школу (Школа № 5)",
        f"12:30 Столовая (Столовая) — 135,00{NBSP}₽",
    ]
    assert render_timeline(day, ctx(Locale.EN))[0].startswith("07:41 Ride, route 25")


def test_english_dates_are_unambiguous() -> None:
    facts = AbsentFacts(date(2025, 9, 10) + timedelta(days=0))
    assert "10 Sep 2025" in render(NotificationKind.ABSENT, facts, ctx(Locale.EN)).body
    assert "10.09.2025" in render(NotificationKind.ABSENT, facts, ctx(Locale.RU)).body


@pytest.mark.parametrize("locale", list(Locale))
def test_a_rejected_top_up_says_the_money_stayed_with_the_bank(locale: Locale) -> None:
    facts = TopUpRejectedFacts(msk(10, 0), 50_000, TopUpRejection.PAYMENT_ID_CONFLICT, "sbp-7")
    body = render(NotificationKind.TOP_UP_REJECTED, facts, ctx(locale)).body
    assert ("остались у банка" if locale is Locale.RU else "stayed with the bank") in body
    assert "sbp-7" in body


def test_only_a_top_up_for_an_unknown_contract_reaches_nobody() -> None:
    assert [r for r in TopUpRejection if not rejection_reaches_guardians(r)] == [
        TopUpRejection.UNKNOWN_CONTRACT]


@pytest.mark.parametrize(("days", "ru", "en"), [
    (7, "осталось 7 дней", "7 days left"),
    (1, "осталось 1 день", "1 day left"),
    (0, "сегодня последний день", "today is the last day"),
])
def test_the_concession_reminder_counts_the_days_left(days: int, ru: str, en: str) -> None:
    facts = ConcessionExpiringFacts(date(2025, 9, 17), days)
    assert ru in render(NotificationKind.CONCESSION_EXPIRING, facts, ctx(Locale.RU)).body
    assert "17.09.2025" in render(NotificationKind.CONCESSION_EXPIRING, facts,
                                  ctx(Locale.RU)).body
    assert en in render(NotificationKind.CONCESSION_EXPIRING, facts, ctx(Locale.EN)).body


def test_a_rejected_dispute_refunds_nothing_and_an_approved_one_names_the_refund() -> None:
    rejected = render(NotificationKind.DISPUTE_RESOLVED,
                      DisputeResolvedFacts(msk(15, 0), False, 0), ctx(Locale.RU))
    approved = render(NotificationKind.DISPUTE_RESOLVED,
                      DisputeResolvedFacts(msk(15, 0), True, 4_500), ctx(Locale.EN))
    assert rejected.subject == "Спор отклонён" and "₽" not in rejected.body
    assert f"Refunded: RUB{NBSP}45.00" in approved.body


@pytest.mark.parametrize(("locale", "says"), [
    (Locale.RU, (f"Вас пригласили следить за ребёнком (Карта {CONTRACT})", "«наблюдатель»",
                 "в личном кабинете до 17.09.2025")),
    (Locale.EN, (f"You were invited to follow a child (Card {CONTRACT})", "as a viewer",
                 "in the cabinet by 17 Sep 2025")),
])
def test_the_invitee_is_told_which_card_to_follow_and_to_accept_in_the_cabinet(
        locale: Locale, says: tuple[str, ...]) -> None:
    # the invitee guards no child yet: the child is named by the card, never by a name
    invitee = RenderContext(locale, ZoneInfo(MSK), None, CONTRACT)
    facts = GuardianInvitedFacts(msk(9, 0), GuardianRole.VIEWER, msk(9, 0) + timedelta(days=7))
    text = render(NotificationKind.GUARDIAN_INVITED, facts, invitee)
    assert all(part in text.body for part in says)
    assert CONTRACT in text.short


def test_a_refused_application_quotes_the_staff_comment() -> None:
    facts = ApplicationFacts(msk(15, 0), ApplicationOf.NEW_CARD, ApplicationOutcome.REFUSED,
                             "нужна справка")
    ru = render(NotificationKind.APPLICATION_STATUS, facts, ctx(Locale.RU))
    en = render(NotificationKind.APPLICATION_STATUS, facts, ctx(Locale.EN))
    assert ru.subject == "Заявление отклонено"
    assert "заявление на новую карту отклонено" in ru.body
    assert ru.body.endswith("Комментарий школы: нужна справка.")
    assert en.subject == "Application refused"
    assert "The school's comment: нужна справка." in en.body


def test_an_accepted_application_and_a_done_new_card_name_no_money() -> None:
    accepted = render(NotificationKind.APPLICATION_STATUS,
                      ApplicationFacts(msk(15, 0), ApplicationOf.REFUND,
                                       ApplicationOutcome.ACCEPTED), ctx(Locale.RU))
    done = render(NotificationKind.APPLICATION_STATUS,
                  ApplicationFacts(msk(15, 0), ApplicationOf.NEW_CARD, ApplicationOutcome.DONE),
                  ctx(Locale.EN))
    assert accepted.subject == "Заявление принято" and "₽" not in accepted.body
    assert "возврат остатка принято школой" in accepted.body
    assert done.subject == "Application done" and "RUB" not in done.body


@pytest.mark.parametrize(("locale", "paid"), [
    (Locale.RU, f"Выплачено: 1{NBSP}234,50{NBSP}₽."),
    (Locale.EN, f"Paid out: RUB{NBSP}1,234.50."),
])
def test_a_done_refund_names_the_amount_paid_out_in_rubles(locale: Locale, paid: str) -> None:
    text = render(NotificationKind.APPLICATION_STATUS,
                  SAMPLES[NotificationKind.APPLICATION_STATUS], ctx(locale))
    assert paid in text.body
