"""A guardian's children: linking, balances, statement, controls, money, cards, rides, journey
and attendance."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from contracts import access, auth, notify, transit, wallet
from contracts.integrations import FoodCategory
from contracts.money import Kopecks, PositiveKopecks
from contracts.types import (
    ContractNumber,
    GuardianRole,
    Identifier,
    LocalDate,
    Secret,
    SubBalance,
)
from services.gateway import problems
from services.gateway.problems import ProblemError

if TYPE_CHECKING:
    pass

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
    csv_response,
    gateway,
    problem_of,
)


class LinkChildBody(Body):
    contract: ContractNumber
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                                   examples=["2014-03-08"])
    activation_code: Secret | None = None


class ControlsBody(Body):
    """Fields left out are unchanged."""

    daily_limits: wallet.DailyLimits | None = None
    blocked_categories: list[FoodCategory] | None = None
    blocked_items: list[Identifier] | None = None
    allergens: list[str] | None = None
    low_balance_threshold: Kopecks | None = None


class AutoTopUpBody(Body):
    enabled: bool
    threshold: Kopecks = 0
    amount: Kopecks = 0
    sub_balance: SubBalance = SubBalance.CANTEEN


class TransferBody(Body):
    from_sub_balance: SubBalance
    to_sub_balance: SubBalance
    amount: PositiveKopecks


class BlockBody(Body):
    reason: str = Field(default="lost", max_length=64, examples=["lost"])


class DisputeBody(Body):
    operation_id: Identifier = Field(description="The statement line's operation id (a sale "
                                     "or a ride).")
    line: int | None = Field(default=None, ge=0, description="Sale line index (0-based).")
    comment: str = Field(default="", max_length=500)


class TagsBody(Body):
    tags: list[wallet.StatementTag] = Field(max_length=5, description="At most 5 tags (up to "
                                            "32 letters, digits, _, - or spaces; # optional); "
                                            "[] clears them.", examples=[["обеды"]])


class TemplateBody(Body):
    name: str = Field(min_length=1, max_length=40, examples=["Обеды на неделю"])
    amount: PositiveKopecks
    sub_balance: SubBalance = SubBalance.CANTEEN


class ChildSummary(BaseModel):
    contract: ContractNumber
    role: GuardianRole
    balances: wallet.Balances | None = Field(default=None, description="None when the balance "
                                             "could not be read (see problem).")
    blocked: bool = False
    problem: problems.Problem | None = None


class Children(BaseModel):
    children: list[ChildSummary]


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1/children", tags=["children"])

    @r.post("", response_model=auth.SessionTokens, responses=MUTATING,
            summary="Link a child (contract + birth date, or an activation code); the reply "
            "carries an access token that includes the child")
    async def link_child(request: Request, body: LinkChildBody, me: Auth,
                         key: Key) -> auth.SessionTokens:
        message = build_message(auth.LinkChild, request_id=key, **body_fields(body))
        return await ask(gateway(request), message, me.claims.sub, auth.SessionTokens,
                         token=me.token)

    @r.get("", response_model=Children, responses=AUTHED,
           summary="The token's children with their balances")
    async def children(request: Request, me: Auth) -> Children:
        gw = gateway(request)

        async def one(grant: auth.ChildGrant) -> ChildSummary:
            try:
                reply = await ask(gw, wallet.GetBalance(contract=grant.contract),
                                  grant.contract, wallet.BalanceReply, token=me.token)
            except ProblemError as exc:
                return ChildSummary(contract=grant.contract, role=grant.role,
                                    problem=problem_of(exc))
            return ChildSummary(contract=grant.contract, role=grant.role,
                                balances=reply.balances, blocked=reply.blocked)

        return Children(children=list(await asyncio.gather(*map(one, me.claims.children))))

    @r.get("/{contract}/balance", response_model=wallet.BalanceReply, responses=AUTHED,
           summary="A child's balances")
    async def balance(request: Request, contract: Contract, me: Auth) -> wallet.BalanceReply:
        return await ask(gateway(request), wallet.GetBalance(contract=contract), contract,
                         wallet.BalanceReply, token=me.token)

    @r.get("/{contract}/statement", response_model=wallet.StatementReply, responses={
        **AUTHED, 200: {"content": {"application/json": {}, "text/csv": {}},
                        "description": "The statement page (JSON, or CSV with format=csv; "
                        "the next page's cursor is in X-Next-Cursor)."}},
        summary="A child's statement, filtered; as CSV with format=csv")
    async def statement(request: Request, contract: Contract, me: Auth,
                        date_from: LocalDate | None = None, date_to: LocalDate | None = None,
                        kinds: Annotated[list[str] | None, Query(description="topup, sale, "
                                                                 "fare, refund, transfer, "
                                                                 "bonus, reissue")] = None,
                        status: str | None = None,
                        text: Annotated[str | None, Query(
                            max_length=100, description="Lines whose note, operation id or an "
                            "item's name contains it (any case)")] = None,
                        tag: Annotated[str | None, Query(
                            max_length=33, description="Lines carrying this tag")] = None,
                        amount_min: Annotated[int | None, Query(
                            ge=0, description="Amount at least, kopecks, the sign aside")] = None,
                        amount_max: Annotated[int | None, Query(
                            ge=0, description="Amount at most, kopecks, the sign aside")] = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100,
                        cursor: Annotated[str | None, Query(max_length=512)] = None,
                        format: Literal["json", "csv"] = "json") -> Any:
        query = build_message(wallet.GetStatement, contract=contract, date_from=date_from,
                              date_to=date_to, kinds=kinds, status=status, text=text, tag=tag,
                              amount_min=amount_min, amount_max=amount_max,
                              csv=format == "csv", limit=limit, cursor=cursor)
        reply = await ask(gateway(request), query, contract, wallet.StatementReply,
                          token=me.token)
        if format == "csv":
            return csv_response(reply.csv or "", reply.next_cursor, f"statement-{contract}.csv")
        return reply

    @r.put("/{contract}/statement/{operation_id}/tags", response_model=CommandAcceptedModel,
           responses=MUTATING, summary="Tag a statement line (replaces its tags; [] clears)")
    async def tag_line(request: Request, contract: Contract, operation_id: Identifier,
                       body: TagsBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.TagStatementLine, request_id=key, contract=contract,
                                operation_id=operation_id, tags=body.tags)
        return await command(request, message, contract, me)

    @r.get("/{contract}/top-up-templates", response_model=wallet.TopUpTemplatesReply,
           responses=AUTHED, summary="The child's saved top-up templates")
    async def templates(request: Request, contract: Contract,
                        me: Auth) -> wallet.TopUpTemplatesReply:
        return await ask(gateway(request), wallet.GetTopUpTemplates(contract=contract),
                         contract, wallet.TopUpTemplatesReply, token=me.token)

    @r.post("/{contract}/top-up-templates", response_model=CommandAcceptedModel,
            responses=MUTATING, summary="Save a top-up template (at most 10 per child); its id "
            "is the Idempotency-Key")
    async def new_template(request: Request, contract: Contract, body: TemplateBody,
                           me: Auth, key: Key) -> Any:
        message = build_message(wallet.SaveTopUpTemplate, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.put("/{contract}/top-up-templates/{template_id}", response_model=CommandAcceptedModel,
           responses=MUTATING, summary="Change a saved top-up template")
    async def change_template(request: Request, contract: Contract, template_id: Identifier,
                              body: TemplateBody, me: Auth, key: Key) -> Any:
        message = build_message(wallet.SaveTopUpTemplate, request_id=key, contract=contract,
                                template_id=template_id, **body_fields(body))
        return await command(request, message, contract, me)

    @r.delete("/{contract}/top-up-templates/{template_id}",
              response_model=CommandAcceptedModel, responses=MUTATING,
              summary="Delete a saved top-up template")
    async def delete_template(request: Request, contract: Contract, template_id: Identifier,
                              me: Auth, key: Key) -> Any:
        message = build_message(wallet.DeleteTopUpTemplate, request_id=key, contract=contract,
                                template_id=template_id)
        return await command(request, message, contract, me)

    @r.get("/{contract}/controls", response_model=wallet.ControlsReply, responses=AUTHED,
           summary="The child's parent controls as set: daily limits, blocked categories and "
           "items, allergens, low-balance threshold, auto top-up, card blocked")
    async def get_controls(request: Request, contract: Contract,
                           me: Auth) -> wallet.ControlsReply:
        return await ask(gateway(request), wallet.GetControls(contract=contract), contract,
                         wallet.ControlsReply, token=me.token)

    @r.patch("/{contract}/controls", response_model=CommandAcceptedModel, responses=MUTATING,
             summary="Parent controls: daily limits, blocked categories and items, allergens, "
             "low-balance threshold (primary guardian)")
    async def controls(request: Request, contract: Contract, body: ControlsBody, me: Auth,
                       key: Key) -> Any:
        message = build_message(wallet.SetControls, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.put("/{contract}/auto-top-up", response_model=CommandAcceptedModel, responses=MUTATING,
           summary="Auto top-up: below a threshold, ask the payment integrator for an amount")
    async def auto_top_up(request: Request, contract: Contract, body: AutoTopUpBody,
                          me: Auth, key: Key) -> Any:
        message = build_message(wallet.SetAutoTopUp, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.post("/{contract}/transfers", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Move money between sub-balances (primary guardian)")
    async def transfer(request: Request, contract: Contract, body: TransferBody, me: Auth,
                       key: Key) -> Any:
        message = build_message(wallet.MoveMoney, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.post("/{contract}/block", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Block a lost card (the balance is kept)")
    async def block(request: Request, contract: Contract, me: Auth, key: Key,
                    body: BlockBody | None = None) -> Any:
        message = build_message(wallet.BlockCard, request_id=key, contract=contract,
                                reason=(body or BlockBody()).reason)
        return await command(request, message, contract, me)

    @r.post("/{contract}/unblock", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Unblock the card")
    async def unblock(request: Request, contract: Contract, me: Auth, key: Key) -> Any:
        message = build_message(wallet.UnblockCard, request_id=key, contract=contract)
        return await command(request, message, contract, me)

    @r.post("/{contract}/disputes", response_model=CommandAcceptedModel, responses=MUTATING,
            summary="Dispute a statement line (a sale line or a ride)")
    async def dispute(request: Request, contract: Contract, body: DisputeBody, me: Auth,
                      key: Key) -> Any:
        message = build_message(wallet.OpenDispute, request_id=key, contract=contract,
                                **body_fields(body))
        return await command(request, message, contract, me)

    @r.get("/{contract}/rides", response_model=transit.RidesReply, responses={
        **AUTHED, 200: {"content": {"application/json": {}, "text/csv": {}},
                        "description": "Rides (JSON, or CSV with format=csv)."}},
        summary="A child's rides with fare and explanation")
    async def rides(request: Request, contract: Contract, me: Auth,
                    date_from: LocalDate | None = None, date_to: LocalDate | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    cursor: Annotated[str | None, Query(max_length=512)] = None,
                    format: Literal["json", "csv"] = "json") -> Any:
        query = build_message(transit.GetRides, contract=contract, date_from=date_from,
                              date_to=date_to, csv=format == "csv", limit=limit, cursor=cursor)
        reply = await ask(gateway(request), query, contract, transit.RidesReply,
                          token=me.token)
        if format == "csv":
            return csv_response(reply.csv or "", reply.next_cursor, f"rides-{contract}.csv")
        return reply

    @r.get("/{contract}/journey", response_model=notify.JourneyReply, responses=AUTHED,
           summary="The journey to school of one day (today in the school's time zone when "
           "no date is given): rides, gate passages, purchases")
    async def journey(request: Request, contract: Contract, me: Auth,
                      date: LocalDate | None = None) -> notify.JourneyReply:
        query = build_message(notify.GetJourney, contract=contract, date=date)
        return await ask(gateway(request), query, contract, notify.JourneyReply,
                         token=me.token)

    @r.get("/{contract}/attendance", response_model=access.StudentStatsReply,
           responses=AUTHED, summary="Attendance statistics of a period (with an SVG chart "
           "and CSV on request)")
    async def attendance(request: Request, contract: Contract, me: Auth,
                         date_from: LocalDate, date_to: LocalDate, chart: bool = False,
                         csv: bool = False, by_month: Annotated[bool, Query(
                             description="Also one line per month of the period, each with "
                             "its absent days (at most 366 days)")] = False
                         ) -> access.StudentStatsReply:
        query = build_message(access.GetStudentStats, contract=contract, date_from=date_from,
                              date_to=date_to, chart=chart, csv=csv, by_month=by_month)
        return await ask(gateway(request), query, contract, access.StudentStatsReply,
                         token=me.token)

    @r.get("/{contract}/entries", response_model=access.EntryLogReply, responses=AUTHED,
           summary="The entry log of a period (at most 366 days): each day's entries and exits, "
           "absent days included, in pages of days")
    async def entry_log(request: Request, contract: Contract, me: Auth,
                        date_from: LocalDate, date_to: LocalDate,
                        limit: Annotated[int, Query(ge=1, le=100)] = 31,
                        cursor: Annotated[str | None, Query(max_length=512)] = None
                        ) -> access.EntryLogReply:
        query = build_message(access.GetEntryLog, contract=contract, date_from=date_from,
                              date_to=date_to, limit=limit, cursor=cursor)
        return await ask(gateway(request), query, contract, access.EntryLogReply,
                         token=me.token)

    @r.get("/{contract}/attendance/chart.svg", responses={
        **AUTHED, 200: {"content": {"image/svg+xml": {}}, "description": "The chart."}},
        response_class=Response, summary="The arrival-time chart of a period as SVG")
    async def attendance_chart(request: Request, contract: Contract, me: Auth,
                               date_from: LocalDate, date_to: LocalDate) -> Response:
        query = build_message(access.GetStudentStats, contract=contract, date_from=date_from,
                              date_to=date_to, chart=True)
        reply = await ask(gateway(request), query, contract, access.StudentStatsReply,
                          token=me.token)
        return Response(reply.chart_svg or "", media_type="image/svg+xml")

    return r
