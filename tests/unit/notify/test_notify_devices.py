"""Push tokens end with the session that registered them (services.notify.domain.devices):
which tokens an end of sessions takes, and which access tokens it leaves unable to register
one. Pure: no fixtures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain import NotifyError, SessionEnd, require_live_session, tokens_ended

pytestmark = pytest.mark.unit

AT = datetime(2026, 9, 1, 6, 0, 30, tzinfo=UTC)
ACCOUNT = "acc_7f3a9c2e1b4d"
TOKENS = {"t-phone": "ses-phone", "t-tablet": "ses-tablet", "t-old": None}


def test_one_session_ending_takes_its_own_tokens_only():
    assert tokens_ended(SessionEnd(ACCOUNT, "ses-phone", None, AT), TOKENS) == (["t-phone"],
                                                                                True)


def test_every_session_ending_takes_every_token_but_the_kept_sessions_and_the_unbound_too():
    everything = SessionEnd(ACCOUNT, None, None, AT)
    assert tokens_ended(everything, TOKENS) == (["t-old", "t-phone", "t-tablet"], False)
    kept = SessionEnd(ACCOUNT, None, "ses-tablet", AT)
    assert tokens_ended(kept, TOKENS) == (["t-old", "t-phone"], True)
    assert tokens_ended(kept, {}) == ([], False)


def test_an_ended_sessions_access_token_registers_nothing_and_a_later_sessions_does():
    one = SessionEnd(ACCOUNT, "ses-phone", None, AT)
    with pytest.raises(NotifyError, match="session_ended"):
        require_live_session([one], "ses-phone", AT + timedelta(minutes=4))
    require_live_session([one], "ses-tablet", AT - timedelta(minutes=1))
    every = SessionEnd(ACCOUNT, None, "ses-kept", AT)
    issued_before = AT.replace(microsecond=0) - timedelta(seconds=1)
    with pytest.raises(NotifyError, match="session_ended"):
        require_live_session([every], "ses-tablet", issued_before)
    require_live_session([every], "ses-kept", issued_before)  # the password change kept it
    require_live_session([every], "ses-new", AT + timedelta(seconds=1))
    require_live_session([], "ses-any", issued_before)
