"""Contract fuzzing (issue 12 §2): every inbound contract of the integrator topics
(``integrations.*``, read from the catalog), generated from its JSON Schema with
hypothesis-jsonschema and mutated into poison, published with CloudEvents headers to auth,
wallet, access and transit running as their own processes on the real broker and database.

Valid messages are generated from ``Model.model_json_schema()`` and accepted by
``Model.model_validate_json``; half of them are pointed at cards this run issued and funded
(their contract, card uid, school, a recent tap time), so that they reach the handlers' rules
instead of stopping at "unknown card". Every consuming service must apply each of them once
(its message id in ``<service>_inbox``) or refuse it with a business code, never
``processing_failed`` (a handler crashed: a bug). Invalid messages are valid ones mutated: a
required field dropped, a wrong JSON type, negative, zero, fractional, string or excessive
kopecks, a sale total over the largest amount, overlong strings, unknown enum values, too many
or no sale lines, contract numbers in another script's digits, made-up time zones, instants out
of range, a payload that is not an object, broken, non-UTF-8 or deeply nested JSON, a wrong
``ce_type``, missing or broken envelope headers. Every consuming service must dead-letter each
of them once with a schema-level ``dlq_code`` and apply none. No service process may die or
stop being ready, and no outbox record may be parked.

``make test`` runs 30 messages per contract; ``make faults`` 1,000 (times ``FAULTS_SCALE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import _from_schema, from_schema

from contracts import catalog
from contracts.catalog import DLQ_CODE, DLQ_REASON
from contracts.envelope import (
    HEADER_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_SOURCE,
    HEADER_TIME,
    HEADER_TYPE,
    ContractModel,
    Envelope,
    encode,
    registered_types,
)
from contracts.integrations import CardIssued, TopUpReceived
from deploy.local import stack as devstack
from tests.faults.conftest import Report, World, scale
from tests.support import Integrator, Record, TopicReader, chip_uid, eventually, uid

pytestmark = pytest.mark.system

PROBE = "x-fault-probe"
SCHOOL = "izh-fuzz-1"
START_BALANCE = 900_000_00
SCHEMA_CODES = frozenset({"not_json", "schema_violation", "missing_headers", "invalid_headers",
                          "unexpected_type", "unknown_type", "unsupported_version"})
"""Dead-letter codes of the runtime's decoding: the input itself is wrong."""

INBOUND: tuple[tuple[type[ContractModel], catalog.Topic], ...] = tuple(
    (model, t) for t in catalog.TOPICS if t.name.startswith("integrations.")
    for model in t.messages)
CONSUMERS = tuple(sorted({s for _, t in INBOUND for s in t.consumers}))


# --- generation ------------------------------------------------------------------------------

_END = object()


class _Many(conjecture_utils.many):
    """hypothesis-jsonschema 0.23.1 drives Hypothesis' private ``many`` with ``more()``;
    Hypothesis 6.170 turned it into a context manager and iterator. This keeps the old call
    working on the new protocol, for that library only."""

    def more(self) -> bool:
        if self._depth is None:
            self.__enter__()
            self._elements = iter(self)
        if next(self._elements, _END) is _END:
            self.__exit__(None)
            return False
        return True


if not hasattr(conjecture_utils.many, "more"):
    _from_schema.cu = SimpleNamespace(many=_Many)  # type: ignore[attr-defined]


ZONES = ["Europe/Samara", "Europe/Moscow", "Asia/Yekaterinburg", "Asia/Vladivostok",
         "Europe/Kaliningrad", "Asia/Kamchatka", "UTC", "America/St_Johns", "Pacific/Chatham",
         "Asia/Kathmandu", "Etc/GMT+12", "Pacific/Kiritimati"]


