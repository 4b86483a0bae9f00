"""notify as its own process with the sinks as their own process (``python -m
deploy.local.sinks --fail-first 2``): one entry published three times while the provider fails
the first two calls gives exactly one delivered push; a one-time code reaches the SMS sink
but never notify's log or the delivery topic."""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from contracts.access import StudentEntered
from contracts.auth import GuardianContacts, GuardianLinked, Role
from contracts.notify import OneTimeCodeRequested, RegisterPushToken, SetPreferences
from deploy.local import stack as devstack
from deploy.local.sinks import read_http
from services.runtime.tokens import issue_access_token
from tests.support import Integrator, Requester, TopicReader, eventually, uid

pytestmark = pytest.mark.system


async def _async(value):  # type: ignore[no-untyped-def]
    return value


async def test_notify_process_sends_one_push_despite_three_copies_and_two_failures_and_hides_codes(
        start_service, bootstrap, infra, run_dir: Path):
    sink_dir = run_dir / f"sinks-{uid()}"
    smtp_port, http_port = devstack.free_port(), devstack.free_port()
    log = (run_dir / "logs" / "sinks.log").open("ab")
    sinks = subprocess.Popen(  # noqa: ASYNC220 - a short-lived test helper process
        [sys.executable, "-m", "deploy.local.sinks", "--dir", str(sink_dir), "--smtp-port",
         str(smtp_port), "--http-port", str(http_port), "--fail-per-key", "2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=devstack.ROOT)
    try:
        devstack.wait_for(lambda: devstack.port_open(http_port), timeout=30, what="sinks")
        notify = start_service("notify", env={
            "NOTIFY_SMTP_PORT": str(smtp_port),
            "NOTIFY_SMS_URL": f"http://127.0.0.1:{http_port}/sms",
            "NOTIFY_PUSH_URL": f"http://127.0.0.1:{http_port}/push",
            "NOTIFY_SEND_BACKOFF_MS": "200", "NOTIFY_SEND_POLL_MS": "100"})
        acc, child = f"acc_{uuid.uuid4().hex[:16]}", f"{random.randrange(10**7, 10**8)}"
        tel = f"+7912{random.randrange(10**6, 10**7)}"
        now = datetime.now(UTC)
        token = issue_access_token(infra["AUTH_PRIVATE_KEY"], account_id=acc,
                                   session_id=uid("ses"), role=Role.PARENT)
        async with Integrator(bootstrap) as pub, Requester(bootstrap) as req, \
                TopicReader(bootstrap, "notify.deliveries.v1") as deliveries:
            await pub.publish(GuardianContacts(account_id=acc, phone=tel, updated_at=now), acc)
            await pub.publish(GuardianLinked(account_id=acc, contract=child, role="primary",
                                             at=now), acc)
            await req.send(SetPreferences(request_id=uid("p"), account_id=acc,
                                          quiet_from="00:00", quiet_to="00:00"), acc,
                           token=token, timeout=60)
            await req.send(RegisterPushToken(request_id=uid("t"), account_id=acc,
                                             token=f"fcm-{uuid.uuid4().hex}"), acc, token=token)
            entry = StudentEntered(contract=child, school_id="izh-school-42", gate_id="g-1",
                                   tap_id=uid("tap"), at=now, local_date=now.astimezone(
                                       ZoneInfo("Europe/Samara")).date().isoformat())
            # Guardianship travels on other topics than the entry: wait for it to be known.
            await eventually(lambda: _guardian_known(infra, acc), timeout=30,
                             what="guardian projected")
            envelope = await pub.publish(entry, child)
            await pub.publish(entry, child, envelope=envelope)
            await pub.publish(entry, child)
            await deliveries.wait_for(lambda r: r.key == acc and r.json()["status"] == "sent",
                                      timeout=60)
            code = f"{random.randrange(10**5, 10**6)}"
            await pub.publish(OneTimeCodeRequested(
                request_id=uid("otp"), phone=tel, code=code, purpose="registration",
                expires_at=now + timedelta(minutes=5)), tel)
            [sms] = await eventually(lambda: _async(
                [r for r in read_http(sink_dir) if r["path"] == "/sms" and r["status"] == 200
                 and r["body"].get("to") == tel]),
                timeout=60, what="code SMS")
            await deliveries.wait_for(lambda r: r.json()["kind"] == "one_time_code"
                                      and r.json()["status"] == "sent", timeout=30)
            records = [r.value.decode() for r in deliveries.records]
        # The process may also deliver leftovers of other tests: look at this guardian only.
        pushes = [r for r in read_http(sink_dir)
                  if r["path"] == "/push" and acc in (r["idempotency_key"] or "")]
        assert [r["status"] for r in pushes] == [503, 503, 200]
        assert len({r["idempotency_key"] for r in pushes}) == 1
        assert code in sms["body"]["text"]
        assert all(code not in r for r in records)
        notify.stop()
        assert code not in Path(notify.log).read_text(errors="replace")
    finally:
        sinks.terminate()
        sinks.wait(timeout=20)
        log.close()


async def _guardian_known(infra: dict[str, str], account_id: str) -> bool:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(infra["SCHOOLCARD_MONGO_URI"], tz_aware=True)
    try:
        doc = await client.schoolcard_notify.notify_guardians.find_one({"_id": account_id})
        return bool(doc and doc["children"] and doc["has_push_token"])
    finally:
        await client.close()
