"""``schoolcard`` — the operator CLI: publish integrator messages, tail topics, query balances,
statements, attendance and rides, inspect and replay dead letters, show consumer lag.

The broker comes from ``--bootstrap``, else ``SCHOOLCARD_KAFKA_BOOTSTRAP``, else the
``stack.json`` of a running ``make up`` stack. ``--json`` switches every command to JSON on
stdout (one object per line for ``tail``). Exit codes: 0 ok, 1 failure (broker, no reply,
error reply), 2 invalid input.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from contracts import catalog
from contracts.access import GetStudentStats, StudentStatsReply
from contracts.catalog import topic_for
from contracts.envelope import ContractModel, Reply
from contracts.integrations import GateDirection, TopUpChannel, TransitMode
from contracts.redaction import masked_dump
from contracts.transit import GetRides, RidesReply
from contracts.types import SubBalance
from contracts.wallet import BalanceReply, GetBalance, GetStatement, StatementReply
from services.cli import builders, kafka, render
from services.cli.config import (
    ENV_BOOTSTRAP,
    ENV_RUN_DIR,
    ENV_TOKEN,
    PRIVATE_KEY_FILE,
    ConfigError,
    Settings,
    default_run_dir,
    resolve_signers,
    resolve_token,
)
from services.runtime.kafka_security import KafkaConnection

T = TypeVar("T")

# Piped output (files, grep, tests) gets wide tables instead of rich's 80-column default.
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
out = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)

HELP = (
    "SchoolCard operator CLI: publish integrator messages, tail topics, query balances, "
    "statements, attendance and rides, inspect and replay dead letters, show consumer lag."
    "\n\nThe broker comes from --bootstrap, else SCHOOLCARD_KAFKA_BOOTSTRAP, else the "
    "stack.json of a running `make up` stack; TLS and SASL credentials from "
    "SCHOOLCARD_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME, _SASL_PASSWORD and "
    "_SSL_CAFILE/_CERTFILE/_KEYFILE, as for the services. --json prints JSON (one object "
    "per line for tail and dlq list/replay)."
    "\n\nExit codes: 0 ok; 1 failure (broker, no reply, error reply); 2 invalid input.")

app = typer.Typer(name="schoolcard", help=HELP, no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
publish_app = typer.Typer(help="Publish an integrator message (validated against the contract, "
                          "CloudEvents headers, catalog topic and key).", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead-letter records of a service.",
                      no_args_is_help=True)
app.add_typer(publish_app, name="publish")
app.add_typer(dlq_app, name="dlq")


# --- plumbing -----------------------------------------------------------------------------------

def settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    if not isinstance(obj, Settings):  # called without the callback (tests of sub-apps)
        obj = Settings(None, False, default_run_dir())
    return obj


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async operation; operator-facing failures become one line on stderr."""
    try:
        return asyncio.run(coro)
    except (ConfigError, kafka.KafkaProblem) as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"Kafka: {type(exc).__name__}: {exc}")


def kafka_of(s: Settings) -> KafkaConnection:
    try:
        return s.kafka
    except ConfigError as exc:
        fail(str(exc))


def build(what: str, factory: Callable[[], T]) -> T:
    """Build a contract model from options; invalid input exits 2 with a field table."""
    try:
        return factory()
    except builders.OptionError as exc:
        fail(str(exc), 2)
    except ValidationError as exc:
        err.print(render.validation_table(f"invalid {exc.title or what}",
                                          builders.validation_lines(exc)))
        raise typer.Exit(2) from None


def emit_json(data: Any) -> None:
    typer.echo(render.to_json(data))


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap: Annotated[str | None, typer.Option(
        "--bootstrap", "-b", envvar=ENV_BOOTSTRAP, show_envvar=True,
        help="Kafka bootstrap servers; default: the running `make up` stack.")] = None,
    json_output: Annotated[bool, typer.Option(
        "--json", help="Machine-readable JSON on stdout instead of tables.")] = False,
    run_dir: Annotated[Path | None, typer.Option(
        "--run-dir", envvar=ENV_RUN_DIR, help="Run directory of the embedded stack "
        "(stack.json, dev keys); default: .run of the repository.")] = None,
    source: Annotated[str, typer.Option(
        "--source", help="ce_source of what the CLI publishes.")] = "integrator:cli",
) -> None:
    """SchoolCard operator CLI."""
    ctx.obj = Settings(bootstrap, json_output, run_dir or default_run_dir(), source)