def generation_schema(model: type[ContractModel]) -> dict[str, Any]:
    """The model's JSON Schema, read as JSON Schema means it: its patterns are ECMA 262, where
    ``\\d`` is 0-9 (hypothesis-jsonschema reads them as Python patterns, where it is any
    Unicode digit); and a school time zone drawn from real IANA names (the pattern allows any
    word: made-up zones, like other-script digits, are among the mutations)."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: fix(v) for k, v in node.items()}
            if isinstance(out.get("pattern"), str):
                out["pattern"] = out["pattern"].replace("\\d", "[0-9]")
            if isinstance(out.get("properties"), dict) and "school_tz" in out["properties"]:
                out["properties"]["school_tz"] = {"enum": ZONES}
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(model.model_json_schema())  # type: ignore[no-any-return]


def generated(model: type[ContractModel], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` payloads drawn from the model's JSON Schema (generation phase only: no shrinking,
    no example database, reproducible from ``seed``)."""
    found: list[dict[str, Any]] = []

    @hypothesis.seed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(from_schema(generation_schema(model)))
    def collect(payload: dict[str, Any]) -> None:
        found.append(payload)

    collect()
    return found[:n]


def accepted(model: type[ContractModel], value: bytes) -> bool:
    try:
        model.model_validate_json(value)
    except Exception:  # any refusal counts: an OverflowError is a refusal too
        return False
    return True


def anchored(model: type[ContractModel], payload: dict[str, Any], seeds: list[CardIssued],
             rng: random.Random) -> dict[str, Any]:
    """The payload pointed at a card of this run (a valid mutation): a known contract or card
    uid, its school, mostly a fresh idempotency key; a gate tap of the last days; a validator
    tap in the current fare weeks, on a mode the operator serves."""
    card = rng.choice(seeds)
    p = copy.deepcopy(payload)
    name = model.__name__
    for key in ("payment_id", "sale_id", "tap_id"):
        # drawn ids repeat ("0"): most anchored facts get their own, so that they are decided
        # rather than refused as an idempotency conflict (the rest still are)
        if isinstance(p.get(key), str) and rng.random() < 0.8:
            p[key] = f"{p[key][:100]}-{uid('f')}"
    if name in ("CardIssued", "TopUpReceived", "AutoTopUpCollectionFailed"):
        p["contract"] = card.contract
    elif name == "CardReissued":
        p["old_contract"] = card.contract
    elif name == "CanteenSaleRequested":
        p["card_uid"], p["school_id"] = card.card_uid, card.school_id
    elif name == "GateTapped":
        p["card_uid"], p["school_id"] = card.card_uid, card.school_id
        p["tapped_at"] = (datetime.now(UTC) - timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
                          ).isoformat()
    elif name == "ValidatorTapped":
        p["card_uid"], p["operator_id"] = card.card_uid, "izhevsk"
        p["mode"] = rng.choice(["bus", "tram", "trolleybus", "minibus"])
        p["tapped_at"] = (datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 6 * 24 * 60))
                          ).isoformat()
    return p


# --- mutation --------------------------------------------------------------------------------

KOPECK_PATHS = {"TopUpReceived": [("amount",)],
                "CanteenSaleRequested": [("bonus_to_redeem",), ("items", 0, "unit_price")]}
BAD_KOPECKS: list[Any] = [-100, -1, 0, 100.5, 0.01, "100", "1 234,50", True, 10**11, 10**30,
                          None, [100]]
WRONG_TYPES: list[Any] = [12345, -1.5, True, False, None, [], {}, "text", [1, 2], {"a": 1}]
CONTRACT_FIELDS = ("contract", "old_contract", "new_contract")
INSTANT_FIELDS = ("issued_at", "reissued_at", "paid_at", "failed_at", "sold_at", "tapped_at")
OTHER_DIGITS = "٠١٢٣٤٥٦٧٨٩"  # Arabic-Indic: \d to a Unicode regex, not to JSON Schema
OUT_OF_RANGE = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"]


