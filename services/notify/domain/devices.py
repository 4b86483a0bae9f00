"""Push tokens and the sessions that registered them.

A push token belongs to the auth session whose access token registered it (the token's
``sid``): the device is signed in there, so when that session ends — a logout, a refresh
token caught being reused, a password change or reset, support's factor reset, a closed
account (auth's ``SessionEnded``) — the token goes with it, and the child's news stops going
to a device nobody is signed in on. A token stored before tokens were tied to sessions names
none: it goes when every session of the account ends.

An access token lives five minutes after its session ended, so notify remembers the ends it
was told of (``SessionEnd``) and refuses a registration from an ended session
(``require_live_session``); a registration that arrives before the news of the end is deleted
by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .clock import require_aware
from .errors import NotifyError, NotifyRejection


@dataclass(frozen=True)
class SessionEnd:
    """Sessions of ``account_id`` that ended at ``at``: the one ``session_id``, or (None)
    every session but ``kept_session_id`` (the caller's, after a password change)."""

    account_id: str
    session_id: str | None
    kept_session_id: str | None
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at)

    def ends(self, session_id: str | None) -> bool:
        """Whether a push token registered from ``session_id`` (None: from no known session)
        dies with these sessions."""
        if self.session_id is not None:
            return session_id == self.session_id
        return session_id is None or session_id != self.kept_session_id

    def ended_token(self, session_id: str, issued_at: datetime) -> bool:
        """Whether an access token of ``session_id`` issued at ``issued_at`` (whole seconds)
        belongs to a session that ended here. When every session ended, a token issued in the
        same second counts as ended: the app's next refresh gets one that is not."""
        if self.session_id is not None:
            return session_id == self.session_id
        return session_id != self.kept_session_id and issued_at <= require_aware(self.at)


def require_live_session(ends: Iterable[SessionEnd], session_id: str,
                         issued_at: datetime) -> None:
    """Refuse (``session_ended``) a push token registered with an access token of a session
    that ``ends`` says ended."""
    if any(end.ended_token(session_id, issued_at) for end in ends):
        raise NotifyError(NotifyRejection.SESSION_ENDED,
                          "the session of this access token has ended; sign in again")


def tokens_ended(end: SessionEnd, tokens: Mapping[str, str | None]) -> tuple[list[str], bool]:
    """Of an account's push tokens (id -> the session that registered it), the ids that die
    with ``end``, and whether any token is left."""
    ended = sorted(token_id for token_id, session_id in tokens.items() if end.ends(session_id))
    return ended, len(ended) < len(tokens)