# --- publish ------------------------------------------------------------------------------------

DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate and print the message "
                                      "without publishing it.")]
At = Annotated[str | None, typer.Option(help="Event time, RFC 3339 with a zone "
                                        "(e.g. 2026-09-01T07:45:00+04:00); default now.")]


@publish_app.callback()
def publish_options(
    ctx: typer.Context,
    signing_key: Annotated[Path | None, typer.Option(
        "--signing-key", help="PEM of the integrator's Ed25519 private key, for the messages "
        "that must be signed (TopUpReceived, CardIssued, CardReissued); default: the dev key "
        "`make up` wrote into the run directory.")] = None,
    signer: Annotated[str | None, typer.Option(
        "--signer", help="Key id of --signing-key (schoolcard-signer header), e.g. "
        "integrator:payments#2026-09; default: the topic's integrator.")] = None,
) -> None:
    """Publish an integrator message."""
    s = settings(ctx)
    s.signing_key, s.signer = signing_key, signer


def publish_message(ctx: typer.Context, what: str, factory: Callable[[], ContractModel],
                    dry_run: bool) -> None:
    s = settings(ctx)
    message = build(what, factory)
    topic = topic_for(type(message)).name
    key = builders.key_of(message)
    payload = masked_dump(message)
    if dry_run:
        if s.json_output:
            emit_json({"topic": topic, "key": key, "type": message.TYPE, "payload": payload,
                       "published": False})
        else:
            out.print(f"[yellow]dry run[/] {message.TYPE} -> {topic} key {key}")
            out.print(render.summarize(payload), soft_wrap=True)
        return
    connection = kafka_of(s)
    try:
        signers = resolve_signers(topic, message.TYPE, s.run_dir, s.signing_key, s.signer)
    except ConfigError as exc:
        fail(str(exc))
    sent = run(kafka.publish(connection, topic, message, key, source=s.source,
                             signers=signers))
    if s.json_output:
        emit_json({"topic": sent.topic, "partition": sent.partition, "offset": sent.offset,
                   "key": key, "type": message.TYPE, "id": sent.headers["ce_id"],
                   "payload": payload, "published": True})
    else:
        out.print(f"[green]published[/] {message.TYPE} -> {sent.topic}[{sent.partition}]"
                  f"@{sent.offset} key {key} id {sent.headers['ce_id']}")
        out.print(render.summarize(payload), soft_wrap=True)


@publish_app.command("topup")
def publish_topup(
    ctx: typer.Context,
    contract: Annotated[str, typer.Option("--contract", "-c", help="8-digit contract.")],
    amount: Annotated[str | None, typer.Option(
        help="Amount in roubles: 150, 150.50, '1 234,50'.")] = None,
    kopecks: Annotated[int | None, typer.Option(help="Amount in kopecks instead.")] = None,
    payment_id: Annotated[str | None, typer.Option(
        help="Integrator's payment id (idempotency key); default generated.")] = None,
    sub_balance: Annotated[SubBalance, typer.Option()] = SubBalance.GENERAL,
    channel: Annotated[TopUpChannel, typer.Option()] = TopUpChannel.BANK_CARD,
    receipt_email: Annotated[str | None, typer.Option(help="Send an e-mail receipt.")] = None,
    auto_top_up_request_id: Annotated[str | None, typer.Option(
        help="Answering wallet's AutoTopUpRequested.")] = None,
    paid_at: At = None,
    dry_run: DryRun = False,
) -> None:
    """A top-up from a payment integrator (TopUpReceived on integrations.topups.v1)."""
    publish_message(ctx, "TopUpReceived", lambda: builders.top_up(
        contract=contract, amount=builders.money("--amount", amount, kopecks),
        payment_id=payment_id, sub_balance=sub_balance.value, channel=channel.value,
        receipt_email=receipt_email, paid_at=paid_at,
        auto_top_up_request_id=auto_top_up_request_id), dry_run)


