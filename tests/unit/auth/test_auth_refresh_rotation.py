"""Refresh-token rotation with reuse detection and a grace window for lost replies (OAuth 2.0
Security BCP): a retry right after a rotation is answered, any other reuse revokes the family."""

from datetime import UTC, datetime, timedelta

import pytest

from services.auth.domain import (
    REFRESH_REUSE_GRACE,
    AuthRejected,
    Reason,
    RefreshResult,
    Session,
)
from services.auth.domain.events import RefreshTokenReuseDetected, SessionRefreshed

pytestmark = pytest.mark.unit

T0 = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
ROTATED = T0 + timedelta(minutes=1)


def session() -> Session:
    return Session.start(session_id="s1", account_id="acc-1", epoch=0, refresh_token_hash="rt-0",
                         device="Phone", ip_hash="ip", now=T0)


def refresh(s: Session, presented: str, new: str, at: datetime, key: str | None = None,
            grace: timedelta = REFRESH_REUSE_GRACE) -> RefreshResult:
    return s.refresh(presented_token_hash=presented, new_token_hash=new, now=at,
                     account_epoch=0, idempotency_key=key, reuse_grace=grace)


def test_the_grace_window_is_30_seconds_by_default() -> None:
    assert timedelta(seconds=30) == REFRESH_REUSE_GRACE


def test_a_retry_inside_the_window_gets_a_new_token_rotated_from_the_current_one() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)  # the reply carrying rt-1 is lost
    retried = refresh(s, "rt-0", "rt-2", ROTATED + timedelta(seconds=29))
    assert retried.rejection is None and retried.retried and not retried.replayed
    assert (s.refresh_token_hash, s.generation, s.revoked_at) == ("rt-2", 2, None)
    events = [e for e in s.pull_events() if isinstance(e, SessionRefreshed)]
    assert [e.retry for e in events] == [False, True]
    # The client goes on with the token it received; the session lives on normally.
    later = refresh(s, "rt-2", "rt-3", ROTATED + timedelta(minutes=5))
    assert later.rejection is None and not later.retried and s.revoked_at is None


def test_the_same_request_retried_with_its_key_is_answered_not_refused() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED, key="k")
    again = refresh(s, "rt-0", "rt-2", ROTATED + timedelta(seconds=3), key="k")
    assert again.rejection is None and again.retried and s.refresh_token_hash == "rt-2"


def test_a_reuse_after_the_window_revokes_the_whole_family() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)
    stolen = refresh(s, "rt-0", "rt-evil", ROTATED + REFRESH_REUSE_GRACE)
    assert stolen.rejection is Reason.REFRESH_TOKEN_REUSED and s.revoked_at is not None
    assert any(isinstance(e, RefreshTokenReuseDetected) for e in s.pull_events())
    with pytest.raises(AuthRejected) as caught:
        refresh(s, "rt-1", "rt-2", ROTATED + timedelta(minutes=1))
    assert caught.value.reason is Reason.SESSION_REVOKED


def test_only_tokens_retired_in_the_current_window_get_grace() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)
    refresh(s, "rt-1", "rt-2", ROTATED + timedelta(seconds=5))  # an ordinary second refresh
    older = refresh(s, "rt-0", "rt-3", ROTATED + timedelta(seconds=10))
    assert older.rejection is Reason.REFRESH_TOKEN_REUSED and s.revoked_at is not None


def test_a_copy_of_the_lost_reply_used_after_the_window_revokes_the_family() -> None:
    """Whoever kept a token that a retry replaced (the lost reply may have reached a thief)
    cannot keep a session beside the owner's."""
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)  # lost on its way to the owner
    refresh(s, "rt-0", "rt-2", ROTATED + timedelta(seconds=5))  # the owner's retry
    thief = refresh(s, "rt-1", "rt-9", ROTATED + timedelta(minutes=3))
    assert thief.rejection is Reason.REFRESH_TOKEN_REUSED and s.revoked_at is not None


def test_at_most_five_retries_are_answered_per_window() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)
    for n in range(5):
        assert refresh(s, "rt-0", f"rt-r{n}", ROTATED + timedelta(seconds=n + 1)).retried
    sixth = refresh(s, "rt-0", "rt-r5", ROTATED + timedelta(seconds=6))
    assert sixth.rejection is Reason.REFRESH_TOKEN_REUSED and s.revoked_at is not None


def test_a_zero_grace_window_revokes_on_any_reuse() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED, grace=timedelta(0))
    again = refresh(s, "rt-0", "rt-2", ROTATED, grace=timedelta(0))
    assert again.rejection is Reason.REFRESH_TOKEN_REUSED and s.revoked_at is not None


def test_a_retry_does_not_outlive_the_session() -> None:
    s = session()
    late = T0 + timedelta(hours=12) - timedelta(seconds=10)
    s.last_used_at = late - timedelta(minutes=1)
    refresh(s, "rt-0", "rt-1", late)
    with pytest.raises(AuthRejected) as caught:
        refresh(s, "rt-0", "rt-2", late + timedelta(seconds=15))
    assert caught.value.reason is Reason.SESSION_LIFETIME_EXPIRED


def test_the_window_survives_a_round_trip_and_older_documents_still_load() -> None:
    s = session()
    refresh(s, "rt-0", "rt-1", ROTATED)
    loaded = Session.from_doc(s.to_doc())
    assert (loaded.rotated_at, loaded.grace_token_hashes) == (ROTATED, ["rt-0"])
    assert refresh(loaded, "rt-0", "rt-2", ROTATED + timedelta(seconds=1)).retried
    old = s.to_doc()
    del old["rotated_at"], old["grace_token_hashes"]
    legacy = Session.from_doc(old)
    assert refresh(legacy, "rt-0", "rt-2", ROTATED).rejection is Reason.REFRESH_TOKEN_REUSED
