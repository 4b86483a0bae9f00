"""Turning records and replies into what an operator reads (rich) or a script parses (JSON).
Pure functions of their input, so they are unit-tested without a broker.

Secrets never reach the screen: the secret fields of payloads (contracts.redaction: passwords,
codes, tokens) are shown as ``***``, in decoded payloads and in raw values alike."""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from rich.table import Table
from rich.text import Text

from contracts import catalog
from contracts.envelope import ContractError, ContractModel, Envelope, decode
from contracts.money import format_rub
from contracts.redaction import mask_payload, masked_dump
from services.cli.kafka import DLQ_PREFIX, GroupInfo, Raw

MONEY_FIELDS = frozenset({"amount", "total", "paid_money", "fare", "refund", "refunded", "debt",
                          "balance", "threshold", "unit_price", "balance_after", "new_fare",
                          "general", "canteen", "transit", "max_debt"})
SUMMARY_SKIP = frozenset({"ok", "error"})
SUMMARY_WIDTH = 160


@dataclass
class Decoded:
    """A record as the CLI understands it: the envelope and payload, or why it could not."""

    raw: Raw
    envelope: Envelope | None
    message: ContractModel | None
    problem: str | None

    @property
    def type(self) -> str:
        if self.envelope:
            return self.envelope.type
        return self.raw.headers.get("ce_type") or "?"

    @property
    def time(self) -> str:
        if self.envelope:
            return self.envelope.time.isoformat().replace("+00:00", "Z")
        if self.raw.timestamp_ms is not None:
            return datetime.fromtimestamp(self.raw.timestamp_ms / 1000, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        return "?"


def decode_record(raw: Raw) -> Decoded:
    """Decode against the catalog; types a catalogued topic does not carry are a problem too
    (dead-letter topics carry anything)."""
    topic = catalog.BY_NAME.get(raw.topic)
    allowed = topic.type_names if topic and topic.messages else None
    try:
        env = Envelope.from_headers(raw.headers)
        message = decode(env, raw.value, allowed)
    except ContractError as exc:
        env = None
        with suppress(ContractError):
            env = Envelope.from_headers(raw.headers)
        return Decoded(raw, env, None, f"{exc.code}: {exc.reason}")
    return Decoded(raw, env, message, None)


def _short_type(type_name: str) -> str:
    return type_name.removeprefix("schoolcard.")


def _scalar(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int) and name in MONEY_FIELDS:
        return format_rub(value).replace("\u00a0", " ")
    if isinstance(value, dict):
        inner = " ".join(f"{k}={_scalar(k, v)}" for k, v in value.items() if v is not None)
        return "{" + inner + "}"
    if isinstance(value, list):
        if all(not isinstance(v, (dict, list)) for v in value):
            return "[" + ",".join(str(v) for v in value) + "]"
        return f"[{len(value)} item{'s' if len(value) != 1 else ''}]"
    return str(value)


def summarize(data: dict[str, Any] | BaseModel, width: int = SUMMARY_WIDTH) -> str:
    """``contract=40012345 amount=150,00 ₽ channel=bank_card …``: non-null fields, money in
    roubles, lists counted, secrets masked; personal data is not hidden (the topics carrying it
    say so)."""
    if isinstance(data, BaseModel):
        data = masked_dump(data)
    parts = [f"{k}={_scalar(k, v)}" for k, v in data.items()
             if v is not None and k not in SUMMARY_SKIP]
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def shown_value(type_name: str | None, value: bytes | None) -> str | None:
    """A raw record value as text, the secret fields of the type it names masked (a value
    that is not JSON is shown as it is: it has no fields)."""
    masked, _ = mask_payload(type_name, value)
    return masked.decode("utf-8", errors="replace") if masked is not None else None


def value_preview(value: bytes | None, width: int = 80, type_name: str | None = None) -> str:
    if value is None:
        return "<null>"
    text = shown_value(type_name, value) or ""
    return text if len(text) <= width else text[: width - 1] + "…"


def record_json(d: Decoded) -> dict[str, Any]:
    r = d.raw
    out: dict[str, Any] = {"topic": r.topic, "partition": r.partition, "offset": r.offset,
                           "key": r.key, "type": d.type, "time": d.time,
                           "id": d.envelope.id if d.envelope else r.headers.get("ce_id")}
    if d.message is not None:
        out["payload"] = masked_dump(d.message)
    else:
        out["undecodable"] = d.problem
        out["value"] = shown_value(d.type, r.value)
    dlq = {k: v for k, v in r.headers.items() if k.startswith(DLQ_PREFIX)}
    if dlq:
        out["dlq"] = dlq
    return out


def record_line(d: Decoded) -> Text:
    """One streamed line of ``tail``: time, partition/offset, key, type, summary."""
    r = d.raw
    line = Text()
    line.append(f"{d.time:<24} ", style="dim")
    line.append(f"{r.partition}:{r.offset:<6} ", style="dim")
    line.append(f"{(r.key or '-'):<16} ", style="cyan")
    if d.message is not None:
        line.append(f"{_short_type(d.type):<28} ", style="bold green")
        line.append(summarize(d.message))
    else:
        line.append(f"{'UNDECODABLE':<28} ", style="bold red")
        line.append(f"[{d.type}] {d.problem} value={value_preview(r.value, type_name=d.type)}",
                    style="red")
    return line


def to_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)


