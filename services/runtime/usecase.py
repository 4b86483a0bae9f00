"""The one shape of a use case: authorize -> load -> one domain call -> save / emit / reply.

Every handler of every service is written the same way::

    async def on_block_card(self, msg: Inbound[wire.BlockCard]) -> None:
        async with self.case(msg, "block_card", contract=msg.message.contract) as uc:
            account = await store.load_account(uc.tx, msg.message.contract)  # load
            account.block_card(now=uc.tx.now, by=uc.holder.sub)             # one domain call
            await store.save_account(uc.tx, account, loaded)                 # save / emit
            uc.tx.reply(CommandAccepted(request_id=msg.message.request_id))  # reply

``case`` opens the message's unit of work (inbox marker first), verifies the token and
authorizes the action when one is named, and turns every refusal raised inside the block into
one outcome, here and nowhere else:

- a token refused (``TokenError``: unauthenticated, expired, forbidden, other school),
- a domain refusal (the service's own exception types, each with a ``reason`` code),
- a handler's own refusal (``Refused``: no such contract, a filter it does not know),

becomes an ``ErrorReply`` to the requester when the message is a request (it names a reply
topic), and a dead letter with the code (``Rejected``) when it is an event nobody answers.
What the block wrote or queued before a refusal stays (the domains refuse before they
change anything); the unit of work commits, so a redelivery is not refused twice.

A ``Rejected`` raised inside the block (input that can never succeed, whoever sent it) and
every other exception pass through untouched: the consumer dead-letters or retries them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from contracts.auth import AccessTokenClaims
from services.runtime import metrics
from services.runtime.authorization import authorize
from services.runtime.consumer import Inbound, Rejected
from services.runtime.logs import get_logger
from services.runtime.mongo import Transaction
from services.runtime.tokens import TokenError

if TYPE_CHECKING:
    from services.runtime.service import Runtime

log = get_logger("schoolcard.usecase")

M = TypeVar("M")


class Refused(Exception):
    """A handler's own expected refusal (the aggregate does not exist, a filter is unknown):
    answered like a domain refusal."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


Explain = Callable[[Exception], tuple[str, str]]
"""A refusal -> (code, text for the requester)."""


def explain_refusal(exc: Exception) -> tuple[str, str]:
    """The code and text of a refusal: ``code`` or ``reason`` (an enum or a string)."""
    code = getattr(exc, "code", None) or getattr(exc, "reason", None) or "refused"
    return str(getattr(code, "value", code)), str(exc)


@dataclass
class Case(Generic[M]):
    """What a handler's block sees: the unit of work, the message, the token's holder.

    A token refused when the case opened is ``refused``: the block runs (a context manager
    cannot skip it), but its first use of the unit of work or of the holder raises the
    refusal inside the block, so it changes nothing and the case answers the refusal."""

    _tx: Transaction
    msg: Inbound[M]
    _claims: AccessTokenClaims | None
    refused: Exception | None = None

    def _admitted(self) -> None:
        if self.refused is not None:
            raise self.refused

    @property
    def tx(self) -> Transaction:
        self._admitted()
        return self._tx

    @property
    def claims(self) -> AccessTokenClaims | None:
        self._admitted()
        return self._claims

    @property
    def message(self) -> M:
        return self.msg.message

    @property
    def holder(self) -> AccessTokenClaims:
        """The verified token's claims (the case was opened with an action)."""
        claims = self.claims
        if claims is None:
            raise TypeError("this case was opened without an action: no token was verified")
        return claims

    def authorize(self, action: str, *, contract: str | None = None,
                  school_id: str | None = None) -> None:
        """A second check once the loaded state names what the request did not (the child's
        school); refused like the first."""
        authorize(self.holder, action, contract=contract, school_id=school_id)


class UseCases:
    """``self.case = UseCases(rt, refusals=(d.WalletRejected,))`` in a service's Handlers."""

    def __init__(self, rt: Runtime, *, refusals: tuple[type[Exception], ...] = (),
                 explain: Explain = explain_refusal) -> None:
        self.rt = rt
        self.refusals = (Refused, TokenError, *refusals)
        self.explain = explain

    @asynccontextmanager
    async def __call__(self, msg: Inbound[M], action: str | None = None, *,
                       contract: str | None = None, school_id: str | None = None,
                       now: datetime | None = None) -> AsyncIterator[Case[M]]:
        """The unit of work of ``msg`` (at ``now``, else the runtime clock); with ``action``,
        the token is verified and its holder must be allowed ``action`` for ``contract`` /
        ``school_id`` before the block runs."""
        async with self.rt.uow.transaction(inbox_id=msg.inbox_id, cause=msg.envelope,
                                           now=now or self.rt.clock()) as tx:
            try:
                try:
                    claims = (self.rt.authorize(msg, action, contract, school_id)
                              if action is not None else None)
                    refused: TokenError | None = None
                except TokenError as exc:
                    claims, refused = None, exc
                yield Case(tx, msg, claims, refused)
                if refused is not None:
                    raise refused  # a block that never used the unit of work
            except self.refusals as exc:
                self.refuse(tx, msg, *self.explain(exc))

    def refuse(self, tx: Transaction, msg: Inbound[Any], code: str, text: str) -> None:
        """A request is answered with an ErrorReply; an event is dead-lettered."""
        metrics.REFUSALS.labels(self.rt.service, code).inc()
        if msg.envelope.reply_to:
            log.info("request refused", type=msg.envelope.type, code=code)
            tx.fail(code, text)
            return
        raise Rejected(code, text)
