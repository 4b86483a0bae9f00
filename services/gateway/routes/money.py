"""Money services of a child's card: autopay by date, the services switches, and applications
(a new card, the refund of the balance) with their status; the staff side of applications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from contracts import wallet
from contracts.money import PositiveKopecks
from contracts.types import Identifier, SchoolId, SubBalance
from services.gateway.routes.common import (
    AUTHED,
    MUTATING,
    Auth,
    Body,
    CommandAcceptedModel,
    Contract,
    Key,
    ask,
    body_fields,
    build_message,
    command,
    gateway,
)


class ScheduledTopUpBody(Body):
    days_of_month: list[wallet.DayOfMonth] = Field(min_length=1, max_length=4,
                                                   examples=[[1, 15]])
    amount: PositiveKopecks = Field(examples=[150_000])
    sub_balance: SubBalance = SubBalance.CANTEEN


class ScheduleSwitchBody(Body):
    action: wallet.ScheduleAction = Field(examples=["pause"])


class ServicesBody(Body):
    transit_payments: bool | None = Field(default=None, examples=[False])


class ApplicationBody(Body):
    kind: wallet.ApplicationKind = Field(examples=["new_card"])
    reason: wallet.ApplicationReason = Field(examples=["lost"])
    comment: str = Field(default="", max_length=wallet.APPLICATION_COMMENT_MAX)


class DecisionBody(Body):
    decision: wallet.ApplicationDecision = Field(examples=["accept"])
    comment: str = Field(default="", max_length=wallet.APPLICATION_COMMENT_MAX)


def routes() -> APIRouter:
    r = APIRouter(tags=["money"])

    @r.get("/v1/children/{contract}/payment-settings", response_model=wallet.PaymentSettingsReply,
           responses=AUTHED, summary="The child's autopay by date and services switches")
    async def payment_settings(request: Request, contract: Contract,
                               me: Auth) -> wallet.PaymentSettingsReply:
        return await ask(gateway(request), wallet.GetPaymentSettings(contract=contract),
                         contract, wallet.PaymentSettingsReply, token=me.token)

    @r.put("/v1/children/{contract}/scheduled-top-up", response_model=CommandAcceptedModel,
           responses=MUTATING, summary="Autopay by date: an amount on chosen days of the month "
           "(primary guardian)")
    async def scheduled_top_up(request: Request, contract: Contract, body: ScheduledTopUpBody,
                               me: Auth, key: Key) -> Any:
        message = build_message(wallet.SetScheduledTopUp, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.post("/v1/children/{contract}/scheduled-top-up/switch",
            response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Pause, resume or remove the autopay by date")
    async def switch_scheduled_top_up(request: Request, contract: Contract,
                                      body: ScheduleSwitchBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.ChangeScheduledTopUp, request_id=key,
                                contract=contract, action=body.action)
        return await command(request, message, contract, me)

    @r.patch("/v1/children/{contract}/services", response_model=CommandAcceptedModel,
             responses=MUTATING, summary="Services switches kept by wallet (transit payments)")
    async def services(request: Request, contract: Contract, body: ServicesBody, me: Auth,
                       key: Key) -> Any:
        message = build_message(wallet.SetServices, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.get("/v1/children/{contract}/applications", response_model=wallet.ApplicationsReply,
           responses=AUTHED, summary="The child's applications and their status")
    async def applications(request: Request, contract: Contract, me: Auth,
                           status: wallet.ApplicationStatus | None = None
                           ) -> wallet.ApplicationsReply:
        query = build_message(wallet.GetApplications, contract=contract, status=status)
        return await ask(gateway(request), query, contract, wallet.ApplicationsReply,
                         token=me.token)

    @r.post("/v1/children/{contract}/applications", response_model=CommandAcceptedModel,
            responses=MUTATING, summary="Apply for a new card or for the refund of the balance "
            "on leaving the school; the application's id is the Idempotency-Key")
    async def apply(request: Request, contract: Contract, body: ApplicationBody, me: Auth,
                    key: Key) -> Any:
        message = build_message(wallet.SubmitApplication, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.post("/v1/children/{contract}/applications/{application_id}/decision",
            response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Staff: accept, refuse (with a comment) or finish an application")
    async def decide(request: Request, contract: Contract, application_id: Identifier,
                     body: DecisionBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.HandleApplication, request_id=key, contract=contract,
                                application_id=application_id, **body_fields(body))
        return await command(request, message, contract, me)

    @r.get("/v1/schools/{school_id}/applications", response_model=wallet.ApplicationsReply,
           responses=AUTHED, summary="Staff: a school's applications, newest first")
    async def school_applications(request: Request, school_id: SchoolId, me: Auth,
                                  status: wallet.ApplicationStatus | None = None
                                  ) -> wallet.ApplicationsReply:
        query = build_message(wallet.GetApplications, school_id=school_id, status=status)
        return await ask(gateway(request), query, school_id, wallet.ApplicationsReply,
                         token=me.token)

    return r