def dlq_table(service: str, records: list[Raw]) -> Table:
    table = Table(title=f"{catalog.dead_letter_topic(service)}: {len(records)} record(s)",
                  title_justify="left")
    for col in ("at", "key", "type", "code", "reason", "source", "group", "tries"):
        table.add_column(col, overflow="fold", min_width=16 if col == "reason" else None)
    for r in records:
        h = r.headers
        table.add_row(f"{r.partition}:{r.offset}", r.key or "-",
                      h.get("ce_type", "?").rsplit(".", 1)[-1], h.get(catalog.DLQ_CODE, "?"),
                      h.get(catalog.DLQ_REASON, ""),
                      f"{h.get(catalog.DLQ_TOPIC, '?')}[{h.get(catalog.DLQ_PARTITION, '?')}]"
                      f"@{h.get(catalog.DLQ_OFFSET, '?')}",
                      h.get(catalog.DLQ_GROUP, "-"), h.get(catalog.DLQ_ATTEMPTS, "-"))
    return table


def dlq_json(r: Raw) -> dict[str, Any]:
    return {"partition": r.partition, "offset": r.offset, "key": r.key,
            "type": r.headers.get("ce_type"),
            "dlq": {k: v for k, v in r.headers.items() if k.startswith(DLQ_PREFIX)},
            "value": shown_value(r.headers.get("ce_type"), r.value)}


def lag_table(groups: list[GroupInfo]) -> Table:
    table = Table(title="consumer lag", title_justify="left")
    for col, justify in (("group", "left"), ("state (members)", "left"), ("topic", "left"),
                         ("partition", "right"), ("committed", "right"), ("end", "right"),
                         ("lag", "right")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for g in groups:
        if not g.rows:
            table.add_row(g.group, f"{g.state} ({g.members})", "-", "-", "-", "-", "-")
        for i, row in enumerate(g.rows):
            table.add_row(g.group if i == 0 else "", f"{g.state} ({g.members})" if i == 0 else "",
                          row.topic, str(row.partition), str(row.committed), str(row.end),
                          Text(str(row.lag), style="bold red" if row.lag else "green"))
        if g.rows:
            table.add_row("", "", Text("total", style="bold"), "", "", "",
                          Text(str(g.total_lag), style="bold"), end_section=True)
    return table


def lag_json(groups: list[GroupInfo]) -> list[dict[str, Any]]:
    return [{"group": g.group, "state": g.state, "members": g.members, "lag": g.total_lag,
             "partitions": [{"topic": r.topic, "partition": r.partition,
                             "committed": r.committed, "end": r.end, "lag": r.lag}
                            for r in g.rows]} for g in groups]


# --- replies ------------------------------------------------------------------------------------

def rub(kopecks: int | None) -> str:
    return "-" if kopecks is None else format_rub(kopecks)


def balance_table(reply: Any) -> Table:
    table = Table(title=f"contract {reply.contract}" + ("  [BLOCKED]" if reply.blocked else ""),
                  title_justify="left")
    table.add_column("sub-balance")
    table.add_column("amount", justify="right")
    b = reply.balances
    if b is not None:
        table.add_row("general (Финансы)", rub(b.general))
        table.add_row("canteen (Электронная столовая)", rub(b.canteen))
        table.add_row("transit", rub(b.transit))
        table.add_row("bonus points", f"{b.bonus_points}")
    return table


def statement_table(reply: Any) -> Table:
    table = Table(title=f"statement of {reply.contract}: {len(reply.lines)} line(s)",
                  title_justify="left")
    for col, justify in (("at (UTC)", "left"), ("kind", "left"), ("operation", "left"),
                         ("amount", "right"), ("balance", "left"), ("status", "left"),
                         ("description", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for line in reply.lines:
        desc = line.description
        if line.items:
            desc += " — " + ", ".join(f"{i.name} ×{i.qty}" for i in line.items)
        table.add_row(line.at.strftime("%Y-%m-%d %H:%M"), line.kind, line.operation_id,
                      Text(rub(line.amount), style="red" if line.amount < 0 else "green"),
                      line.sub_balance or "-", line.status, desc)
    return table


def attendance_table(reply: Any, date_from: str, date_to: str) -> Table:
    table = Table(title=f"attendance of {reply.contract}, {date_from} .. {date_to}",
                  title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("days present", str(reply.days_present))
    table.add_row("late arrivals", str(reply.late_count))
    table.add_row("average arrival (school time)", reply.average_arrival or "-")
    return table


def rides_table(reply: Any) -> Table:
    table = Table(title=f"rides of {reply.contract}: {len(reply.rides)}", title_justify="left")
    for col, justify in (("tapped at (UTC)", "left"), ("ride", "left"), ("mode", "left"),
                         ("route", "left"), ("stop", "left"), ("fare", "right"),
                         ("explanation", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    total = 0
    for r in reply.rides:
        total += r.fare
        table.add_row(r.tapped_at.strftime("%Y-%m-%d %H:%M"), r.ride_id, str(r.mode), r.route,
                      r.stop_id, rub(r.fare), str(r.explanation))
    if reply.rides:
        table.add_row("", "", "", "", Text("total", style="bold"), Text(rub(total), style="bold"),
                      "", end_section=True)
    return table


def validation_table(title: str, lines: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold red")
    table.add_column("field", style="bold")
    table.add_column("problem")
    for loc, msg in lines:
        table.add_row(loc, msg)
    return table