@publish_app.command("card")
def publish_card(
    ctx: typer.Context,
    contract: Annotated[str, typer.Option("--contract", "-c", help="8-digit contract (the "
                                          "new one when reissuing).")],
    card_uid: Annotated[str, typer.Option(help="Chip UID, hex.")],
    school_id: Annotated[str, typer.Option(help="School slug, e.g. izh-school-42.")],
    class_name: Annotated[str, typer.Option("--class", help="Class, e.g. 5Б.")],
    school_tz: Annotated[str, typer.Option(help="IANA zone of the school.")] = "Europe/Samara",
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (new cards).")] = None,
    student_id: Annotated[str | None, typer.Option(help="Default generated.")] = None,
    birth_date_password: Annotated[bool, typer.Option(
        "--birth-date-password", help="Initial cabinet password is the birth date.")] = False,
    reissue_of: Annotated[str | None, typer.Option(
        help="Old contract: publish CardReissued instead of CardIssued.")] = None,
    issued_at: At = None,
    dry_run: DryRun = False,
) -> None:
    """A card issued (or reissued) by the card issuing system."""
    publish_message(ctx, "CardIssued", lambda: builders.card(
        contract=contract, card_uid=card_uid, school_id=school_id, school_tz=school_tz,
        class_name=class_name, student_id=student_id, birth_date=birth_date,
        birth_date_password=birth_date_password, issued_at=issued_at,
        reissue_of=reissue_of), dry_run)


@publish_app.command("sale")
def publish_sale(
    ctx: typer.Context,
    card_uid: Annotated[str, typer.Option(help="Chip UID, hex.")],
    school_id: Annotated[str, typer.Option()],
    terminal_id: Annotated[str, typer.Option(help="The till.")],
    item: Annotated[list[str], typer.Option(
        help="SKU:NAME:CATEGORY:QTY:PRICE_RUB[:ALLERGEN,..] or a JSON object; repeat per "
        "line.")],
    sale_id: Annotated[str | None, typer.Option(help="Till's sale id; default generated.")]
    = None,
    bonus: Annotated[int, typer.Option(help="Bonus points to redeem (kopecks).")] = 0,
    sold_at: At = None,
    dry_run: DryRun = False,
) -> None:
    """A canteen sale with line items (CanteenSaleRequested)."""
    publish_message(ctx, "CanteenSaleRequested", lambda: builders.sale(
        card_uid=card_uid, school_id=school_id, terminal_id=terminal_id, items=item,
        sale_id=sale_id, bonus=bonus, sold_at=sold_at), dry_run)


@publish_app.command("gate-tap")
def publish_gate_tap(
    ctx: typer.Context,
    card_uid: Annotated[str, typer.Option(help="Chip UID, hex.")],
    school_id: Annotated[str, typer.Option()],
    gate_id: Annotated[str, typer.Option(help="The turnstile.")],
    direction: Annotated[GateDirection, typer.Option()] = GateDirection.IN,
    tap_id: Annotated[str | None, typer.Option(help="Default generated.")] = None,
    tapped_at: At = None,
    dry_run: DryRun = False,
) -> None:
    """A turnstile tap (GateTapped)."""
    publish_message(ctx, "GateTapped", lambda: builders.gate_tap(
        card_uid=card_uid, school_id=school_id, gate_id=gate_id, direction=direction.value,
        tap_id=tap_id, tapped_at=tapped_at), dry_run)


@publish_app.command("validator-tap")
def publish_validator_tap(
    ctx: typer.Context,
    card_uid: Annotated[str, typer.Option(help="Chip UID, hex.")],
    validator_id: Annotated[str, typer.Option()],
    vehicle_id: Annotated[str, typer.Option()],
    route: Annotated[str, typer.Option(help="Route number.")],
    stop_id: Annotated[str, typer.Option()],
    mode: Annotated[TransitMode, typer.Option()] = TransitMode.BUS,
    operator_id: Annotated[str, typer.Option(help="Whose fare rules apply.")] = "izhevsk",
    offline: Annotated[bool, typer.Option(
        "--offline", help="Uploaded late by an offline validator.")] = False,
    tap_id: Annotated[str | None, typer.Option(help="Default generated.")] = None,
    tapped_at: At = None,
    dry_run: DryRun = False,
) -> None:
    """A transport validator tap (ValidatorTapped)."""
    publish_message(ctx, "ValidatorTapped", lambda: builders.validator_tap(
        card_uid=card_uid, validator_id=validator_id, vehicle_id=vehicle_id,
        operator_id=operator_id, route=route, mode=mode.value, stop_id=stop_id, tap_id=tap_id,
        tapped_at=tapped_at, offline=offline), dry_run)


# --- tail ---------------------------------------------------------------------------------------

