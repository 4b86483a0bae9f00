"""Staff views: a school's class register (teachers and school admins) and its canteen's day
(the school admin and the canteen supplier). The services decide who may: a token of another
school is refused there (403)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request

from contracts import access, wallet
from contracts.types import LocalDate, SchoolId
from services.gateway.routes.common import AUTHED, Auth, ask, build_message, csv_response, gateway

ClassName = Annotated[str, Path(min_length=1, max_length=80, description="The school class, "
                                "e.g. 5Б (URL-encoded).", examples=["5Б"])]


def routes() -> APIRouter:
    r = APIRouter(prefix="/v1/schools", tags=["staff"])

    @r.get("/{school_id}/classes/{class_name}/register", response_model=access.ClassRegisterReply,
           responses={**AUTHED, 200: {"content": {"application/json": {}, "text/csv": {}},
                                      "description": "The register (JSON, or CSV with "
                                      "format=csv)."}},
           summary="A class's register of one day: arrived, left, late, absent (teachers and "
           "school admins of the school)")
    async def class_register(request: Request, school_id: SchoolId, class_name: ClassName,
                             me: Auth, date: LocalDate,
                             format: Literal["json", "csv"] = "json") -> Any:
        query = build_message(access.GetClassRegister, school_id=school_id,
                              class_name=class_name, local_date=date, csv=format == "csv")
        reply = await ask(gateway(request), query, school_id, access.ClassRegisterReply,
                          token=me.token)
        if format == "csv":
            return csv_response(reply.csv or "", None, f"register-{date}.csv")
        return reply

    @r.get("/{school_id}/sales-report", response_model=wallet.SalesReportReply,
           responses=AUTHED, summary="The school canteen's day: sales per till and category, "
           "declines by reason, refunds (the school admin and the canteen supplier)")
    async def sales_report(request: Request, school_id: SchoolId, me: Auth,
                           date: LocalDate) -> wallet.SalesReportReply:
        query = build_message(wallet.GetSalesReport, school_id=school_id, date=date)
        return await ask(gateway(request), query, school_id, wallet.SalesReportReply,
                         token=me.token)

    return r
