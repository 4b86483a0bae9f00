"""Session material never reaches the shared reply topic: every app reads ``apps.replies.v1``,
so a login, a refresh or a TOTP enrolment must name the requester's own reply topic
(``apps.replies.<client-id>.v1``). One that names the shared topic is dead-lettered before
auth does anything (no session, no "new login" alert); and a reply carrying secrets that
would still be addressed there becomes an error reply instead (the backstop in
``Transaction.reply``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contracts import auth as cmd
from contracts.catalog import APP_REPLIES, dead_letter_topic
from contracts.envelope import Command, Envelope, Reply
from services.runtime.mongo import Transaction
from tests.integration.test_auth_flows import login, parent
from tests.support import Requester, TopicReader, uid


def _secret_fields(model: type[Reply]) -> set[str]:
    return {name for name, f in model.model_fields.items()
            if "Secret" in str(f.annotation)}


@pytest.mark.unit
def test_every_reply_carrying_a_secret_is_private_and_its_requests_demand_a_private_topic():
    replies = [m for m in vars(cmd).values()
               if isinstance(m, type) and issubclass(m, Reply) and m is not Reply]
    carrying = {m for m in replies if _secret_fields(m)}
    assert carrying >= {cmd.SessionTokens, cmd.TotpEnrolmentStarted}
    assert all(m.PRIVATE for m in carrying)
    private_requests = {m for m in vars(cmd).values() if isinstance(m, type)
                        and issubclass(m, Command) and m.PRIVATE_REPLY}
    assert private_requests == {cmd.Login, cmd.RefreshSession, cmd.StartTotpEnrolment,
                                cmd.AcceptInvitation}


@pytest.mark.unit
def test_a_private_reply_addressed_to_the_shared_topic_becomes_an_error_reply():
    now = datetime.now(UTC)
    request = cmd.RefreshSession(request_id="r-1", refresh_token="opaque-refresh-token")
    for reply_to, expected in ((APP_REPLIES, "ErrorReply"),
                               ("apps.replies.cabinet-7.v1", "SessionTokens")):
        cause = Envelope.new(request, source="app:test", subject="k", reply_to=reply_to,
                             time=now)
        tx = Transaction(session=None, db=None, source="auth", cause=cause,  # type: ignore[arg-type]
                         now=now)
        tx.reply(cmd.SessionTokens(request_id="r-1", access_token="eyJ.secret.token",
                                   refresh_token="refresh-secret"))
        [sent] = tx.outbox
        assert (sent.topic, sent.envelope.type.rsplit(".", 1)[-1]) == (reply_to, expected)
        if expected == "ErrorReply":
            assert sent.message.error.code == "private_reply_topic_required"  # type: ignore[attr-defined]
            assert "secret" not in sent.message.model_dump_json().replace("secrets", "")


@pytest.mark.integration
async def test_a_login_naming_the_shared_reply_topic_is_refused_and_no_token_ever_reaches_it(
        auth, bootstrap):
    a = auth
    p = await parent(a, link=False)  # logged in through its own reply topic
    assert p.access_token and a.req.reply_topic != APP_REPLIES
    sessions_before = await a.db.auth_sessions.count_documents({})
    async with Requester(bootstrap, reply_topic=APP_REPLIES) as shared, \
            TopicReader(bootstrap, dead_letter_topic("auth")) as dlq:
        attempts = [cmd.Login(request_id=uid("l"), login=p.phone, password=p.password,
                              device="Android 14", ip="10.0.0.9"),
                    cmd.RefreshSession(request_id=uid("f"), refresh_token=p.refresh_token)]
        ids = []
        for message in attempts:
            env = await shared.integrator.publish(message, p.phone, reply_to=APP_REPLIES)
            ids.append(env.id)
        dead = await dlq.wait_for(lambda r: r.headers.get("ce_id") in ids, count=2)
        assert {r.headers["dlq_code"] for r in dead} == {"reply_topic_not_allowed"}
        assert all("own reply topic" in r.headers["dlq_reason"] for r in dead)
        # nothing happened: no session was opened, the refresh token still works
        assert await a.db.auth_sessions.count_documents({}) == sessions_before
        again = await login(a, p.phone, p.password)
        assert again["ok"] and again["access_token"]
        listed = (await shared.send(cmd.ListSessions(), p.phone,
                                    token=again["access_token"])).json()
        assert listed["ok"] and listed["sessions"], listed  # answered on the shared topic
        assert shared.replies is not None
        everything = await shared.replies.read_to_end()
    assert everything, "the scan reads the shared topic"
    for record in everything:
        assert record.type.rsplit(".", 1)[-1] not in {"SessionTokens", "TotpEnrolmentStarted"}
        text = record.value.decode()
        for secret in (p.access_token, p.refresh_token, again["access_token"],
                       again["refresh_token"]):
            assert secret not in text