@app.command()
def tail(
    ctx: typer.Context,
    topic: Annotated[str, typer.Argument(help="Topic name, e.g. wallet.events.v1.")],
    from_beginning: Annotated[bool, typer.Option(
        "--from-beginning", help="Start at the oldest record.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1,
                                              help="Stop after N records shown.")] = None,
    follow: Annotated[bool, typer.Option(help="Keep waiting for new records; --no-follow "
                                         "stops at the end seen at start.")] = True,
    idle_timeout: Annotated[float | None, typer.Option(
        help="Stop after this many seconds without a record.")] = None,
    type_filter: Annotated[str | None, typer.Option(
        "--type", help="Only types containing this text, e.g. TopUpApplied.")] = None,
    key: Annotated[str | None, typer.Option(help="Only records with this key.")] = None,
) -> None:
    """Stream a topic's records decoded against the contracts (type, key, time, payload
    summary); undecodable records are shown as such with the reason."""
    s = settings(ctx)
    if topic not in catalog.BY_NAME:
        err.print(f"[yellow]note:[/] {escape(topic)} is not in the catalog; decoding by "
                  "ce_type only")
    conn = kafka_of(s)

    async def go() -> int:
        shown = 0
        stream = kafka.read(conn, topic, from_beginning=from_beginning, follow=follow,
                            idle_timeout=idle_timeout)
        async with aclosing(stream) as records:
            async for raw in records:
                if key is not None and raw.key != key:
                    continue
                decoded = render.decode_record(raw)
                if type_filter and type_filter.lower() not in decoded.type.lower():
                    continue
                if s.json_output:
                    emit_json(render.record_json(decoded))
                else:
                    out.print(render.record_line(decoded), soft_wrap=True)
                shown += 1
                if limit is not None and shown >= limit:
                    break
        return shown

    if not s.json_output:
        err.print(f"[dim]{escape(topic)} on {escape(conn.bootstrap)}"
                  f"{' from the beginning' if from_beginning else ', new records'}"
                  f"{'' if follow else ', until the current end'}; Ctrl-C stops[/]")
    try:
        shown = run(go())
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if not s.json_output:
        err.print(f"[dim]{shown} record(s)[/]")


# --- queries ------------------------------------------------------------------------------------

Token = Annotated[str | None, typer.Option(
    "--token", envvar=ENV_TOKEN, show_envvar=True, help="Access token (Bearer) of the caller.")]
AsSupport = Annotated[bool, typer.Option(
    "--as-support", help="Sign a support-role token with the dev private key of the "
    "embedded stack (<run-dir>/auth_ed25519.pem).")]
KeyFile = Annotated[Path | None, typer.Option(
    help="Private key for --as-support; default <run-dir>/auth_ed25519.pem.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the reply.")]
DateFrom = Annotated[str | None, typer.Option("--from", help="First local day, YYYY-MM-DD.")]
DateTo = Annotated[str | None, typer.Option("--to", help="Last local day, YYYY-MM-DD.")]
Csv = Annotated[bool, typer.Option("--csv", help="Print the service's CSV export instead of "
                                   "a table.")]
Contract = Annotated[str, typer.Argument(help="8-digit contract number.")]
Limit = Annotated[int, typer.Option(min=1, max=500, help="Most lines in the page.")]
Cursor = Annotated[str | None, typer.Option(help="The next_cursor a previous page printed.")]


def more(cursor: str | None) -> None:
    if cursor is not None:
        err.print(f"more lines follow: --cursor {cursor}")


def query(ctx: typer.Context, message: ContractModel, reply_type: type[Reply], *,
          token: str | None, as_support: bool, key_file: Path | None, timeout: float) -> Any:
    """Send a query with a token, wait for the reply, exit 1 on an error reply."""
    s = settings(ctx)
    topic = topic_for(type(message)).name
    key = builders.key_of(message)
    try:
        bearer = resolve_token(token, as_support, key_file or s.run_dir / PRIVATE_KEY_FILE)
    except ConfigError as exc:
        fail(str(exc), 2)
    raw = run(kafka.request(kafka_of(s), message, topic, key, token=bearer,
                            source=s.source.replace("integrator:", "operator:"),
                            timeout=timeout))
    decoded = render.decode_record(raw)
    if decoded.message is None:
        fail(f"undecodable reply ({decoded.type}): {decoded.problem}")
    reply = decoded.message
    if isinstance(reply, Reply) and not reply.ok:
        code = reply.error.code if reply.error else "error"
        text = reply.error.message if reply.error else "request failed"
        if s.json_output:
            emit_json(masked_dump(reply))
        fail(f"{code}: {text}")
    if not isinstance(reply, reply_type):
        fail(f"unexpected reply {decoded.type}: {render.summarize(reply)}")
    return reply


