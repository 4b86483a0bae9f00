"""notify: the topic -> handler table, the sender and digest ticks."""

from __future__ import annotations

from contracts import access, auth, notify, transit, wallet
from services.notify import channels, metrics, store
from services.notify.handlers import Handlers
from services.notify.sender import Sender
from services.notify.settings import Settings
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, Tick, main


async def wire(rt: Runtime) -> Routes:
    settings: Settings = rt.settings  # type: ignore[assignment]
    await store.ensure_indexes(rt.db, journal_retention_days=settings.journal_retention_days,
                               journey_retention_days=settings.journey_retention_days)
    sender = Sender(rt, channels.from_settings(settings))
    rt.uow.observe(metrics.observe)  # domain counters, per committed event
    rt.ticks.append(Tick(every_s=0.0, run=sender.tick, name="notify-sender"))
    rt.ticks.append(Tick(every_s=settings.digest_every_s, run=sender.digest_tick,
                         name="notify-digest"))
    h = Handlers(rt, sender.wake)
    return {
        # auth.guardian-contacts.v1 / auth.events.v1: who to tell, and account alerts
        auth.GuardianContacts: h.on_contacts,
        auth.GuardianLinked: h.on_guardian_linked,
        auth.GuardianRemoved: h.on_guardian_removed,
        auth.AccountClosed: h.on_account_closed,
        auth.LoginSucceeded: h.on_login,
        auth.PasswordChanged: h.on_password_changed,
        auth.SecondFactorDisabled: h.on_second_factor_disabled,
        auth.AccountLocked: h.on_account_locked,
        auth.AccountUnlocked: h.on_account_unlocked,
        auth.RegistrationAttemptedForExistingAccount: h.on_registration_attempted,
        auth.RefreshTokenReused: h.on_refresh_token_reused,
        auth.ChildLinkRefused: h.on_child_link_refused,
        auth.GuardianInvited: h.on_guardian_invited,
        auth.SessionEnded: h.on_session_ended,
        # notify.otp-requests.v1 / notify.commands.v1
        notify.OneTimeCodeRequested: h.on_code_requested,
        notify.SetPreferences: h.on_set_preferences,
        notify.RegisterPushToken: h.on_register_push_token,
        notify.GetJournal: h.on_get_journal,
        notify.GetJourney: h.on_get_journey,
        notify.GetPreferences: h.on_get_preferences,
        notify.ListPushTokens: h.on_list_push_tokens,
        notify.RemovePushToken: h.on_remove_push_token,
        notify.OpenSupportRequest: h.on_open_support_request,
        notify.AnswerSupportRequest: h.on_answer_support_request,
        notify.CloseSupportRequest: h.on_close_support_request,
        notify.GetSupportRequest: h.on_get_support_request,
        notify.GetSupportRequests: h.on_get_support_requests,
        # access.events.v1
        access.StudentEntered: h.on_entered,
        access.StudentLeft: h.on_left,
        access.ManualEntryRecorded: h.on_manual_entry,
        access.LateArrivalDetected: h.on_late,
        access.NotInSchoolAtLessonStart: h.on_not_in_at_lesson_start,
        access.AbsenceDetected: h.on_absent,
        # wallet.events.v1 / wallet.receipts.v1
        wallet.AccountOpened: h.on_account_opened,
        wallet.SalePosted: h.on_sale_posted,
        wallet.SaleDeclined: h.on_sale_declined,
        wallet.TopUpApplied: h.on_top_up,
        wallet.LowBalanceReached: h.on_low_balance,
        wallet.CardBlocked: h.on_card_blocked,
        wallet.FareDeclined: h.on_fare_declined,
        wallet.GraceMealGranted: h.on_grace_meal,
        wallet.DisputeOpened: h.on_dispute_opened,
        wallet.DisputeResolved: h.on_dispute_resolved,
        wallet.SaleLineRefunded: h.on_sale_line_refunded,
        wallet.FareRefunded: h.on_fare_refunded,
        wallet.DebtSettled: h.on_debt_settled,
        wallet.TopUpRejected: h.on_top_up_rejected,
        wallet.AutoTopUpFailed: h.on_auto_top_up_failed,
        wallet.ApplicationStatusChanged: h.on_application_status_changed,
        wallet.ReceiptIssued: h.on_receipt,
        # transit.events.v1
        transit.RideRecorded: h.on_ride,
        transit.ConcessionExpiring: h.on_concession_expiring,
    }


def run() -> None:
    main("notify", Settings, wire)