def _enum_paths(model: type[ContractModel], p: dict[str, Any]) -> list[tuple[Any, ...]]:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})

    def is_enum(prop: dict[str, Any]) -> bool:
        ref = prop.get("$ref", "")
        return "enum" in prop or "enum" in defs.get(ref.rsplit("/", 1)[-1], {})

    paths: list[tuple[Any, ...]] = [(k,) for k, v in schema["properties"].items() if is_enum(v)]
    if isinstance(p.get("items"), list) and p["items"]:
        paths.append(("items", 0, "category"))
    return paths


def _string_paths(model: type[ContractModel], p: dict[str, Any]) -> list[tuple[Any, ...]]:
    paths: list[tuple[Any, ...]] = [(k,) for k, v in p.items()
                                    if k in model.model_fields and isinstance(v, str)]
    if isinstance(p.get("items"), list) and p["items"]:
        paths += [("items", 0, "sku"), ("items", 0, "name")]
    return paths


def _put(p: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    target: Any = p
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


@dataclass
class Mutation:
    kind: str
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()


def mutate(model: type[ContractModel], topic: catalog.Topic, payload: dict[str, Any],
           rng: random.Random) -> Mutation:
    """One invalid variant of a valid payload (retried until the model refuses it)."""
    name = model.__name__
    for _ in range(50):
        kind = rng.choice(["drop_required", "wrong_type", "kopecks", "overlong", "enum",
                           "sale_lines", "other_digits", "unknown_zone", "instant_range",
                           "not_object", "broken_json", "bad_utf8", "deep_json",
                           "wrong_ce_type", "missing_header", "bad_header"])
        p = copy.deepcopy(payload)
        raw: bytes | None = None
        if kind == "drop_required":
            del p[rng.choice(model.model_json_schema()["required"])]
        elif kind == "wrong_type":
            _put(p, (rng.choice(sorted(model.model_fields)),), rng.choice(WRONG_TYPES))
        elif kind == "kopecks" and name in KOPECK_PATHS:
            _put(p, rng.choice(KOPECK_PATHS[name]), rng.choice(BAD_KOPECKS))
        elif kind == "overlong":
            _put(p, rng.choice(_string_paths(model, p)),
                 rng.choice("xЯ7") * rng.choice([17, 65, 81, 129, 255, 5_000, 300_000]))
        elif kind == "enum" and _enum_paths(model, p):
            _put(p, rng.choice(_enum_paths(model, p)), rng.choice(["teleport", "BUS", ""]))
        elif kind == "sale_lines" and name == "CanteenSaleRequested":
            over_total = [{**p["items"][0], "qty": 50, "unit_price": 10**10}]
            p["items"] = rng.choice([[], p["items"] * 51, over_total])
        elif kind == "other_digits" and set(CONTRACT_FIELDS) & set(p):
            digits = rng.choice(sorted(set(CONTRACT_FIELDS) & set(p)))
            p[digits] = "".join(OTHER_DIGITS[int(c)] if i == 0 or rng.random() < 0.5 else c
                                for i, c in enumerate(p[digits]))
        elif kind == "unknown_zone" and "school_tz" in p:
            p["school_tz"] = rng.choice(["A", "Mars/Base", "Europe", "Europe/Samara/x", "GMT_5"])
        elif kind == "instant_range":
            _put(p, (rng.choice([f for f in INSTANT_FIELDS if f in p]),),
                 rng.choice(OUT_OF_RANGE))
        elif kind == "not_object":
            raw = json.dumps(rng.choice([[p], "sale", 42, None])).encode()
        elif kind == "broken_json":
            text = json.dumps(p, ensure_ascii=False).encode()
            raw = rng.choice([text[:rng.randrange(len(text))], b"", b"{not json",
                              text.replace(b":", b"=", 1), text + b"}"])
        elif kind == "bad_utf8":
            raw = json.dumps(p).encode().replace(b'":', b'\xff\xfe":', 1)
        elif kind == "deep_json":
            depth = rng.choice([1_000, 50_000])
            raw = (json.dumps({**p, "x": "@"}).encode()
                   .replace(b'"@"', b"[" * depth + b"]" * depth))
        elif kind == "wrong_ce_type":
            siblings = [m for m in topic.messages if m is not model
                        and not accepted(m, json.dumps(p).encode())]
            foreign = [t for t, m in sorted(registered_types().items())
                       if m not in topic.messages]
            choice = rng.choice([*siblings, None, None])
            ce_type = (choice.TYPE if choice else rng.choice(
                [*rng.sample(foreign, 3), "schoolcard.integrations.Nope", "x"]))
            return Mutation(kind, encode(model.model_validate(p)), {HEADER_TYPE: ce_type})
        elif kind == "missing_header":
            return Mutation(kind, encode(model.model_validate(p)),
                            drop=(rng.choice([HEADER_ID, HEADER_TYPE, HEADER_SOURCE,
                                              HEADER_TIME]),))
        elif kind == "bad_header":
            header, bad = rng.choice([(HEADER_TIME, "yesterday"), (HEADER_TIME, "2026-13-45"),
                                      (HEADER_TIME, "2026-09-01T08:00:00"),
                                      (HEADER_TIME, rng.choice(OUT_OF_RANGE)),
                                      (HEADER_SCHEMA_VERSION, "2"),
                                      (HEADER_SCHEMA_VERSION, "v1"),
                                      (HEADER_SCHEMA_VERSION, "0")])
            return Mutation(kind, encode(model.model_validate(p)), {header: bad})
        else:
            continue
        value = raw if raw is not None else json.dumps(p, ensure_ascii=False).encode()
        if not accepted(model, value):
            return Mutation(kind, value)
    return Mutation("broken_json", b"{not json")


# --- the messages of a run -------------------------------------------------------------------

@dataclass
class Sent:
    probe: str
    model: type[ContractModel]
    topic: catalog.Topic
    key: str
    value: bytes
    headers: dict[str, str]
    valid: bool
    kind: str

    @property
    def message_id(self) -> str | None:
        return self.headers.get(HEADER_ID)

    def describe(self) -> str:
        return (f"{self.model.__name__}/{self.kind} {self.probe}: "
                f"{self.value[:300].decode(errors='replace')}")


def _key(topic: catalog.Topic, payload: Any) -> str:
    if not isinstance(payload, dict):
        return "fuzz"
    for name in (topic.key, f"old_{topic.key}", f"new_{topic.key}"):
        if isinstance(payload.get(name), str) and payload[name]:
            return str(payload[name])
    return "fuzz"


def messages(per_contract: int, seeds: list[CardIssued], seed: int) -> list[Sent]:
    """``per_contract`` messages of each inbound contract: as many valid ones as
    hypothesis-jsonschema draws for half of that (half of them anchored to the run's cards),
    the rest invalid mutations of those."""
    rng = random.Random(seed)
    out: list[Sent] = []
    for i, (model, topic) in enumerate(INBOUND):
        drawn = generated(model, max(1, per_contract // 2), seed + i)
        valid: list[dict[str, Any]] = []
        for payload in drawn:
            if rng.random() < 0.5:
                candidate = anchored(model, payload, seeds, rng)
                if accepted(model, json.dumps(candidate).encode()):
                    valid.append(candidate)
                    continue
            valid.append(payload)
        for payload in valid:
            value = json.dumps(payload, ensure_ascii=False).encode()
            ok = accepted(model, value)
            out.append(_sent(model, topic, payload, value, ok, "generated" if ok else
                             "generated_refused_by_model", {}, ()))
        originals = [p for p in valid if accepted(model, json.dumps(p).encode())]
        assert originals, f"hypothesis-jsonschema drew no valid {model.__name__}"
        for _ in range(per_contract - len(valid)):
            payload = rng.choice(originals)
            m = mutate(model, topic, payload, rng)
            out.append(_sent(model, topic, payload, m.value, False, m.kind, m.headers, m.drop))
    rng.shuffle(out)
    return out


def _sent(model: type[ContractModel], topic: catalog.Topic, payload: Any, value: bytes,
          valid: bool, kind: str, changes: dict[str, str], drop: tuple[str, ...]) -> Sent:
    probe = uid("fuzz")
    key = _key(topic, payload)
    headers = {**Envelope.new(model.model_construct(), source="integrator:fuzz",
                              subject=key).to_headers(), PROBE: probe, **changes}
    for name in drop:
        headers.pop(name, None)
    return Sent(probe, model, topic, key, value, headers, valid, kind)


def seed_cards(rng: random.Random, n: int) -> list[CardIssued]:
    now = datetime.now(UTC)
    return [CardIssued(contract=f"{rng.randrange(10**7, 10**8)}", card_uid=chip_uid(rng),
                       school_id=SCHOOL, school_tz="Europe/Samara", student_id=uid("stu"),
                       class_name="3В", birth_date=date(2016, 4, 4), issued_at=now)
            for _ in range(n)]


# --- the scenario ----------------------------------------------------------------------------

@pytest.mark.parametrize("per_contract", [
    30, pytest.param(1_000, marks=[pytest.mark.slow, pytest.mark.timeout(3_600)])])
async def test_fuzzed_integrator_messages_are_applied_once_or_dead_lettered_and_crash_nothing(
        per_contract: int, world: World, fault_report: Report) -> None:
    w = world
    per_contract = scale(per_contract) if per_contract > 30 else per_contract
    rng = random.Random(per_contract)
    procs = [w.start(s, "a", wait=False) for s in CONSUMERS]
    seeds = seed_cards(rng, 8)
    generation_started = time.monotonic()
    sent = await asyncio.to_thread(messages, per_contract, seeds, per_contract)
    generation_s = round(time.monotonic() - generation_started, 1)
    for proc in procs:
        await asyncio.to_thread(devstack.wait_ready, proc, 90)
    dbs = {s: w.database(s) for s in CONSUMERS}

    def inboxes() -> dict[str, set[str]]:
        return {s: {d["_id"] for d in db[f"{s}_inbox"].find({}, {"_id": 1})}
                for s, db in dbs.items()}

    async with Integrator(w.bootstrap, source="integrator:fuzz") as integrator:
        seed_ids: dict[str, set[str]] = defaultdict(set)
        for card in seeds:
            env = await integrator.publish(card, card.contract)
            for s in catalog.topic_for(CardIssued).consumers:
                seed_ids[s].add(env.id)
            env = await integrator.publish(TopUpReceived(
                payment_id=uid("start"), contract=card.contract, amount=START_BALANCE,
                channel="bank_card", paid_at=datetime.now(UTC)), card.contract)
            seed_ids["wallet"].add(env.id)

        async def seeded() -> bool:
            got = await asyncio.to_thread(inboxes)
            return all(ids <= got[s] for s, ids in seed_ids.items())

        await eventually(seeded, timeout=120, interval=0.5, what="the run's cards issued")
        started = time.monotonic()
        for m in sent:
            await integrator.publish_raw(m.topic.name, m.value, m.key, m.headers, signed=True)

    dlq: dict[str, TopicReader] = {s: TopicReader(w.bootstrap, catalog.dead_letter_topic(s))
                                   for s in CONSUMERS}
    async with contextlib.AsyncExitStack() as stack:
        for reader in dlq.values():
            await stack.enter_async_context(reader)

        def probed(records: list[Record]) -> dict[str, list[Record]]:
            found: dict[str, list[Record]] = defaultdict(list)
            for r in records:
                if PROBE in r.headers:
                    found[r.headers[PROBE]].append(r)
            return found

        async def settled() -> bool:
            dead = {s: probed(await r.poll()) for s, r in dlq.items()}
            applied = await asyncio.to_thread(inboxes)
            return all(m.probe in dead[s] or (m.valid and m.message_id in applied[s])
                       for m in sent for s in m.topic.consumers)

        with contextlib.suppress(AssertionError):  # what is missing is counted below as lost
            await eventually(settled, timeout=120 + len(sent) / 5, interval=1,
                             what="every message applied or dead-lettered")
        drain_s = round(time.monotonic() - started, 1)
        dead = {s: probed(await r.read_to_end()) for s, r in dlq.items()}
    applied = await asyncio.to_thread(inboxes)
    crashed = sum(1 for p in procs if not p.alive() or not devstack.ready(p))
    parked = sum(db[f"{s}_outbox"].count_documents({"status": "parked"})
                 for s, db in dbs.items())

    figures: Counter[str] = Counter()
    per_model: dict[str, Counter[str]] = defaultdict(Counter)
    codes: Counter[str] = Counter()
    problems: list[str] = []
    for m in sent:
        mine = per_model[m.model.__name__]
        mine["valid" if m.valid else "invalid"] += 1
        for s in m.topic.consumers:
            records = dead[s].get(m.probe, [])
            in_inbox = m.message_id is not None and m.message_id in applied[s]
            code = records[0].headers.get(DLQ_CODE, "") if records else ""
            codes[code] += bool(records)
            if code == "processing_failed":
                figures["processing_failed"] += 1
                mine["processing_failed"] += 1
            if len(records) > 1 or (records and in_inbox):
                figures["double_applied"] += 1
                problems.append(f"{s}: applied and dead-lettered: {m.describe()}")
            if m.valid:
                if in_inbox:
                    figures["applied"] += 1
                elif not records:
                    figures["valid_lost"] += 1
                    problems.append(f"{s}: valid message lost: {m.describe()}")
                elif code in SCHEMA_CODES or code == "processing_failed":
                    figures["valid_refused_wrongly"] += 1
                    problems.append(f"{s}: valid message dead-lettered {code} "
                                    f"({records[0].headers.get(DLQ_REASON, '')[:200]}): "
                                    f"{m.describe()}")
                else:
                    figures["refused"] += 1
            else:
                if not records:
                    figures["invalid_lost"] += 1
                    problems.append(f"{s}: invalid message not dead-lettered "
                                    f"({'applied' if in_inbox else 'nowhere'}): "
                                    f"{m.describe()}")
                elif code not in SCHEMA_CODES:
                    figures["invalid_wrong_code"] += 1
                    problems.append(f"{s}: invalid message dead-lettered {code} "
                                    f"({records[0].headers.get(DLQ_REASON, '')[:200]}): "
                                    f"{m.describe()}")
                else:
                    figures["dead_lettered"] += 1
    result = fault_report(
        f"contract fuzz x{per_contract} per contract",
        lost=figures["valid_lost"] + figures["invalid_lost"],
        double_applied=figures["double_applied"],
        contracts=len(INBOUND), published=len(sent),
        valid=sum(m.valid for m in sent), invalid=sum(not m.valid for m in sent),
        applied=figures["applied"], refused=figures["refused"],
        dead_lettered=figures["dead_lettered"], processing_failed=figures["processing_failed"],
        valid_refused_wrongly=figures["valid_refused_wrongly"],
        invalid_wrong_code=figures["invalid_wrong_code"], crashed=crashed, parked=parked,
        per_contract={k: dict(v) for k, v in sorted(per_model.items())},
        dlq_codes=dict(codes.most_common()), generation_s=generation_s, drain_s=drain_s)
    summary = "\n".join(problems[:25])
    assert (result["lost"], result["double_applied"]) == (0, 0), summary
    assert (result["processing_failed"], result["valid_refused_wrongly"],
            result["invalid_wrong_code"]) == (0, 0, 0), summary
    assert (crashed, parked) == (0, 0)
    assert all(v["valid"] + v["invalid"] >= per_contract for v in result["per_contract"].values())