def print_csv(text: str | None) -> None:
    if text is None:
        fail("the reply carries no CSV")
    typer.echo(text, nl=not text.endswith("\n"))


@app.command()
def balance(ctx: typer.Context, contract: Contract, token: Token = None,
            as_support: AsSupport = False, key_file: KeyFile = None,
            timeout: Timeout = 15) -> None:
    """Balances of a contract (wallet GetBalance)."""
    message = build("GetBalance", lambda: GetBalance(contract=contract))
    reply: BalanceReply = query(ctx, message, BalanceReply, token=token, as_support=as_support,
                                key_file=key_file, timeout=timeout)
    if settings(ctx).json_output:
        emit_json(masked_dump(reply))
    else:
        out.print(render.balance_table(reply))


@app.command()
def statement(ctx: typer.Context, contract: Contract, date_from: DateFrom = None,
              date_to: DateTo = None, csv: Csv = False,
              kind: Annotated[list[str] | None, typer.Option(
                  help="topup, sale, fare, refund, transfer, bonus, reissue; repeatable.")]
              = None,
              status: Annotated[str | None, typer.Option(
                  help="posted | declined | disputed.")] = None,
              limit: Limit = 100, cursor: Cursor = None, token: Token = None,
              as_support: AsSupport = False, key_file: KeyFile = None,
              timeout: Timeout = 15) -> None:
    """Statement lines of a contract (wallet GetStatement)."""
    message = build("GetStatement", lambda: GetStatement(
        contract=contract, date_from=date_from, date_to=date_to, kinds=kind or None,
        status=status, csv=csv, limit=limit, cursor=cursor))
    reply: StatementReply = query(ctx, message, StatementReply, token=token,
                                  as_support=as_support, key_file=key_file, timeout=timeout)
    if csv:
        print_csv(reply.csv)
    elif settings(ctx).json_output:
        emit_json(masked_dump(reply))
    else:
        out.print(render.statement_table(reply))
    more(reply.next_cursor)


@app.command()
def attendance(ctx: typer.Context, contract: Contract,
               date_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD.")],
               date_to: Annotated[str, typer.Option("--to", help="YYYY-MM-DD.")],
               csv: Csv = False, token: Token = None, as_support: AsSupport = False,
               key_file: KeyFile = None, timeout: Timeout = 15) -> None:
    """Attendance statistics of a student over a period (access GetStudentStats)."""
    message = build("GetStudentStats", lambda: GetStudentStats(
        contract=contract, date_from=date_from, date_to=date_to, csv=csv))
    reply: StudentStatsReply = query(ctx, message, StudentStatsReply, token=token,
                                     as_support=as_support, key_file=key_file,
                                     timeout=timeout)
    if csv:
        print_csv(reply.csv)
    elif settings(ctx).json_output:
        emit_json(masked_dump(reply))
    else:
        out.print(render.attendance_table(reply, date_from, date_to))


@app.command()
def rides(ctx: typer.Context, contract: Contract, date_from: DateFrom = None,
          date_to: DateTo = None, csv: Csv = False, limit: Limit = 100,
          cursor: Cursor = None, token: Token = None, as_support: AsSupport = False,
          key_file: KeyFile = None, timeout: Timeout = 15) -> None:
    """Rides of a contract with fares and explanations (transit GetRides)."""
    message = build("GetRides", lambda: GetRides(contract=contract, date_from=date_from,
                                                 date_to=date_to, csv=csv, limit=limit,
                                                 cursor=cursor))
    reply: RidesReply = query(ctx, message, RidesReply, token=token, as_support=as_support,
                              key_file=key_file, timeout=timeout)
    if csv:
        print_csv(reply.csv)
    elif settings(ctx).json_output:
        emit_json(masked_dump(reply))
    else:
        out.print(render.rides_table(reply))
    more(reply.next_cursor)


# --- dead letters -------------------------------------------------------------------------------

Service = Annotated[str, typer.Argument(help=f"One of {', '.join(catalog.SERVICES)}.")]


def dlq_topic(service: str) -> str:
    if service not in catalog.SERVICES:
        fail(f"unknown service {service!r}; one of {', '.join(catalog.SERVICES)}", 2)
    return catalog.dead_letter_topic(service)


