"""Saved top-up templates: a family names the top-ups it repeats («Обеды», 1 500 ₽ to the
canteen) to pay them again in one tap. A few per child, kept apart from the account."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.wallet.domain.values import (
    MONEY_SUB_BALANCES,
    RejectionReason,
    SubBalance,
    WalletRejected,
    require_aware,
)

MAX_TEMPLATES = 10
TEMPLATE_NAME_MAX = 40


@dataclass(frozen=True, slots=True)
class TopUpTemplate:
    template_id: str
    name: str
    amount: int
    sub_balance: SubBalance
    updated_at: datetime


@dataclass(slots=True)
class TopUpTemplates:
    """The templates of one child's account (at most :data:`MAX_TEMPLATES`, names unique
    whatever their case), in the order they were first saved."""

    contract: str
    templates: list[TopUpTemplate] = field(default_factory=list)
    version: int = 0

    def get(self, template_id: str) -> TopUpTemplate | None:
        return next((t for t in self.templates if t.template_id == template_id), None)

    def save(self, template_id: str, *, name: str, amount: int, sub_balance: SubBalance,
             now: datetime, create: bool) -> TopUpTemplate:
        """Create the template ``template_id`` (``create``) or change the one saved under it
        (``unknown_template`` when there is none). A name is 1-40 characters, unique among the
        child's templates (``template_name_conflict``); the amount is positive and goes to a
        money sub-balance (``invalid_template``); an eleventh template is refused
        (``too_many_templates``). Creating again what is saved under the id changes nothing."""
        name = " ".join(name.split())
        if not name or len(name) > TEMPLATE_NAME_MAX:
            raise WalletRejected(RejectionReason.INVALID_TEMPLATE,
                                 f"a template name is 1-{TEMPLATE_NAME_MAX} characters")
        if amount <= 0 or sub_balance not in MONEY_SUB_BALANCES:
            raise WalletRejected(RejectionReason.INVALID_TEMPLATE,
                                 "a template tops up a money sub-balance by a positive amount")
        current = self.get(template_id)
        if current is None and not create:
            raise WalletRejected(RejectionReason.UNKNOWN_TEMPLATE, f"no template {template_id}")
        if current is not None and create:
            if (current.name, current.amount, current.sub_balance) == (name, amount, sub_balance):
                return current
            raise WalletRejected(RejectionReason.TEMPLATE_NAME_CONFLICT,
                                 f"template {template_id} exists")
        if any(t.name.casefold() == name.casefold() and t.template_id != template_id
               for t in self.templates):
            raise WalletRejected(RejectionReason.TEMPLATE_NAME_CONFLICT,
                                 "another template has this name")
        if current is None and len(self.templates) >= MAX_TEMPLATES:
            raise WalletRejected(RejectionReason.TOO_MANY_TEMPLATES,
                                 f"at most {MAX_TEMPLATES} templates per child")
        saved = TopUpTemplate(template_id, name, amount, sub_balance, require_aware(now))
        if current is None:
            self.templates.append(saved)
        else:
            self.templates[self.templates.index(current)] = saved
        self.version += 1
        return saved

    def delete(self, template_id: str) -> None:
        """Remove a template (``unknown_template`` when there is none)."""
        current = self.get(template_id)
        if current is None:
            raise WalletRejected(RejectionReason.UNKNOWN_TEMPLATE, f"no template {template_id}")
        self.templates.remove(current)
        self.version += 1

    def to_doc(self) -> dict[str, Any]:
        return {"contract": self.contract, "version": self.version, "templates": [
            {"template_id": t.template_id, "name": t.name, "amount": t.amount,
             "sub_balance": t.sub_balance.value, "updated_at": t.updated_at}
            for t in self.templates]}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TopUpTemplates:
        return cls(doc["contract"], [
            TopUpTemplate(t["template_id"], t["name"], int(t["amount"]),
                          SubBalance(t["sub_balance"]), require_aware(t["updated_at"]))
            for t in doc.get("templates", ())], int(doc.get("version", 0)))
