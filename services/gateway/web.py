"""The parents' web cabinet: plain HTML/CSS/JS in ``services/gateway/web/`` served at ``/``
(no build step, nothing from another origin), with the one setting the page needs at
``/cabinet-config.json``.

Every cabinet response carries a Content-Security-Policy that allows only this origin: no
inline script or style, no CDN, no frames. The page keeps its tokens in ``sessionStorage``
(gone with the tab), never in ``localStorage`` or cookies, so the gateway stays stateless and
the API keeps its bearer tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).with_name("web")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
"""Only 'self': the page must work offline from the machine, and an injected script or style
could not run (no 'unsafe-inline')."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class CabinetFiles(StaticFiles):
    """Static files with the cabinet's security headers; HTML is revalidated on every load
    so a new release reaches the next page load."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount(api: FastAPI, *, idle_timeout_s: float) -> None:
    """Add the cabinet to ``api``; call it last: the mount at ``/`` answers every path no
    route before it took."""

    @api.get("/cabinet-config.json", include_in_schema=False)
    async def cabinet_config() -> Any:
        return JSONResponse({"idle_timeout_s": idle_timeout_s},
                            headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})

    api.mount("/", CabinetFiles(directory=WEB_DIR, html=True), name="cabinet")