@dlq_app.command("list")
def dlq_list(ctx: typer.Context, service: Service,
             limit: Annotated[int, typer.Option("--limit", "-n", min=1,
                                                help="Show the N most recent.")] = 50,
             code: Annotated[str | None, typer.Option(help="Only this dlq_code.")] = None
             ) -> None:
    """Dead letters of a service with their dlq_* headers: code, reason, source
    topic/partition/offset, consumer group, attempts."""
    s = settings(ctx)
    topic = dlq_topic(service)
    records = run(kafka.read_all(kafka_of(s), topic))
    if code:
        records = [r for r in records if r.headers.get(catalog.DLQ_CODE) == code]
    records = sorted(records, key=lambda r: (r.timestamp_ms or 0, r.partition, r.offset))
    records = records[-limit:]
    if s.json_output:
        for r in records:
            emit_json(render.dlq_json(r))
    else:
        out.print(render.dlq_table(service, records))


@dlq_app.command("replay")
def dlq_replay(ctx: typer.Context, service: Service,
               offset: Annotated[int | None, typer.Option(
                   help="Offset of the dead letter to replay (see `dlq list`).")] = None,
               partition: Annotated[int | None, typer.Option(
                   help="Partition of --offset when the topic has several.")] = None,
               replay_all: Annotated[bool, typer.Option(
                   "--all", help="Replay every dead letter of the service.")] = False,
               dry_run: DryRun = False) -> None:
    """Re-publish dead letters to their source topic: original key, value and headers, the
    dlq_* headers removed (the same ce_id, so a message that was in fact applied stays
    applied once). A dead letter whose secrets were masked (dlq_masked) is not replayed."""
    s = settings(ctx)
    if (offset is None) == (not replay_all):
        fail("give exactly one of --offset N or --all", 2)
    topic = dlq_topic(service)
    conn = kafka_of(s)
    records = run(kafka.read_all(conn, topic))
    if offset is not None:
        chosen = [r for r in records if r.offset == offset
                  and (partition is None or r.partition == partition)]
        if not chosen:
            fail(f"no record at offset {offset}"
                 f"{'' if partition is None else f' of partition {partition}'} on {topic}")
        if len(chosen) > 1:
            fail(f"offset {offset} exists on partitions "
                 f"{', '.join(str(r.partition) for r in chosen)} of {topic}: add --partition", 2)
        records = chosen
    else:
        masked = [r for r in records if r.headers.get(catalog.DLQ_MASKED)]
        records = [r for r in records if not r.headers.get(catalog.DLQ_MASKED)]
        if masked:
            err.print(f"skipped {len(masked)} dead letter(s) whose secrets were masked "
                      f"({catalog.DLQ_MASKED}): their senders must send them again")
    try:
        items = [kafka.replay_item(r) for r in records]
    except kafka.KafkaProblem as exc:
        fail(str(exc))
    sent: list[kafka.Sent | None] = [None] * len(items)
    if not dry_run and items:
        for source_topic in sorted({item[0] for item in items}):
            run(kafka.require_topic(conn, source_topic, "the dead letter's source topic"))
        sent = list(run(kafka.publish_raw(conn, items)))
    rows = []
    for r, item, result in zip(records, items, sent, strict=True):
        rows.append({"from": f"{r.partition}:{r.offset}", "key": r.key,
                     "type": r.headers.get("ce_type"), "to_topic": item[0],
                     "to_partition": result.partition if result else item[4],
                     "to_offset": result.offset if result else None,
                     "replayed": result is not None})
    if s.json_output:
        for row in rows:
            emit_json(row)
        return
    verb = "would replay" if dry_run else "replayed"
    for row in rows:
        target = (f"{row['to_topic']}[{row['to_partition']}]@{row['to_offset']}"
                  if row["replayed"] else row["to_topic"])
        out.print(f"{verb} {topic} {row['from']} ({row['type']}, key {row['key']}) -> {target}")
    if not rows:
        out.print(f"nothing to replay on {topic}")


# --- lag ----------------------------------------------------------------------------------------

@app.command()
def lag(ctx: typer.Context,
        group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None
        ) -> None:
    """Consumer lag per group and partition: committed offsets against end offsets."""
    s = settings(ctx)
    groups = run(kafka.lag(kafka_of(s), group))
    if s.json_output:
        emit_json(render.lag_json(groups))
    elif not groups:
        out.print("no consumer groups")
    else:
        out.print(render.lag_table(groups))


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="schoolcard")
