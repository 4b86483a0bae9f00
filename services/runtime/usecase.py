"""The one shape of a use case: authorize -> load -> one domain call -> save / emit / reply.

Every handler of every service is written the same way::

    async def on_block_card(self, msg: Inbound[wire.BlockCard]) -> None:
        cmd = msg.message
        async with self.case(msg) as uc:
            holder = uc.authorize("block_card", contract=cmd.contract)     # authorize
            account = await store.load_account(uc.tx, cmd.contract)        # load
            account.block_card(now=uc.tx.now, by=holder.sub)               # one domain call
            await store.save_account(uc.tx, account, loaded)               # save / emit
            uc.tx.reply(CommandAccepted(request_id=cmd.request_id))        # reply

``case`` opens the message's unit of work (inbox marker first); ``uc.authorize`` verifies the
token (once) and checks its holder may do the action. The case turns every refusal raised
inside the block into one outcome, here and nowhere else:

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
from dataclasses import dataclass, field
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
class Caller(Generic[M]):
    """A message and the holder of its access token: ``authorize`` is the one authorization
    entry point of every handler. A ``Case`` is one; ``UseCases.caller(msg)`` gives one for a
    check before the unit of work (auth hashes a new password only for a caller allowed to
    set it)."""

    msg: Inbound[M]
    verify: Callable[[Inbound[M]], AccessTokenClaims]
    _claims: AccessTokenClaims | None = None

    @property
    def message(self) -> M:
        return self.msg.message

    @property
    def holder(self) -> AccessTokenClaims:
        """The claims of the message's access token, verified on first use (TokenError:
        missing, malformed, expired, signed by another key)."""
        if self._claims is None:
            self._claims = self.verify(self.msg)
        return self._claims

    def authorize(self, action: str, *, contract: str | None = None,
                  school_id: str | None = None,
                  operator_id: str | None = None) -> AccessTokenClaims:
        """The holder, who must be allowed ``action`` for the child under ``contract`` / on
        ``school_id`` / for the transport operator ``operator_id``
        (``services.runtime.authorization``). Called again once the loaded state names what
        the request did not (the child's school)."""
        authorize(self.holder, action, contract=contract, school_id=school_id,
                  operator_id=operator_id)
        return self.holder


@dataclass
class Case(Caller[M]):
    """What a handler's block sees: the unit of work, the message, the token's holder."""

    tx: Transaction = field(kw_only=True)


class UseCases:
    """``self.case = UseCases(rt, refusals=(d.WalletRejected,))`` in a service's Handlers."""

    def __init__(self, rt: Runtime, *, refusals: tuple[type[Exception], ...] = (),
                 explain: Explain = explain_refusal) -> None:
        self.rt = rt
        self.refusals = (Refused, TokenError, *refusals)
        self.explain = explain

    @asynccontextmanager
    async def __call__(self, msg: Inbound[M], *,
                       now: datetime | None = None) -> AsyncIterator[Case[M]]:
        """The unit of work of ``msg`` (at ``now``, else the runtime clock)."""
        async with self.rt.uow.transaction(inbox_id=msg.inbox_id, cause=msg.envelope,
                                           now=now or self.rt.clock()) as tx:
            try:
                yield Case(msg, self.rt.claims, tx=tx)
            except self.refusals as exc:
                self.refuse(tx, msg, *self.explain(exc))

    def caller(self, msg: Inbound[M]) -> Caller[M]:
        """``msg``'s caller outside its unit of work: a check before the transaction (the
        case checks again inside it)."""
        return Caller(msg, self.rt.claims)

    def refuse(self, tx: Transaction, msg: Inbound[Any], code: str, text: str) -> None:
        """A request is answered with an ErrorReply; an event is dead-lettered."""
        metrics.REFUSALS.labels(self.rt.service, code).inc()
        if msg.envelope.reply_to:
            log.info("request refused", type=msg.envelope.type, refusal=code)  # "code" is masked
            tx.fail(code, text)
            return
        raise Rejected(code, text)
