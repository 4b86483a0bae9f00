"""wallet: the topic -> handler table and the bonus-expiry tick."""

from __future__ import annotations

from contracts import integrations, transit
from contracts import wallet as commands
from services.runtime.consumer import Routes
from services.runtime.service import Runtime, Tick, main
from services.wallet import metrics, store
from services.wallet.handlers import Handlers
from services.wallet.settings import Settings


async def wire(rt: Runtime) -> Routes:
    await store.ensure_indexes(rt.db)
    h = Handlers(rt)
    rt.uow.observe(metrics.observe)  # domain counters, per committed event
    settings: Settings = rt.settings  # type: ignore[assignment]

    async def expire_bonuses() -> None:
        await h.expire_bonuses()

    rt.ticks.append(Tick(settings.bonus_expiry_every_s, expire_bonuses, "bonus-expiry"))
    rt.ticks.append(Tick(settings.parked_top_up_every_s, h.expire_parked_top_ups,
                         "parked-top-up-expiry"))
    async def ask_scheduled_top_ups() -> None:
        await h.ask_scheduled_top_ups()

    rt.ticks.append(Tick(settings.scheduled_top_up_every_s, ask_scheduled_top_ups,
                         "scheduled-top-up"))
    return {
        # integrations.card-issuance.v1
        integrations.CardIssued: h.on_card_issued,
        integrations.CardReissued: h.on_card_reissued,
        integrations.VirtualCardIssued: h.on_virtual_card_issued,
        # integrations.topups.v1
        integrations.TopUpReceived: h.on_top_up,
        integrations.AutoTopUpCollectionFailed: h.on_auto_top_up_failed,
        # integrations.canteen-sales.v1
        integrations.CanteenSaleRequested: h.on_sale,
        # transit.events.v1
        transit.FareAssessed: h.on_fare_assessed,
        transit.FareCorrected: h.on_fare_corrected,
        # wallet.commands.v1
        commands.SetControls: h.on_set_controls,
        commands.SetAutoTopUp: h.on_set_auto_top_up,
        commands.BlockCard: h.on_block_card,
        commands.UnblockCard: h.on_unblock_card,
        commands.MoveMoney: h.on_move_money,
        commands.OpenDispute: h.on_open_dispute,
        commands.ResolveDispute: h.on_resolve_dispute,
        commands.SetGraceMeal: h.on_set_grace_meal,
        commands.RefundSaleLine: h.on_refund_sale_line,
        commands.GetBalance: h.on_get_balance,
        commands.GetCards: h.on_get_cards,
        commands.GetControls: h.on_get_controls,
        commands.GetStatement: h.on_get_statement,
        commands.GetSalesReport: h.on_get_sales_report,
        commands.TagStatementLine: h.on_tag_statement_line,
        commands.SaveTopUpTemplate: h.on_save_top_up_template,
        commands.DeleteTopUpTemplate: h.on_delete_top_up_template,
        commands.GetTopUpTemplates: h.on_get_top_up_templates,
        commands.SetScheduledTopUp: h.on_set_scheduled_top_up,
        commands.ChangeScheduledTopUp: h.on_change_scheduled_top_up,
        commands.SetServices: h.on_set_services,
        commands.GetPaymentSettings: h.on_get_payment_settings,
        commands.SubmitApplication: h.on_submit_application,
        commands.HandleApplication: h.on_handle_application,
        commands.GetApplications: h.on_get_applications,
    }


def run() -> None:
    main("wallet", Settings, wire)
